//! MI-FGSM (Dong et al. 2018): iterative FGSM whose direction is the sign of an accumulated
//! gradient `g ← μ·g + ∇/mean|∇|`, step ε / steps, L∞. Transfers better between models than
//! PGD; in the suite it adds a differently-behaved white-box attack.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{
    Attack, AttackLoss, AttackOutput, Norm, eps_tensor, input_gradient, prepare, project, success,
};
use crate::error::{Error, Result};
use crate::model::Model;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MiFgsmConfig {
    pub steps: usize,
    /// Decay μ of the accumulated gradient (1.0 in the paper).
    pub decay: f32,
}

impl MiFgsmConfig {
    pub fn new(steps: usize) -> Self {
        Self { steps, decay: 1.0 }
    }

    pub fn init(self) -> Result<MiFgsm> {
        if self.steps == 0 || !(self.decay.is_finite() && self.decay >= 0.0) {
            return Err(Error::invalid(
                "mi-fgsm config",
                "steps must be ≥ 1 and decay ≥ 0",
            ));
        }
        Ok(MiFgsm { config: self })
    }
}

#[derive(Debug, Clone)]
pub struct MiFgsm {
    config: MiFgsmConfig,
}

impl Attack for MiFgsm {
    fn budget(&self) -> (usize, usize) {
        (self.config.steps, 1)
    }

    fn name(&self) -> String {
        "mi-fgsm".into()
    }

    fn run(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        _seed: u64,
    ) -> Result<AttackOutput> {
        let (model, x, labels) = prepare(model, images, labels, eps)?;
        let [n, c, h, w] = x.dims();
        let eps_t = eps_tensor(eps, &x);
        let alpha = eps_t.clone() / self.config.steps as f32;
        let mut g = x.zeros_like();
        let mut x_adv = x.clone();
        for _ in 0..self.config.steps {
            let grad = input_gradient(
                &model,
                x_adv.clone(),
                labels.clone(),
                AttackLoss::CrossEntropy,
                false,
            );
            let l1 = grad
                .clone()
                .abs()
                .reshape([n, c * h * w])
                .mean_dim(1)
                .reshape([n, 1, 1, 1])
                .clamp_min(1e-12);
            g = g * self.config.decay + grad / l1;
            x_adv = project(
                &x,
                x_adv + g.clone().sign() * alpha.clone(),
                &eps_t,
                Norm::Linf,
            );
        }
        let success = success(&model, x_adv.clone(), labels, false);
        Ok(AttackOutput {
            adversarial: x_adv,
            success,
        })
    }
}
