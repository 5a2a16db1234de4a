//! Standard and adversarial training (PGD-AT, Madry et al. 2018; FGSM with a random start,
//! Wong et al. 2020; SIA-AT on semantic + pixel examples), with options against class
//! imbalance (oversampling, weighted CE, focal loss, attribute jitter, SIA augmentation of rare
//! classes), seeded and resumable from a checkpoint written mid-epoch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{
    AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig,
    momentum::MomentumConfig,
};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::attack::pgd::StepSize;
use crate::attack::ra::{RaAttack, RaAttackKind};
use crate::attack::semantic::{Attribute, AttributeSpace, Sia, SiaConfig, elastic_field};
use crate::attack::{Attack, Norm, PgdConfig, project};
use crate::bundle::{seal, unseal};
use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::loss::{
    FocalLoss, anc_loss, cross_entropy, inverse_frequency_weights, mart_loss, trades_loss,
    weighted_cross_entropy,
};
use crate::model::{Model, ModelConfig, RaMask, RaOutput};

fn one() -> f32 {
    1.0
}

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
    /// TRADES (Zhang et al. 2019): `CE(f(x)) + β·KL(p(x) ‖ p(x_adv))`, x_adv from `steps` of
    /// signed ascent on that KL, started at x + 0.001·N(0, 1) (official code: β = 6).
    Trades {
        eps: f32,
        steps: usize,
        step_size: f32,
        beta: f32,
    },
    /// MART (Wang et al. 2020): boosted CE on PGD examples plus β × the misclassification-
    /// weighted KL (official code: β = 6).
    Mart {
        eps: f32,
        steps: usize,
        step_size: f32,
        beta: f32,
    },
    /// SIA-AT: train on SIA examples — every attribute of the image type, bounded by
    /// `scale` × its range, plus an L∞ pixel budget `eps` (0: purely semantic); `steps` of
    /// joint ascent on the cross-entropy (no early stop), attribute steps of
    /// `attribute_step` of the range. The ε ramp scales the attribute bounds too.
    SiaAt {
        eps: f32,
        steps: usize,
        attribute_step: f32,
        #[serde(default = "one")]
        scale: f32,
    },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Standard => "standard",
            Method::PgdAt { .. } => "pgd-at",
            Method::FgsmRs { .. } => "fgsm-rs",
            Method::SiaAt { .. } => "sia-at",
            Method::Trades { .. } => "trades",
            Method::Mart { .. } => "mart",
        }
    }

    fn eps(&self) -> f32 {
        match self {
            Method::Standard => 0.0,
            Method::PgdAt { eps, .. }
            | Method::FgsmRs { eps, .. }
            | Method::SiaAt { eps, .. }
            | Method::Trades { eps, .. }
            | Method::Mart { eps, .. } => *eps,
        }
    }
}

/// How training counters class imbalance. The sampling options draw class-balanced batches
/// ([`ImageDataset::balanced_batches`]); jitter and SIA then transform a draw of class `c`
/// with probability `1 − n_c / n_max` — the share of that class's draws that are repeats —
/// so head classes stay as they are and tail classes are mostly transformed repeats.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Balance {
    #[default]
    None,
    /// Random oversampling: class-balanced draws with replacement.
    Oversample,
    /// Cross-entropy weighted by inverse class frequency, `N / (K n_c)`.
    Weighted,
    /// Focal loss `(1 − p_y)^γ CE` (no class weights).
    Focal { gamma: f32 },
    /// Oversampling, repeats transformed by random attribute coefficients drawn uniformly
    /// from `scale` × each attribute's range: standard augmentation, no attack.
    Jitter { scale: f32 },
    /// Oversampling, repeats replaced by SIA examples against the current model: attributes
    /// only (no pixel budget), bounds `scale` × each range, `steps` of `attribute_step`,
    /// stopping per sample once misclassified.
    Sia {
        steps: usize,
        attribute_step: f32,
        scale: f32,
    },
}

