//! The ABEX-RAT head on synthetic embeddings: RAT perturbations keep their budgets and leave
//! the input alone, PGD raises the loss, and an imbalanced problem is learned (macro-F1).

use burn::tensor::{Device, Int, Tensor, TensorData};
use rampart_core::Error;
use rampart_core::text::checkpoint::TextCheckpointOptions;
use rampart_core::text::classifier::{
    Mlp, MlpConfig, Perturbation, RatConfig, TextEpoch, TextLoss, TextTrainConfig, loss_fn,
    perturb, predict_proba, train_mlp, train_mlp_resumable,
};
use rampart_core::text::metrics::classification_report;

/// Burn's CPU random source is one per process: tests that draw from it run one at a time,
/// or their draws interleave and seeded runs stop being reproducible.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unit vectors around three class centres in 16 dimensions; class sizes `counts`.
fn data(counts: &[usize], seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (c, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            let mut v: Vec<f32> = (0..16).map(|_| next() * 0.8).collect();
            v[c] += 1.0;
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.push(v.iter().map(|a| a / norm).collect());
            y.push(c);
        }
    }
    (x, y)
}

fn recipe(rat: Option<RatConfig>) -> TextTrainConfig {
    TextTrainConfig {
        hidden: vec![32],
        dropout: 0.1,
        loss: TextLoss::Focal {
            gamma: 2.0,
            alpha: None,
            balanced_alpha: true,
        },
        rat,
        epochs: 40,
        batch_size: 32,
        lr: 3e-3,
        weight_decay: 0.0,
        seed: 1,
        seeds: 1,
        fine_tune: None,
    }
}

fn rat() -> RatConfig {
    RatConfig {
        p_none: 0.25,
        p_gaussian: 0.25,
        p_fgm: 0.25,
        p_pgd: 0.25,
        eps: 0.1,
        pgd_steps: 3,
        weight: 1.0,
    }
}

