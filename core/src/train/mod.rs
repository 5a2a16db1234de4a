//! Standard and adversarial training (PGD-AT, Madry et al. 2018; FGSM with a random start,
//! Wong et al. 2020; SIA-AT on semantic + pixel examples), with options against class
//! imbalance (oversampling, weighted CE, focal loss, attribute jitter, SIA augmentation of rare
//! classes), seeded and resumable from a checkpoint written mid-epoch.
//!
//! `config` holds the recipe, `step` one optimisation step, `inner` the inner maximisations,
//! `checkpoint` the resumable state, `validate` the per-epoch validation; this module runs the
//! loop.

pub(crate) mod checkpoint;
mod config;
mod inner;
mod step;
mod validate;

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use checkpoint::CheckpointOptions;
pub use config::{Ancra, Balance, Method, OptimizerKind, TrainConfig};
pub use step::{optimizer, train_step};

use checkpoint::{CheckpointHeader, Running, differing_fields, load_checkpoint, save_checkpoint};
use step::StepPlan;
use validate::{clean_accuracy_sync, robust_accuracy_sync};

use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::model::{Model, ModelConfig};

/// Metrics of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    /// Mean loss on the inputs trained on (adversarial ones for adversarial training).
    pub train_loss: f64,
    /// Accuracy on the inputs trained on (for a reverse-attention model, of its auxiliary head:
    /// the final logits are gated by the true class in training).
    pub train_accuracy: f64,
    /// Clean accuracy on the validation slice, when one is given.
    pub val_accuracy: Option<f64>,
    /// Accuracy under the validation PGD attack, when robust validation runs.
    #[serde(default)]
    pub val_robust_accuracy: Option<f64>,
    pub seconds: f64,
}

impl EpochMetrics {
    /// What `keep_best` maximises.
    fn score(&self) -> Option<f64> {
        self.val_robust_accuracy.or(self.val_accuracy)
    }
}

/// What the training loop reports as it goes.
pub enum TrainEvent<'a> {
    Start {
        epochs: usize,
        steps_per_epoch: usize,
        resumed_at: (usize, usize),
    },
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
    },
    Epoch(&'a EpochMetrics),
    Checkpoint {
        path: &'a Path,
    },
    /// `patience` ran out: training ends before `epochs`. `best_epoch` first reached the
    /// best validation score.
    Stopped {
        best_epoch: usize,
    },
}

/// The outcome of [`train`].
pub struct Trained {
    pub model: Model,
    pub history: Vec<EpochMetrics>,
    /// The epoch whose weights `model` holds (the last one unless `keep_best`).
    pub epoch: Option<usize>,
    /// False when the run stopped early through `stop_after_steps`.
    pub completed: bool,
}