impl Balance {
    pub fn name(&self) -> &'static str {
        match self {
            Balance::None => "none",
            Balance::Oversample => "oversample",
            Balance::Weighted => "weighted",
            Balance::Focal { .. } => "focal",
            Balance::Jitter { .. } => "jitter",
            Balance::Sia { .. } => "sia",
        }
    }

    fn oversamples(&self) -> bool {
        matches!(
            self,
            Balance::Oversample | Balance::Jitter { .. } | Balance::Sia { .. }
        )
    }

    fn validate(&self) -> Result<()> {
        let ok = match self {
            Balance::None | Balance::Oversample | Balance::Weighted => true,
            Balance::Focal { gamma } => gamma.is_finite() && *gamma >= 0.0,
            Balance::Jitter { scale } => *scale > 0.0 && *scale <= 1.0,
            Balance::Sia {
                steps,
                attribute_step,
                scale,
            } => *steps > 0 && positive(*attribute_step) && *scale > 0.0 && *scale <= 1.0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "training config",
                format!(
                    "balance {}: gamma must be ≥ 0, scale in (0, 1], steps ≥ 1, attribute step > 0",
                    self.name()
                ),
            ))
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
    /// this many steps at the method's ε (step 2.5·ε/steps, random start) — for a
    /// reverse-attention model the worst case with PGD through its auxiliary heads; 0: no
    /// robust validation.
    #[serde(default)]
    pub val_pgd_steps: usize,
    #[serde(default = "default_val_pgd_samples")]
    pub val_pgd_samples: usize,
    /// Return the epoch with the best validation score (robust accuracy when robust
    /// validation runs, else clean accuracy) instead of the last: early stopping against
    /// robust overfitting, chosen on held-out training data only.
    #[serde(default)]
    pub keep_best: bool,
    /// With `keep_best`: stop once this many epochs in a row have not beaten the best
    /// validation score (a tie does not beat it): robust overfitting has set in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Counter-measure against class imbalance.
    #[serde(default)]
    pub balance: Balance,
    /// ANCRA's additions to the method (arXiv 2310.03358); `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancra: Option<Ancra>,
}

/// ANCRA: *alignment* by reverse attention (RA: the model gates its penultimate features by
/// the true class's classifier weights in training and trains its auxiliary head too) and
/// *exclusion* by the asymmetric negative contrast (ANC) against negatives — examples of
/// another class in the batch, pushed by a targeted PGD towards the anchor's class. Each part
/// can be switched off for the ablation; RA needs a model built with reverse attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ancra {
    pub ra: bool,
    pub anc: bool,
    /// ζ, the weight of ANC (official: 3).
    pub zeta: f32,
    /// Weight of the auxiliary heads' mean loss, in the main and the ANC terms (official: 2).
    pub aux_weight: f32,
    /// Targeted PGD steps that make the negatives (official: 10).
    pub negative_steps: usize,
}

