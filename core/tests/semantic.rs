//! The semantic attribute space and the SIA attack: every transform is the identity at 0 and
//! its derivative matches central finite differences; SIA keeps coefficients in range and the
//! pixel perturbation in its ball, changes no pixel beyond the transforms at ε = 0, and with a
//! rotation alone finds the flips a brute-force search over angles finds.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use rampart_core::attack::AttackLoss;
use rampart_core::attack::semantic::{Attribute, AttributeSpace, Sia, SiaConfig, elastic_field};
use rampart_core::data::ImageDataset;
use rampart_core::model::{CnnConfig, ModelConfig};
use rampart_core::train::{Method, TrainConfig, train};

/// Smooth images in [0.2, 0.8] (so that clipping and bilinear kinks matter little).
fn smooth(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let p = pixels(n * c * 16, seed);
    let mut out = Vec::with_capacity(n * c * h * w);
    for img in 0..n * c {
        for i in 0..h {
            for j in 0..w {
                let (y, x) = (i as f32 / h as f32 * 3.0, j as f32 / w as f32 * 3.0);
                let (y0, x0) = (y.floor() as usize, x.floor() as usize);
                let (fy, fx) = (y - y0 as f32, x - x0 as f32);
                let at = |a: usize, b: usize| p[img * 16 + a * 4 + b];
                let v = at(y0, x0) * (1.0 - fy) * (1.0 - fx)
                    + at(y0, x0 + 1) * (1.0 - fy) * fx
                    + at(y0 + 1, x0) * fy * (1.0 - fx)
                    + at(y0 + 1, x0 + 1) * fy * fx;
                out.push(0.2 + 0.6 * v);
            }
        }
    }
    out
}

fn apply(space: &AttributeSpace, x: &Tensor<4>, coef: &[f32], field: &Tensor<4>) -> Tensor<4> {
    let n = x.dims()[0];
    let k = space.len();
    let c = Tensor::<2>::from_data(TensorData::new(coef.to_vec(), [n, k]), &x.device());
    space.apply(x.clone(), c, Some(field))
}

#[test]
fn every_attribute_is_the_identity_at_zero() {
    let d = cpu();
    for channels in [1, 3] {
        let (n, h, w) = (2, 12, 12);
        let x = Tensor::<4>::from_data(
            TensorData::new(smooth(n, channels, h, w, 1), [n, channels, h, w]),
            &d,
        );
        let field = elastic_field(n, h, w, 3, &d);
        for a in Attribute::all_for(channels) {
            let space = AttributeSpace::new(vec![a], channels).unwrap();
            let y = apply(&space, &x, &vec![0.0; n], &field);
            let diff = to_vec(y - x.clone())
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            assert!(diff < 1e-5, "{} at 0 moved a pixel by {diff}", a.name());
        }
        let all = AttributeSpace::new(Attribute::all_for(channels), channels).unwrap();
        let y = apply(&all, &x, &vec![0.0; n * all.len()], &field);
        let diff = to_vec(y - x.clone())
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(diff < 1e-5, "all attributes at 0 moved a pixel by {diff}");
    }
    assert!(AttributeSpace::new(vec![Attribute::Hue], 1).is_err());
    assert!(AttributeSpace::new(vec![Attribute::Blur, Attribute::Blur], 1).is_err());
    assert!(AttributeSpace::new(vec![], 1).is_err());
}

