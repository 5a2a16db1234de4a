//! Validation after each epoch: clean accuracy and, for robust validation, accuracy under
//! PGD (and, for reverse-attention models, under PGD through the auxiliary heads).

use burn::module::Module;
use burn::tensor::Device;

use super::TrainConfig;
use crate::attack::pgd::StepSize;
use crate::attack::ra::{RaAttack, RaAttackKind};
use crate::attack::{Attack, Norm, PgdConfig};
use crate::data::ImageDataset;
use crate::error::Result;
use crate::model::Model;

/// Clean accuracy with synchronous reads (native training only).
pub(super) fn clean_accuracy_sync(
    model: &Model,
    data: &ImageDataset,
    batch: usize,
    device: &Device,
) -> f64 {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut correct = 0i64;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch) {
        let (x, y) = data.batch(chunk, &device);
        correct += model
            .forward(x)
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(y)
            .int()
            .sum()
            .into_scalar::<i64>();
    }
    correct as f64 / data.len().max(1) as f64
}

/// Accuracy under the recipe's validation PGD on the first `val_pgd_samples` images.
pub(super) fn robust_accuracy_sync(
    model: &Model,
    data: &ImageDataset,
    config: &TrainConfig,
    device: &Device,
    seed: u64,
) -> Result<f64> {
    let eps = config.method.eps();
    let steps = config.val_pgd_steps;
    let mut attacks: Vec<Box<dyn Attack>> = vec![Box::new(
        PgdConfig {
            step_size: StepSize::Absolute(2.5 * eps / steps as f32),
            ..PgdConfig::new(Norm::Linf, steps)
        }
        .init()?,
    )];
    // The test-time mask of a reverse-attention model hides the plain attack's gradient:
    // checkpoints are chosen on the worst case with the attack through the auxiliary heads.
    if model.has_reverse_attention() {
        attacks.push(Box::new(RaAttack::new(RaAttackKind::AuxHead, steps)?));
    }
    let n = data.len().min(config.val_pgd_samples);
    let idx: Vec<usize> = (0..n).collect();
    let inference = model.valid();
    let mut held = 0usize;
    for (b, chunk) in idx.chunks(250).enumerate() {
        let (x, y) = data.batch(chunk, device);
        // Wrong on the clean input counts as broken.
        let mut broken = inference
            .forward(x.clone().without_autodiff())
            .argmax(1)
            .squeeze_dim::<1>(1)
            .not_equal(y.clone().without_autodiff());
        for attack in &attacks {
            let out = attack.run(
                model,
                x.clone(),
                y.clone(),
                &vec![eps; chunk.len()],
                seed.wrapping_add(b as u64),
            )?;
            broken = broken.bool_or(out.success);
        }
        held += chunk.len() - broken.int().sum().into_scalar::<i64>() as usize;
    }
    Ok(held as f64 / n.max(1) as f64)
}