#[test]
fn learns_an_imbalanced_problem_with_focal_loss_and_rat() {
    let _serial = serial();
    let device = Device::flex();
    let (x, y) = data(&[200, 60, 12], 1);
    let (tx, ty) = data(&[100, 30, 10], 2);
    let mut kinds = [0usize; 4];
    let model = train_mlp(&x, &y, 3, &recipe(Some(rat())), &device, &mut |e| {
        for (k, n) in kinds.iter_mut().zip(e.perturbations) {
            *k += n;
        }
    })
    .unwrap();
    assert!(
        kinds.iter().all(|&k| k > 0),
        "every perturbation drawn: {kinds:?}"
    );
    let probs = pollster::block_on(predict_proba(&model, &tx, &device)).unwrap();
    for p in &probs {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let pred: Vec<usize> = probs
        .iter()
        .map(|p| (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap())
        .collect();
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let r = classification_report(&ty, &pred, &names).unwrap();
    assert!(r.macro_f1 > 0.9, "macro-F1 {}", r.macro_f1);
}

#[test]
fn perturbations_keep_their_budget_and_leave_the_input_alone() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (x, y) = data(&[20, 20, 20], 3);
    let model = train_mlp(
        &x,
        &y,
        3,
        &TextTrainConfig {
            epochs: 3,
            ..recipe(None)
        },
        &device,
        &mut |_| {},
    )
    .unwrap();
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let xt = Tensor::<2>::from_data(TensorData::new(flat.clone(), [60, 16]), &device);
    let yt = Tensor::<1, Int>::from_data(
        TensorData::new(y.iter().map(|&c| c as i64).collect::<Vec<_>>(), [60]),
        &device,
    );
    let loss = loss_fn(&recipe(None), &[20, 20, 20]).unwrap();
    let r = rat();
    assert!(perturb(Perturbation::None, &model, &xt, &yt, &r, &loss).is_none());
    let clean_loss = loss
        .forward(model.forward(xt.clone()), yt.clone())
        .into_scalar::<f32>();
    for kind in [Perturbation::Gaussian, Perturbation::Fgm, Perturbation::Pgd] {
        let xp = perturb(kind, &model, &xt, &yt, &r, &loss).unwrap();
        let d: Vec<f32> = (xp.clone() - xt.clone()).into_data().try_to_vec().unwrap();
        for row in d.chunks(16) {
            let n = row.iter().map(|a| a * a).sum::<f32>().sqrt();
            match kind {
                Perturbation::Pgd => assert!(n <= r.eps * (1.0 + 1e-4), "{kind:?}: {n}"),
                _ => assert!((n - r.eps).abs() < 1e-4, "{kind:?}: {n}"),
            }
        }
        let after: Vec<f32> = xt.clone().into_data().try_to_vec().unwrap();
        assert_eq!(after, flat, "{kind:?} changed its input");
        if kind != Perturbation::Gaussian {
            let adv_loss = loss
                .forward(model.forward(xp), yt.clone())
                .into_scalar::<f32>();
            assert!(adv_loss > clean_loss, "{kind:?}: {adv_loss} ≤ {clean_loss}");
        }
    }
}

/// Logit adjustment: −τ·ln(frequency), zero at τ = 0; `shift_logits` on a freshly trained
/// model (parameters on the autodiff device) moves every logit by exactly its shift, so the
/// log-probabilities move by the shift minus a per-row constant.
#[test]
fn logit_adjustment_shifts_a_trained_model_exactly() {
    let _serial = serial();
    use rampart_core::text::classifier::logit_adjustment;
    let device = Device::flex();
    let counts = [200usize, 60, 12];
    let adj = logit_adjustment(&counts, 0.5);
    for (a, c) in adj.iter().zip(counts) {
        let expected = -0.5 * (c as f32 / 272.0).ln();
        assert!((a - expected).abs() < 1e-6, "{a} vs {expected}");
    }
    assert!(logit_adjustment(&counts, 0.0).iter().all(|v| *v == 0.0));
    let (x, y) = data(&counts, 3);
    let mut config = recipe(None);
    config.epochs = 2;
    let model = train_mlp(&x, &y, 3, &config, &device, &mut |_| {}).unwrap();
    let before = pollster::block_on(predict_proba(&model, &x[..5], &device)).unwrap();
    let shifted = model.clone().shift_logits(&adj).unwrap();
    let after = pollster::block_on(predict_proba(&shifted, &x[..5], &device)).unwrap();
    for (b, a) in before.iter().zip(&after) {
        let d: Vec<f32> = (0..3).map(|k| a[k].ln() - b[k].ln() - adj[k]).collect();
        assert!(
            d.iter().all(|v| (v - d[0]).abs() < 1e-4),
            "not a uniform shift: {d:?}"
        );
    }
    assert!(model.shift_logits(&[1.0]).is_err());
}

/// A run stopped after epochs 2 and 5 and resumed twice ends with the weights and history of
/// an uninterrupted run (RAT, dropout and Gaussian noise included); a checkpoint of another
/// recipe or other data is refused, naming what differs.
#[test]
fn text_training_resumes_exactly_and_refuses_other_runs() {
    let _serial = serial();
    let device = Device::flex();
    let (x, y) = data(&[60, 20, 8], 3);
    let config = TextTrainConfig {
        epochs: 8,
        ..recipe(Some(rat()))
    };
    let dir = tempfile::tempdir().unwrap();
    let options = |name: &str, stop: Option<usize>| TextCheckpointOptions {
        path: dir.path().join(name),
        resume: true,
        stop_after_epochs: stop,
    };
    let run = |o: &TextCheckpointOptions, c: &TextTrainConfig, y: &[usize]| {
        train_mlp_resumable(&x, y, 3, c, &device, Some(o), &mut |_| {})
    };
    let whole = run(&options("whole.ckpt", None), &config, &y).unwrap();
    assert!(whole.completed && whole.resumed_at == 0);

    let first = run(&options("parts.ckpt", Some(2)), &config, &y).unwrap();
    assert!(!first.completed && first.history.len() == 2);
    let second = run(&options("parts.ckpt", Some(3)), &config, &y).unwrap();
    assert!(!second.completed && second.resumed_at == 2 && second.history.len() == 5);
    let last = run(&options("parts.ckpt", None), &config, &y).unwrap();
    assert!(last.completed && last.resumed_at == 5);

    let untimed = |h: &[TextEpoch]| -> Vec<TextEpoch> {
        h.iter()
            .map(|e| TextEpoch {
                seconds: 0.0,
                ..e.clone()
            })
            .collect()
    };
    assert_eq!(untimed(&whole.history), untimed(&last.history));
    let p = |m| pollster::block_on(predict_proba(m, &x, &device)).unwrap();
    assert_eq!(p(&whole.model), p(&last.model), "resumed weights differ");

    // Another recipe, other labels: refused, naming the difference; the checkpoint stays.
    let saved = std::fs::read(dir.path().join("parts.ckpt")).unwrap();
    let other = TextTrainConfig {
        lr: 1e-2,
        ..config.clone()
    };
    match run(&options("parts.ckpt", None), &other, &y) {
        Err(Error::Checkpoint(m)) => assert!(m.contains("differs in: lr"), "{m}"),
        r => panic!("expected a refusal, got {:?}", r.map(|t| t.completed)),
    }
    let mut flipped = y.clone();
    flipped[0] = 1;
    match run(&options("parts.ckpt", None), &config, &flipped) {
        Err(Error::Checkpoint(m)) => assert!(m.contains("training data"), "{m}"),
        r => panic!("expected a refusal, got {:?}", r.map(|t| t.completed)),
    }
    assert_eq!(std::fs::read(dir.path().join("parts.ckpt")).unwrap(), saved);
}

/// Logits of `model` on `x` (evaluation mode).
fn logits(model: &Mlp, x: &[Vec<f32>], device: &Device) -> Vec<f32> {
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let xt = Tensor::<2>::from_data(TensorData::new(flat, [x.len(), x[0].len()]), device);
    burn::module::Module::valid(model)
        .forward(xt.without_autodiff())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// One MLP made of several: its logits are the members' mean, for no, one and two hidden
/// layers (the block-diagonal case), within 1e-5.
#[test]
fn an_ensemble_is_one_mlp_with_the_mean_logits() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (x, _) = data(&[4, 4, 4], 5);
    for hidden in [vec![], vec![8], vec![8, 6]] {
        let config = MlpConfig {
            input: 16,
            hidden: hidden.clone(),
            num_classes: 3,
            dropout: 0.3,
        };
        let members: Vec<Mlp> = (0..3).map(|_| config.init(&device).unwrap()).collect();
        let merged = Mlp::ensemble(&members).unwrap();
        assert_eq!(
            merged.hidden(),
            hidden.iter().map(|h| 3 * h).collect::<Vec<_>>()
        );
        let each: Vec<Vec<f32>> = members.iter().map(|m| logits(m, &x, &device)).collect();
        let mean: Vec<f32> = (0..each[0].len())
            .map(|i| each.iter().map(|l| l[i]).sum::<f32>() / 3.0)
            .collect();
        assert!(
            each[0] != each[1],
            "members must differ for the test to mean anything"
        );
        for (a, b) in logits(&merged, &x, &device).iter().zip(&mean) {
            assert!((a - b).abs() < 1e-5, "hidden {hidden:?}: {a} vs mean {b}");
        }
    }
    let other = MlpConfig {
        input: 16,
        hidden: vec![4],
        num_classes: 3,
        dropout: 0.0,
    };
    let a = other.init(&device).unwrap();
    let b = MlpConfig {
        hidden: vec![5],
        ..other
    }
    .init(&device)
    .unwrap();
    assert!(Mlp::ensemble(&[a, b]).is_err());
    assert!(Mlp::ensemble(&[]).is_err());
    // Other input widths behind the same hidden widths: refused, not a panic in the merge.
    let narrow = MlpConfig {
        input: 15,
        hidden: vec![4],
        num_classes: 3,
        dropout: 0.0,
    };
    let wide = MlpConfig {
        input: 16,
        ..narrow.clone()
    };
    assert!(Mlp::ensemble(&[narrow.init(&device).unwrap(), wide.init(&device).unwrap()]).is_err());
}

/// `seeds: 2` trains exactly the two single models of its members' seeds and merges them.
#[test]
fn a_seed_ensemble_is_its_members_merged() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (x, y) = data(&[30, 12, 6], 9);
    let config = TextTrainConfig {
        epochs: 3,
        seeds: 2,
        ..recipe(Some(rat()))
    };
    let ensemble = train_mlp(&x, &y, 3, &config, &device, &mut |_| {}).unwrap();
    let members: Vec<Mlp> = (0..2u64)
        .map(|i| {
            let member = TextTrainConfig {
                seed: config
                    .seed
                    .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                seeds: 1,
                ..config.clone()
            };
            train_mlp(&x, &y, 3, &member, &device, &mut |_| {}).unwrap()
        })
        .collect();
    let merged = Mlp::ensemble(&members).unwrap();
    for (a, b) in logits(&ensemble, &x, &device)
        .iter()
        .zip(logits(&merged, &x, &device))
    {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let bad = TextTrainConfig {
        seeds: 0,
        ..config.clone()
    };
    assert!(train_mlp(&x, &y, 3, &bad, &device, &mut |_| {}).is_err());
    // 64 members of 512 + 512 would merge into a 32,768² block-diagonal layer, past the weight
    // limit: refused at once, before any member trains.
    let huge = TextTrainConfig {
        hidden: vec![512, 512],
        seeds: 64,
        epochs: 1000,
        ..config.clone()
    };
    let clock = std::time::Instant::now();
    let err = train_mlp(&x, &y, 3, &huge, &device, &mut |_| {}).unwrap_err();
    assert!(
        clock.elapsed().as_secs() < 5 && err.to_string().contains("64 members"),
        "{err}"
    );
}