fn step_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((epoch as u64) << 32)
        ^ (batch as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// Trains a model from `model_config` on `train_set`. `device` is any Burn device; autodiff
/// is switched on here. Deterministic for a given seed on a given backend.
pub fn train(
    model_config: &ModelConfig,
    config: &TrainConfig,
    train_set: &ImageDataset,
    val_set: Option<&ImageDataset>,
    device: &Device,
    checkpoint: Option<&CheckpointOptions>,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Trained> {
    train_on(
        std::slice::from_ref(device),
        model_config,
        config,
        train_set,
        val_set,
        checkpoint,
        on_event,
    )
}

/// [`train`], data-parallel over `devices`: every step splits its batch over them (see
/// `StepPlan::step_on`); the model, the optimiser and validation live on the first. One
/// device is plain [`train`].
pub fn train_on(
    devices: &[Device],
    model_config: &ModelConfig,
    config: &TrainConfig,
    train_set: &ImageDataset,
    val_set: Option<&ImageDataset>,
    checkpoint: Option<&CheckpointOptions>,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Trained> {
    let Some(device) = devices.first() else {
        return Err(Error::invalid("training", "needs at least one device"));
    };
    config.validate()?;
    model_config.validate()?;
    if train_set.is_empty() {
        return Err(Error::invalid("training set", "is empty"));
    }
    if train_set.shape() != model_config.input_shape() {
        return Err(Error::invalid(
            "training set",
            format!(
                "images are {:?}, the model takes {:?}",
                train_set.shape(),
                model_config.input_shape()
            ),
        ));
    }
    if config.keep_best && val_set.is_none_or(|v| v.is_empty()) {
        return Err(Error::invalid(
            "training config",
            "keeping the best epoch needs a validation set",
        ));
    }
    let device = device.clone().autodiff();
    let mut optim = config.optimizer();
    let data = match val_set {
        Some(v) => format!("{}+{}", train_set.fingerprint(), v.fingerprint()),
        None => train_set.fingerprint(),
    };
    let resume_from = checkpoint.filter(|c| c.resume && c.path.exists());
    let (mut model, mut history, start_epoch, start_batch, mut running, mut best) =
        match resume_from {
            Some(c) => {
                let (header, model, o, best) = load_checkpoint(&c.path, &device, optim)?;
                // Resuming under other settings or data would silently train something that
                // neither run asked for: refuse, naming what differs.
                let mut differs = Vec::new();
                let recipe = differing_fields(&header.config, config);
                if !recipe.is_empty() {
                    differs.push(recipe.join(", "));
                }
                if header.model != *model_config {
                    differs.push(format!(
                        "architecture ({})",
                        differing_fields(&header.model, model_config).join(", ")
                    ));
                }
                if header.data.as_ref().is_some_and(|d| *d != data) {
                    differs.push(
                        "training data (dataset, --limit, --val-size, --long-tail or the files)"
                            .into(),
                    );
                }
                if !differs.is_empty() {
                    return Err(Error::Checkpoint(format!(
                        "{} was written by a run with another recipe, architecture or data: {} \
                         differ (remove it, or give another --checkpoint, to start afresh)",
                        c.path.display(),
                        differs.join("; ")
                    )));
                }
                optim = o;
                (
                    model,
                    header.history,
                    header.epoch,
                    header.batch,
                    header.running,
                    best,
                )
            }
            None => (
                initial_model(model_config, config.seed, &device)?,
                Vec::new(),
                0,
                0,
                Running::default(),
                None,
            ),
        };

    let ra_model = model_config.reverse_attention();
    if ra_model != config.ancra.as_ref().is_some_and(|a| a.ra) {
        return Err(Error::invalid(
            "training config",
            if ra_model {
                "a reverse-attention model trains with ANCRA's RA switched on"
            } else {
                "ANCRA's RA needs a model built with reverse attention"
            },
        ));
    }
    let plan = StepPlan::new(config, train_set)?;
    let steps_per_epoch = train_set.len().div_ceil(config.batch_size);
    on_event(TrainEvent::Start {
        epochs: config.epochs,
        steps_per_epoch,
        resumed_at: (start_epoch, start_batch),
    });
    let mut steps_this_process = 0usize;
    let mut epoch = start_epoch;
    let mut first_batch = start_batch;
    while epoch < config.epochs {
        // From the history alone, so that a resumed run stops where the original did.
        if let Some(best_epoch) = config.patience.and_then(|p| stalled(&history, p)) {
            on_event(TrainEvent::Stopped { best_epoch });
            break;
        }
        let lr = config.lr_at(epoch);
        let batches = if config.balance.oversamples() {
            train_set.balanced_batches(config.batch_size, config.seed, epoch)
        } else {
            train_set.epoch_batches(config.batch_size, config.seed, epoch)
        };
        let mut clock = Instant::now();
        for (b, indices) in batches.iter().enumerate().skip(first_batch) {
            let (x, y) = train_set.batch(indices, &device);
            let eps = config.eps_at(epoch as f32 + b as f32 / steps_per_epoch as f32);
            let seed = step_seed(config.seed, epoch, b);
            let rows = plan.rows_to_augment(indices, &train_set.labels, seed);
            let (next, loss_value, correct) = plan.step_on(
                devices,
                &config.method,
                model,
                &mut optim,
                (x, y),
                &rows,
                eps,
                lr,
                seed,
            )?;
            model = next;

            running.loss_sum += loss_value * indices.len() as f64;
            running.correct += correct;
            running.seen += indices.len();
            steps_this_process += 1;
            on_event(TrainEvent::Step {
                epoch,
                step: b,
                loss: loss_value,
            });

            let next = (epoch, b + 1);
            if let Some(c) = checkpoint {
                if (b + 1) % config.checkpoint_every.max(1) == 0 && b + 1 < batches.len() {
                    running.seconds += clock.elapsed().as_secs_f64();
                    clock = Instant::now();
                    let header = CheckpointHeader::at(
                        config,
                        model_config,
                        &data,
                        next,
                        &history,
                        &running,
                        best.as_ref(),
                    );
                    save_checkpoint(&c.path, &header, &model, &optim, best.as_ref())?;
                    on_event(TrainEvent::Checkpoint { path: &c.path });
                }
                if c.stop_after_steps.is_some_and(|s| steps_this_process >= s) {
                    return Ok(Trained {
                        model,
                        history,
                        epoch: None,
                        completed: false,
                    });
                }
            }
        }
        running.seconds += clock.elapsed().as_secs_f64();
        let val_accuracy = val_set.map(|v| clean_accuracy_sync(&model, v, 500, &device));
        let val_robust_accuracy = match val_set {
            Some(v) if config.val_pgd_steps > 0 => Some(robust_accuracy_sync(
                &model,
                v,
                config,
                &device,
                step_seed(config.seed, epoch, usize::MAX),
            )?),
            _ => None,
        };
        let metrics = EpochMetrics {
            epoch,
            lr,
            train_loss: running.loss_sum / running.seen.max(1) as f64,
            train_accuracy: running.correct as f64 / running.seen.max(1) as f64,
            val_accuracy,
            val_robust_accuracy,
            seconds: running.seconds,
        };
        on_event(TrainEvent::Epoch(&metrics));
        if config.keep_best {
            let best_score = best
                .as_ref()
                .and_then(|(e, _)| history.get(*e))
                .and_then(EpochMetrics::score);
            // Ties go to the later epoch, which has trained longer.
            if metrics.score() >= best_score {
                best = Some((epoch, model.clone()));
            }
        }
        history.push(metrics);
        running = Running::default();
        epoch += 1;
        first_batch = 0;
        if let Some(c) = checkpoint {
            let header = CheckpointHeader::at(
                config,
                model_config,
                &data,
                (epoch, 0),
                &history,
                &running,
                best.as_ref(),
            );
            save_checkpoint(&c.path, &header, &model, &optim, best.as_ref())?;
            on_event(TrainEvent::Checkpoint { path: &c.path });
        }
    }
    let (epoch, model) = match best {
        Some((e, m)) => (e, m),
        None => (config.epochs - 1, model),
    };
    Ok(Trained {
        model,
        history,
        epoch: Some(epoch),
        completed: true,
    })
}

/// The epoch that first reached the best validation score, when the `patience` epochs after
/// it have not beaten it (a tie does not).
fn stalled(history: &[EpochMetrics], patience: usize) -> Option<usize> {
    let mut first_best: Option<(usize, f64)> = None;
    for (e, score) in history
        .iter()
        .enumerate()
        .filter_map(|(e, m)| Some((e, m.score()?)))
    {
        if first_best.is_none_or(|(_, b)| score > b) {
            first_best = Some((e, score));
        }
    }
    let (e, _) = first_best?;
    (history.len() - 1 - e >= patience).then_some(e)
}

/// Initial weights drawn on the CPU from `seed`, then placed on `device`: every backend
/// starts from the same point, so runs on different devices can be compared.
fn initial_model(config: &ModelConfig, seed: u64, device: &Device) -> Result<Model> {
    let record = config.init_seeded(&Device::flex(), seed)?.into_record();
    config
        .init(device)?
        .try_load_record(record)
        .map_err(|e| Error::invalid("initial model", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(scores: &[Option<f64>]) -> Vec<EpochMetrics> {
        scores
            .iter()
            .enumerate()
            .map(|(epoch, s)| EpochMetrics {
                epoch,
                lr: 1e-3,
                train_loss: 0.0,
                train_accuracy: 0.0,
                val_accuracy: *s,
                val_robust_accuracy: None,
                seconds: 0.0,
            })
            .collect()
    }

    #[test]
    fn stalled_counts_from_the_first_epoch_at_the_best_score() {
        let s =
            |v: &[f64], p| stalled(&history(&v.iter().map(|x| Some(*x)).collect::<Vec<_>>()), p);
        assert_eq!(stalled(&history(&[]), 1), None);
        assert_eq!(stalled(&history(&[None, None]), 1), None);
        // A tie does not beat the best.
        assert_eq!(s(&[0.5, 0.7, 0.7], 1), Some(1));
        assert_eq!(s(&[0.5, 0.7, 0.7], 2), None);
        // A rise that stays below the best does not reset the count.
        assert_eq!(s(&[0.5, 0.7, 0.6, 0.65], 2), Some(1));
        assert_eq!(s(&[0.5, 0.7, 0.6, 0.75], 2), None);
        assert_eq!(s(&[0.9, 0.1, 0.2, 0.3], 3), Some(0));
    }
}
