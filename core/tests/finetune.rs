//! Fine-tuning the encoder's top layers: the tuned stack computes exactly the encoder's
//! embeddings, training learns, the bundle carries the layers (and refuses another base), and a
//! resumed run ends where an uninterrupted one ends. Needs the shared MiniLM folder (present
//! in CI); skipped without it.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rampart_core::bundle::{TextBundle, TextBundleHeader};
use rampart_core::data::resolve_data_dir;
use rampart_core::text::checkpoint::TextCheckpointOptions;
use rampart_core::text::classifier::{MlpConfig, TextLoss, TextTrainConfig, predict_proba};
use rampart_core::text::encoder::{SentenceEncoder, TokenStates};
use rampart_core::text::finetune::{
    Batch, FineTuneConfig, TuneData, TunedClassifier, fine_tune, perturb_tokens,
    predict_proba as tuned_proba,
};
use rampart_core::text::rat::Perturbation;

fn encoder() -> Option<SentenceEncoder> {
    let dir = resolve_data_dir(None).join("../models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").exists() {
        eprintln!("skipped: no MiniLM under {}", dir.display());
        return None;
    }
    Some(SentenceEncoder::load(&dir, &Device::flex()).unwrap())
}

fn embed(e: &SentenceEncoder, texts: &[&str]) -> Vec<Vec<f32>> {
    pollster::block_on(e.embed(texts, 4096, &Device::flex(), &mut |_, _| {})).unwrap()
}

fn states(e: &SentenceEncoder, texts: &[&str], below: usize) -> Vec<TokenStates> {
    pollster::block_on(e.token_states(texts, below, &Device::flex(), &mut |_, _| {})).unwrap()
}

fn largest_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// A report long enough for three windows, and short ones.
fn texts() -> Vec<String> {
    let long =
        "An employee was cleaning the conveyor when his sleeve caught in the rollers. ".repeat(45);
    vec![
        long,
        "A worker fell from a ladder and broke his arm.".into(),
        "".into(),
        "Two employees were burned when a propane tank exploded in the shed.".into(),
    ]
}

/// A fresh head, the same on every call.
fn head(input: usize, device: &Device) -> rampart_core::text::classifier::Mlp {
    device.seed(11);
    MlpConfig {
        input,
        hidden: vec![16],
        num_classes: 3,
        dropout: 0.0,
    }
    .init(device)
    .unwrap()
}

/// The top k layers run by Burn on the frozen layers' token vectors, pooled per text, give
/// the encoder's own embeddings (host kernel, all windows) within 2e-5, for k = 2 and for the
/// whole stack.
#[test]
fn the_tuned_stack_embeds_as_the_encoder_does() {
    let Some(e) = encoder() else { return };
    let owned = texts();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let want = embed(&e, &texts);
    let device = Device::flex();
    for k in [2, e.num_layers()] {
        let s = states(&e, &texts, e.num_layers() - k);
        assert_eq!(s[0].lengths.len(), 3, "the long report has three windows");
        let refs: Vec<&TokenStates> = s.iter().collect();
        let model = TunedClassifier::new(
            e.top_layers(k, &device).unwrap(),
            head(e.dim(), &device),
            e.heads(),
        );
        let all: Vec<usize> = (0..texts.len()).collect();
        let got = model.embed(&Batch::new(&refs, &all, e.dim(), &device));
        let got: Vec<Vec<f32>> = got
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .chunks(e.dim())
            .map(<[f32]>::to_vec)
            .collect();
        let worst = largest_difference(&got, &want);
        assert!(worst < 2e-5, "k = {k}: largest difference {worst}");
    }
}

/// Three kinds of accident, worded several ways.
fn corpus() -> (Vec<String>, Vec<usize>) {
    let kinds = [
        [
            "fell from a ladder",
            "slipped on the wet floor",
            "fell through the roof",
        ],
        [
            "was burned by acid",
            "inhaled toxic fumes",
            "was exposed to ammonia",
        ],
        [
            "was struck by a truck",
            "was hit by a forklift",
            "was run over by a loader",
        ],
    ];
    let who = ["A worker", "An employee", "The operator", "A laborer"];
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (c, phrases) in kinds.iter().enumerate() {
        for p in phrases {
            for w in who {
                texts.push(format!("{w} {p} and was hospitalized."));
                labels.push(c);
            }
        }
    }
    (texts, labels)
}

