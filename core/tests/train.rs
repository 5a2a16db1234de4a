//! Training on a tiny learnable problem: standard training reaches a stated accuracy, PGD
//! drives it far below, PGD-AT holds up better, and an interrupted run resumed from its
//! checkpoint ends exactly where an uninterrupted one does.

mod common;

use common::*;
use rampart_core::attack::{Norm, PgdConfig};
use rampart_core::eval::evaluate;
use rampart_core::train::{CheckpointOptions, Method, TrainConfig, train};

fn recipe(method: Method, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 3e-3,
        seed: 7,
        checkpoint_every: 5,
        ..TrainConfig::new(method)
    }
}

#[test]
fn standard_training_learns_and_pgd_breaks_it_and_pgd_at_resists() {
    let device = cpu();
    let train_set = bars(600, 1);
    let test_set = bars(150, 2);
    let pgd = PgdConfig::new(Norm::Linf, 10).init().unwrap();
    let eps = 0.3;

    let standard = train(
        &tiny_config(3),
        &recipe(Method::Standard, 4),
        &train_set,
        None,
        &device,
        None,
        &mut |_| {},
    )
    .unwrap();
    let r = pollster::block_on(evaluate(
        &standard.model,
        &test_set,
        std::slice::from_ref(&pgd),
        &[eps],
        50,
        &device,
        0,
        &mut |_, _| {},
    ))
    .unwrap();
    assert!(
        r.clean_accuracy >= 0.95,
        "standard clean accuracy {}",
        r.clean_accuracy
    );
    assert!(
        r.robust[0].accuracy <= 0.2,
        "PGD left {} accuracy",
        r.robust[0].accuracy
    );

    let at = train(
        &tiny_config(3),
        &recipe(
            Method::PgdAt {
                eps,
                steps: 5,
                step_size: 0.1,
            },
            4,
        ),
        &train_set,
        None,
        &device,
        None,
        &mut |_| {},
    )
    .unwrap();
    let r_at = pollster::block_on(evaluate(
        &at.model,
        &test_set,
        &[pgd],
        &[eps],
        50,
        &device,
        0,
        &mut |_, _| {},
    ))
    .unwrap();
    assert!(
        r_at.robust[0].accuracy >= r.robust[0].accuracy + 0.3,
        "PGD-AT robust accuracy {} vs standard {}",
        r_at.robust[0].accuracy,
        r.robust[0].accuracy
    );
}

#[test]
fn resuming_an_interrupted_run_matches_an_uninterrupted_one() {
    let device = cpu();
    let train_set = bars(300, 3);
    let val = bars(60, 4);
    let config = recipe(
        Method::FgsmRs {
            eps: 0.2,
            alpha: 0.25,
        },
        2,
    );
    let dir = tempfile::tempdir().unwrap();

    let whole = train(
        &tiny_config(3),
        &config,
        &train_set,
        Some(&val),
        &device,
        None,
        &mut |_| {},
    )
    .unwrap();

    let path = dir.path().join("run.ckpt");
    let stop = |steps| CheckpointOptions {
        path: path.clone(),
        resume: true,
        stop_after_steps: Some(steps),
    };
    // 10 steps per epoch: stop mid-epoch (after a checkpoint at step 5 and 2 more steps
    // that are lost), then again in the second epoch, then finish.
    let first = train(
        &tiny_config(3),
        &config,
        &train_set,
        Some(&val),
        &device,
        Some(&stop(7)),
        &mut |_| {},
    )
    .unwrap();
    assert!(!first.completed);
    let second = train(
        &tiny_config(3),
        &config,
        &train_set,
        Some(&val),
        &device,
        Some(&stop(9)),
        &mut |_| {},
    )
    .unwrap();
    assert!(!second.completed);
    let last = CheckpointOptions {
        path: path.clone(),
        resume: true,
        stop_after_steps: None,
    };
    let resumed = train(
        &tiny_config(3),
        &config,
        &train_set,
        Some(&val),
        &device,
        Some(&last),
        &mut |_| {},
    )
    .unwrap();
    assert!(resumed.completed);

    assert_eq!(whole.history.len(), resumed.history.len());
    for (a, b) in whole.history.iter().zip(&resumed.history) {
        assert_eq!(a.train_loss, b.train_loss, "epoch {}", a.epoch);
        assert_eq!(a.train_accuracy, b.train_accuracy);
        assert_eq!(a.val_accuracy, b.val_accuracy);
    }
    let w1 = whole.model.named_weights();
    let w2 = resumed.model.named_weights();
    assert_eq!(w1, w2, "final weights differ");
}

#[test]
fn a_checkpoint_from_another_recipe_is_refused() {
    let device = cpu();
    let train_set = bars(90, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    let opts = CheckpointOptions {
        path: path.clone(),
        resume: true,
        stop_after_steps: Some(1),
    };
    let once = TrainConfig {
        checkpoint_every: 1,
        ..recipe(Method::Standard, 1)
    };
    train(
        &tiny_config(3),
        &once,
        &train_set,
        None,
        &device,
        Some(&opts),
        &mut |_| {},
    )
    .unwrap();
    let other = TrainConfig { lr: 0.5, ..once };
    let err = train(
        &tiny_config(3),
        &other,
        &train_set,
        None,
        &device,
        Some(&opts),
        &mut |_| {},
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("another recipe"), "{err}");
}
