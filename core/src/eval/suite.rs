//! Robustness evaluation that is hard to fool: a worst-case ensemble run with AutoAttack's
//! protocol (each attack only on the points every earlier one failed to break, so the result
//! is per-sample worst case), plus sanity checks printed with every report — the signs of
//! gradient masking listed by Carlini et al. (2019) and Croce & Hein (2020):
//! accuracy must fall to ~0 as ε grows, more steps and restarts must not raise accuracy, a
//! black-box attack must not succeed where the white-box ones failed, and input gradients
//! must not vanish.
//!
//! Suites: `quick` — APGD-CE (20 iterations) and Square (500 queries), sized for a browser;
//! `autoattack` — APGD-CE (100), APGD-T (targeted DLR, 100 per target, up to 9 targets) and
//! Square (5000), AutoAttack's "standard" ensemble without FAB-T; `adaptive` — the
//! autoattack ensemble plus MI-FGSM and a 5-restart PGD-100 on the CW margin, the
//! white-box attacks with other update rules and losses. For a reverse-attention model every
//! suite adds the adaptive attacks of [`crate::attack::ra`] (through the auxiliary heads, through every
//! fixed mask, BPDA through the argmax) before the black-box attack.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::attack::apgd::ApgdConfig;
use crate::attack::mifgsm::MiFgsmConfig;
use crate::attack::ra::{RaAttack, RaAttackKind};
use crate::attack::square::SquareConfig;
use crate::attack::{Attack, AttackLoss, Norm, PgdConfig, input_gradient};
use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor_io::{read_bools, read_floats, read_ints};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    Quick,
    Autoattack,
    Adaptive,
}

impl Suite {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "quick" => Ok(Suite::Quick),
            "autoattack" => Ok(Suite::Autoattack),
            "adaptive" => Ok(Suite::Adaptive),
            other => Err(Error::invalid(
                "suite",
                format!("unknown suite {other:?} (quick, autoattack or adaptive)"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Suite::Quick => "quick",
            Suite::Autoattack => "autoattack",
            Suite::Adaptive => "adaptive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteConfig {
    pub suite: Suite,
    /// L∞ budget.
    pub eps: f32,
    /// APGD iterations per run.
    pub apgd_steps: usize,
    pub square_queries: usize,
    /// Run the sanity checks (costs about as much as the ensemble's white-box part).
    pub sanity: bool,
    pub batch_size: usize,
    pub seed: u64,
}

impl SuiteConfig {
    /// The suite's published sizes (see the module docs).
    pub fn new(suite: Suite, eps: f32) -> Self {
        let (apgd_steps, square_queries) = match suite {
            Suite::Quick => (20, 500),
            Suite::Autoattack | Suite::Adaptive => (100, 5000),
        };
        Self {
            suite,
            eps,
            apgd_steps,
            square_queries,
            sanity: true,
            batch_size: 250,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return Err(Error::invalid("suite", "eps must be in (0, 1]"));
        }
        if self.apgd_steps == 0 || self.square_queries == 0 || self.batch_size == 0 {
            return Err(Error::invalid(
                "suite",
                "steps, queries and batch size must be ≥ 1",
            ));
        }
        Ok(())
    }

    /// The ensemble, in the order it runs, for a model with `classes` classes. APGD-T needs
    /// four classes; below that the suite runs without it and says so in the report.
    pub fn attacks(&self, classes: usize, reverse_attention: bool) -> Result<Vec<Box<dyn Attack>>> {
        let mut out: Vec<Box<dyn Attack>> = vec![Box::new(ApgdConfig::ce(self.apgd_steps).init()?)];
        if self.suite != Suite::Quick && classes >= 4 {
            out.push(Box::new(
                ApgdConfig::targeted(self.apgd_steps, 9.min(classes - 1)).init()?,
            ));
        }
        if self.suite == Suite::Adaptive {
            out.push(Box::new(MiFgsmConfig::new(self.apgd_steps).init()?));
            out.push(Box::new(
                PgdConfig {
                    restarts: 5,
                    loss: AttackLoss::CwMargin,
                    ..PgdConfig::new(Norm::Linf, 100)
                }
                .init()?,
            ));
        }
        if reverse_attention {
            for kind in [
                RaAttackKind::AuxHead,
                RaAttackKind::EveryMask,
                RaAttackKind::Bpda,
            ] {
                out.push(Box::new(RaAttack::new(kind, self.apgd_steps)?));
            }
        }
        // The black-box attack last: what it breaks, every white-box attack missed.
        out.push(Box::new(SquareConfig::new(self.square_queries).init()?));
        Ok(out)
    }
}

/// One attack of the ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub attack: String,
    /// Points this attack broke that every earlier one had not.
    pub broke: usize,
    /// Robust accuracy after this attack.
    pub robust_accuracy: f64,
}

/// The sanity checks; `flags` lists the failed ones in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sanity {
    /// `(ε, accuracy)` under PGD-20 (CE) at growing budgets, ending at ε = 1.
    pub eps_curve: Vec<(f32, f64)>,
    /// Accuracy under PGD-10 and under PGD-50 with 3 restarts at the suite's ε.
    pub pgd10_accuracy: f64,
    pub pgd50x3_accuracy: f64,
    /// Points only the black-box attack broke (after every white-box attack failed).
    pub black_box_only: usize,
    /// Share of samples whose cross-entropy input gradient is exactly zero.
    pub zero_gradient_fraction: f64,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    pub suite: Suite,
    pub eps: f32,
    pub samples: usize,
    pub clean_accuracy: f64,
    /// Worst case over the ensemble, per sample.
    pub robust_accuracy: f64,
    pub stages: Vec<Stage>,
    /// Per sample: "misclassified" (clean), the name of the first attack that broke it, or
    /// "robust".
    pub outcome: Vec<String>,
    /// Attacks left out, with the reason (e.g. APGD-T on fewer than four classes).
    pub skipped: Vec<String>,
    pub sanity: Option<Sanity>,
}

/// Robust accuracy under one attack at `eps` over `data`, batch by batch: the share of
/// samples classified correctly both clean and at the attack's point. (A point the attack
/// moves from wrong to right does not count: with gradient masking that happens.)
async fn accuracy_under(
    model: &Model,
    data: &ImageDataset,
    attack: &dyn Attack,
    eps: f32,
    batch_size: usize,
    device: &Device,
    seed: u64,
) -> Result<f64> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let inference = model.valid();
    let mut held = 0usize;
    for (b, chunk) in idx.chunks(batch_size).enumerate() {
        let (x, y) = data.batch(chunk, device);
        let clean = inference
            .forward(x.clone())
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(y.clone());
        let out = attack.run(
            model,
            x,
            y,
            &vec![eps; chunk.len()],
            seed.wrapping_add(b as u64),
        )?;
        let robust = clean.bool_and(out.success.bool_not());
        held += read_bools(robust).await?.iter().filter(|s| **s).count();
    }
    Ok(held as f64 / data.len().max(1) as f64)
}

