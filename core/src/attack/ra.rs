//! Adaptive attacks on reverse-attention (RA) models. At test time an RA model gates its
//! features with the class its auxiliary head predicts — an argmax, through which no
//! gradient flows — so an attack on the plain forward pass may be weaker than the model
//! deserves credit for. Three ways around it, each an L∞ PGD (random start, step 2.5·ε/steps,
//! cross-entropy) whose success is judged on the real test-time forward pass:
//! through the auxiliary heads (move the mask decision itself), through every fixed mask
//! (one run per class, worst case per sample), and BPDA (the hard mask forward, the
//! softmax-weighted mask's gradient backward).

use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{
    Attack, AttackOutput, Norm, ascent_step, check_inputs, eps_tensor, keep_first_success, project,
    random_start, success,
};
use crate::error::{Error, Result};
use crate::gradient::gradient_of;
use crate::loss::cross_entropy_per_sample;
use crate::model::{Model, RaMask};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RaAttackKind {
    AuxHead,
    EveryMask,
    Bpda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaAttack {
    pub kind: RaAttackKind,
    pub steps: usize,
}

impl RaAttack {
    pub fn new(kind: RaAttackKind, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::invalid("ra attack", "steps must be ≥ 1"));
        }
        Ok(Self { kind, steps })
    }

    /// PGD on `objective(model, x)` (per-sample loss to maximise).
    fn pgd(
        &self,
        model: &Model,
        x: &Tensor<4>,
        eps: &[f32],
        seed: u64,
        objective: &dyn Fn(&Model, Tensor<4>) -> Tensor<1>,
    ) -> Tensor<4> {
        let eps_t = eps_tensor(eps, x);
        let alpha = eps_t.clone() * (2.5 / self.steps as f32);
        let mut adv = random_start(x, eps, Norm::Linf, seed);
        for _ in 0..self.steps {
            let g = gradient_of(adv.clone(), |a| objective(model, a));
            adv = project(
                x,
                ascent_step(adv, g, &alpha, Norm::Linf),
                &eps_t,
                Norm::Linf,
            );
        }
        adv
    }
}

impl Attack for RaAttack {
    fn name(&self) -> String {
        match self.kind {
            RaAttackKind::AuxHead => "ra-aux".into(),
            RaAttackKind::EveryMask => "ra-every-mask".into(),
            RaAttackKind::Bpda => "ra-bpda".into(),
        }
    }

    fn budget(&self) -> (usize, usize) {
        (self.steps, 1)
    }

    fn run(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<AttackOutput> {
        check_inputs(&images, &labels, eps)?;
        if !model.has_reverse_attention() {
            return Err(Error::invalid(
                "ra attack",
                format!("{} needs a reverse-attention model", self.name()),
            ));
        }
        let model = model.frozen();
        let x = images.detach().without_autodiff();
        let y = labels.without_autodiff();
        let masks: Vec<RaMask> = match self.kind {
            RaAttackKind::AuxHead => vec![RaMask::Predicted],
            RaAttackKind::Bpda => vec![RaMask::Bpda],
            RaAttackKind::EveryMask => (0..model.num_classes()).map(RaMask::Class).collect(),
        };
        let mut best: Option<(Tensor<4>, Tensor<1, Bool>)> = None;
        for (r, mask) in masks.iter().enumerate() {
            let target = y.clone();
            let aux_only = self.kind == RaAttackKind::AuxHead;
            let objective = move |m: &Model, a: Tensor<4>| {
                let out = m.forward_ra(a, mask);
                if aux_only {
                    // Every auxiliary head at once: the mask decisions are what moves.
                    out.aux
                        .into_iter()
                        .map(|aux| cross_entropy_per_sample(aux, target.clone()))
                        .reduce(|s, t| s + t)
                        .expect("an RA model has an auxiliary head")
                } else {
                    cross_entropy_per_sample(out.logits, target.clone())
                }
            };
            let adv = self.pgd(&model, &x, eps, seed.wrapping_add(r as u64), &objective);
            let hit = success(&model, adv.clone(), y.clone(), false);
            best = Some(keep_first_success(best, adv, hit));
        }
        let (adversarial, success) = best.expect("at least one mask");
        Ok(AttackOutput {
            adversarial,
            success,
        })
    }
}
