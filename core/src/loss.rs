//! Classification losses. Per-sample versions return `[N]`; the plain ones the batch mean.

use burn::tensor::activation::{log_softmax, softmax};
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

/// Class-weighted mean cross-entropy with PyTorch's normalisation
/// (`F.cross_entropy(weight=w)`): `Σ w_y·CE / Σ w_y`. `weights` has one entry per class.
pub fn weighted_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: &[f32],
) -> Tensor<1> {
    let device = logits.device();
    assert_eq!(weights.len(), logits.dims()[1], "one weight per class");
    let w = Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [weights.len()]), &device)
        .select(0, targets.clone());
    (cross_entropy_per_sample(logits, targets) * w.clone()).sum() / w.sum()
}

/// Inverse-frequency class weights `N / (K · n_c)` (1 for a balanced set); a class with no
/// items gets weight 0.
pub fn inverse_frequency_weights(counts: &[usize]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    let k = counts.len();
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                n as f32 / (k * c) as f32
            }
        })
        .collect()
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

/// The classes sorted by logit, descending, as gather indices `[N, K]` (taken on a detached
/// copy: the values are then gathered from the live logits, so gradients flow).
fn ranking(logits: &Tensor<2>) -> Tensor<2, Int> {
    logits.clone().detach().argsort_descending(1)
}

/// Column `k` of a ranking, `[N, 1]`.
fn ranked(order: &Tensor<2, Int>, k: usize) -> Tensor<2, Int> {
    let n = order.dims()[0];
    order.clone().slice([0..n, k..k + 1])
}

fn pick(logits: &Tensor<2>, index: Tensor<2, Int>) -> Tensor<1> {
    logits.clone().gather(1, index).squeeze_dim(1)
}

/// Difference-of-logits-ratio loss (Croce & Hein 2020), untargeted, per sample:
/// `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)`, π the classes sorted by logit. Needs ≥ 3
/// classes; invariant to shifting and scaling the logits.
pub fn dlr_per_sample(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let order = ranking(&logits);
    let first = ranked(&order, 0);
    let top_is_true = first.clone().squeeze_dim::<1>(1).equal(targets.clone());
    let runner_up = ranked(&order, 1);
    let z_first = pick(&logits, first.clone());
    // The best other class: the runner-up when the true class leads, else the leader.
    let other = first.mask_where(top_is_true.unsqueeze_dim(1), runner_up);
    let z_y = pick(&logits, targets.unsqueeze_dim(1));
    let scale = z_first - pick(&logits, ranked(&order, 2)) + 1e-12;
    (z_y - pick(&logits, other)).neg() / scale
}

/// Targeted DLR (Croce & Hein 2020) per sample:
/// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`. Needs ≥ 4 classes.
pub fn dlr_targeted_per_sample(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    targets: Tensor<1, Int>,
) -> Tensor<1> {
    let z_y = pick(&logits, labels.unsqueeze_dim(1));
    let z_t = pick(&logits, targets.unsqueeze_dim(1));
    let order = ranking(&logits);
    let scale = pick(&logits, ranked(&order, 0))
        - (pick(&logits, ranked(&order, 2)) + pick(&logits, ranked(&order, 3))) * 0.5
        + 1e-12;
    (z_y - z_t).neg() / scale
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

/// TRADES' robust term (Zhang et al. 2019): `KL(p(x) ‖ p(x_adv))` per sample, summed over
/// classes, `p = softmax`. Gradients flow through both arguments, as in the official code.
pub fn trades_kl_per_sample(logits_nat: Tensor<2>, logits_adv: Tensor<2>) -> Tensor<1> {
    let log_nat = log_softmax(logits_nat, 1);
    let log_adv = log_softmax(logits_adv, 1);
    (log_nat.clone().exp() * (log_nat - log_adv))
        .sum_dim(1)
        .squeeze_dim(1)
}

/// The TRADES loss `CE(f(x), y) + β · mean KL(p(x) ‖ p(x_adv))`.
pub fn trades_loss(
    logits_nat: Tensor<2>,
    logits_adv: Tensor<2>,
    targets: Tensor<1, Int>,
    beta: f32,
) -> Tensor<1> {
    cross_entropy(logits_nat.clone(), targets)
        + trades_kl_per_sample(logits_nat, logits_adv).mean() * beta
}

/// The MART loss (Wang et al. 2020), following the official code:
/// `CE(f(x_adv), y) − mean log(1.0001 − p_adv[ŷ])` (ŷ the most likely wrong class of the
/// adversarial example: the boosted CE) `+ β · mean [KL(p(x) ‖ p(x_adv)) · (1.0000001 −
/// p_nat[y])]` (misclassification-aware KL, with `log(p_adv + 1e-12)`).
pub fn mart_loss(
    logits_nat: Tensor<2>,
    logits_adv: Tensor<2>,
    targets: Tensor<1, Int>,
    beta: f32,
) -> Tensor<1> {
    let [n, k] = logits_adv.dims();
    let adv_probs = softmax(logits_adv.clone(), 1);
    let one_hot = targets.clone().one_hot::<2>(k).float();
    // Most likely class other than y (argsort's last two, as in the official code).
    let wrong = (adv_probs.clone().detach() - one_hot * 1e9).argmax(1);
    let p_wrong = adv_probs.clone().gather(1, wrong).reshape([n]);
    let boosted = cross_entropy(logits_adv, targets.clone())
        + (p_wrong.neg() + (1.0001 + 1e-12)).log().neg().mean();
    let nat_probs = softmax(logits_nat, 1);
    let true_probs = nat_probs
        .clone()
        .gather(1, targets.unsqueeze_dim(1))
        .reshape([n]);
    let kl = (nat_probs.clone() * (nat_probs.log() - (adv_probs + 1e-12).log()))
        .sum_dim(1)
        .reshape([n]);
    boosted + (kl * (true_probs.neg() + 1.0000001)).mean() * beta
}

/// ANCRA's asymmetric negative contrast (arXiv 2310.03358, official code): for anchor
/// probabilities `p = softmax(anchor)` (no gradient) and negative probabilities
/// `q = softmax(negative)`, `mean_i 1[argmax p_i = argmax q_i] · √(p_i,c · q_i,c) · valid_i`,
/// `c = argmax p_i`: it pushes a negative (an example of another class) away from the class
/// the anchor is predicted as, only while it is predicted as that class too. `valid` (`[N]`,
/// 0 or 1) drops anchors that found no negative.
pub fn anc_loss(anchor: Tensor<2>, negative: Tensor<2>, valid: Tensor<1>) -> Tensor<1> {
    let n = anchor.dims()[0];
    let p = softmax(anchor.detach(), 1);
    let q = softmax(negative, 1);
    let c = p.clone().argmax(1);
    let same = c
        .clone()
        .squeeze_dim::<1>(1)
        .equal(q.clone().detach().argmax(1).squeeze_dim(1))
        .float();
    let p_c = p.gather(1, c.clone()).reshape([n]);
    let q_c = q.gather(1, c).reshape([n]);
    ((p_c * q_c).clamp_min(1e-20).sqrt() * same * valid).mean()
}