fn recipe(layers: usize, epochs: usize) -> TextTrainConfig {
    TextTrainConfig {
        hidden: vec![16],
        dropout: 0.0,
        loss: TextLoss::Focal {
            gamma: 2.0,
            alpha: None,
            balanced_alpha: true,
        },
        rat: Some(rampart_core::text::classifier::RatConfig {
            p_none: 0.25,
            p_gaussian: 0.25,
            p_fgm: 0.25,
            p_pgd: 0.25,
            eps: 0.2,
            pgd_steps: 2,
            weight: 1.0,
        }),
        epochs: 1,
        batch_size: 8,
        lr: 1e-3,
        weight_decay: 0.0,
        seed: 3,
        seeds: 1,
        fine_tune: Some(FineTuneConfig {
            layers,
            epochs,
            batch_size: 8,
            lr: 1e-3,
            layer_decay: 0.8,
            head_lr: 1e-2,
            weight_decay: 0.01,
            warmup: 0.1,
            patience: 0,
            token_rat: false,
            token_eps: 1.0,
        }),
    }
}

/// Fine-tuning lowers the training loss; the bundle holds the layers; the encoder rebuilt from
/// the base and the bundle classifies exactly as the trained stack (probabilities within
/// 1e-5), and a bundle is refused on another base.
#[test]
fn fine_tuning_learns_and_its_bundle_rebuilds_the_encoder() {
    let Some(e) = encoder() else { return };
    let (owned, y) = corpus();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let device = Device::flex();
    let config = recipe(1, 4);
    let s = states(&e, &texts, e.num_layers() - 1);
    let refs: Vec<&TokenStates> = s.iter().collect();
    let tuned = fine_tune(
        &e,
        head(e.dim(), &device),
        TuneData {
            states: &refs,
            labels: &y,
        },
        None,
        &config,
        &device,
        None,
        &mut |_| {},
    )
    .unwrap();
    let losses: Vec<f64> = tuned.history.iter().map(|h| h.train_loss).collect();
    assert_eq!(losses.len(), 4);
    assert!(
        losses[3] < 0.75 * losses[0],
        "the training loss did not fall: {losses:?}"
    );
    assert_eq!(
        tuned.kept_epoch, 3,
        "without validation the last epoch is kept"
    );
    let stack = tuned_proba(&tuned.model, &refs, &device);

    let header = TextBundleHeader {
        mlp: MlpConfig {
            input: e.dim(),
            hidden: vec![16],
            num_classes: 3,
            dropout: 0.0,
        },
        class_names: vec!["fall".into(), "exposure".into(), "struck".into()],
        encoder: "all-MiniLM-L6-v2".into(),
        encoder_fingerprint: String::new(),
        recipe: serde_json::Value::Null,
        metrics: serde_json::Value::Null,
        created_by: "test".into(),
        fine_tuned: None,
    };
    let base_fingerprint = e.fingerprint.clone();
    let tuned_encoder = pollster::block_on(e.with_top_layers(tuned.model.layers.clone())).unwrap();
    assert_ne!(tuned_encoder.fingerprint, base_fingerprint);
    let header = TextBundleHeader {
        encoder_fingerprint: tuned_encoder.fingerprint.clone(),
        ..header
    };
    let bundle = TextBundle::fine_tuned(
        &tuned.model.head,
        &tuned.model.layers,
        &base_fingerprint,
        header,
    )
    .unwrap();
    let bytes = bundle.to_bytes();
    let bundle = TextBundle::from_bytes(&bytes).unwrap();
    assert_eq!(bundle.header.fine_tuned.as_ref().unwrap().layers, 1);

    // Rebuilt from a freshly loaded base and the bundle.
    let rebuilt = pollster::block_on(bundle.encoder(encoder().unwrap(), &device)).unwrap();
    assert_eq!(rebuilt.fingerprint, tuned_encoder.fingerprint);
    let x = embed(&rebuilt, &texts);
    // The layer itself trained, not only the head.
    let moved = largest_difference(&x, &embed(&encoder().unwrap(), &texts));
    assert!(moved > 1e-3, "the fine-tuned layer did not change: {moved}");
    let probs =
        pollster::block_on(predict_proba(&bundle.model(&device).unwrap(), &x, &device)).unwrap();
    let worst = largest_difference(&probs, &stack);
    assert!(worst < 1e-5, "bundle vs trained stack: {worst}");
    let accuracy = probs
        .iter()
        .zip(&y)
        .filter(|(p, c)| rampart_core::argmax(p) == **c)
        .count() as f64
        / y.len() as f64;
    assert!(accuracy >= 0.9, "training accuracy {accuracy}");

    // Another base (here: the tuned encoder itself) is refused, and so is a damaged bundle.
    let err = pollster::block_on(bundle.encoder(rebuilt, &device))
        .err()
        .expect("another base must be refused");
    assert!(err.to_string().contains("fine-tuned from"), "{err}");
    let mut damaged = bytes.clone();
    let n = damaged.len();
    damaged[n / 2] ^= 1;
    assert!(TextBundle::from_bytes(&damaged).is_err());
    // Well-sealed files whose version, header and sections disagree are refused.
    let (head_json, sections) = rampart_core::io::unseal(&bytes, b"RMPTTEXT", 2, 2, "x").unwrap();
    let mut plain: serde_json::Value = serde_json::from_slice(head_json).unwrap();
    plain.as_object_mut().unwrap().remove("fine_tuned");
    let plain = serde_json::to_vec(&plain).unwrap();
    let forged = [
        // Version 1 whose header claims fine-tuned layers.
        rampart_core::io::seal(b"RMPTTEXT", 1, head_json, &sections[..1]),
        // Version 2 without them in the header.
        rampart_core::io::seal(b"RMPTTEXT", 2, &plain, &sections),
        // Version 2 with one section.
        rampart_core::io::seal(b"RMPTTEXT", 2, head_json, &sections[..1]),
    ];
    for (i, f) in forged.iter().enumerate() {
        assert!(
            TextBundle::from_bytes(f).is_err(),
            "forged bundle {i} accepted"
        );
    }
    // The same file re-sealed is accepted (the forgeries fail for what they change).
    assert!(
        TextBundle::from_bytes(&rampart_core::io::seal(
            b"RMPTTEXT",
            2,
            head_json,
            &sections
        ))
        .is_ok()
    );
}

