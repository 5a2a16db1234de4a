//! Projected gradient descent (Madry et al. 2018) in L∞ or L2, and FGSM as its one-step case.

use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{
    Attack, AttackLoss, AttackOutput, Norm, ascent_step, eps_tensor, input_gradient,
    keep_first_success, prepare, project, random_start, success,
};
use crate::error::{Error, Result};
use crate::model::Model;

/// Step size of an iterative attack.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepSize {
    /// The same step for every sample.
    Absolute(f32),
    /// A multiple of each sample's ε, so that one call can sweep budgets.
    Relative(f32),
}

/// PGD's settings. FGSM is `steps = 1`, step `1·ε`, no random start; FGSM with a random start
/// ("fast AT", Wong et al. 2020) is `steps = 1`, step `1.25·ε`, random start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgdConfig {
    pub norm: Norm,
    pub steps: usize,
    pub step_size: StepSize,
    pub random_start: bool,
    pub restarts: usize,
    pub targeted: bool,
    pub loss: AttackLoss,
}

impl PgdConfig {
    /// PGD with Madry's step rule `2.5·ε / steps` and a random start.
    pub fn new(norm: Norm, steps: usize) -> Self {
        Self {
            norm,
            steps,
            step_size: StepSize::Relative(2.5 / steps.max(1) as f32),
            random_start: true,
            restarts: 1,
            targeted: false,
            loss: AttackLoss::CrossEntropy,
        }
    }

    /// Goodfellow et al.'s fast gradient sign method (L∞) / fast gradient method (L2).
    pub fn fgsm(norm: Norm) -> Self {
        Self {
            norm,
            steps: 1,
            step_size: StepSize::Relative(1.0),
            random_start: false,
            restarts: 1,
            targeted: false,
            loss: AttackLoss::CrossEntropy,
        }
    }

    /// FGSM from a random start with step `1.25·ε` (Wong et al. 2020).
    pub fn fgsm_rs() -> Self {
        Self {
            step_size: StepSize::Relative(1.25),
            random_start: true,
            ..Self::fgsm(Norm::Linf)
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |r: String| Err(Error::invalid("pgd config", r));
        if self.steps == 0 {
            return bad("steps must be ≥ 1".into());
        }
        if self.restarts == 0 {
            return bad("restarts must be ≥ 1".into());
        }
        let s = match self.step_size {
            StepSize::Absolute(s) | StepSize::Relative(s) => s,
        };
        if !(s.is_finite() && s > 0.0) {
            return bad(format!("step size must be positive and finite, got {s}"));
        }
        Ok(())
    }

    pub fn init(self) -> Result<Pgd> {
        self.validate()?;
        Ok(Pgd { config: self })
    }
}

/// A validated PGD attack.
#[derive(Debug, Clone)]
pub struct Pgd {
    config: PgdConfig,
}

impl Pgd {
    pub fn config(&self) -> &PgdConfig {
        &self.config
    }

    /// The adversarial images alone: with one restart this skips the forward pass that
    /// [`Attack::run`] spends on reporting success (training needs only the images).
    pub fn perturb(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<Tensor<4>> {
        Ok(self.attack(model, images, labels, eps, seed, false)?.0)
    }

    /// Runs every restart on a frozen copy of the model; reports per-sample success when
    /// asked or when restarts need it to pick each sample's point.
    fn attack(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
        report: bool,
    ) -> Result<(Tensor<4>, Option<Tensor<1, Bool>>)> {
        let (model, x, labels) = prepare(model, images, labels, eps)?;
        let targeted = self.config.targeted;
        let first = self.one_run(&model, &x, &labels, eps, seed);
        if !report && self.config.restarts == 1 {
            return Ok((first, None));
        }
        let mut best = None;
        for r in 0..self.config.restarts {
            let candidate = if r == 0 {
                first.clone()
            } else {
                self.one_run(&model, &x, &labels, eps, seed.wrapping_add(r as u64))
            };
            let hit = success(&model, candidate.clone(), labels.clone(), targeted);
            best = Some(keep_first_success(best, candidate, hit));
        }
        let (best, hit) = best.expect("at least one restart");
        Ok((best, Some(hit)))
    }

    fn one_run(
        &self,
        model: &Model,
        x: &Tensor<4>,
        labels: &Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Tensor<4> {
        let c = &self.config;
        let eps_t = eps_tensor(eps, x);
        let alpha = match c.step_size {
            StepSize::Absolute(a) => eps_t.clone().zeros_like() + a,
            StepSize::Relative(r) => eps_t.clone() * r,
        };
        let mut x_adv = if c.random_start {
            random_start(x, eps, c.norm, seed)
        } else {
            x.clone()
        };
        for _ in 0..c.steps {
            let grad = input_gradient(model, x_adv.clone(), labels.clone(), c.loss, c.targeted);
            x_adv = project(x, ascent_step(x_adv, grad, &alpha, c.norm), &eps_t, c.norm);
        }
        x_adv
    }
}

impl Attack for Pgd {
    fn budget(&self) -> (usize, usize) {
        (self.config.steps, self.config.restarts)
    }

    fn name(&self) -> String {
        let c = &self.config;
        let norm = match c.norm {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        };
        if c.steps == 1 && !c.random_start {
            format!("fgsm-{norm}")
        } else {
            format!("pgd-{norm}")
        }
    }

    fn run(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<AttackOutput> {
        let (adversarial, success) = self.attack(model, images, labels, eps, seed, true)?;
        Ok(AttackOutput {
            adversarial,
            success: success.expect("success is reported when asked for"),
        })
    }
}
