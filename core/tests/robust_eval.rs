//! The evaluation attacks and the suite: APGD, Square and MI-FGSM keep the attack invariants
//! (ε = 0 is the identity, [0, 1] and the ε-ball, input untouched), APGD is at least as strong
//! as PGD-40 on a tiny trained model, APGD-T refuses models with fewer than four classes, and
//! the suite's sanity checks flag a deliberately gradient-masked model but not its unmasked
//! twin.

mod common;

use common::*;
use rampart_core::attack::apgd::ApgdConfig;
use rampart_core::attack::mifgsm::MiFgsmConfig;
use rampart_core::attack::square::SquareConfig;
use rampart_core::attack::{Attack, Norm, PgdConfig};
use rampart_core::data::ImageDataset;
use rampart_core::eval::suite::{Suite, SuiteConfig, run_suite};
use rampart_core::model::{CnnConfig, Model, ModelConfig};
use rampart_core::train::{Method, TrainConfig, train};

/// Four classes on 8×8 images: a bright 4×4 block in one quadrant, on noise.
fn quadrants(n: usize, seed: u64) -> ImageDataset {
    let noise = pixels(n * 64, seed);
    let mut images = Vec::with_capacity(n * 64);
    for i in 0..n {
        let class = i % 4;
        for r in 0..8 {
            for c in 0..8 {
                let inside = (r / 4) * 2 + c / 4 == class;
                let base = 0.3 * noise[i * 64 + r * 8 + c];
                images.push(if inside { (0.6 + base).min(1.0) } else { base });
            }
        }
    }
    ImageDataset::new(
        images,
        (0..n).map(|i| i % 4).collect(),
        [1, 8, 8],
        (0..4).map(|c| format!("q{c}")).collect(),
    )
    .unwrap()
}

fn config4(quantization: Option<u32>) -> ModelConfig {
    let mut c = CnnConfig::madry(1, 8, 8, 4).with_widths([4, 8], 16);
    c.input_quantization = quantization;
    ModelConfig::Cnn(c)
}

fn trained(quantization: Option<u32>) -> Model {
    let recipe = TrainConfig {
        epochs: 4,
        batch_size: 32,
        lr: 3e-3,
        seed: 7,
        ..TrainConfig::new(Method::Standard)
    };
    train(
        &config4(quantization),
        &recipe,
        &quadrants(600, 1),
        None,
        &cpu(),
        None,
        &mut |_| {},
    )
    .unwrap()
    .model
}

fn attacks() -> Vec<Box<dyn Attack>> {
    vec![
        Box::new(ApgdConfig::ce(10).init().unwrap()),
        Box::new(ApgdConfig::targeted(10, 3).init().unwrap()),
        Box::new(SquareConfig::new(50).init().unwrap()),
        Box::new(MiFgsmConfig::new(5).init().unwrap()),
    ]
}

fn accuracy(model: &Model, data: &ImageDataset, attack: &dyn Attack, eps: f32) -> f32 {
    let (x, y) = data.batch(&(0..data.len()).collect::<Vec<_>>(), &cpu());
    let out = attack.run(model, x, y, &vec![eps; data.len()], 0).unwrap();
    1.0 - to_vec(out.success.float()).iter().sum::<f32>() / data.len() as f32
}

#[test]
fn attacks_keep_the_invariants() {
    let device = cpu();
    let model = config4(None).init_seeded(&device, 3).unwrap();
    let x = images(6, 5, &device);
    let before = to_vec(x.clone());
    let y = labels(&[0, 1, 2, 3, 0, 1], &device);
    let eps = [0.0, 0.05, 0.1, 0.3, 0.5, 1.0];
    for attack in attacks() {
        let out = attack.run(&model, x.clone(), y.clone(), &eps, 4).unwrap();
        assert_eq!(
            to_vec(x.clone()),
            before,
            "{}: input changed",
            attack.name()
        );
        let adv = to_vec(out.adversarial);
        for (i, e) in eps.iter().enumerate() {
            for j in i * 64..(i + 1) * 64 {
                assert!(
                    (0.0..=1.0).contains(&adv[j]),
                    "{}: out of [0, 1]",
                    attack.name()
                );
                let d = (adv[j] - before[j]).abs();
                assert!(
                    d <= e + 1e-6,
                    "{}: sample {i} moved {d} > {e}",
                    attack.name()
                );
            }
        }
        // ε = 0 for everyone returns the input.
        let same = attack
            .run(&model, x.clone(), y.clone(), &[0.0; 6], 4)
            .unwrap();
        assert_eq!(to_vec(same.adversarial), before, "{}: ε = 0", attack.name());
    }
}