/// Stopped after one epoch and resumed, fine-tuning ends with the uninterrupted run's model
/// and history (validation and early stopping included).
#[test]
fn a_resumed_fine_tuning_ends_where_an_uninterrupted_one_ends() {
    let Some(e) = encoder() else { return };
    let (owned, y) = corpus();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let device = Device::flex();
    let mut config = recipe(2, 3);
    config.fine_tune.as_mut().unwrap().patience = 1;
    let s = states(&e, &texts, e.num_layers() - 2);
    let refs: Vec<&TokenStates> = s.iter().collect();
    let (val_refs, val_y) = (&refs[..12], &y[..12]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.ckpt");
    let run = |stop: Option<usize>| {
        fine_tune(
            &e,
            head(e.dim(), &device),
            TuneData {
                states: &refs,
                labels: &y,
            },
            Some(TuneData {
                states: val_refs,
                labels: val_y,
            }),
            &config,
            &device,
            Some(&TextCheckpointOptions {
                path: path.clone(),
                resume: true,
                stop_after_epochs: stop,
            }),
            &mut |_| {},
        )
        .unwrap()
    };
    let first = run(Some(1));
    assert!(!first.completed);
    assert_eq!(first.history.len(), 1);
    let resumed = run(None);
    assert_eq!(resumed.resumed_at, 1);
    std::fs::remove_file(&path).unwrap();
    let whole = run(None);
    assert_eq!(whole.resumed_at, 0);
    let strip = |h: &[rampart_core::text::finetune::TuneEpoch]| {
        h.iter()
            .map(|e| (e.epoch, e.train_loss, e.val_macro_f1, e.perturbations))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&resumed.history), strip(&whole.history));
    assert_eq!(resumed.kept_epoch, whole.kept_epoch);
    let a = tuned_proba(&resumed.model, &refs, &device);
    let b = tuned_proba(&whole.model, &refs, &device);
    assert!(largest_difference(&a, &b) < 1e-6);

    // A checkpoint of another recipe is refused.
    let other = TextTrainConfig {
        seed: 4,
        ..config.clone()
    };
    let _ = run(Some(1));
    let err = fine_tune(
        &e,
        head(e.dim(), &device),
        TuneData {
            states: &refs,
            labels: &y,
        },
        Some(TuneData {
            states: val_refs,
            labels: val_y,
        }),
        &other,
        &device,
        Some(&TextCheckpointOptions {
            path: path.clone(),
            resume: true,
            stop_after_epochs: None,
        }),
        &mut |_| {},
    )
    .err()
    .expect("another recipe's checkpoint must be refused");
    let err = err.to_string();
    assert!(err.contains("another run") && err.contains("seed"), "{err}");
    assert!(!err.contains("training data"), "{err}");
}

