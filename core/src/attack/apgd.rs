//! Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks"), L∞: PGD with momentum 0.75 and a step size
//! that starts at 2ε and halves, per sample, at checkpoints where the loss oscillates or
//! stopped improving, restarting from the best point. APGD-CE ascends the cross-entropy;
//! APGD-T the targeted difference-of-logits ratio towards each of the most likely other
//! classes in turn. Followed step by step from the published algorithm and its release;
//! everything stays on the device (no reads), so it runs in a browser too.

use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Attack, AttackOutput, Norm, eps_tensor, keep_first_success, prepare, project, rows};
use crate::error::{Error, Result};
use crate::gradient::gradient;
use crate::loss::{cross_entropy_per_sample, dlr_per_sample, dlr_targeted_per_sample};
use crate::model::Model;

/// The loss APGD ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApgdLoss {
    CrossEntropy,
    /// Difference of logits ratio; targeted when [`ApgdConfig::targets`] is set.
    Dlr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApgdConfig {
    /// Iterations per run (AutoAttack: 100).
    pub steps: usize,
    pub restarts: usize,
    pub loss: ApgdLoss,
    /// APGD-T: one run towards each of this many most likely other classes (by clean logit);
    /// `None`: untargeted. AutoAttack uses 9 on ten classes.
    pub targets: Option<usize>,
    /// Oscillation threshold ρ: halve the step when the loss rose in fewer than ρ of the
    /// iterations since the last checkpoint (0.75).
    pub rho: f32,
}

impl ApgdConfig {
    /// APGD-CE as in AutoAttack's standard version: 100 iterations, one run.
    pub fn ce(steps: usize) -> Self {
        Self {
            steps,
            restarts: 1,
            loss: ApgdLoss::CrossEntropy,
            targets: None,
            rho: 0.75,
        }
    }

    /// APGD-T (targeted DLR) towards the `targets` most likely other classes.
    pub fn targeted(steps: usize, targets: usize) -> Self {
        Self {
            loss: ApgdLoss::Dlr,
            targets: Some(targets),
            ..Self::ce(steps)
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |r: &str| Err(Error::invalid("apgd config", r));
        if self.steps == 0 || self.restarts == 0 {
            return bad("steps and restarts must be ≥ 1");
        }
        if !(self.rho > 0.0 && self.rho < 1.0) {
            return bad("rho must be in (0, 1)");
        }
        if self.targets == Some(0) {
            return bad("a targeted run needs at least one target class");
        }
        if self.targets.is_some() && self.loss != ApgdLoss::Dlr {
            return bad("targeted APGD uses the DLR loss");
        }
        Ok(())
    }

    pub fn init(self) -> Result<Apgd> {
        self.validate()?;
        Ok(Apgd { config: self })
    }
}

/// A validated APGD attack (L∞).
#[derive(Debug, Clone)]
pub struct Apgd {
    config: ApgdConfig,
}

impl Apgd {
    pub fn config(&self) -> &ApgdConfig {
        &self.config
    }

    /// Per-sample loss, its input gradient and the predictions at `x`.
    fn evaluate(
        &self,
        model: &Model,
        x: &Tensor<4>,
        labels: &Tensor<1, Int>,
        target: Option<&Tensor<1, Int>>,
    ) -> (Tensor<1>, Tensor<4>, Tensor<1, Int>) {
        let (grad, (loss, logits)) = gradient(x.clone(), |xg| {
            let logits = model.forward(xg);
            let loss = match (self.config.loss, target) {
                (ApgdLoss::CrossEntropy, _) => {
                    cross_entropy_per_sample(logits.clone(), labels.clone())
                }
                (ApgdLoss::Dlr, None) => dlr_per_sample(logits.clone(), labels.clone()),
                (ApgdLoss::Dlr, Some(t)) => {
                    dlr_targeted_per_sample(logits.clone(), labels.clone(), t.clone())
                }
            };
            (loss.clone(), (loss, logits))
        });
        let pred = logits.without_autodiff().argmax(1).squeeze_dim::<1>(1);
        (loss.without_autodiff(), grad, pred)
    }

    /// One APGD run; returns each sample's point (a misclassified one when found, else the
    /// highest-loss one) and whether it is misclassified.
    fn single_run(
        &self,
        model: &Model,
        x: &Tensor<4>,
        labels: &Tensor<1, Int>,
        target: Option<&Tensor<1, Int>>,
        eps: &[f32],
        seed: u64,
    ) -> (Tensor<4>, Tensor<1, Bool>) {
        let c = &self.config;
        let n_iter = c.steps;
        let eps_t = eps_tensor(eps, x);
        // Random start as in the release: x + ε·t / max|t|, t uniform in [-1, 1].
        let [n, ch, h, w] = x.dims();
        let per = ch * h * w;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut t: Vec<f32> = (0..n * per)
            .map(|_| rng.random_range(-1.0f32..=1.0))
            .collect();
        for (i, chunk) in t.chunks_mut(per).enumerate() {
            let m = chunk.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-12);
            chunk.iter_mut().for_each(|v| *v *= eps[i] / m);
        }
        let t = Tensor::<4>::from_data(TensorData::new(t, [n, ch, h, w]), &x.device());
        let mut x_adv = (x.clone() + t).clamp(0.0, 1.0);

