//! Losses against reference values computed independently with PyTorch in float64
//! (`python3 bench/reference_losses.py`). Tolerance: 1e-4 relative + 1e-5 absolute (f32).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use rampart_core::loss::{
    FocalLoss, cross_entropy, cross_entropy_per_sample, cw_margin_per_sample,
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
