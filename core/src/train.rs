//! Standard and adversarial training (PGD-AT, Madry et al. 2018; FGSM with a random start,
//! Wong et al. 2020), seeded and resumable from a checkpoint written mid-epoch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{
    AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig,
    momentum::MomentumConfig,
};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::attack::pgd::StepSize;
use crate::attack::{Attack, Norm, PgdConfig};
use crate::bundle::{seal, unseal};
use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::loss::cross_entropy;
use crate::model::{Model, ModelConfig};

fn positive(x: f32) -> bool {
    x.is_finite() && x > 0.0
}

/// How training inputs are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Method {
    /// Clean inputs.
    Standard,
    /// Madry's PGD-AT: train on L∞ PGD examples (random start).
    PgdAt {
        eps: f32,
        steps: usize,
        step_size: f32,
    },
    /// "Fast AT": FGSM from a uniform random start with step `alpha`.
    FgsmRs { eps: f32, alpha: f32 },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Standard => "standard",
            Method::PgdAt { .. } => "pgd-at",
            Method::FgsmRs { .. } => "fgsm-rs",
        }
    }

    fn eps(&self) -> f32 {
        match self {
            Method::Standard => 0.0,
            Method::PgdAt { eps, .. } | Method::FgsmRs { eps, .. } => *eps,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// A complete, validated training recipe. Stored in bundles and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    pub weight_decay: f64,
    /// Epochs after which the learning rate is multiplied by `lr_gamma`.
    pub milestones: Vec<usize>,
    pub lr_gamma: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// ε grows linearly from 0 to its target over this many epochs (0: no ramp).
    pub eps_ramp_epochs: f32,
    pub seed: u64,
    /// Write a checkpoint every this many steps (and at each epoch's end).
    pub checkpoint_every: usize,
    /// After each epoch, attack the first `val_pgd_samples` validation images with L∞ PGD of
    /// this many steps at the method's ε (step 2.5·ε/steps, random start); 0: no robust
    /// validation.
    #[serde(default)]
    pub val_pgd_steps: usize,
    #[serde(default = "default_val_pgd_samples")]
    pub val_pgd_samples: usize,
    /// Return the epoch with the best validation score (robust accuracy when robust
    /// validation runs, else clean accuracy) instead of the last: early stopping against
    /// robust overfitting, chosen on held-out training data only.
    #[serde(default)]
    pub keep_best: bool,
}

fn default_val_pgd_samples() -> usize {
    1000
}

impl TrainConfig {
    pub fn new(method: Method) -> Self {
        Self {
            method,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            milestones: vec![],
            lr_gamma: 0.1,
            epochs: 1,
            batch_size: 128,
            eps_ramp_epochs: 0.0,
            seed: 0,
            checkpoint_every: 100,
            val_pgd_steps: 0,
            val_pgd_samples: default_val_pgd_samples(),
            keep_best: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |r: String| Err(Error::invalid("training config", r));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch size must be ≥ 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay < 0.0 {
            return bad("momentum must be in [0, 1) and weight decay ≥ 0".into());
        }
        if !(self.eps_ramp_epochs.is_finite() && self.eps_ramp_epochs >= 0.0) {
            return bad("eps ramp must be ≥ 0 epochs".into());
        }
        if self.val_pgd_steps > 0 && (self.method.eps() <= 0.0 || self.val_pgd_samples == 0) {
            return bad(
                "robust validation needs an adversarial method (its ε) and ≥ 1 sample".into(),
            );
        }
        match &self.method {
            Method::Standard => {}
            Method::PgdAt {
                eps,
                steps,
                step_size,
            } => {
                if !(positive(*eps) && *steps > 0 && positive(*step_size)) {
                    return bad("pgd-at needs eps > 0, steps ≥ 1 and step size > 0".into());
                }
            }
            Method::FgsmRs { eps, alpha } => {
                if !(positive(*eps) && positive(*alpha)) {
                    return bad("fgsm-rs needs eps > 0 and alpha > 0".into());
                }
            }
        }
        Ok(())
    }

    fn optimizer(&self) -> ModuleOptimizer {
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.optimizer {
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::Sgd => SgdConfig::new()
                .with_momentum(Some(MomentumConfig::new().with_momentum(self.momentum)))
                .with_weight_decay(decay)
                .init(),
        }
    }

    fn lr_at(&self, epoch: usize) -> f64 {
        let drops = self.milestones.iter().filter(|&&m| epoch >= m).count();
        self.lr * self.lr_gamma.powi(drops as i32)
    }

    /// ε at a fractional epoch position, following the ramp.
    fn eps_at(&self, epoch_pos: f32) -> f32 {
        let target = self.method.eps();
        if self.eps_ramp_epochs > 0.0 {
            target * (epoch_pos / self.eps_ramp_epochs).min(1.0)
        } else {
            target
        }
    }
}

/// Metrics of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    /// Mean loss on the inputs trained on (adversarial ones for adversarial training).
    pub train_loss: f64,
    /// Accuracy on the inputs trained on.
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
}

/// Where and how often checkpoints are written.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    pub path: PathBuf,
    /// Continue from `path` if it exists.
    pub resume: bool,
    /// Stop (as if killed) after this many steps in this process; for tests.
    pub stop_after_steps: Option<usize>,
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

const CHECKPOINT_MAGIC: &[u8; 8] = b"RMPTCKPT";
const CHECKPOINT_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointHeader {
    config: TrainConfig,
    model: ModelConfig,
    /// The next step to run: epoch and batch index within it.
    epoch: usize,
    batch: usize,
    history: Vec<EpochMetrics>,
    running: Running,
    /// The epoch whose weights the third section holds (`keep_best`).
    #[serde(default)]
    best_epoch: Option<usize>,
}

impl CheckpointHeader {
    /// The state of a run whose next step is `(epoch, batch)`.
    fn at(
        config: &TrainConfig,
        model: &ModelConfig,
        (epoch, batch): (usize, usize),
        history: &[EpochMetrics],
        running: &Running,
        best: Option<&(usize, Model)>,
    ) -> Self {
        Self {
            config: config.clone(),
            model: model.clone(),
            epoch,
            batch,
            history: history.to_vec(),
            running: running.clone(),
            best_epoch: best.map(|b| b.0),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Running {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    seconds: f64,
}

fn save_checkpoint(
    path: &Path,
    header: &CheckpointHeader,
    model: &Model,
    optim: &ModuleOptimizer,
    best: Option<&(usize, Model)>,
) -> Result<()> {
    let ck = |e: String| Error::Checkpoint(e);
    let bytes = |m: &Model| {
        m.clone()
            .into_record()
            .into_bytes()
            .map_err(|e| ck(e.to_string()))
    };
    let weights = bytes(model)?;
    let best = match best {
        Some((_, m)) => bytes(m)?,
        None => Bytes::from_bytes_vec(Vec::new()),
    };
    let optim = optim.into_bytes().map_err(|e| ck(e.to_string()))?;
    let header = serde_json::to_vec(header).map_err(|e| ck(e.to_string()))?;
    crate::write_atomically(
        path,
        &seal(
            CHECKPOINT_MAGIC,
            CHECKPOINT_VERSION,
            &header,
            &[&weights, &optim, &best],
        ),
    )
}

type Restored = (
    CheckpointHeader,
    Model,
    ModuleOptimizer,
    Option<(usize, Model)>,
);

fn load_checkpoint(path: &Path, device: &Device, fresh_optim: ModuleOptimizer) -> Result<Restored> {
    let bytes = crate::read_file(path)?;
    let (header, sections) = unseal(
        &bytes,
        CHECKPOINT_MAGIC,
        CHECKPOINT_VERSION,
        3,
        "checkpoint",
    )
    .map_err(Error::Checkpoint)?;
    let header: CheckpointHeader = serde_json::from_slice(header)
        .map_err(|e| Error::Checkpoint(format!("unreadable header: {e}")))?;
    let load = |bytes: &[u8]| -> Result<Model> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| Error::Checkpoint(e.to_string()))?;
        header
            .model
            .init(device)?
            .try_load_record(record)
            .map_err(|e| Error::Checkpoint(e.to_string()))
    };
    let model = load(sections[0])?;
    let best = match header.best_epoch {
        Some(epoch) => Some((epoch, load(sections[2])?)),
        None => None,
    };
    let optim = fresh_optim
        .from_bytes(Bytes::from_bytes_vec(sections[1].to_vec()))
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    Ok((header, model, optim, best))
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
    let resume_from = checkpoint.filter(|c| c.resume && c.path.exists());
    let (mut model, mut history, start_epoch, start_batch, mut running, mut best) =
        match resume_from {
            Some(c) => {
                let (header, model, o, best) = load_checkpoint(&c.path, &device, optim)?;
                if header.config != *config || header.model != *model_config {
                    return Err(Error::Checkpoint(format!(
                        "{} was written by a run with another recipe or architecture",
                        c.path.display()
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
        let lr = config.lr_at(epoch);
        let batches = train_set.epoch_batches(config.batch_size, config.seed, epoch);
        let mut clock = Instant::now();
        for (b, indices) in batches.iter().enumerate().skip(first_batch) {
            let (x, y) = train_set.batch(indices, &device);
            let eps = config.eps_at(epoch as f32 + b as f32 / steps_per_epoch as f32);
            let seed = step_seed(config.seed, epoch, b);
            let (next, loss_value, correct) =
                train_step(&config.method, model, &mut optim, x, y, eps, lr, seed)?;
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

/// The optimiser a recipe asks for.
pub fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    config.optimizer()
}

/// One optimisation step: builds the method's inputs for the batch (at budget `eps`), takes
/// the cross-entropy gradient and updates the model. Returns the model, the batch's mean loss
/// and its number of correct predictions. `model` and `x` must be on an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    method: &Method,
    model: Model,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    eps: f32,
    lr: f64,
    seed: u64,
) -> Result<(Model, f64, usize)> {
    let inputs = adversarial_inputs(method, &model, x, y.clone(), eps, seed)?;
    let logits = model.forward(inputs);
    let loss = cross_entropy(logits.clone(), y.clone());
    let loss_value = loss.clone().into_scalar::<f32>() as f64;
    let correct = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    Ok((optim.step(lr, model, grads), loss_value, correct as usize))
}

/// The inputs one training step sees under `method`.
fn adversarial_inputs(
    method: &Method,
    model: &Model,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    eps: f32,
    seed: u64,
) -> Result<Tensor<4>> {
    let n = x.dims()[0];
    let attack = match method {
        Method::Standard => return Ok(x),
        _ if eps <= 0.0 => return Ok(x),
        Method::PgdAt {
            steps, step_size, ..
        } => PgdConfig {
            step_size: StepSize::Absolute(*step_size),
            ..PgdConfig::new(Norm::Linf, *steps)
        },
        Method::FgsmRs { eps: target, alpha } => PgdConfig {
            // Keep α/ε fixed while ε ramps.
            step_size: StepSize::Relative(alpha / target),
            ..PgdConfig::fgsm_rs()
        },
    }
    .init()?;
    Ok(attack.perturb(model, x, y, &vec![eps; n], seed)?.detach())
}

/// Clean accuracy with synchronous reads (native training only).
fn clean_accuracy_sync(model: &Model, data: &ImageDataset, batch: usize, device: &Device) -> f64 {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut correct = 0i64;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch) {
        let (x, y) = data.batch(chunk, &device);
        correct += model
            .forward(x)
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(y)
            .int()
            .sum()
            .into_scalar::<i64>();
    }
    correct as f64 / data.len().max(1) as f64
}

/// Accuracy under the recipe's validation PGD on the first `val_pgd_samples` images.
fn robust_accuracy_sync(
    model: &Model,
    data: &ImageDataset,
    config: &TrainConfig,
    device: &Device,
    seed: u64,
) -> Result<f64> {
    let eps = config.method.eps();
    let steps = config.val_pgd_steps;
    let attack = PgdConfig {
        step_size: StepSize::Absolute(2.5 * eps / steps as f32),
        ..PgdConfig::new(Norm::Linf, steps)
    }
    .init()?;
    let n = data.len().min(config.val_pgd_samples);
    let idx: Vec<usize> = (0..n).collect();
    let mut held = 0usize;
    for (b, chunk) in idx.chunks(250).enumerate() {
        let (x, y) = data.batch(chunk, device);
        let out = attack.run(
            model,
            x,
            y,
            &vec![eps; chunk.len()],
            seed.wrapping_add(b as u64),
        )?;
        let broken = out.success.int().sum().into_scalar::<i64>() as usize;
        held += chunk.len() - broken;
    }
    Ok(held as f64 / n.max(1) as f64)
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
