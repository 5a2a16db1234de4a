//! Adversarial attacks behind one interface. Every attack runs on a frozen copy of the
//! model (no parameter gradients, no training behaviour), never mutates its input, returns
//! points inside `[0, 1]` and each sample's ε-ball, and reports per-sample success as a
//! tensor, so that no attack needs a synchronous read-back (the browser forbids them).

pub mod apgd;
pub mod mifgsm;
pub mod pgd;
pub mod ra;
pub mod semantic;
pub mod spec;
pub mod square;

use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use pgd::{Pgd, PgdConfig};
pub use spec::{AttackMethod, AttackSpec};

use crate::error::{Error, Result};
use crate::gradient::gradient_of;
use crate::loss::{cross_entropy_per_sample, cw_margin_per_sample};
use crate::model::Model;

/// The threat model's norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
}

/// The objective an attack ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackLoss {
    CrossEntropy,
    CwMargin,
}

/// What an attack returns. `success[i]` is true when sample `i` is misclassified
/// (untargeted) or classified as its target (targeted).
pub struct AttackOutput {
    pub adversarial: Tensor<4>,
    pub success: Tensor<1, Bool>,
}

/// One adversarial attack. `labels` are the true classes, or the target classes when the
/// attack is targeted; `eps` holds one budget per sample so that one call sweeps budgets.
pub trait Attack {
    /// A short name for reports, e.g. `pgd-linf`.
    fn name(&self) -> String;
    /// `(iterations, restarts)` for reports: gradient steps, or queries for a black box.
    fn budget(&self) -> (usize, usize) {
        (1, 1)
    }
    fn run(
        &self,
        model: &Model,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        eps: &[f32],
        seed: u64,
    ) -> Result<AttackOutput>;
}

/// Checks the arguments every attack shares.
pub(crate) fn check_inputs(images: &Tensor<4>, labels: &Tensor<1, Int>, eps: &[f32]) -> Result<()> {
    let n = images.dims()[0];
    if labels.dims()[0] != n {
        return Err(Error::invalid(
            "attack",
            format!("{n} images but {} labels", labels.dims()[0]),
        ));
    }
    if eps.len() != n {
        return Err(Error::invalid(
            "attack",
            format!("{n} images but {} eps values", eps.len()),
        ));
    }
    if let Some(e) = eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
        return Err(Error::invalid(
            "attack",
            format!("eps must be finite and ≥ 0, got {e}"),
        ));
    }
    Ok(())
}

/// What every white-box attack starts from: the arguments checked, a frozen copy of the
/// model (no parameter gradients, no training behaviour), and the inputs off the autodiff
/// graph, so the caller's tensors are never touched.
pub(crate) fn prepare(
    model: &Model,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    eps: &[f32],
) -> Result<(Model, Tensor<4>, Tensor<1, Int>)> {
    check_inputs(&images, &labels, eps)?;
    Ok((
        model.frozen(),
        images.detach().without_autodiff(),
        labels.without_autodiff(),
    ))
}

/// Gradient of the summed per-sample objective with respect to the input. The model must be
/// frozen; the input is put on the autodiff device, so a model without autodiff works too.
/// Summing (not averaging) keeps each sample's gradient independent of the batch size.
pub fn input_gradient(
    model: &Model,
    x: Tensor<4>,
    labels: Tensor<1, Int>,
    loss: AttackLoss,
    targeted: bool,
) -> Tensor<4> {
    gradient_of(x, |x| {
        objective_per_sample(model.forward(x), labels, loss, targeted)
    })
}

/// Per-sample value the attack maximises.
pub fn objective_per_sample(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    loss: AttackLoss,
    targeted: bool,
) -> Tensor<1> {
    let value = match loss {
        AttackLoss::CrossEntropy => cross_entropy_per_sample(logits, labels),
        AttackLoss::CwMargin => cw_margin_per_sample(logits, labels),
    };
    if targeted { value.neg() } else { value }
}

/// Per-sample success of `adversarial` (see [`AttackOutput`]).
pub fn success(
    model: &Model,
    adversarial: Tensor<4>,
    labels: Tensor<1, Int>,
    targeted: bool,
) -> Tensor<1, Bool> {
    let pred = model.forward(adversarial).argmax(1).squeeze_dim::<1>(1);
    let hit = pred.equal(labels);
    if targeted { hit } else { hit.bool_not() }
}

