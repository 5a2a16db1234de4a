//! Losses against reference values computed independently with PyTorch in float64
//! (`python3 bench/reference_losses.py`). Tolerance: 1e-4 relative + 1e-5 absolute (f32).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use rampart_core::loss::{
    FocalLoss, anc_loss, cross_entropy, cross_entropy_per_sample, cw_margin_per_sample,
    dlr_per_sample, dlr_targeted_per_sample, inverse_frequency_weights, mart_loss, trades_loss,
    weighted_cross_entropy,
};

fn logits() -> Tensor<2> {
    let v = vec![
        2.0f32, -1.0, 0.5, 0.1, 0.2, 0.3, -3.0, 4.0, 1.0, 10.0, -10.0, 0.0,
    ];
    Tensor::from_data(TensorData::new(v, [4, 3]), &cpu())
}

fn targets() -> burn::tensor::Tensor<1, burn::tensor::Int> {
    labels(&[0, 2, 0, 1], &cpu())
}

fn close(got: Vec<f32>, want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            ((*g as f64) - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn cross_entropy_matches_pytorch() {
    let want = [0.2413113, 1.00194285, 7.04945561, 20.0000454];
    close(to_vec(cross_entropy_per_sample(logits(), targets())), &want);
    let mean = want.iter().sum::<f64>() / 4.0;
    close(to_vec(cross_entropy(logits(), targets())), &[mean]);
}

#[test]
fn focal_loss_matches_pytorch() {
    let g2 = FocalLoss::new(2.0, None).unwrap();
    close(
        to_vec(g2.per_sample(logits(), targets())),
        &[0.01109275, 0.4012577, 7.03722474, 20.00004532],
    );
    let weighted = FocalLoss::new(0.5, Some(vec![0.25, 1.0, 2.0])).unwrap();
    close(
        to_vec(weighted.per_sample(logits(), targets())),
        &[0.027934, 1.59410914, 1.76159898, 20.00004538],
    );
}

#[test]
fn focal_with_gamma_zero_is_cross_entropy() {
    let g0 = FocalLoss::new(0.0, None).unwrap();
    close(
        to_vec(g0.per_sample(logits(), targets())),
        &[0.2413113, 1.00194285, 7.04945561, 20.0000454],
    );
}

#[test]
fn cw_margin_matches_pytorch() {
    close(
        to_vec(cw_margin_per_sample(logits(), targets())),
        &[-1.5, -0.1, 7.0, 20.0],
    );
}

#[test]
fn invalid_focal_parameters_are_rejected() {
    assert!(FocalLoss::new(-1.0, None).is_err());
    assert!(FocalLoss::new(f32::NAN, None).is_err());
    assert!(FocalLoss::new(1.0, Some(vec![1.0, -0.5])).is_err());
}

#[test]
fn weighted_cross_entropy_matches_pytorch() {
    let got = weighted_cross_entropy(logits(), targets(), &[0.25, 1.0, 2.0]);
    close(to_vec(got), &[6.80760652]);
    // Equal weights give the plain mean, whatever their scale.
    let plain = to_vec(cross_entropy(logits(), targets()));
    close(
        to_vec(weighted_cross_entropy(logits(), targets(), &[3.0; 3])),
        &[plain[0] as f64],
    );
}

#[test]
fn inverse_frequency_weights_balance_the_classes() {
    let w = inverse_frequency_weights(&[100, 10, 0, 1]);
    // N = 111, K = 4: w_c = 111 / (4 n_c); an empty class gets 0.
    assert_eq!(w, vec![111.0 / 400.0, 111.0 / 40.0, 0.0, 111.0 / 4.0]);
    // Each non-empty class then carries the same total weight.
    assert!((w[0] * 100.0 - w[3]).abs() < 1e-4);
}

fn logits4() -> Tensor<2> {
    let v = vec![
        2.0f32, -1.0, 0.5, 0.0, 0.1, 0.2, 0.3, 0.4, -3.0, 4.0, 1.0, 2.0, 10.0, -10.0, 0.0, 5.0,
    ];
    Tensor::from_data(TensorData::new(v, [4, 4]), &cpu())
}

#[test]
fn dlr_losses_match_pytorch() {
    close(
        to_vec(dlr_per_sample(logits4(), targets())),
        &[-0.75, 0.5, 2.33333333, 2.0],
    );
    close(
        to_vec(dlr_targeted_per_sample(
            logits4(),
            targets(),
            labels(&[3, 0, 1, 2], &cpu()),
        )),
        &[-0.8, -0.8, 1.4, 0.66666667],
    );
    // Invariant to an affine change of the logits.
    let moved = logits4() * 3.0 + 7.0;
    close(
        to_vec(dlr_per_sample(moved, targets())),
        &[-0.75, 0.5, 2.33333333, 2.0],
    );
}

fn logits_adv() -> Tensor<2> {
    let v = vec![
        0.5f32, 1.0, -0.5, 0.3, -0.2, 0.9, 1.0, 2.0, 0.0, 2.0, -1.0, 3.0,
    ];
    Tensor::from_data(TensorData::new(v, [4, 3]), &cpu())
}

#[test]
fn trades_and_mart_match_their_official_code() {
    close(
        to_vec(trades_loss(logits(), logits_adv(), targets(), 6.0)),
        &[10.60201186],
    );
    close(
        to_vec(mart_loss(logits(), logits_adv(), targets(), 6.0)),
        &[5.47510301],
    );
    // With x_adv = x, TRADES is plain cross-entropy.
    let ce = to_vec(cross_entropy(logits(), targets()))[0] as f64;
    close(
        to_vec(trades_loss(logits(), logits(), targets(), 6.0)),
        &[ce],
    );
}

#[test]
fn anc_matches_its_formula_in_pytorch() {
    let all = Tensor::<1>::ones([4], &cpu());
    close(to_vec(anc_loss(logits(), logits_adv(), all)), &[0.30935815]);
    // Dropping anchor 2 (the other agreeing row) leaves row 1's term over the batch of 4.
    let valid = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0], [4]), &cpu());
    close(
        to_vec(anc_loss(logits(), logits_adv(), valid)),
        &[0.1104327],
    );
}