impl Ancra {
    /// The official settings with both parts on.
    pub fn official() -> Self {
        Self {
            ra: true,
            anc: true,
            zeta: 3.0,
            aux_weight: 2.0,
            negative_steps: 10,
        }
    }
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
            patience: None,
            balance: Balance::None,
            ancra: None,
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
        if self.patience.is_some() && !self.keep_best {
            return bad("patience stops at the best validation epoch: it needs keep_best".into());
        }
        if self.patience == Some(0) {
            return bad("patience must be ≥ 1 epoch".into());
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
            Method::Trades {
                eps,
                steps,
                step_size,
                beta,
            }
            | Method::Mart {
                eps,
                steps,
                step_size,
                beta,
            } => {
                if !(positive(*eps)
                    && *steps > 0
                    && positive(*step_size)
                    && beta.is_finite()
                    && *beta >= 0.0)
                {
                    return bad(format!(
                        "{} needs eps > 0, steps ≥ 1, step size > 0 and beta ≥ 0",
                        self.method.name()
                    ));
                }
                if matches!(self.balance, Balance::Weighted | Balance::Focal { .. }) {
                    return bad(format!(
                        "{} has its own loss; weighted and focal balance apply to the others",
                        self.method.name()
                    ));
                }
            }
            Method::SiaAt {
                eps,
                steps,
                attribute_step,
                scale,
            } => {
                if !(eps.is_finite()
                    && *eps >= 0.0
                    && *steps > 0
                    && positive(*attribute_step)
                    && *scale > 0.0
                    && *scale <= 1.0)
                {
                    return bad(
                        "sia-at needs eps ≥ 0, steps ≥ 1, attribute step > 0, scale in (0, 1]"
                            .into(),
                    );
                }
            }
        }
        if let Some(a) = &self.ancra {
            if !(a.ra || a.anc) {
                return bad("ancra needs RA, ANC or both".into());
            }
            if !(a.zeta.is_finite()
                && a.zeta >= 0.0
                && a.aux_weight.is_finite()
                && a.aux_weight >= 0.0)
                || a.negative_steps == 0
            {
                return bad("ancra needs zeta ≥ 0, aux weight ≥ 0 and ≥ 1 negative step".into());
            }
            if a.anc && self.method.eps() <= 0.0 {
                return bad(
                    "ANC makes its negatives with the method's ε: use an adversarial method".into(),
                );
            }
            if a.ra && matches!(self.balance, Balance::Weighted | Balance::Focal { .. }) {
                return bad(
                    "RA trains its heads with cross-entropy: no weighted or focal balance".into(),
                );
            }
        }
        self.balance.validate()
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
            let (next, loss_value, correct) = plan.step(
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
    StepPlan::default().step(method, model, optim, (x, y), &[], eps, lr, seed)
}

/// The loss a step minimises.
#[derive(Default)]
enum StepLoss {
    #[default]
    CrossEntropy,
    Weighted(Vec<f32>),
    Focal(FocalLoss),
}

/// How rows picked for augmentation are transformed.
enum Augment {
    Jitter { space: AttributeSpace, scale: f32 },
    Sia(Sia),
}

/// What a step does besides the method's inputs: its loss, and which rows it augments and
/// how (see [`Balance`]). Built once per run from the recipe and the class counts.
#[derive(Default)]
struct StepPlan {
    loss: StepLoss,
    augment: Option<Augment>,
    /// Per class, the probability that a draw is transformed: `1 − n_c / n_max`.
    augment_probability: Vec<f64>,
    ancra: Option<Ancra>,
}

impl StepPlan {
    fn new(config: &TrainConfig, train_set: &ImageDataset) -> Result<Self> {
        let counts = train_set.class_counts();
        let n_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let attributes = || Attribute::all_for(train_set.channels);
        let augment = match &config.balance {
            Balance::Jitter { scale } => Some(Augment::Jitter {
                space: AttributeSpace::new(attributes(), train_set.channels)?,
                scale: *scale,
            }),
            Balance::Sia {
                steps,
                attribute_step,
                scale,
            } => Some(Augment::Sia(Sia::new(SiaConfig {
                attributes: attributes(),
                steps: *steps,
                attribute_step: *attribute_step,
                pixel_step: 0.0,
                early_stop: true,
                range_scale: *scale,
                ..SiaConfig::new(train_set.channels)
            })?)),
            _ => None,
        };
        Ok(Self {
            loss: match &config.balance {
                Balance::Weighted => StepLoss::Weighted(inverse_frequency_weights(&counts)),
                Balance::Focal { gamma } => StepLoss::Focal(FocalLoss::new(*gamma, None)?),
                _ => StepLoss::CrossEntropy,
            },
            augment_probability: counts.iter().map(|&c| 1.0 - c as f64 / n_max).collect(),
            augment,
            ancra: config.ancra.clone(),
        })
    }

    /// Batch positions to augment, drawn on the host from the step's seed.
    fn rows_to_augment(&self, indices: &[usize], labels: &[usize], seed: u64) -> Vec<usize> {
        if self.augment.is_none() {
            return Vec::new();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA06_5EED);
        indices
            .iter()
            .enumerate()
            .filter(|(_, i)| rng.random::<f64>() < self.augment_probability[labels[**i]])
            .map(|(row, _)| row)
            .collect()
    }