        let (mut loss, mut grad, pred) = self.evaluate(model, &x_adv, labels, target);
        let mut hit = pred.not_equal(labels.clone());
        let mut x_best_adv = x_adv.clone();
        let mut x_best = x_adv.clone();
        let mut grad_best = grad.clone();
        let mut loss_best = loss.clone();
        let mut step = eps_t.clone() * 2.0;
        let mut x_old = x_adv.clone();

        // Checkpoint schedule: first after 22 % of the iterations, then intervals shrinking
        // by 3 % down to 6 %.
        let frac = |p: f32| ((p * n_iter as f32).ceil() as usize).max(1);
        let (mut k, decrease, k_min) = (frac(0.22), frac(0.03), frac(0.06));
        let mut since_check = 0usize;
        let mut increases = Tensor::<1>::zeros([n], &x.device());
        let mut loss_best_last = loss_best.clone();
        let mut reduced_last = Tensor::<1>::zeros([n], &x.device()).greater_elem(0.5);
        for i in 0..n_iter {
            let momentum = x_adv.clone() - x_old;
            x_old = x_adv.clone();
            let a = if i == 0 { 1.0 } else { 0.75 };
            let z = project(
                x,
                x_adv.clone() + step.clone() * grad.clone().sign(),
                &eps_t,
                Norm::Linf,
            );
            x_adv = project(
                x,
                x_adv.clone() + (z - x_adv) * a + momentum * (1.0 - a),
                &eps_t,
                Norm::Linf,
            );
            let (new_loss, new_grad, pred) = self.evaluate(model, &x_adv, labels, target);
            let mis = pred.not_equal(labels.clone());
            x_best_adv = x_best_adv.mask_where(rows(&mis, x), x_adv.clone());
            hit = hit.bool_or(mis);
            increases = increases + new_loss.clone().greater(loss.clone()).float();
            loss = new_loss;
            grad = new_grad;
            let improved = loss.clone().greater(loss_best.clone());
            x_best = x_best.mask_where(rows(&improved, x), x_adv.clone());
            grad_best = grad_best.mask_where(rows(&improved, x), grad.clone());
            loss_best = loss_best.mask_where(improved, loss.clone());
            since_check += 1;
            if since_check == k {
                let oscillating = increases.clone().lower_equal_elem(k as f32 * c.rho);
                let stalled = reduced_last
                    .clone()
                    .bool_not()
                    .bool_and(loss_best_last.greater_equal(loss_best.clone()));
                let reduce = oscillating.bool_or(stalled);
                reduced_last = reduce.clone();
                loss_best_last = loss_best.clone();
                // `step` is [N, 1, 1, 1]: mask it with the flags in that shape.
                step = step
                    .clone()
                    .mask_where(reduce.clone().reshape([n, 1, 1, 1]), step * 0.5);
                x_adv = x_adv.mask_where(rows(&reduce, x), x_best.clone());
                grad = grad.mask_where(rows(&reduce, x), grad_best.clone());
                since_check = 0;
                increases = increases.zeros_like();
                k = k.saturating_sub(decrease).max(k_min);
            }
        }
        (x_best.mask_where(rows(&hit, x), x_best_adv), hit)
    }
}

impl Attack for Apgd {
    fn budget(&self) -> (usize, usize) {
        let runs = self.config.targets.unwrap_or(1) * self.config.restarts;
        (self.config.steps, runs)
    }

    fn name(&self) -> String {
        match (self.config.loss, self.config.targets) {
            (ApgdLoss::CrossEntropy, _) => "apgd-ce".into(),
            (ApgdLoss::Dlr, None) => "apgd-dlr".into(),
            (ApgdLoss::Dlr, Some(_)) => "apgd-t".into(),
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
        let (model, x, labels) = prepare(model, images, labels, eps)?;
        let classes = model.num_classes();
        let min_classes = match (self.config.loss, self.config.targets) {
            (ApgdLoss::Dlr, Some(_)) => 4,
            (ApgdLoss::Dlr, None) => 3,
            _ => 2,
        };
        if classes < min_classes {
            return Err(Error::invalid(
                "apgd",
                format!(
                    "{} needs at least {min_classes} classes (the DLR loss reads the {} \
                     largest logits); this model has {classes}",
                    self.name(),
                    min_classes - 1
                ),
            ));
        }
        // Targets: the r-th most likely class other than the leader, r = 1, 2, … (one
        // clean forward pass, only for a targeted attack).
        let targets: Vec<Option<Tensor<1, Int>>> = match self.config.targets {
            None => vec![None],
            Some(t) => {
                let order = model.forward(x.clone()).argsort_descending(1);
                let [n] = labels.dims();
                (1..=t.min(classes - 1))
                    .map(|r| Some(order.clone().slice([0..n, r..r + 1]).squeeze_dim(1)))
                    .collect()
            }
        };
        let mut best: Option<(Tensor<4>, Tensor<1, Bool>)> = None;
        let mut run = 0u64;
        for target in &targets {
            for _ in 0..self.config.restarts {
                let (adv, hit) = self.single_run(
                    &model,
                    &x,
                    &labels,
                    target.as_ref(),
                    eps,
                    seed.wrapping_add(run),
                );
                run += 1;
                best = Some(keep_first_success(best, adv, hit));
            }
        }
        let (adversarial, success) = best.expect("at least one run");
        Ok(AttackOutput {
            adversarial,
            success,
        })
    }
}
