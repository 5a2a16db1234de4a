//! Input gradients: the one require-grad / backward step that every gradient loop shares
//! (attacks on images, TRADES' inner maximisation, RAT on embeddings, word importances).

use burn::tensor::Tensor;

/// Gradient of `objective`'s per-sample values, summed, with respect to `x`, plus whatever
/// else the objective returns (its logits, say). `x` is detached and put on the autodiff
/// device here, so a model without autodiff works too; summing (not averaging) keeps each
/// sample's gradient independent of the batch size. An objective that does not depend on
/// `x` has a zero gradient.
pub fn gradient<const D: usize, T>(
    x: Tensor<D>,
    objective: impl FnOnce(Tensor<D>) -> (Tensor<1>, T),
) -> (Tensor<D>, T) {
    let x = x.detach().autodiff().require_grad();
    let (value, extra) = objective(x.clone());
    let value = value.sum();
    // An objective cut off from `x` (detached, or constant) has no graph to run backward on.
    let grad = if value.is_tracked() {
        x.grad(&value.backward())
    } else {
        None
    };
    let grad = grad.unwrap_or_else(|| x.detach().without_autodiff().zeros_like());
    crate::progress::tick();
    (grad, extra)
}

/// [`gradient`] of an objective that returns nothing else.
pub fn gradient_of<const D: usize>(
    x: Tensor<D>,
    objective: impl FnOnce(Tensor<D>) -> Tensor<1>,
) -> Tensor<D> {
    gradient(x, |x| (objective(x), ())).0
}