    /// Replaces the rows in `rows` by their augmented versions. The batch comes back
    /// reordered (kept rows first), which a training step does not mind.
    fn augment_batch(
        &self,
        model: &Model,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rows: &[usize],
        seed: u64,
    ) -> Result<(Tensor<4>, Tensor<1, Int>)> {
        let Some(augment) = &self.augment else {
            return Ok((x, y));
        };
        if rows.is_empty() {
            return Ok((x, y));
        }
        let [n, _, h, w] = x.dims();
        let device = x.device();
        let index = |r: Vec<usize>| {
            let len = r.len();
            let r: Vec<i64> = r.into_iter().map(|v| v as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(r, [len]), &device)
        };
        let keep: Vec<usize> = (0..n).filter(|i| !rows.contains(i)).collect();
        let m = rows.len();
        let picked = index(rows.to_vec());
        let (xa, ya) = (
            x.clone().select(0, picked.clone()).detach(),
            y.clone().select(0, picked),
        );
        let moved = match augment {
            Augment::Jitter { space, scale } => {
                let coef = space.random_coefficients(m, *scale, seed, &device);
                let field = space
                    .column(Attribute::Elastic)
                    .map(|_| elastic_field(m, h, w, seed, &device));
                space
                    .apply(xa.without_autodiff(), coef, field.as_ref())
                    .clamp(0.0, 1.0)
            }
            Augment::Sia(sia) => {
                sia.run_detailed(model, xa, ya.clone(), &vec![0.0; m], seed)?
                    .adversarial
            }
        };
        let moved = if x.is_autodiff() {
            moved.detach().autodiff()
        } else {
            moved.detach()
        };
        if keep.is_empty() {
            return Ok((moved, ya));
        }
        let kept = index(keep);
        Ok((
            Tensor::cat(vec![x.select(0, kept.clone()), moved], 0),
            Tensor::cat(vec![y.select(0, kept), ya], 0),
        ))
    }

