//! Attack invariants: ε = 0 is the identity, outputs stay in [0, 1] and the ε-ball, the input
//! is not mutated, a batch equals its items one by one, and input gradients agree with
//! finite differences.

mod common;

use burn::tensor::Tensor;
use common::*;
use rampart_core::attack::pgd::StepSize;
use rampart_core::attack::{Attack, AttackLoss, Norm, PgdConfig, input_gradient};

fn configs() -> Vec<PgdConfig> {
    let mut l2 = PgdConfig::new(Norm::L2, 5);
    l2.restarts = 2;
    let mut cw = PgdConfig::new(Norm::Linf, 5);
    cw.loss = AttackLoss::CwMargin;
    vec![
        PgdConfig::fgsm(Norm::Linf),
        PgdConfig::fgsm(Norm::L2),
        PgdConfig::fgsm_rs(),
        PgdConfig::new(Norm::Linf, 7),
        l2,
        cw,
    ]
}

#[test]
fn eps_zero_returns_the_input() {
    let device = cpu();
    let model = tiny_model(1);
    let x = images(4, 7, &device);
    for c in configs() {
        let attack = c.clone().init().unwrap();
        let out = attack
            .run(
                &model,
                x.clone(),
                labels(&[0, 1, 2, 0], &device),
                &[0.0; 4],
                3,
            )
            .unwrap();
        assert_eq!(to_vec(out.adversarial), to_vec(x.clone()), "{c:?}");
    }
}

#[test]
fn outputs_stay_in_the_box_and_the_ball_and_input_is_untouched() {
    let device = cpu();
    let model = tiny_model(2);
    let x = images(6, 11, &device);
    let before = to_vec(x.clone());
    let eps = [0.05, 0.1, 0.3, 0.5, 1.0, 2.0];
    for c in configs() {
        let attack = c.clone().init().unwrap();
        let out = attack
            .run(
                &model,
                x.clone(),
                labels(&[0, 1, 2, 0, 1, 2], &device),
                &eps,
                5,
            )
            .unwrap();
        let adv = to_vec(out.adversarial);
        assert!(
            adv.iter().all(|v| (0.0..=1.0).contains(v)),
            "{c:?} left [0,1]"
        );
        for (i, e) in eps.iter().enumerate() {
            let d: Vec<f32> = (0..64)
                .map(|j| adv[i * 64 + j] - before[i * 64 + j])
                .collect();
            let size = match c.norm {
                Norm::Linf => d.iter().fold(0f32, |m, v| m.max(v.abs())),
                Norm::L2 => d.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            assert!(size <= e + 1e-5, "{c:?}: sample {i} moved {size} > eps {e}");
        }
        assert_eq!(to_vec(x.clone()), before, "{c:?} mutated its input");
    }
}

#[test]
fn a_batch_equals_its_items_one_by_one() {
    let device = cpu();
    let model = tiny_model(3);
    let x = images(3, 5, &device);
    let y = [2i64, 0, 1];
    let eps = [0.1, 0.2, 0.3];
    let mut c = PgdConfig::new(Norm::Linf, 5);
    c.random_start = false;
    let attack = c.init().unwrap();
    let batch = to_vec(
        attack
            .run(&model, x.clone(), labels(&y, &device), &eps, 0)
            .unwrap()
            .adversarial,
    );
    for i in 0..3 {
        let xi = x.clone().narrow(0, i, 1);
        let one = to_vec(
            attack
                .run(&model, xi, labels(&y[i..i + 1], &device), &eps[i..i + 1], 0)
                .unwrap()
                .adversarial,
        );
        for (a, b) in one.iter().zip(&batch[i * 64..(i + 1) * 64]) {
            assert!((a - b).abs() < 1e-5, "item {i}: {a} vs {b}");
        }
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    let device = cpu();
    let model = tiny_model(4).frozen();
    let x = images(2, 9, &device);
    let y = labels(&[1, 2], &device);
    for loss in [AttackLoss::CrossEntropy, AttackLoss::CwMargin] {
        let g = to_vec(input_gradient(&model, x.clone(), y.clone(), loss, false));
        let f = |t: Tensor<4>| -> f64 {
            let logits = model.forward(t);
            let v =
                rampart_core::attack::objective_per_sample(logits, y.clone(), loss, false).sum();
            v.into_scalar::<f32>() as f64
        };
        let base = to_vec(x.clone());
        let h = 1e-2f32;
        // Central differences on a spread of coordinates; f32 arithmetic bounds the agreement.
        for j in (0..128).step_by(9) {
            let mut plus = base.clone();
            plus[j] += h;
            let mut minus = base.clone();
            minus[j] -= h;
            let t = |v: Vec<f32>| {
                Tensor::<4>::from_data(burn::tensor::TensorData::new(v, [2, 1, 8, 8]), &device)
            };
            let fd = (f(t(plus)) - f(t(minus))) / (2.0 * h as f64);
            let tol = 2e-3 + 2e-2 * fd.abs();
            assert!(
                (fd - g[j] as f64).abs() < tol,
                "{loss:?} coordinate {j}: finite difference {fd}, autodiff {}",
                g[j]
            );
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let device = cpu();
    let model = tiny_model(5);
    let x = images(2, 1, &device);
    let attack = PgdConfig::new(Norm::Linf, 3).init().unwrap();
    assert!(
        attack
            .run(&model, x.clone(), labels(&[0, 1], &device), &[0.1], 0)
            .is_err()
    );
    assert!(
        attack
            .run(&model, x.clone(), labels(&[0, 1], &device), &[0.1, -0.1], 0)
            .is_err()
    );
    assert!(
        attack
            .run(
                &model,
                x.clone(),
                labels(&[0, 1], &device),
                &[0.1, f32::NAN],
                0
            )
            .is_err()
    );
    assert!(
        attack
            .run(&model, x, labels(&[0], &device), &[0.1, 0.1], 0)
            .is_err()
    );
    let mut c = PgdConfig::new(Norm::Linf, 3);
    c.step_size = StepSize::Absolute(0.0);
    assert!(c.init().is_err());
    assert!(PgdConfig::new(Norm::Linf, 0).init().is_err());
}

#[test]
fn freezing_a_clone_leaves_the_original_trainable() {
    // The lazy-initialisation trap: a clone of a never-run model shares its pending
    // parameters, so freezing the clone must not freeze the original.
    let device = cpu().autodiff();
    let model = tiny_config(3).init(&device).unwrap();
    let _frozen = model.frozen();
    let x = images(2, 3, &device);
    let loss = rampart_core::loss::cross_entropy(model.forward(x), labels(&[0, 1], &device));
    let grads = loss.backward();
    let rampart_core::model::Model::Cnn(cnn) = &model else {
        unreachable!("tiny_model is a CNN")
    };
    assert!(
        cnn.fc2.weight.val().grad(&grads).is_some(),
        "original lost its gradients"
    );
}
