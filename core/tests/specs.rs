//! The typed specs the front ends share (attacks, one-image pipelines, holdout splits,
//! reports), the shared gradient step, and the size checks that refuse crafted inputs before
//! anything is allocated.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use rampart_core::Error;
use rampart_core::attack::{AttackLoss, AttackMethod, AttackSpec};
use rampart_core::bundle::{Bundle, BundleHeader};
use rampart_core::data::HoldoutSpec;
use rampart_core::eval::predict::{ImageAttackRequest, attack_image, check_pixels, predict};
use rampart_core::eval::report::{Leaderboard, ModelCard, TestMetrics, TrainReport};
use rampart_core::eval::suite::{Sanity, Suite, SuiteReport};
use rampart_core::gradient::{gradient, gradient_of};
use rampart_core::model::{CnnConfig, ModelConfig, Normalization, ResNetConfig};
use sha2::{Digest, Sha256};

fn names() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

#[test]
fn attack_methods_parse_by_name_and_reject_others() {
    for m in AttackMethod::ALL {
        assert_eq!(m.name().parse::<AttackMethod>().unwrap(), m);
        // serde and the parser agree on the names.
        assert_eq!(serde_json::to_value(m).unwrap(), m.name());
    }
    let err = "magic".parse::<AttackMethod>().unwrap_err().to_string();
    assert!(
        err.contains("unknown method 'magic'") && err.contains("apgd-ce"),
        "{err}"
    );
    assert_eq!("cw".parse::<AttackLoss>().unwrap(), AttackLoss::CwMargin);
    assert!("l1".parse::<AttackLoss>().is_err());
}

#[test]
fn attack_specs_are_validated_before_anything_runs() {
    let bad = |spec: AttackSpec, needle: &str| {
        let err = spec.build().err().expect("refused").to_string();
        assert!(err.contains(needle), "{err}");
    };
    bad(AttackSpec::new(AttackMethod::Pgd, 0), "steps must be");
    bad(
        AttackSpec::new(AttackMethod::Pgd, 1_000_000_000),
        "steps must be",
    );
    bad(
        AttackSpec {
            restarts: 101,
            ..AttackSpec::new(AttackMethod::Pgd, 10)
        },
        "restarts must be",
    );
    bad(
        AttackSpec {
            step_size: Some(f32::NAN),
            ..AttackSpec::new(AttackMethod::Pgd, 10)
        },
        "step size",
    );
    bad(
        AttackSpec {
            targeted: true,
            ..AttackSpec::new(AttackMethod::Square, 10)
        },
        "untargeted",
    );
    // Every method builds, and PGD's options reach it.
    for m in AttackMethod::ALL {
        let attack = AttackSpec::new(m, 5).build().unwrap();
        assert!(!attack.name().is_empty());
    }
    let pgd = AttackSpec {
        restarts: 3,
        ..AttackSpec::new(AttackMethod::Pgd, 7)
    }
    .build()
    .unwrap();
    assert_eq!(pgd.budget(), (7, 3));
}

#[test]
fn an_attack_with_zero_budget_returns_the_image() {
    let device = cpu();
    let model = tiny_model(3);
    let pixels = common::pixels(64, 9);
    let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [1, 1, 8, 8]), &device);
    let clean = pollster::block_on(predict(&model, x, &names())).unwrap();
    let request = ImageAttackRequest {
        pixels: &pixels,
        eps: 0.0,
        label: None,
        target: None,
        seed: 1,
    };
    let spec = AttackSpec::new(AttackMethod::Pgd, 5);
    let r = pollster::block_on(attack_image(
        &model,
        &names(),
        [1, 8, 8],
        &spec,
        &request,
        &device,
    ))
    .unwrap();
    assert_eq!(r.adversarial, pixels);
    assert!(r.perturbation.iter().all(|d| *d == 0.0));
    assert_eq!((r.linf, r.l2), (0.0, 0.0));
    assert!(
        !r.success,
        "the label defaults to the prediction, which ε = 0 cannot change"
    );
    assert_eq!(r.before, clean);
    assert_eq!(r.after.predicted, clean.predicted);
    assert_eq!(r.attack, "pgd-linf");
}

