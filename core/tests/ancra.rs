//! ANCRA: the reverse-attention masks agree with their definitions, TRADES + ANCRA (and each
//! part alone) trains a tiny model that resists PGD, a mismatched model/recipe is refused,
//! and the evaluation suite adds the adaptive RA attacks for an RA model — which break what
//! plain PGD cannot.

mod common;

use common::*;
use rampart_core::attack::{Attack, Norm, PgdConfig};
use rampart_core::eval::evaluate;
use rampart_core::eval::suite::{Suite, SuiteConfig, run_suite};
use rampart_core::model::{CnnConfig, ModelConfig, RaMask};
use rampart_core::train::{Ancra, Method, TrainConfig, train};

fn ra_config() -> ModelConfig {
    let mut c = CnnConfig::madry(1, 8, 8, 3).with_widths([4, 8], 16);
    c.reverse_attention = true;
    ModelConfig::Cnn(c)
}

fn trades() -> Method {
    Method::Trades {
        eps: 0.3,
        steps: 5,
        step_size: 0.1,
        beta: 6.0,
    }
}

fn recipe(ancra: Option<Ancra>) -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 32,
        lr: 3e-3,
        seed: 7,
        ancra,
        ..TrainConfig::new(trades())
    }
}

#[test]
fn reverse_attention_masks_follow_their_definitions() {
    let device = cpu();
    let model = ra_config().init_seeded(&device, 1).unwrap();
    let x = images(5, 3, &device);
    let predicted = model.forward_ra(x.clone(), &RaMask::Predicted);
    assert_eq!(predicted.aux.len(), 1);
    let aux_pred: Vec<i64> = predicted.aux[0]
        .clone()
        .argmax(1)
        .squeeze_dim::<1>(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    // Predicted = the true-label mask with the auxiliary head's predictions as labels.
    let as_labels = model.forward_ra(x.clone(), &RaMask::Labels(labels(&aux_pred, &device)));
    assert_eq!(to_vec(predicted.logits.clone()), to_vec(as_labels.logits));
    // … and, row by row, the fixed mask of that class.
    for c in 0..3 {
        let fixed = to_vec(model.forward_ra(x.clone(), &RaMask::Class(c)).logits);
        let pred = to_vec(predicted.logits.clone());
        for (i, &p) in aux_pred.iter().enumerate() {
            if p as usize == c {
                assert_eq!(&fixed[i * 3..i * 3 + 3], &pred[i * 3..i * 3 + 3]);
            }
        }
    }
    // BPDA: the same values forward; the test-time forward is the predicted mask.
    let bpda = model.forward_ra(x.clone(), &RaMask::Bpda);
    let close = to_vec(bpda.logits)
        .iter()
        .zip(to_vec(predicted.logits.clone()))
        .all(|(a, b)| (a - b).abs() < 1e-5);
    assert!(close, "BPDA changes the forward values");
    assert_eq!(to_vec(model.forward(x)), to_vec(predicted.logits));
}

#[test]
fn trades_ancra_and_each_part_train_a_robust_tiny_model() {
    let device = cpu();
    let train_set = bars(600, 1);
    let test_set = bars(150, 2);
    let pgd: Box<dyn Attack> = Box::new(PgdConfig::new(Norm::Linf, 10).init().unwrap());
    let anc_only = Ancra {
        ra: false,
        ..Ancra::official()
    };
    let ra_only = Ancra {
        anc: false,
        ..Ancra::official()
    };
    for (name, ancra, config) in [
        ("ancra", Some(Ancra::official()), ra_config()),
        ("ra", Some(ra_only), ra_config()),
        ("anc", Some(anc_only), tiny_config(3)),
    ] {
        let model = train(
            &config,
            &recipe(ancra),
            &train_set,
            None,
            &device,
            None,
            &mut |_| {},
        )
        .unwrap()
        .model;
        let r = pollster::block_on(evaluate(
            &model,
            &test_set,
            std::slice::from_ref(&pgd),
            &[0.3],
            50,
            &device,
            0,
            &mut |_, _| {},
        ))
        .unwrap();
        eprintln!(
            "{name}: clean {} pgd {}",
            r.clean_accuracy, r.robust[0].accuracy
        );
        assert!(
            r.clean_accuracy >= 0.6,
            "{name}: clean {}",
            r.clean_accuracy
        );
        assert!(
            r.robust[0].accuracy >= 0.2,
            "{name}: PGD {}",
            r.robust[0].accuracy
        );
    }
}

#[test]
fn mismatched_model_and_recipe_are_refused() {
    let device = cpu();
    let data = bars(60, 1);
    let run = |config: &ModelConfig, recipe: &TrainConfig| {
        train(config, recipe, &data, None, &device, None, &mut |_| {})
            .err()
            .map(|e| e.to_string())
    };
    let e = run(&tiny_config(3), &recipe(Some(Ancra::official()))).unwrap();
    assert!(
        e.contains("needs a model built with reverse attention"),
        "{e}"
    );
    let e = run(&ra_config(), &recipe(None)).unwrap();
    assert!(e.contains("RA switched on"), "{e}");
    let standard = TrainConfig {
        ancra: Some(Ancra::official()),
        ..TrainConfig::new(Method::Standard)
    };
    let e = run(&ra_config(), &standard).unwrap();
    assert!(e.contains("adversarial method"), "{e}");
}

#[test]
fn the_suite_adds_adaptive_attacks_for_ra_models() {
    let device = cpu();
    // Robust validation of an RA model takes the worst case with the auxiliary-head attack.
    let trained = train(
        &ra_config(),
        &TrainConfig {
            val_pgd_steps: 5,
            val_pgd_samples: 60,
            ..recipe(Some(Ancra::official()))
        },
        &bars(600, 1),
        Some(&bars(60, 3)),
        &device,
        None,
        &mut |_| {},
    )
    .unwrap();
    let last = trained.history.last().unwrap();
    let val_robust = last.val_robust_accuracy.expect("robust validation ran");
    let model = trained.model;
    {
        use rampart_core::attack::ra::{RaAttack, RaAttackKind};
        let val = bars(60, 3);
        let (x, y) = val.batch(&(0..60).collect::<Vec<_>>(), &device);
        let out = RaAttack::new(RaAttackKind::AuxHead, 5)
            .unwrap()
            .run(&model, x, y, &[0.3; 60], 0)
            .unwrap();
        let aux_only = 1.0 - to_vec(out.success.float()).iter().sum::<f32>() / 60.0;
        // Same attack, other random starts: the worst case cannot sit far above it.
        assert!(
            val_robust <= aux_only as f64 + 0.1,
            "validation {val_robust} vs aux attack {aux_only}"
        );
    }
    let suite = SuiteConfig {
        apgd_steps: 10,
        square_queries: 100,
        sanity: false,
        ..SuiteConfig::new(Suite::Quick, 0.3)
    };
    let report = pollster::block_on(run_suite(
        &model,
        &bars(90, 2),
        &suite,
        &device,
        &mut |_, _| {},
    ))
    .unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.attack.as_str()).collect();
    assert_eq!(
        names,
        ["apgd-ce", "ra-aux", "ra-every-mask", "ra-bpda", "square"]
    );
    // Each adaptive attack alone against plain PGD on the test-time forward pass.
    use rampart_core::attack::ra::{RaAttack, RaAttackKind};
    let test = bars(90, 2);
    let (x, y) = test.batch(&(0..90).collect::<Vec<_>>(), &device);
    let acc = |a: &dyn Attack| {
        let out = a.run(&model, x.clone(), y.clone(), &[0.3; 90], 0).unwrap();
        1.0 - to_vec(out.success.float()).iter().sum::<f32>() / 90.0
    };
    let plain = acc(&PgdConfig::new(Norm::Linf, 10).init().unwrap());
    let aux = acc(&RaAttack::new(RaAttackKind::AuxHead, 10).unwrap());
    let bpda = acc(&RaAttack::new(RaAttackKind::Bpda, 10).unwrap());
    // Measured: plain PGD-10 0.956, through the auxiliary head 0.189, BPDA 0.322 (every
    // fixed mask 0.989): the test-time argmax masks the plain attack's gradient.
    assert!(
        aux < plain - 0.3,
        "aux-head attack {aux} vs plain PGD {plain}"
    );
    assert!(bpda < plain - 0.3, "BPDA {bpda} vs plain PGD {plain}");
    assert!(report.robust_accuracy <= aux.min(bpda) as f64 + 0.05);
}
