//! Repeated stratified k-fold cross-validation: the splits, and the whole pipeline of
//! `rampart text cv` (train on the training folds, score every held-out fold, summarise).

use std::collections::HashSet;

use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::classifier::{TextLoss, TextTrainConfig, logit_adjustment, predict_proba, train_mlp};
use super::data::TextDataset;
use super::encoder::{SentenceEncoder, TokenStates};
use super::finetune::{TuneData, fine_tune};
use super::metrics::{classification_report, cv_interval95, mean_sd};
use super::tfidf::Tfidf;
use crate::argmax;
use crate::data::class_counts;
use crate::error::{Error, Result};

/// The fold (0..k) of each sample: every class is shuffled (seeded) and dealt round-robin
/// over the folds, so each fold holds ⌊n_c/k⌋ or ⌈n_c/k⌉ samples of class c. Successive classes
/// continue the deal where the previous one stopped, so small classes do not all start in
/// fold 0.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Result<Vec<usize>> {
    if k < 2 || k > labels.len() {
        return Err(Error::invalid(
            "cross-validation",
            format!(
                "needs 2 ≤ folds ≤ samples, got {k} folds for {} samples",
                labels.len()
            ),
        ));
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0usize; labels.len()];
    let mut next = 0usize;
    for c in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold[i] = next % k;
            next += 1;
        }
    }
    Ok(fold)
}

/// The normalised geometric mean of two distributions (the mean of their log-probabilities).
pub fn geometric_mean(a: &[f32], b: &[f32]) -> Vec<f32> {
    let g: Vec<f32> = a
        .iter()
        .zip(b)
        .map(|(p, q)| (p.max(1e-30) * q.max(1e-30)).sqrt())
        .collect();
    let z: f32 = g.iter().sum();
    g.iter().map(|v| v / z).collect()
}

/// The input features of a cross-validated classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Features {
    /// Sentence embeddings.
    Embedding,
    /// TF-IDF of words and word pairs, fit on the training fold.
    Tfidf,
    /// Both, concatenated.
    Both,
    /// Stacked: the recipe on embeddings and a logistic regression on TF-IDF (cross-entropy,
    /// no RAT, the recipe's optimiser settings), their log-probabilities averaged with equal
    /// weights (nothing tuned, so nothing can leak from the held-out fold).
    Stack,
}

/// What to cross-validate: `repeats` × `folds` runs of the recipe `config`, each scored at
/// every post-hoc logit adjustment τ in `logit_adjust` (the first one is the headline).
#[derive(Debug, Clone)]
pub struct CvSpec {
    pub folds: usize,
    pub repeats: usize,
    pub features: Features,
    pub logit_adjust: Vec<f32>,
    pub config: TextTrainConfig,
    /// The augmentation's name, for the report.
    pub augment: String,
}

/// The reports and their embeddings; augmented reports join a training fold only when none
/// of their source reports is held out in it.
pub struct CvData<'a> {
    pub base: &'a TextDataset,
    pub base_embeddings: &'a [Vec<f32>],
    pub augmented: Option<(&'a TextDataset, &'a [Vec<f32>])>,
    /// For a recipe that fine-tunes: the encoder, and the token vectors under its fine-tuned
    /// layers of the base reports, then of the augmented ones (in the datasets' order).
    pub fine_tune: Option<CvFineTune<'a>>,
}

/// What cross-validating a fine-tuning recipe needs besides the embeddings.
pub struct CvFineTune<'a> {
    pub encoder: &'a SentenceEncoder,
    pub base_states: &'a [TokenStates],
    pub augmented_states: &'a [TokenStates],
}

/// Mean and standard deviation over the runs, and a 95 % interval for the mean that allows
/// for the runs' overlapping training folds ([`cv_interval95`], within [0, 1]; absent in
/// reports written before it existed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    pub mean: f64,
    pub sd: f64,
    #[serde(default)]
    pub ci95: Option<[f64; 2]>,
}

impl MeanSd {
    fn of(values: impl Iterator<Item = f64>, folds: usize) -> Self {
        let values: Vec<f64> = values.collect();
        let (mean, sd) = mean_sd(&values);
        // Every score here is a fraction: an interval past 0 or 1 says nothing more.
        let ci95 = Some(cv_interval95(&values, folds))
            .filter(|[lo, _]| lo.is_finite())
            .map(|b| b.map(|v| v.clamp(0.0, 1.0)));
        Self { mean, sd, ci95 }
    }
}

/// One run's scores at one τ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TauScores {
    pub tau: f32,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub per_class_f1: Vec<f64>,
}