#[test]
fn an_attack_stays_in_the_ball_and_reports_success_as_the_after_prediction() {
    let device = cpu();
    let model = tiny_model(3);
    let pixels = common::pixels(64, 4);
    for target in [None, Some(2)] {
        let spec = AttackSpec {
            targeted: target.is_some(),
            ..AttackSpec::new(AttackMethod::Pgd, 10)
        };
        let request = ImageAttackRequest {
            pixels: &pixels,
            eps: 0.3,
            label: Some(0),
            target,
            seed: 2,
        };
        let r = pollster::block_on(attack_image(
            &model,
            &names(),
            [1, 8, 8],
            &spec,
            &request,
            &device,
        ))
        .unwrap();
        assert!(r.linf <= 0.3 + 1e-6, "{}", r.linf);
        assert!(r.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
        let expected = match target {
            Some(t) => r.after.predicted == t,
            None => r.after.predicted != 0,
        };
        assert_eq!(r.success, expected);
    }
}

#[test]
fn bad_single_image_requests_are_errors() {
    let device = cpu();
    let model = tiny_model(3);
    let good = vec![0.5f32; 64];
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    let mut high = good.clone();
    high[5] = 2.0;
    let run = |pixels: &[f32], eps: f32, label: Option<usize>, target: Option<usize>| {
        let spec = AttackSpec {
            targeted: target.is_some(),
            ..AttackSpec::new(AttackMethod::Pgd, 3)
        };
        let request = ImageAttackRequest {
            pixels,
            eps,
            label,
            target,
            seed: 0,
        };
        match pollster::block_on(attack_image(
            &model,
            &names(),
            [1, 8, 8],
            &spec,
            &request,
            &device,
        )) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the request was not refused"),
        }
    };
    assert!(run(&good[..10], 0.1, None, None).contains("has 10 values"));
    assert!(run(&nan, 0.1, None, None).contains("pixels[3] is not a finite number"));
    assert!(run(&high, 0.1, None, None).contains("pixels[5] = 2 is outside"));
    assert!(run(&good, -0.1, None, None).contains("eps must be"));
    assert!(run(&good, f32::NAN, None, None).contains("eps must be"));
    assert!(run(&good, 0.1, Some(3), None).contains("label 3 is out of range"));
    assert!(run(&good, 0.1, None, Some(99)).contains("target 99 is out of range"));
    assert!(check_pixels(&good, [1, 8, 8]).is_ok());
}

#[test]
fn holdout_splits_as_the_spec_says() {
    let data = bars(60, 1);
    let spec = HoldoutSpec {
        limit: Some(45),
        val_size: 15,
        long_tail: None,
        long_tail_seed: 0,
        seed: 3,
    };
    let (train, val) = data.clone().holdout(&spec).unwrap();
    assert_eq!((train.len(), val.len()), (30, 15));
    // Deterministic in the seed.
    let (again, _) = data.clone().holdout(&spec).unwrap();
    assert_eq!(train.labels, again.labels);
    let err = data
        .clone()
        .holdout(&HoldoutSpec {
            val_size: 45,
            ..spec.clone()
        })
        .unwrap_err();
    assert!(err.to_string().contains("leaves no training data"), "{err}");
    let (tail, _) = data
        .holdout(&HoldoutSpec {
            long_tail: Some(4.0),
            limit: None,
            ..spec
        })
        .unwrap();
    let counts = tail.class_counts();
    assert!(counts[0] > counts[2], "{counts:?}");
}