#[test]
fn derivatives_match_finite_differences() {
    let d = cpu();
    let (n, h, w) = (1, 12, 12);
    for channels in [1, 3] {
        let x = Tensor::<4>::from_data(
            TensorData::new(smooth(n, channels, h, w, 5), [n, channels, h, w]),
            &d,
        );
        let r = Tensor::<4>::from_data(
            TensorData::new(pixels(channels * h * w, 9), [n, channels, h, w]),
            &d,
        );
        let field = elastic_field(n, h, w, 4, &d);
        for a in Attribute::all_for(channels) {
            let space = AttributeSpace::new(vec![a], channels).unwrap();
            let (lo, hi) = a.range();
            // Away from 0 (thickness and the clamps have kinks there) and inside the range.
            let at = lo + 0.63 * (hi - lo);
            let at = if at.abs() < 0.05 * (hi - lo) {
                at + 0.1 * (hi - lo)
            } else {
                at
            };
            let value = |v: f32| {
                let y = apply(&space, &x, &[v], &field);
                to_vec((y * r.clone()).sum())[0]
            };
            let coef = Tensor::<2>::from_data(TensorData::new(vec![at], [1, 1]), &d)
                .autodiff()
                .require_grad();
            let y = space.apply(x.clone().autodiff(), coef.clone(), Some(&field));
            let grads = (y * r.clone().autodiff()).sum().backward();
            let g = to_vec(coef.grad(&grads).unwrap())[0];
            let step = 1e-3 * (hi - lo);
            let fd = (value(at + step) - value(at - step)) / (2.0 * step);
            assert!(
                (g - fd).abs() <= 0.01 * fd.abs().max(g.abs()) + 1e-2,
                "{} ({channels} ch) at {at}: autodiff {g} vs finite difference {fd}",
                a.name()
            );
            eprintln!(
                "{} ({channels} ch): autodiff {g}, finite difference {fd}",
                a.name()
            );
            assert!(
                g.abs() > 0.1,
                "{} has a (near) zero derivative at {at}: {g}",
                a.name()
            );
        }
    }
}

fn trained_bars_model() -> rampart_core::model::Model {
    let config = TrainConfig {
        epochs: 4,
        batch_size: 32,
        lr: 3e-3,
        seed: 7,
        ..TrainConfig::new(Method::Standard)
    };
    train(
        &tiny_config(3),
        &config,
        &bars(600, 1),
        None,
        &cpu(),
        None,
        &mut |_| {},
    )
    .unwrap()
    .model
}

#[test]
fn sia_stays_in_range_and_ball_and_eps_zero_is_purely_semantic() {
    let d = cpu();
    let model = trained_bars_model();
    let set = bars(30, 7);
    let (x, y) = set.batch(&(0..30).collect::<Vec<_>>(), &d);
    let before = to_vec(x.clone());
    let mut config = SiaConfig::new(1);
    config.steps = 15;
    let sia = Sia::new(config.clone()).unwrap();
    for eps in [0.0f32, 0.1] {
        let out = sia
            .run_detailed(&model, x.clone(), y.clone(), &[eps; 30], 1)
            .unwrap();
        let coef = to_vec(out.coefficients.clone());
        for (i, v) in coef.iter().enumerate() {
            let (lo, hi) = out.space.attributes[i % out.space.len()].range();
            assert!(
                *v >= lo - 1e-6 && *v <= hi + 1e-6,
                "coefficient {v} outside [{lo}, {hi}]"
            );
        }
        let semantic = out.space.apply(
            x.clone(),
            out.coefficients.clone(),
            Some(&elastic_field(30, 8, 8, 1, &d)),
        );
        let adv = to_vec(out.adversarial.clone());
        let base = to_vec(semantic);
        for (a, b) in adv.iter().zip(&base) {
            assert!((0.0..=1.0).contains(a));
            assert!(
                (a - b).abs() <= eps + 1e-5,
                "pixel moved {} beyond ε = {eps}",
                (a - b).abs()
            );
        }
        let rate = to_vec(out.success.float()).iter().sum::<f32>() / 30.0;
        eprintln!("SIA success at ε = {eps}: {rate}");
    }
    assert_eq!(to_vec(x), before, "the input was modified");
    let mut bad = config;
    bad.steps = 0;
    assert!(Sia::new(bad).is_err());
}