/// One fold of one repeat: its scores at the first τ, then at every τ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvRun {
    #[serde(flatten)]
    pub headline: TauScores,
    pub repeat: usize,
    pub fold: usize,
    pub logit_adjust: Vec<TauScores>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassF1 {
    pub class: String,
    pub f1: MeanSd,
}

/// The runs summarised at one τ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TauSummary {
    pub tau: f32,
    pub accuracy: MeanSd,
    pub macro_f1: MeanSd,
    pub weighted_f1: MeanSd,
    pub per_class: Vec<ClassF1>,
}

/// `rampart text cv`'s report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    pub folds: usize,
    pub repeats: usize,
    pub reports: usize,
    pub augment: String,
    pub features: Features,
    pub config: TextTrainConfig,
    pub accuracy: MeanSd,
    pub macro_f1: MeanSd,
    pub weighted_f1: MeanSd,
    pub logit_adjust: Vec<TauSummary>,
    pub runs: Vec<CvRun>,
}

/// Repeated stratified cross-validation of a recipe. Each run trains on its training folds
/// (plus the augmentations of their reports) with its own seed, and is scored on the held-out
/// fold; `progress(done, total)` counts runs.
pub async fn cross_validate(
    data: &CvData<'_>,
    spec: &CvSpec,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CvReport> {
    if spec.logit_adjust.is_empty() || spec.logit_adjust.iter().any(|t| !t.is_finite()) {
        return Err(Error::invalid(
            "cross-validation",
            "needs at least one finite logit adjustment τ",
        ));
    }
    if spec.config.fine_tune.is_some() && spec.features != Features::Embedding {
        return Err(Error::invalid(
            "cross-validation",
            "fine-tuning trains the encoder: it takes --features embedding",
        ));
    }
    let base = data.base;
    if data.base_embeddings.len() != base.len()
        || data.augmented.is_some_and(|(d, x)| d.len() != x.len())
        || data.fine_tune.as_ref().is_some_and(|t| {
            t.base_states.len() != base.len()
                || t.augmented_states.len() != data.augmented.map_or(0, |(d, _)| d.len())
        })
    {
        return Err(Error::invalid(
            "cross-validation",
            "one embedding per report is needed",
        ));
    }
    let labels = base.labels();
    let k = base.num_classes();
    let total = spec.folds * spec.repeats;
    let mut runs = Vec::with_capacity(total);
    for r in 0..spec.repeats {
        let fold = stratified_folds(
            &labels,
            spec.folds,
            spec.config.seed.wrapping_add(1000 + r as u64),
        )?;
        for f in 0..spec.folds {
            let held: HashSet<&str> = base
                .records
                .iter()
                .zip(&fold)
                .filter(|(_, k)| **k == f)
                .map(|(rec, _)| rec.id.as_str())
                .collect();
            let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // The token states in the same order, when fine-tuning.
            let (mut ts, mut vs): (Vec<&TokenStates>, Vec<&TokenStates>) = (Vec::new(), Vec::new());
            let state = |i: usize, augmented: bool| {
                data.fine_tune.as_ref().map(|t| {
                    if augmented {
                        &t.augmented_states[i]
                    } else {
                        &t.base_states[i]
                    }
                })
            };
            // The texts in the same order, for lexical features.
            let (mut train_texts, mut val_texts): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
            for (i, (((v, &c), &k), rec)) in data
                .base_embeddings
                .iter()
                .zip(&labels)
                .zip(&fold)
                .zip(&base.records)
                .enumerate()
            {
                if k == f {
                    vx.push(v.clone());
                    vy.push(c);
                    val_texts.push(&rec.text);
                    vs.extend(state(i, false));
                } else {
                    tx.push(v.clone());
                    ty.push(c);
                    train_texts.push(&rec.text);
                    ts.extend(state(i, false));
                }
            }
            if let Some((aug, xa)) = data.augmented {
                for (i, (rec, v)) in aug.records.iter().zip(xa).enumerate() {
                    // An augmentation of a held-out report would leak it into training.
                    if !rec.sources.iter().any(|s| held.contains(s.as_str())) {
                        tx.push(v.clone());
                        ty.push(rec.label);
                        train_texts.push(&rec.text);
                        ts.extend(state(i, true));
                    }
                }
            }
            let run_config = TextTrainConfig {
                seed: spec.config.seed.wrapping_add((r * spec.folds + f) as u64),
                ..spec.config.clone()
            };
            let probs = match spec.features {
                Features::Embedding => {
                    let model = train_mlp(&tx, &ty, k, &run_config, device, &mut |_| {})?;
                    match (&run_config.fine_tune, &data.fine_tune) {
                        (None, _) => predict_proba(&model, &vx, device).await?,
                        (Some(_), None) => {
                            return Err(Error::invalid(
                                "cross-validation",
                                "a fine-tuning recipe needs the encoder and token states",
                            ));
                        }
                        // No validation reports inside a training fold: the recipe's epochs
                        // run in full (nothing is chosen on the held-out fold).
                        (Some(_), Some(t)) => {
                            let tuned = fine_tune(
                                t.encoder,
                                model,
                                TuneData {
                                    states: &ts,
                                    labels: &ty,
                                },
                                None,
                                &run_config,
                                device,
                                None,
                                &mut |_| {},
                            )?;
                            super::finetune::predict_proba(&tuned.model, &vs, device)
                        }
                    }
                }
                Features::Tfidf | Features::Both => {
                    // Fit the vocabulary on the training fold only.
                    let tfidf = Tfidf::fit(&train_texts, 2, 20_000, true)?;
                    let both = spec.features == Features::Both;
                    let lexical = |texts: &[&str], dense: &mut Vec<Vec<f32>>| {
                        for (i, t) in texts.iter().enumerate() {
                            let v = tfidf.transform(t);
                            if both {
                                dense[i].extend(v);
                            } else {
                                dense[i] = v;
                            }
                        }
                    };
                    lexical(&train_texts, &mut tx);
                    lexical(&val_texts, &mut vx);
                    let model = train_mlp(&tx, &ty, k, &run_config, device, &mut |_| {})?;
                    predict_proba(&model, &vx, device).await?
                }
                Features::Stack => {
                    let model = train_mlp(&tx, &ty, k, &run_config, device, &mut |_| {})?;
                    let dense = predict_proba(&model, &vx, device).await?;
                    let tfidf = Tfidf::fit(&train_texts, 2, 20_000, true)?;
                    let lexical = |texts: &[&str]| {
                        texts.iter().map(|t| tfidf.transform(t)).collect::<Vec<_>>()
                    };
                    let linear = TextTrainConfig {
                        hidden: Vec::new(),
                        dropout: 0.0,
                        loss: TextLoss::CrossEntropy,
                        rat: None,
                        seeds: 1,
                        ..run_config.clone()
                    };
                    let model =
                        train_mlp(&lexical(&train_texts), &ty, k, &linear, device, &mut |_| {})?;
                    let sparse = predict_proba(&model, &lexical(&val_texts), device).await?;
                    dense
                        .iter()
                        .zip(&sparse)
                        .map(|(a, b)| geometric_mean(a, b))
                        .collect()
                }
            };
            let counts = class_counts(&ty, k);
            let per_tau = spec
                .logit_adjust
                .iter()
                .map(|&tau| {
                    let shift = logit_adjustment(&counts, tau);
                    let pred: Vec<usize> = probs
                        .iter()
                        .map(|p| {
                            let z: Vec<f32> = p
                                .iter()
                                .zip(&shift)
                                .map(|(p, s)| p.max(1e-30).ln() + s)
                                .collect();
                            argmax(&z)
                        })
                        .collect();
                    let report = classification_report(&vy, &pred, &base.class_names)?;
                    Ok(TauScores {
                        tau,
                        accuracy: report.accuracy,
                        macro_f1: report.macro_f1,
                        weighted_f1: report.weighted_f1,
                        per_class_f1: report.per_class.iter().map(|c| c.f1).collect(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            runs.push(CvRun {
                headline: per_tau[0].clone(),
                repeat: r,
                fold: f,
                logit_adjust: per_tau,
            });
            progress(runs.len(), total);
        }
    }
    let at = |t: usize| runs.iter().map(move |r| &r.logit_adjust[t]);
    let logit_adjust: Vec<TauSummary> = spec
        .logit_adjust
        .iter()
        .enumerate()
        .map(|(t, &tau)| TauSummary {
            tau,
            accuracy: MeanSd::of(at(t).map(|s| s.accuracy), spec.folds),
            macro_f1: MeanSd::of(at(t).map(|s| s.macro_f1), spec.folds),
            weighted_f1: MeanSd::of(at(t).map(|s| s.weighted_f1), spec.folds),
            per_class: (0..k)
                .map(|c| ClassF1 {
                    class: base.class_names[c].clone(),
                    f1: MeanSd::of(at(t).map(|s| s.per_class_f1[c]), spec.folds),
                })
                .collect(),
        })
        .collect();
    let headline = &logit_adjust[0];
    Ok(CvReport {
        folds: spec.folds,
        repeats: spec.repeats,
        reports: base.len(),
        augment: spec.augment.clone(),
        features: spec.features,
        config: spec.config.clone(),
        accuracy: headline.accuracy,
        macro_f1: headline.macro_f1,
        weighted_f1: headline.weighted_f1,
        logit_adjust: logit_adjust.clone(),
        runs,
    })
}