    /// One optimisation step (see [`train_step`]); `rows` are the batch positions to augment.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        method: &Method,
        model: Model,
        optim: &mut ModuleOptimizer,
        (x, y): (Tensor<4>, Tensor<1, Int>),
        rows: &[usize],
        eps: f32,
        lr: f64,
        seed: u64,
    ) -> Result<(Model, f64, usize)> {
        let (x, y) = self.augment_batch(&model, x, y, rows, seed)?;
        // In training an RA model gates with the true labels (plain models ignore the mask).
        let mask = RaMask::Labels(y.clone());
        let forward = |input: Tensor<4>| model.forward_ra(input, &mask);
        let aux_weight = self.ancra.as_ref().map_or(0.0, |a| a.aux_weight);
        // `main + aux_weight · mean over the auxiliary heads`.
        let with_aux = |main: Tensor<1>, aux: Vec<Tensor<1>>| {
            let k = aux.len();
            match aux.into_iter().reduce(|a, b| a + b) {
                Some(sum) => main + sum * (aux_weight / k as f32),
                None => main,
            }
        };
        // The logits whose accuracy the step reports. An RA model's final logits are gated by
        // the true class in training and would read ~100 %: report its (last) auxiliary head,
        // the class its test-time mask picks, instead.
        let reported = |o: &RaOutput| o.aux.last().cloned().unwrap_or_else(|| o.logits.clone());
        // TRADES and MART: a loss on natural/adversarial logit pairs, the same loss on every
        // auxiliary head's pair.
        type PairLoss = fn(Tensor<2>, Tensor<2>, Tensor<1, Int>, f32) -> Tensor<1>;
        let paired = |adv: Tensor<4>, pair_loss: PairLoss, beta: f32| {
            let adv = forward(adv);
            let nat = forward(x.clone());
            let aux = nat
                .aux
                .iter()
                .zip(&adv.aux)
                .map(|(n, a)| pair_loss(n.clone(), a.clone(), y.clone(), beta))
                .collect();
            let main = pair_loss(nat.logits.clone(), adv.logits.clone(), y.clone(), beta);
            (reported(&adv), with_aux(main, aux), Some(nat))
        };
        let (logits, loss, natural) = match method {
            Method::Trades {
                steps,
                step_size,
                beta,
                ..
            } if eps > 0.0 => paired(
                trades_adversarial(&model, x.clone(), eps, *steps, *step_size, seed),
                trades_loss,
                *beta,
            ),
            Method::Mart {
                steps,
                step_size,
                beta,
                ..
            } if eps > 0.0 => {
                let pgd = Method::PgdAt {
                    eps,
                    steps: *steps,
                    step_size: *step_size,
                };
                let adv = adversarial_inputs(&pgd, &model, x.clone(), y.clone(), eps, seed)?;
                paired(adv, mart_loss, *beta)
            }
            _ => {
                let inputs = adversarial_inputs(method, &model, x.clone(), y.clone(), eps, seed)?;
                let out = forward(inputs);
                let main = match &self.loss {
                    StepLoss::CrossEntropy => cross_entropy(out.logits.clone(), y.clone()),
                    StepLoss::Weighted(w) => {
                        weighted_cross_entropy(out.logits.clone(), y.clone(), w)
                    }
                    StepLoss::Focal(f) => f.forward(out.logits.clone(), y.clone()),
                };
                let aux = out
                    .aux
                    .iter()
                    .map(|a| cross_entropy(a.clone(), y.clone()))
                    .collect();
                (reported(&out), with_aux(main, aux), None)
            }
        };
        let loss = match &self.ancra {
            Some(a) if a.anc => {
                let nat = natural.unwrap_or_else(|| forward(x.clone()));
                let (negatives, negative_labels, valid) =
                    make_negatives(&model, &x, &y, eps, a.negative_steps, seed)?;
                let neg = model.forward_ra(negatives, &RaMask::Labels(negative_labels));
                let aux = nat
                    .aux
                    .iter()
                    .zip(&neg.aux)
                    .map(|(n, q)| anc_loss(n.clone(), q.clone(), valid.clone()))
                    .collect();
                let contrast = with_aux(anc_loss(nat.logits, neg.logits, valid.clone()), aux);
                loss + contrast * a.zeta
            }
            _ => loss,
        };
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
}

/// ANC's negatives: for each anchor a random example of another class in the batch, moved by
/// a targeted L∞ PGD (random start, step 2.5·ε/steps) towards the anchor's label. Returns
/// the negatives, their own labels, and 1/0 per anchor for "found one".
fn make_negatives(
    model: &Model,
    x: &Tensor<4>,
    y: &Tensor<1, Int>,
    eps: f32,
    steps: usize,
    seed: u64,
) -> Result<(Tensor<4>, Tensor<1, Int>, Tensor<1>)> {
    let labels: Vec<i64> = y
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| Error::invalid("labels", format!("{e:?}")))?;
    let n = labels.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA4C);
    let mut pick = Vec::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    for (i, &l) in labels.iter().enumerate() {
        let others: Vec<usize> = (0..n).filter(|&j| labels[j] != l).collect();
        if others.is_empty() {
            pick.push(i as i64);
            valid.push(0.0f32);
        } else {
            pick.push(others[rng.random_range(0..others.len())] as i64);
            valid.push(1.0);
        }
    }
    let device = x.device();
    let pick = Tensor::<1, Int>::from_data(TensorData::new(pick, [n]), &device);
    let source = x.clone().select(0, pick.clone());
    let source_labels = y.clone().select(0, pick);
    let attack = PgdConfig {
        targeted: true,
        ..PgdConfig::new(Norm::Linf, steps)
    }
    .init()?;
    let moved = attack
        .perturb(model, source, y.clone(), &vec![eps; n], seed ^ 0x9E6)?
        .detach();
    let moved = if device.is_autodiff() {
        moved.autodiff()
    } else {
        moved
    };
    let valid = Tensor::<1>::from_data(TensorData::new(valid, [n]), &device);
    Ok((moved, source_labels, valid))
}

