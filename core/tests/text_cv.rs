//! The cross-validation pipeline on a small synthetic corpus whose words and embeddings both
//! carry the class: every feature set runs every fold, scores stay fractions, a learnable
//! problem is learned, and the stacked model averages log-probabilities.

use burn::tensor::Device;
use rampart_core::text::classifier::{TextLoss, TextTrainConfig};
use rampart_core::text::cv::{CvData, CvSpec, Features, cross_validate, geometric_mean};
use rampart_core::text::data::{TextDataset, TextRecord};

const WORDS: [&str; 3] = ["ladder", "forklift", "chemical"];

/// 24 reports per class: its key word among shared filler words, and a noisy unit vector
/// around the class's axis in 8 dimensions.
fn corpus() -> (TextDataset, Vec<Vec<f32>>) {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let filler = [
        "worker", "was", "injured", "at", "the", "site", "on", "monday",
    ];
    let (mut records, mut x) = (Vec::new(), Vec::new());
    for (c, word) in WORDS.iter().enumerate() {
        for i in 0..24 {
            let mut text: Vec<&str> = filler.iter().copied().skip(i % 4).collect();
            text.insert(i % text.len(), word);
            records.push(TextRecord {
                id: format!("{c}-{i}"),
                text: text.join(" "),
                label: c,
                sources: Vec::new(),
            });
            let mut v: Vec<f32> = (0..8).map(|_| next()).collect();
            v[c] += 1.5;
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.push(v.iter().map(|a| a / n).collect());
        }
    }
    let class_names = WORDS.iter().map(|w| w.to_string()).collect();
    (
        TextDataset {
            records,
            class_names,
        },
        x,
    )
}

fn spec(features: Features, seeds: usize) -> CvSpec {
    CvSpec {
        folds: 3,
        repeats: 2,
        features,
        logit_adjust: vec![0.0, 1.0],
        config: TextTrainConfig {
            hidden: vec![16],
            dropout: 0.0,
            loss: TextLoss::CrossEntropy,
            rat: None,
            epochs: 30,
            batch_size: 16,
            lr: 1e-2,
            weight_decay: 0.0,
            seed: 3,
            seeds,
            fine_tune: None,
        },
        augment: "none".into(),
    }
}

#[test]
fn every_feature_set_runs_every_fold_and_learns() {
    let (base, x) = corpus();
    let data = CvData {
        base: &base,
        base_embeddings: &x,
        augmented: None,
        fine_tune: None,
    };
    for (features, seeds) in [
        (Features::Embedding, 1),
        (Features::Embedding, 2),
        (Features::Tfidf, 1),
        (Features::Stack, 1),
    ] {
        let mut calls = 0;
        let report = pollster::block_on(cross_validate(
            &data,
            &spec(features, seeds),
            &Device::flex(),
            &mut |_, _| calls += 1,
        ))
        .unwrap();
        assert_eq!(report.runs.len(), 6, "{features:?}");
        assert_eq!(calls, 6);
        assert_eq!(report.features, features);
        for run in &report.runs {
            for t in &run.logit_adjust {
                for v in [t.accuracy, t.macro_f1, t.weighted_f1] {
                    assert!((0.0..=1.0).contains(&v), "{features:?}: {v}");
                }
            }
        }
        assert!(
            report.macro_f1.mean > 0.9,
            "{features:?} × {seeds}: macro-F1 {}",
            report.macro_f1.mean
        );
    }
}

#[test]
fn the_geometric_mean_is_a_distribution_between_its_inputs() {
    let a = [0.7f32, 0.2, 0.1];
    let b = [0.1f32, 0.6, 0.3];
    let g = geometric_mean(&a, &b);
    assert!((g.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    let raw: Vec<f32> = a.iter().zip(&b).map(|(p, q)| (p * q).sqrt()).collect();
    let z: f32 = raw.iter().sum();
    for (v, r) in g.iter().zip(&raw) {
        assert!((v - r / z).abs() < 1e-6);
    }
    assert_eq!(
        geometric_mean(&a, &a)
            .iter()
            .map(|v| (v * 1e5).round())
            .collect::<Vec<_>>(),
        a.iter().map(|v| (v * 1e5).round()).collect::<Vec<_>>()
    );
}
