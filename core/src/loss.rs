//! Classification losses. Per-sample versions return `[N]`; the plain ones the batch mean.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `log p(target)` for each row: `[N]`.
fn target_log_prob(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1)
        .gather(1, targets.unsqueeze_dim(1))
        .squeeze_dim(1)
}

/// Per-sample cross-entropy `-log softmax(z)_y`.
pub fn cross_entropy_per_sample(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    target_log_prob(logits, targets).neg()
}

/// Mean cross-entropy.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    cross_entropy_per_sample(logits, targets).mean()
}

/// Carlini–Wagner margin `max_{j≠y} z_j − z_y` per sample: positive once misclassified.
pub fn cw_margin_per_sample(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [_, k] = logits.dims();
    let one_hot = targets.clone().one_hot::<2>(k).float();
    let true_logit = (logits.clone() * one_hot.clone()).sum_dim(1).squeeze_dim(1);
    // Push the true class far down before taking the max over the others.
    let others = logits - one_hot * 1e9;
    others.max_dim(1).squeeze_dim(1) - true_logit
}

/// Focal loss (Lin et al. 2017): `-α_y (1 − p_y)^γ log p_y`, γ ≥ 0, optional per-class α.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FocalLoss {
    pub gamma: f32,
    pub alpha: Option<Vec<f32>>,
}

impl FocalLoss {
    pub fn new(gamma: f32, alpha: Option<Vec<f32>>) -> Result<Self> {
        if !(gamma.is_finite() && gamma >= 0.0) {
            return Err(Error::invalid(
                "focal loss",
                format!("gamma must be ≥ 0, got {gamma}"),
            ));
        }
        if let Some(a) = &alpha
            && a.iter().any(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(Error::invalid(
                "focal loss",
                "alpha weights must be finite and ≥ 0",
            ));
        }
        Ok(Self { gamma, alpha })
    }

    pub fn per_sample(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let device = logits.device();
        let k = logits.dims()[1];
        let log_p = target_log_prob(logits, targets.clone());
        let p = log_p.clone().exp();
        // (1 - p)^γ; clamp keeps powf away from tiny negative values.
        let modulator = (p.neg() + 1.0).clamp_min(0.0).powf_scalar(self.gamma);
        let loss = modulator * log_p.neg();
        match &self.alpha {
            Some(alpha) => {
                assert_eq!(alpha.len(), k, "one alpha per class");
                let alpha = Tensor::<1>::from_data(TensorData::new(alpha.clone(), [k]), &device);
                loss * alpha.select(0, targets)
            }
            None => loss,
        }
    }

    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.per_sample(logits, targets).mean()
    }
}
