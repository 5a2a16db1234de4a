//! Random adversarial training (RAT) of the text head: for each mini-batch one perturbation of
//! the embeddings is drawn at random — none, Gaussian noise, FGM (ε·g/‖g‖₂) or a few L2 PGD
//! steps. Gradients are taken on a frozen copy of the head (dropout off).

use burn::module::Module;
use burn::tensor::{Distribution, Int, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::classifier::Mlp;
use crate::error::{Error, Result};
use crate::gradient::gradient_of;
use crate::loss::FocalLoss;

/// Random adversarial training: each mini-batch draws one perturbation kind with these
/// probabilities (they need not sum to 1: they are normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatConfig {
    pub p_none: f32,
    pub p_gaussian: f32,
    pub p_fgm: f32,
    pub p_pgd: f32,
    /// L2 radius in embedding space (embeddings have norm 1).
    pub eps: f32,
    pub pgd_steps: usize,
    /// Weight of the loss on perturbed embeddings.
    pub weight: f32,
}

/// One perturbation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Perturbation {
    None,
    Gaussian,
    Fgm,
    Pgd,
}

impl RatConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let p = [self.p_none, self.p_gaussian, self.p_fgm, self.p_pgd];
        if p.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || p.iter().sum::<f32>() <= 0.0 {
            return Err(Error::invalid(
                "rat config",
                "probabilities must be ≥ 0 and not all 0",
            ));
        }
        if !(self.eps.is_finite()
            && self.eps >= 0.0
            && self.weight.is_finite()
            && self.weight >= 0.0)
        {
            return Err(Error::invalid("rat config", "eps and weight must be ≥ 0"));
        }
        if self.p_pgd > 0.0 && self.pgd_steps == 0 {
            return Err(Error::invalid("rat config", "pgd needs ≥ 1 step"));
        }
        Ok(())
    }

    pub(super) fn draw(&self, rng: &mut ChaCha8Rng) -> Perturbation {
        let p = [self.p_none, self.p_gaussian, self.p_fgm, self.p_pgd];
        let mut u = rng.random::<f32>() * p.iter().sum::<f32>();
        for (kind, w) in [
            Perturbation::None,
            Perturbation::Gaussian,
            Perturbation::Fgm,
            Perturbation::Pgd,
        ]
        .into_iter()
        .zip(p)
        {
            if u < w {
                return kind;
            }
            u -= w;
        }
        Perturbation::None
    }
}

/// L2-normalises each row's perturbation to length `eps`.
fn scale_rows(d: Tensor<2>, eps: f32) -> Tensor<2> {
    let norm = d.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    d / norm * eps
}

/// The perturbed embeddings RAT trains on for one batch (`None` for [`Perturbation::None`]),
/// computed on a frozen copy of `model`: Gaussian noise and FGM of L2 norm exactly `eps`, PGD
/// inside the L2 ball of radius `eps` (step 2.5·eps/steps). `x` is not modified.
pub fn perturb(
    kind: Perturbation,
    model: &Mlp,
    x: &Tensor<2>,
    y: &Tensor<1, Int>,
    rat: &RatConfig,
    loss: &FocalLoss,
) -> Option<Tensor<2>> {
    let frozen = || model.clone().freeze();
    let grad =
        |m: &Mlp, at: Tensor<2>| gradient_of(at, |at| loss.per_sample(m.forward(at), y.clone()));
    match kind {
        Perturbation::None => None,
        Perturbation::Gaussian => {
            let noise = x.random_like(Distribution::Normal(0.0, 1.0));
            Some(x.clone().detach() + scale_rows(noise, rat.eps))
        }
        Perturbation::Fgm => {
            let m = frozen();
            Some(x.clone().detach() + scale_rows(grad(&m, x.clone()), rat.eps))
        }
        Perturbation::Pgd => {
            let m = frozen();
            let step = 2.5 * rat.eps / rat.pgd_steps as f32;
            let x0 = x.clone().detach();
            let mut xa = x0.clone();
            for _ in 0..rat.pgd_steps {
                let g = grad(&m, xa.clone());
                let moved = xa + scale_rows(g, step);
                // Project onto the L2 ball of radius eps around the clean embedding.
                let d = moved - x0.clone();
                let norm = d.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
                let factor = (norm.clone().recip() * rat.eps).clamp_max(1.0);
                xa = (x0.clone() + d * factor).detach();
            }
            Some(xa)
        }
    }
}