/// TRADES' inner maximisation: signed steps on `KL(p(x) ‖ p(x'))` from x + 0.001·N(0, 1),
/// projected onto the L∞ ball and `[0, 1]`, on a frozen copy of the model.
fn trades_adversarial(
    model: &Model,
    x: Tensor<4>,
    eps: f32,
    steps: usize,
    step_size: f32,
    seed: u64,
) -> Tensor<4> {
    let frozen = model.frozen();
    let device = x.device();
    let x = x.detach().without_autodiff();
    let dims = x.dims();
    let count: usize = dims.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7EAD);
    let noise: Vec<f32> = (0..count)
        .map(|_| {
            // Box–Muller.
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random_range(0.0..1.0);
            0.001 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    let noise = Tensor::<4>::from_data(TensorData::new(noise, dims), &x.device());
    let p_nat = burn::tensor::activation::softmax(frozen.forward(x.clone()), 1).detach();
    let eps_t = x.zeros_like() + eps;
    let mut adv = x.clone() + noise;
    for _ in 0..steps {
        let a = adv.clone().autodiff().require_grad();
        let log_adv = burn::tensor::activation::log_softmax(frozen.forward(a.clone()), 1);
        let kl = (p_nat.clone().autodiff()
            * (p_nat.clone().autodiff().clamp_min(1e-12).log() - log_adv))
            .sum();
        let grad = a
            .grad(&kl.backward())
            .expect("the input requires a gradient");
        adv = project(&x, adv + grad.sign() * step_size, &eps_t, Norm::Linf);
    }
    let adv = adv.detach();
    if device.is_autodiff() {
        adv.autodiff()
    } else {
        adv
    }
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
        Method::SiaAt {
            eps: target,
            steps,
            attribute_step,
            scale,
        } => {
            // The ε ramp grows the attribute bounds with ε: training from scratch on
            // full-range semantic examples collapses to a constant prediction.
            let ramp = if *target > 0.0 { eps / target } else { 1.0 };
            if ramp <= 0.0 {
                return Ok(x);
            }
            let channels = x.dims()[1];
            let sia = Sia::new(SiaConfig {
                steps: *steps,
                attribute_step: *attribute_step,
                early_stop: false,
                range_scale: (scale * ramp).min(1.0),
                ..SiaConfig::new(channels)
            })?;
            let adv = sia.run_detailed(model, x.clone(), y, &vec![eps; n], seed)?;
            let adv = adv.adversarial.detach();
            return Ok(if x.is_autodiff() { adv.autodiff() } else { adv });
        }
        _ if eps <= 0.0 => return Ok(x),
        Method::PgdAt {
            steps, step_size, ..
        } => PgdConfig {
            step_size: StepSize::Absolute(*step_size),
            ..PgdConfig::new(Norm::Linf, *steps)
        },
        Method::Trades { .. } | Method::Mart { .. } => {
            unreachable!("TRADES and MART build their inputs in the step")
        }
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
    let mut attacks: Vec<Box<dyn Attack>> = vec![Box::new(
        PgdConfig {
            step_size: StepSize::Absolute(2.5 * eps / steps as f32),
            ..PgdConfig::new(Norm::Linf, steps)
        }
        .init()?,
    )];
    // The test-time mask of a reverse-attention model hides the plain attack's gradient:
    // checkpoints are chosen on the worst case with the attack through the auxiliary heads.
    if model.has_reverse_attention() {
        attacks.push(Box::new(RaAttack::new(RaAttackKind::AuxHead, steps)?));
    }
    let n = data.len().min(config.val_pgd_samples);
    let idx: Vec<usize> = (0..n).collect();
    let inference = model.valid();
    let mut held = 0usize;
    for (b, chunk) in idx.chunks(250).enumerate() {
        let (x, y) = data.batch(chunk, device);
        // Wrong on the clean input counts as broken.
        let mut broken = inference
            .forward(x.clone().without_autodiff())
            .argmax(1)
            .squeeze_dim::<1>(1)
            .not_equal(y.clone().without_autodiff());
        for attack in &attacks {
            let out = attack.run(
                model,
                x.clone(),
                y.clone(),
                &vec![eps; chunk.len()],
                seed.wrapping_add(b as u64),
            )?;
            broken = broken.bool_or(out.success);
        }
        held += chunk.len() - broken.int().sum().into_scalar::<i64>() as usize;
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