/// Rows of a `[N]` mask broadcast over a `[N, C, H, W]` tensor.
pub(crate) fn rows(mask: &Tensor<1, Bool>, like: &Tensor<4>) -> Tensor<4, Bool> {
    let [n, ..] = like.dims();
    mask.clone().reshape([n, 1, 1, 1]).expand(like.shape())
}

/// Merges one more run of a multi-run attack into the best so far: each sample keeps the
/// first point that succeeded (or the first run's point while none has).
pub(crate) fn keep_first_success(
    best: Option<(Tensor<4>, Tensor<1, Bool>)>,
    candidate: Tensor<4>,
    hit: Tensor<1, Bool>,
) -> (Tensor<4>, Tensor<1, Bool>) {
    match best {
        None => (candidate, hit),
        Some((points, done)) => {
            let take = hit.clone().bool_and(done.clone().bool_not());
            (
                points.mask_where(rows(&take, &candidate), candidate),
                done.bool_or(hit),
            )
        }
    }
}

/// Per-sample budgets as a broadcastable `[N, 1, 1, 1]` tensor.
pub(crate) fn eps_tensor(eps: &[f32], like: &Tensor<4>) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(eps.to_vec(), [eps.len(), 1, 1, 1]),
        &like.device(),
    )
}

/// Per-sample L2 norm as `[N, 1, 1, 1]`.
pub(crate) fn l2_norm(t: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = t.dims();
    t.powi_scalar(2)
        .reshape([n, c * h * w])
        .sum_dim(1)
        .sqrt()
        .reshape([n, 1, 1, 1])
}

/// Projects `x_adv` onto `{x' : ‖x' − x‖ ≤ ε} ∩ [0, 1]`.
pub fn project(x: &Tensor<4>, x_adv: Tensor<4>, eps: &Tensor<4>, norm: Norm) -> Tensor<4> {
    let delta = x_adv - x.clone();
    let delta = match norm {
        Norm::Linf => delta
            .clone()
            .max_pair(eps.clone().neg())
            .min_pair(eps.clone()),
        Norm::L2 => {
            let scale = (eps.clone() / l2_norm(delta.clone()).clamp_min(1e-12)).clamp_max(1.0);
            delta * scale
        }
    };
    // Clipping to the box after projecting onto the ball cannot leave the ball: it only
    // moves coordinates back towards x.
    (x.clone() + delta).clamp(0.0, 1.0)
}

/// One ascent step of size `alpha` (`[N,1,1,1]`) along the norm's steepest direction.
pub fn ascent_step(x_adv: Tensor<4>, grad: Tensor<4>, alpha: &Tensor<4>, norm: Norm) -> Tensor<4> {
    let direction = match norm {
        Norm::Linf => grad.sign(),
        Norm::L2 => grad.clone() / l2_norm(grad).clamp_min(1e-12),
    };
    x_adv + direction * alpha.clone()
}

/// A random start inside the ε-ball, drawn on the host from `seed` so that runs are
/// reproducible on every backend.
pub fn random_start(x: &Tensor<4>, eps: &[f32], norm: Norm, seed: u64) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let per = c * h * w;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut noise = vec![0f32; n * per];
    for (i, chunk) in noise.chunks_mut(per).enumerate() {
        match norm {
            Norm::Linf => {
                for v in chunk.iter_mut() {
                    *v = rng.random_range(-1.0f32..=1.0) * eps[i];
                }
            }
            Norm::L2 => {
                // Uniform direction (normalised Gaussian, Box–Muller) and radius ε·u^(1/d).
                for v in chunk.iter_mut() {
                    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                    let u2: f32 = rng.random_range(0.0..1.0);
                    *v = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                }
                let norm = chunk.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                let radius = eps[i] * rng.random_range(0.0f32..1.0).powf(1.0 / per as f32);
                chunk.iter_mut().for_each(|v| *v *= radius / norm);
            }
        }
    }
    let noise = Tensor::<4>::from_data(TensorData::new(noise, [n, c, h, w]), &x.device());
    (x.clone() + noise).clamp(0.0, 1.0)
}
