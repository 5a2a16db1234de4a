//! The training recipe: method, imbalance counter-measure, optimiser, schedule, ANCRA;
//! validated before any work starts.

use burn::optim::{
    AdamConfig, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

    pub(crate) fn eps(&self) -> f32 {
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

    pub(crate) fn oversamples(&self) -> bool {
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

    pub(crate) fn optimizer(&self) -> ModuleOptimizer {
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

    pub(crate) fn lr_at(&self, epoch: usize) -> f64 {
        let drops = self.milestones.iter().filter(|&&m| epoch >= m).count();
        self.lr * self.lr_gamma.powi(drops as i32)
    }

    /// ε at a fractional epoch position, following the ramp.
    pub(crate) fn eps_at(&self, epoch_pos: f32) -> f32 {
        let target = self.method.eps();
        if self.eps_ramp_epochs > 0.0 {
            target * (epoch_pos / self.eps_ramp_epochs).min(1.0)
        } else {
            target
        }
    }
}