/// Bad fine-tuning settings are refused before anything trains.
#[test]
fn bad_fine_tuning_settings_are_refused() {
    let device = Device::flex();
    let ok = recipe(1, 1);
    assert!(ok.validate().is_ok());
    let with = |f: &dyn Fn(&mut FineTuneConfig)| {
        let mut c = ok.clone();
        f(c.fine_tune.as_mut().unwrap());
        c.validate()
    };
    assert!(with(&|c| c.layers = 0).is_err());
    assert!(with(&|c| c.epochs = 0).is_err());
    assert!(with(&|c| c.layer_decay = 0.0).is_err());
    assert!(with(&|c| c.layer_decay = 1.5).is_err());
    assert!(with(&|c| c.warmup = 1.0).is_err());
    assert!(with(&|c| c.lr = f64::NAN).is_err());
    assert!(with(&|c| c.weight_decay = -1.0).is_err());
    let ensemble = TextTrainConfig {
        seeds: 2,
        ..ok.clone()
    };
    assert!(ensemble.validate().is_err());
    let Some(e) = encoder() else { return };
    assert!(e.top_layers(0, &device).is_err());
    assert!(e.top_layers(e.num_layers() + 1, &device).is_err());
    assert!(pollster::block_on(e.token_states(&["x"], 7, &device, &mut |_, _| {})).is_err());
    // Labels beyond the head's classes are refused.
    let s = states(&e, &["a fall"], 5);
    let refs: Vec<&TokenStates> = s.iter().collect();
    let r = fine_tune(
        &e,
        head(e.dim(), &device),
        TuneData {
            states: &refs,
            labels: &[5],
        },
        None,
        &ok,
        &device,
        None,
        &mut |_| {},
    );
    assert!(r.is_err());
}

/// Token-level RAT: Gaussian noise and FGM move every token vector by exactly `eps` (L2), PGD
/// by at most `eps`; the batch is not modified; FGM raises the loss; and fine-tuning with it
/// trains.
#[test]
fn token_perturbations_stay_in_each_tokens_ball_and_train() {
    let Some(e) = encoder() else { return };
    let (owned, y) = corpus();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let device = Device::flex();
    let s = states(&e, &texts[..8], e.num_layers() - 1);
    let refs: Vec<&TokenStates> = s.iter().collect();
    let model = TunedClassifier::new(
        e.top_layers(1, &device).unwrap(),
        head(e.dim(), &device),
        e.heads(),
    );
    let all: Vec<usize> = (0..8).collect();
    let batch = Batch::new(&refs, &all, e.dim(), &device);
    let before = batch.tokens().into_data();
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(y[..8].iter().map(|&c| c as i64).collect::<Vec<_>>(), [8]),
        &device,
    );
    let config = recipe(1, 1);
    let rat = config.rat.clone().unwrap();
    let loss = rampart_core::text::classifier::loss_fn(&config, &[8, 8, 8]).unwrap();
    let eps = 0.5f32;
    let norms = |b: &Batch| -> Vec<f32> {
        (b.tokens() - batch.tokens())
            .square()
            .sum_dim(2)
            .sqrt()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let value = |b: &Batch| {
        loss.forward(model.forward(b), labels.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[0]
    };
    for kind in [Perturbation::Gaussian, Perturbation::Fgm, Perturbation::Pgd] {
        let moved = perturb_tokens(kind, &model, &batch, &labels, &rat, eps, &loss).unwrap();
        // Padding has no gradient, and no effect: only tokens count.
        let mask = batch.mask().into_data().try_to_vec::<f32>().unwrap();
        for (n, _) in norms(&moved)
            .into_iter()
            .zip(mask)
            .filter(|(_, m)| *m > 0.0)
        {
            match kind {
                Perturbation::Pgd => assert!(n <= eps + 1e-4, "{kind:?}: {n}"),
                _ => assert!((n - eps).abs() < 1e-4, "{kind:?}: {n}"),
            }
        }
        if kind == Perturbation::Fgm {
            assert!(value(&moved) > value(&batch), "FGM did not raise the loss");
        }
    }
    assert!(
        perturb_tokens(
            Perturbation::None,
            &model,
            &batch,
            &labels,
            &rat,
            eps,
            &loss
        )
        .is_none()
    );
    assert_eq!(batch.tokens().into_data(), before, "the batch was modified");

    let mut config = recipe(1, 2);
    let t = config.fine_tune.as_mut().unwrap();
    t.token_rat = true;
    t.token_eps = eps;
    let all_states = states(&e, &texts, e.num_layers() - 1);
    let all_refs: Vec<&TokenStates> = all_states.iter().collect();
    let tuned = fine_tune(
        &e,
        head(e.dim(), &device),
        TuneData {
            states: &all_refs,
            labels: &y,
        },
        None,
        &config,
        &device,
        None,
        &mut |_| {},
    )
    .unwrap();
    let losses: Vec<f64> = tuned.history.iter().map(|h| h.train_loss).collect();
    assert!(
        losses.iter().all(|l| l.is_finite()) && losses[1] < losses[0],
        "{losses:?}"
    );
}