#[test]
fn apgd_is_at_least_as_strong_as_pgd40_and_square_works_without_gradients() {
    let model = trained(None);
    let test = quadrants(120, 2);
    let eps = 0.15;
    let clean = accuracy(
        &model,
        &test,
        &PgdConfig::new(Norm::Linf, 1).init().unwrap(),
        0.0,
    );
    assert!(clean >= 0.95, "clean accuracy {clean}");
    let pgd40 = accuracy(
        &model,
        &test,
        &PgdConfig::new(Norm::Linf, 40).init().unwrap(),
        eps,
    );
    let apgd = accuracy(&model, &test, &ApgdConfig::ce(40).init().unwrap(), eps);
    let apgd_t = accuracy(
        &model,
        &test,
        &ApgdConfig::targeted(40, 3).init().unwrap(),
        eps,
    );
    let square = accuracy(&model, &test, &SquareConfig::new(300).init().unwrap(), eps);
    eprintln!("clean {clean} pgd40 {pgd40} apgd-ce {apgd} apgd-t {apgd_t} square {square}");
    assert!(apgd <= pgd40, "APGD-CE {apgd} vs PGD-40 {pgd40}");
    assert!(apgd_t <= pgd40, "APGD-T {apgd_t} vs PGD-40 {pgd40}");
    assert!(pgd40 < clean, "PGD-40 broke nothing at ε = {eps}");
    // Measured: clean 1.0, PGD-40 0.742, APGD-CE 0.725, APGD-T 0.717, Square (300 queries)
    // 0.858.
    assert!(square < clean - 0.1, "Square {square} vs clean {clean}");
}

#[test]
fn apgd_t_refuses_fewer_than_four_classes() {
    let model = tiny_model(1);
    let x = images(2, 1, &cpu());
    let err = ApgdConfig::targeted(5, 9)
        .init()
        .unwrap()
        .run(&model, x, labels(&[0, 1], &cpu()), &[0.1, 0.1], 0)
        .err()
        .expect("a 3-class model must be refused");
    assert!(err.to_string().contains("at least 4 classes"), "{err}");
}

#[test]
fn sanity_checks_flag_a_gradient_masked_model_only() {
    let test = quadrants(80, 3);
    let suite = SuiteConfig {
        apgd_steps: 10,
        square_queries: 200,
        batch_size: 40,
        ..SuiteConfig::new(Suite::Autoattack, 0.15)
    };
    let run = |model: &Model| {
        pollster::block_on(run_suite(model, &test, &suite, &cpu(), &mut |_, _| {})).unwrap()
    };
    let plain = run(&trained(None));
    let masked = run(&trained(Some(4)));
    let flags = |r: &rampart_core::eval::suite::SuiteReport| r.sanity.clone().unwrap().flags;
    eprintln!("plain {:?}\nmasked {:?}", plain.sanity, masked.sanity);
    assert!(plain.clean_accuracy >= 0.9 && masked.clean_accuracy >= 0.9);
    assert!(
        flags(&plain).is_empty(),
        "unmasked model flagged: {:?}",
        flags(&plain)
    );
    let masked_flags = flags(&masked);
    assert!(
        masked_flags.iter().any(|f| f.contains("exactly zero")),
        "{masked_flags:?}"
    );
    assert!(masked_flags.len() >= 2, "{masked_flags:?}");
    // Per-sample outcomes add up to the reported accuracies.
    for r in [&plain, &masked] {
        let robust = r.outcome.iter().filter(|o| *o == "robust").count();
        assert_eq!(robust as f64 / r.samples as f64, r.robust_accuracy);
        assert_eq!(r.stages.last().unwrap().robust_accuracy, r.robust_accuracy);
    }
}