#[test]
fn the_shared_gradient_step_matches_a_linear_objective_and_never_panics() {
    let device = cpu();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
        &device,
    );
    let w = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -2.0], [1, 2]), &device);
    // Per-sample objective x·w: its gradient is w in every row.
    let (g, extra) = gradient(x.clone(), |x| {
        let v = (x * w.clone().autodiff()).sum_dim(1).squeeze_dim::<1>(1);
        (v, 7)
    });
    assert_eq!(extra, 7);
    assert_eq!(to_vec(g), vec![0.5, -2.0, 0.5, -2.0]);
    // An objective that ignores its input has a zero gradient rather than a panic.
    let g = gradient_of(x.clone(), |x| {
        x.zeros_like().sum_dim(1).squeeze_dim::<1>(1).detach()
    });
    assert_eq!(to_vec(g), vec![0.0; 4]);
    // The input is not modified.
    assert_eq!(to_vec(x), vec![1.0, 2.0, 3.0, 4.0]);
}

fn header(model: ModelConfig) -> BundleHeader {
    BundleHeader {
        model,
        class_names: names(),
        dataset: "synthetic".into(),
        recipe: serde_json::json!({"method": {"name": "pgd-at"}}),
        metrics: serde_json::Value::Null,
        created_by: "test".into(),
    }
}

/// A bundle with `header` over the tiny model's weights, with a valid checksum.
fn forged(header: &BundleHeader) -> Vec<u8> {
    let good = Bundle::new(&tiny_model(1), header_for_tiny())
        .unwrap()
        .to_bytes();
    let weights_at = {
        let len = u64::from_le_bytes(good[12..20].try_into().unwrap()) as usize;
        20 + len
    };
    let json = serde_json::to_vec(header).unwrap();
    let mut body = good[..12].to_vec();
    body.extend_from_slice(&(json.len() as u64).to_le_bytes());
    body.extend_from_slice(&json);
    body.extend_from_slice(&good[weights_at..good.len() - 32]);
    let digest = Sha256::digest(&body);
    body.extend_from_slice(&digest);
    body
}

fn header_for_tiny() -> BundleHeader {
    header(tiny_config(3))
}

