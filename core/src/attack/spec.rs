//! One typed description of an attack, shared by the CLI and the browser: each front end
//! parses its own flags or options into an [`AttackSpec`], and [`AttackSpec::build`] makes the
//! attack, so both accept the same methods with the same checks.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::apgd::ApgdConfig;
use super::mifgsm::MiFgsmConfig;
use super::pgd::StepSize;
use super::square::SquareConfig;
use super::{Attack, AttackLoss, Norm, PgdConfig};
use crate::error::{Error, Result};

/// The most iterations (or black-box queries) one attack may take: far above any published
/// protocol, low enough that a mistyped number fails at once instead of running for days.
pub const MAX_STEPS: usize = 100_000;
/// The most restarts one attack may take.
pub const MAX_RESTARTS: usize = 100;

/// Which attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackMethod {
    Fgsm,
    FgsmL2,
    Pgd,
    PgdL2,
    /// APGD with the cross-entropy (`steps` iterations, `restarts` runs).
    ApgdCe,
    /// APGD-T: targeted DLR towards up to 9 most likely other classes (≥ 4 classes).
    ApgdT,
    /// Square, score-based black box (`steps` queries).
    Square,
    MiFgsm,
}

impl AttackMethod {
    pub const ALL: [AttackMethod; 8] = [
        AttackMethod::Fgsm,
        AttackMethod::FgsmL2,
        AttackMethod::Pgd,
        AttackMethod::PgdL2,
        AttackMethod::ApgdCe,
        AttackMethod::ApgdT,
        AttackMethod::Square,
        AttackMethod::MiFgsm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttackMethod::Fgsm => "fgsm",
            AttackMethod::FgsmL2 => "fgsm-l2",
            AttackMethod::Pgd => "pgd",
            AttackMethod::PgdL2 => "pgd-l2",
            AttackMethod::ApgdCe => "apgd-ce",
            AttackMethod::ApgdT => "apgd-t",
            AttackMethod::Square => "square",
            AttackMethod::MiFgsm => "mi-fgsm",
        }
    }

    /// FGSM and PGD in either norm: the attacks that take a loss, a target and (PGD) a step
    /// size, random start and restarts.
    pub fn is_gradient_sign(self) -> bool {
        matches!(
            self,
            AttackMethod::Fgsm | AttackMethod::FgsmL2 | AttackMethod::Pgd | AttackMethod::PgdL2
        )
    }
}

impl FromStr for AttackMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        AttackMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AttackMethod::ALL.iter().map(|m| m.name()).collect();
                Error::invalid(
                    "attack",
                    format!("unknown method '{s}' ({})", names.join(", ")),
                )
            })
    }
}

impl FromStr for AttackLoss {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ce" => Ok(AttackLoss::CrossEntropy),
            "cw" => Ok(AttackLoss::CwMargin),
            other => Err(Error::invalid(
                "attack",
                format!("unknown loss '{other}' (ce, cw)"),
            )),
        }
    }
}

/// An attack's settings, independent of the budget ε and the seed, which each call gives.
/// `steps` counts iterations, or queries for Square; FGSM ignores it. `step_size`,
/// `random_start` and `restarts` shape PGD; `restarts` APGD too; `loss` and `targeted`
/// apply to FGSM and PGD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackSpec {
    pub method: AttackMethod,
    pub steps: usize,
    /// Absolute step size (default: 2.5·ε/steps).
    pub step_size: Option<f32>,
    pub restarts: usize,
    pub loss: AttackLoss,
    pub random_start: bool,
    pub targeted: bool,
}

impl AttackSpec {
    /// `method` with `steps` iterations, one restart, the cross-entropy, a random start,
    /// untargeted.
    pub fn new(method: AttackMethod, steps: usize) -> Self {
        Self {
            method,
            steps,
            step_size: None,
            restarts: 1,
            loss: AttackLoss::CrossEntropy,
            random_start: true,
            targeted: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |r: String| Err(Error::invalid("attack", r));
        if self.steps == 0 || self.steps > MAX_STEPS {
            return bad(format!(
                "steps must be in 1..={MAX_STEPS}, got {}",
                self.steps
            ));
        }
        if self.restarts == 0 || self.restarts > MAX_RESTARTS {
            return bad(format!(
                "restarts must be in 1..={MAX_RESTARTS}, got {}",
                self.restarts
            ));
        }
        if let Some(s) = self.step_size
            && !(s.is_finite() && s > 0.0)
        {
            return bad(format!("step size must be positive and finite, got {s}"));
        }
        if self.targeted && !self.method.is_gradient_sign() {
            return bad(format!(
                "{} is untargeted: targets work with fgsm, fgsm-l2, pgd and pgd-l2",
                self.method.name()
            ));
        }
        Ok(())
    }

    /// How many steps (input gradients, or query batches for Square) the attack takes at
    /// most on one image: what progress counts up to. Attacks may stop earlier.
    pub fn planned_steps(&self) -> usize {
        let restarts = self.restarts.max(1);
        match self.method {
            AttackMethod::Fgsm | AttackMethod::FgsmL2 => 1,
            AttackMethod::Pgd | AttackMethod::PgdL2 | AttackMethod::ApgdCe => self.steps * restarts,
            // One run per target class, nine at most.
            AttackMethod::ApgdT => self.steps * restarts * 9,
            AttackMethod::Square | AttackMethod::MiFgsm => self.steps,
        }
    }

    /// The validated attack.
    pub fn build(&self) -> Result<Box<dyn Attack>> {
        self.validate()?;
        let mut c = match self.method {
            AttackMethod::Fgsm => PgdConfig::fgsm(Norm::Linf),
            AttackMethod::FgsmL2 => PgdConfig::fgsm(Norm::L2),
            AttackMethod::Pgd => PgdConfig::new(Norm::Linf, self.steps),
            AttackMethod::PgdL2 => PgdConfig::new(Norm::L2, self.steps),
            AttackMethod::ApgdCe => {
                return Ok(Box::new(
                    ApgdConfig {
                        restarts: self.restarts,
                        ..ApgdConfig::ce(self.steps)
                    }
                    .init()?,
                ));
            }
            AttackMethod::ApgdT => {
                return Ok(Box::new(
                    ApgdConfig {
                        restarts: self.restarts,
                        ..ApgdConfig::targeted(self.steps, 9)
                    }
                    .init()?,
                ));
            }
            AttackMethod::Square => return Ok(Box::new(SquareConfig::new(self.steps).init()?)),
            AttackMethod::MiFgsm => return Ok(Box::new(MiFgsmConfig::new(self.steps).init()?)),
        };
        if matches!(self.method, AttackMethod::Pgd | AttackMethod::PgdL2) {
            if let Some(s) = self.step_size {
                c.step_size = StepSize::Absolute(s);
            }
            c.random_start = self.random_start;
            c.restarts = self.restarts;
        }
        c.loss = self.loss;
        c.targeted = self.targeted;
        Ok(Box::new(c.init()?))
    }
}

/// Checks one attack budget: finite and ≥ 0.
pub fn check_eps(eps: f32) -> Result<()> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            "attack",
            format!("eps must be a finite number ≥ 0, got {eps}"),
        ))
    }
}
