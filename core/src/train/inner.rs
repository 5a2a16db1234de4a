//! The inner maximisations of adversarial training: the method's training inputs, TRADES'
//! KL ascent and ANC's targeted negatives. Each runs on a frozen copy of the model.

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Method;
use crate::attack::pgd::StepSize;
use crate::attack::semantic::{Sia, SiaConfig};
use crate::attack::{Norm, PgdConfig, project};
use crate::error::{Error, Result};
use crate::gradient::gradient_of;
use crate::model::Model;

/// ANC's negatives: for each anchor a random example of another class in the batch, moved by
/// a targeted L∞ PGD (random start, step 2.5·ε/steps) towards the anchor's label. Returns
/// the negatives, their own labels, and 1/0 per anchor for "found one".
pub(super) fn make_negatives(
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
pub(super) fn trades_adversarial(
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
        let grad = gradient_of(adv.clone(), |a| {
            let log_adv = burn::tensor::activation::log_softmax(frozen.forward(a), 1);
            // The batch's total KL as one value: the step's sign ignores the scale.
            (p_nat.clone().autodiff() * (p_nat.clone().autodiff().clamp_min(1e-12).log() - log_adv))
                .sum()
        });
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
pub(super) fn adversarial_inputs(
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