/// Runs the suite on `data` (see the module docs). `progress(done, total)` counts batches
/// of attack work.
pub async fn run_suite(
    model: &Model,
    data: &ImageDataset,
    config: &SuiteConfig,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SuiteReport> {
    config.validate()?;
    if data.is_empty() {
        return Err(Error::invalid("evaluation data", "is empty"));
    }
    let classes = data.num_classes();
    let attacks = config.attacks(classes, model.has_reverse_attention())?;
    let mut skipped = Vec::new();
    if config.suite != Suite::Quick && classes < 4 {
        skipped.push(format!(
            "apgd-t: the targeted DLR loss needs at least 4 classes, this model has {classes}"
        ));
    }
    let n = data.len();
    let batches: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(config.batch_size)
        .map(<[usize]>::to_vec)
        .collect();
    let total = batches.len() * (1 + attacks.len()) + if config.sanity { 8 } else { 0 };
    let mut done = 0;
    let inference = model.valid();
    let mut outcome = vec![String::from("robust"); n];
    let mut broke = vec![0usize; attacks.len()];
    for (b, idx) in batches.iter().enumerate() {
        let (x, _) = data.batch(idx, device);
        let pred = read_ints(inference.forward(x).argmax(1).squeeze_dim::<1>(1)).await?;
        let mut alive: Vec<usize> = Vec::new();
        for (&i, &p) in idx.iter().zip(&pred) {
            if p as usize == data.labels[i] {
                alive.push(i);
            } else {
                outcome[i] = "misclassified".into();
            }
        }
        done += 1;
        progress(done, total);
        for (a, attack) in attacks.iter().enumerate() {
            if !alive.is_empty() {
                let (x, y) = data.batch(&alive, device);
                let out = attack.run(
                    model,
                    x,
                    y,
                    &vec![config.eps; alive.len()],
                    config.seed.wrapping_add((b * attacks.len() + a) as u64),
                )?;
                let hit = read_bools(out.success).await?;
                let mut next = Vec::with_capacity(alive.len());
                for (&i, h) in alive.iter().zip(hit) {
                    if h {
                        outcome[i] = attack.name();
                        broke[a] += 1;
                    } else {
                        next.push(i);
                    }
                }
                alive = next;
            }
            done += 1;
            progress(done, total);
        }
    }
    let correct = outcome.iter().filter(|o| *o != "misclassified").count();
    let mut standing = correct;
    let stages: Vec<Stage> = attacks
        .iter()
        .zip(&broke)
        .map(|(attack, &k)| {
            standing -= k;
            Stage {
                attack: attack.name(),
                broke: k,
                robust_accuracy: standing as f64 / n as f64,
            }
        })
        .collect();
    let sanity = if config.sanity {
        let black_box_only = *broke.last().unwrap_or(&0);
        Some(
            sanity_checks(model, data, config, black_box_only, device, &mut |k| {
                progress(done + k, total)
            })
            .await?,
        )
    } else {
        None
    };
    Ok(SuiteReport {
        suite: config.suite,
        eps: config.eps,
        samples: n,
        clean_accuracy: correct as f64 / n as f64,
        robust_accuracy: standing as f64 / n as f64,
        stages,
        outcome,
        skipped,
        sanity,
    })
}

/// The sanity checks (see the module docs). Thresholds: accuracy above 10 % at ε = 1, PGD-50
/// with 3 restarts more than 2 points above PGD-10, more than 1 % of the points broken by the
/// black-box attack alone, more than 5 % of zero gradients.
async fn sanity_checks(
    model: &Model,
    data: &ImageDataset,
    config: &SuiteConfig,
    black_box_only: usize,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Sanity> {
    let eps = config.eps;
    let bs = config.batch_size;
    let seed = config.seed ^ 0x5a17;
    let mut budgets: Vec<f32> = [0.5, 1.0, 2.0, 4.0]
        .iter()
        .map(|m| (eps * m).min(1.0))
        .collect();
    budgets.push(1.0);
    budgets.dedup();
    let pgd20 = PgdConfig::new(Norm::Linf, 20).init()?;
    let mut eps_curve = Vec::new();
    for (k, &e) in budgets.iter().enumerate() {
        eps_curve.push((
            e,
            accuracy_under(model, data, &pgd20, e, bs, device, seed).await?,
        ));
        progress(k + 1);
    }
    let pgd10 = PgdConfig::new(Norm::Linf, 10).init()?;
    let pgd50x3 = PgdConfig {
        restarts: 3,
        ..PgdConfig::new(Norm::Linf, 50)
    }
    .init()?;
    let pgd10_accuracy = accuracy_under(model, data, &pgd10, eps, bs, device, seed).await?;
    progress(6);
    let pgd50x3_accuracy = accuracy_under(model, data, &pgd50x3, eps, bs, device, seed).await?;
    progress(7);
    let frozen = model.frozen();
    let mut zero = 0usize;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(bs) {
        let (x, y) = data.batch(chunk, device);
        let g = input_gradient(&frozen, x, y, AttackLoss::CrossEntropy, false);
        let [m, c, h, w] = g.dims();
        let size: Tensor<1> = g.abs().reshape([m, c * h * w]).max_dim(1).squeeze_dim(1);
        zero += read_floats(size)
            .await?
            .iter()
            .filter(|v| **v == 0.0)
            .count();
    }
    progress(8);
    let n = data.len() as f64;
    let zero_gradient_fraction = zero as f64 / n;
    let mut flags = Vec::new();
    let (last_eps, last_acc) = *eps_curve.last().expect("at least one budget");
    if last_acc > 0.1 {
        flags.push(format!(
            "accuracy stays at {:.1} % under PGD-20 at ε = {last_eps}: the attack cannot \
             reach points any image can be moved to (gradient masking?)",
            100.0 * last_acc
        ));
    }
    if pgd50x3_accuracy > pgd10_accuracy + 0.02 {
        flags.push(format!(
            "more steps and restarts raised accuracy ({:.1} % under PGD-50×3 vs {:.1} % under \
             PGD-10)",
            100.0 * pgd50x3_accuracy,
            100.0 * pgd10_accuracy
        ));
    }
    if black_box_only as f64 > 0.01 * n {
        flags.push(format!(
            "the black-box attack broke {black_box_only} point(s) every white-box attack \
             missed (gradient masking?)"
        ));
    }
    if zero_gradient_fraction > 0.05 {
        flags.push(format!(
            "{:.1} % of the input gradients are exactly zero (gradient masking)",
            100.0 * zero_gradient_fraction
        ));
    }
    Ok(Sanity {
        eps_curve,
        pgd10_accuracy,
        pgd50x3_accuracy,
        black_box_only,
        zero_gradient_fraction,
        flags,
    })
}