/// Two classes by the orientation of a line through the centre of a 12×12 image: tilted
/// 10°–50° one way (class 0) or the other (class 1). Rotations of up to 30° flip the images
/// whose tilt is under 30°.
fn lines(n: usize, seed: u64) -> ImageDataset {
    let noise = pixels(n * 145, seed);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for k in 0..n {
        let class = k % 2;
        let tilt = (10.0 + 40.0 * noise[k * 145 + 144]).to_radians();
        let theta = if class == 0 { tilt } else { -tilt };
        let (dx, dy) = (theta.cos(), theta.sin());
        for i in 0..12 {
            for j in 0..12 {
                let (u, v) = (j as f32 - 5.5, i as f32 - 5.5);
                let dist = (u * dy - v * dx).abs();
                let line = (1.0 - dist / 1.2).max(0.0);
                images.push((0.85 * line + 0.15 * noise[k * 145 + i * 12 + j]).min(1.0));
            }
        }
        labels.push(class);
    }
    ImageDataset::new(images, labels, [1, 12, 12], vec!["a".into(), "b".into()]).unwrap()
}

#[test]
fn rotation_only_sia_finds_what_a_grid_search_finds() {
    let d = cpu();
    let config = TrainConfig {
        epochs: 6,
        batch_size: 32,
        lr: 3e-3,
        seed: 3,
        ..TrainConfig::new(Method::Standard)
    };
    let arch = ModelConfig::Cnn(CnnConfig::madry(1, 12, 12, 2).with_widths([4, 8], 16));
    let model = train(&arch, &config, &lines(800, 1), None, &d, None, &mut |_| {})
        .unwrap()
        .model
        .frozen();
    let n = 60;
    let set = lines(n, 11);
    let (x, y) = set.batch(&(0..n).collect::<Vec<_>>(), &d);
    let labels = to_vec(y.clone().float());
    let clean = to_vec(model.forward(x.clone()).argmax(1).float());
    let correct = (0..n).filter(|&i| clean[i] == labels[i]).count();
    assert!(
        correct as f32 >= 0.9 * n as f32,
        "the model only gets {correct} of {n}"
    );
    let space = AttributeSpace::new(vec![Attribute::Rotation], 1).unwrap();
    let (lo, hi) = Attribute::Rotation.range();
    // Brute force: 121 angles over the range.
    let mut grid_flip = vec![false; n];
    for s in 0..=120 {
        let angle = lo + (hi - lo) * s as f32 / 120.0;
        let coef = Tensor::<2>::from_data(TensorData::new(vec![angle; n], [n, 1]), &d);
        let pred = to_vec(
            model
                .forward(space.apply(x.clone(), coef, None))
                .argmax(1)
                .float(),
        );
        for i in 0..n {
            grid_flip[i] |= pred[i] != labels[i];
        }
    }
    let config = SiaConfig {
        attributes: vec![Attribute::Rotation],
        steps: 40,
        attribute_step: 0.05,
        pixel_step: 0.0,
        loss: AttackLoss::CwMargin,
        early_stop: true,
        range_scale: 1.0,
    };
    let out = Sia::new(config)
        .unwrap()
        .run_detailed(&model, x, y, &vec![0.0; n], 0)
        .unwrap();
    let sia_flip: Vec<bool> = to_vec(out.success.float())
        .iter()
        .map(|v| *v > 0.5)
        .collect();
    let grid = grid_flip.iter().filter(|b| **b).count();
    let found = (0..n).filter(|&i| grid_flip[i] && sia_flip[i]).count();
    let spurious = (0..n).filter(|&i| sia_flip[i] && !grid_flip[i]).count();
    eprintln!("grid flips {grid} of {n}, SIA finds {found} of them, {spurious} the grid missed");
    assert!(
        grid >= n / 5,
        "rotations flip only {grid} images: the test says little"
    );
    assert!(
        found as f32 >= 0.8 * grid as f32,
        "SIA found {found} of {grid} rotation flips"
    );
    assert!(
        spurious <= 2,
        "SIA flipped {spurious} images no grid angle flips"
    );
}