#[test]
fn a_crafted_header_is_refused_before_any_allocation() {
    // The unchanged forgery is a valid bundle: the forging itself is right.
    assert!(
        Bundle::from_bytes(&forged(&header_for_tiny()))
            .unwrap()
            .model(&cpu())
            .is_ok()
    );
    // A 10⁹-wide hidden layer: refused when the header is read.
    let huge = ModelConfig::Cnn(CnnConfig::madry(1, 8, 8, 3).with_widths([4, 8], 1_000_000_000));
    match Bundle::from_bytes(&forged(&header(huge))) {
        Err(Error::Bundle(m)) => assert!(m.contains("layer widths at most"), "{m}"),
        other => panic!("expected a bundle error, got {:?}", other.map(|_| ())),
    }
    // Within every width limit but with billions of weights in all.
    let wide = ModelConfig::Cnn(CnnConfig::madry(1, 4096, 4096, 3).with_widths([64, 65536], 4096));
    match Bundle::from_bytes(&forged(&header(wide))) {
        Err(Error::Bundle(m)) => assert!(m.contains("more than the limit"), "{m}"),
        other => panic!("expected a bundle error, got {:?}", other.map(|_| ())),
    }
    // Plausible sizes, but more weights than the file holds: refused before the model is built.
    let bigger = ModelConfig::Cnn(CnnConfig::madry(1, 8, 8, 3).with_widths([64, 512], 4096));
    let b = Bundle::from_bytes(&forged(&header(bigger))).unwrap();
    match b.model(&cpu()) {
        Err(Error::Bundle(m)) => assert!(m.contains("bytes of weights"), "{m}"),
        other => panic!("expected a bundle error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bytes_after_the_last_section_are_damage() {
    let mut good = Bundle::new(&tiny_model(1), header_for_tiny())
        .unwrap()
        .to_bytes();
    good.truncate(good.len() - 32);
    good.extend_from_slice(b"trailing");
    let digest = Sha256::digest(&good);
    good.extend_from_slice(&digest);
    match Bundle::from_bytes(&good) {
        Err(Error::Bundle(m)) => assert!(m.contains("unexpected bytes"), "{m}"),
        other => panic!("expected a bundle error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn model_configs_refuse_sizes_beyond_the_limits() {
    let mut resnet = ResNetConfig::cifar(10);
    resnet.normalization = Normalization {
        mean: vec![0.0; 3],
        std: vec![1.0, 0.0, 1.0],
    };
    let err = ModelConfig::PreactResnet18(resnet).validate().unwrap_err();
    assert!(err.to_string().contains("std must be positive"), "{err}");
    let mut resnet = ResNetConfig::cifar(10);
    resnet.base_width = 1 << 20;
    assert!(ModelConfig::PreactResnet18(resnet).validate().is_err());
    assert!(
        ModelConfig::PreactResnet18(ResNetConfig::cifar(10))
            .validate()
            .is_ok()
    );
    let many_classes = CnnConfig::madry(1, 28, 28, 1_000_000);
    assert!(ModelConfig::Cnn(many_classes).validate().is_err());
    // The real networks are well inside them.
    assert!(
        ModelConfig::Cnn(CnnConfig::madry(1, 28, 28, 10))
            .validate()
            .is_ok()
    );
    assert!(ModelConfig::Cnn(CnnConfig::madry(3, 32, 32, 10)).min_weight_bytes() > 0);
}

#[test]
fn reports_serialise_with_the_published_field_names() {
    let report = TrainReport {
        dataset: "mnist".into(),
        method: "pgd-at".into(),
        balance: "none".into(),
        train_class_counts: vec![3, 4],
        history: vec![],
        kept_epoch: None,
        train_seconds: 1.5,
        test: None,
    };
    let v = serde_json::to_value(&report).unwrap();
    assert!(v.get("test_clean_accuracy").is_none());
    assert!(v["kept_epoch"].is_null());
    let eval = rampart_core::eval::EvalReport {
        samples: 4,
        clean_accuracy: 0.75,
        robust: vec![],
        confusion: vec![vec![2, 0], vec![1, 1]],
        class_names: vec!["x".into(), "y".into()],
    };
    let with_test = TrainReport {
        test: Some(TestMetrics::from_eval(&eval)),
        ..report
    };
    let v = serde_json::to_value(&with_test).unwrap();
    assert_eq!(v["test_clean_accuracy"], 0.75);
    assert_eq!(v["test_samples"], 4);
    assert_eq!(v["test_per_class_recall"], serde_json::json!([1.0, 0.5]));
    assert_eq!(v["test_balanced_accuracy"], 0.75);
    let back: TrainReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, with_test);

    let suite = SuiteReport {
        suite: Suite::Quick,
        eps: 0.3,
        samples: 10,
        clean_accuracy: 0.9,
        robust_accuracy: 0.456,
        stages: vec![],
        outcome: vec![],
        skipped: vec![],
        sanity: Some(Sanity {
            eps_curve: vec![],
            pgd10_accuracy: 0.5,
            pgd50x3_accuracy: 0.5,
            black_box_only: 0,
            zero_gradient_fraction: 0.0,
            flags: vec!["a flag".into()],
        }),
    };
    let card = ModelCard {
        name: Some("m".into()),
        dataset: "mnist",
        architecture: "cnn",
        training_method: "pgd-at",
    };
    let row = Leaderboard::new(&card, &suite);
    assert_eq!((row.clean_acc, row.autoattack_acc), (90.0, 45.6));
    assert!(row.unreliable);
    let md = row.markdown(&suite);
    assert!(
        md.contains("| m | mnist | L∞ ε = 0.3 | 90.00 % | 45.60 % | YES (see flags) |"),
        "{md}"
    );
}

#[test]
fn atomic_writes_clean_up_after_killed_writers() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.bin");
    // A writer killed between creating its temporary and renaming it (no such pid runs).
    let stale = dir.path().join(".x.bin.tmp-999999999");
    std::fs::write(&stale, b"half").unwrap();
    let other = dir.path().join(".y.bin.tmp-999999999");
    std::fs::write(&other, b"someone else's").unwrap();
    rampart_core::write_atomically(&target, b"whole").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"whole");
    assert!(!stale.exists(), "the stale temporary was left");
    assert!(other.exists(), "another file's temporary was removed");
}
