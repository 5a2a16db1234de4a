//! The fine-tuned stack: the top layers and the head as one module, its batches of token
//! vectors, token-level RAT perturbations, and inference.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::text::classifier::{Mlp, Perturbation};
use crate::text::encoder::{BertLayer, TokenStates, attention_bias};

/// The fine-tuned top layers and the head, as one module.
#[derive(Module, Debug)]
pub struct TunedClassifier {
    pub layers: Vec<BertLayer>,
    pub head: Mlp,
    #[module(skip)]
    heads: usize,
}

/// A mini-batch of texts: their windows' token vectors `[windows, length, hidden]` (padded),
/// the mask, and `pool` `[texts, windows]`, which averages a text's windows' token sums.
pub struct Batch {
    x: Tensor<3>,
    mask: Tensor<2>,
    pool: Tensor<2>,
    /// Each window's tokens (the mask's ones).
    lengths: Vec<usize>,
}

impl Batch {
    /// The padded token vectors `[windows, length, hidden]`.
    pub fn tokens(&self) -> Tensor<3> {
        self.x.clone()
    }

    /// 1 for a token, 0 for padding, `[windows, length]`.
    pub fn mask(&self) -> Tensor<2> {
        self.mask.clone()
    }

    /// The batch of `texts` (indices into `states`) on `device`.
    pub fn new(states: &[&TokenStates], texts: &[usize], hidden: usize, device: &Device) -> Self {
        let windows: Vec<(usize, usize, &[f32])> = texts
            .iter()
            .enumerate()
            .flat_map(|(r, &t)| {
                let s = states[t];
                let mut start = 0;
                s.lengths.iter().map(move |&len| {
                    let rows = &s.values[start * hidden..(start + len) * hidden];
                    start += len;
                    (r, len, rows)
                })
            })
            .collect();
        let (w, l) = (
            windows.len(),
            windows.iter().map(|w| w.1).max().unwrap_or(1).max(1),
        );
        let mut x = vec![0f32; w * l * hidden];
        let mut mask = vec![0f32; w * l];
        let mut pool = vec![0f32; texts.len() * w];
        let mut counts = vec![0usize; texts.len()];
        for &(r, len, _) in &windows {
            counts[r] += len;
        }
        for (i, &(r, len, rows)) in windows.iter().enumerate() {
            x[i * l * hidden..i * l * hidden + rows.len()].copy_from_slice(rows);
            mask[i * l..i * l + len].fill(1.0);
            pool[r * w + i] = 1.0 / counts[r].max(1) as f32;
        }
        Self {
            x: Tensor::from_data(TensorData::new(x, [w, l, hidden]), device),
            mask: Tensor::from_data(TensorData::new(mask, [w, l]), device),
            pool: Tensor::from_data(TensorData::new(pool, [texts.len(), w]), device),
            lengths: windows.iter().map(|w| w.1).collect(),
        }
    }
}

/// Each token row (last axis) of `d` scaled to L2 length `eps`.
fn scale_tokens(d: Tensor<3>, eps: f32) -> Tensor<3> {
    let norm = d.clone().square().sum_dim(2).sqrt().clamp_min(1e-12);
    d / norm * eps
}

/// The batch with its token vectors perturbed for RAT (`None` for [`Perturbation::None`]):
/// Gaussian noise or FGM of L2 length `eps` per token, or PGD inside each token's L2 ball of
/// radius `eps` (step 2.5·eps/steps); gradients are taken on a frozen copy of `model`.
pub fn perturb_tokens(
    kind: Perturbation,
    model: &TunedClassifier,
    batch: &Batch,
    y: &Tensor<1, Int>,
    rat: &crate::text::rat::RatConfig,
    eps: f32,
    loss: &crate::loss::FocalLoss,
) -> Option<Batch> {
    let x0 = batch.x.clone().detach();
    let at = |x: Tensor<3>| Batch {
        x,
        mask: batch.mask.clone(),
        pool: batch.pool.clone(),
        lengths: batch.lengths.clone(),
    };
    let grad = |m: &TunedClassifier, x: Tensor<3>| {
        crate::gradient::gradient_of(x, |x| loss.per_sample(m.forward(&at(x)), y.clone()))
    };
    let x = match kind {
        Perturbation::None => return None,
        Perturbation::Gaussian => {
            let noise = x0.random_like(burn::tensor::Distribution::Normal(0.0, 1.0));
            x0.clone() + scale_tokens(noise, eps)
        }
        Perturbation::Fgm => {
            let m = model.clone().freeze();
            x0.clone() + scale_tokens(grad(&m, x0.clone()), eps)
        }
        Perturbation::Pgd => {
            let m = model.clone().freeze();
            let step = 2.5 * eps / rat.pgd_steps as f32;
            let mut xa = x0.clone();
            for _ in 0..rat.pgd_steps {
                let moved = xa.clone() + scale_tokens(grad(&m, xa), step);
                let d = moved - x0.clone();
                let norm = d.clone().square().sum_dim(2).sqrt().clamp_min(1e-12);
                xa = (x0.clone() + d * (norm.recip() * eps).clamp_max(1.0)).detach();
            }
            xa
        }
    };
    Some(at(x.detach()))
}

impl TunedClassifier {
    pub fn new(layers: Vec<BertLayer>, head: Mlp, heads: usize) -> Self {
        Self {
            layers,
            head,
            heads,
        }
    }

    /// Unit sentence embeddings `[texts, hidden]`, pooled as [`SentenceEncoder::embed`] pools.
    pub fn embed(&self, batch: &Batch) -> Tensor<2> {
        let bias = attention_bias(batch.mask.clone());
        let mut x = batch.x.clone();
        for layer in &self.layers {
            x = layer.forward_windows(x, bias.clone(), &batch.lengths, self.heads);
        }
        let [w, l, h] = x.dims();
        let sums = (x * batch.mask.clone().reshape([w, l, 1]))
            .sum_dim(1)
            .reshape([w, h]);
        let mean = batch.pool.clone().matmul(sums);
        let norm = mean.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        mean / norm
    }

    pub fn forward(&self, batch: &Batch) -> Tensor<2> {
        self.head.forward(self.embed(batch))
    }
}

/// Class predictions of `model` for every text (inference: dropout off).
pub fn predict(model: &TunedClassifier, states: &[&TokenStates], device: &Device) -> Vec<usize> {
    predict_proba(model, states, device)
        .iter()
        .map(|p| crate::argmax(p))
        .collect()
}

/// Class probabilities of `model` for every text (inference: dropout off), in chunks of
/// similar length.
pub fn predict_proba(
    model: &TunedClassifier,
    states: &[&TokenStates],
    device: &Device,
) -> Vec<Vec<f32>> {
    let m = model.valid();
    let device = device.clone().without_autodiff();
    let h = states.first().map_or(0, |s| {
        s.values.len() / s.lengths.iter().sum::<usize>().max(1)
    });
    let mut order: Vec<usize> = (0..states.len()).collect();
    order.sort_by_key(|&t| states[t].lengths.iter().max().copied().unwrap_or(0));
    let mut out = vec![Vec::new(); states.len()];
    for chunk in order.chunks(32) {
        let logits = m.forward(&Batch::new(states, chunk, h, &device));
        let v = burn::tensor::activation::softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let k = v.len() / chunk.len();
        for (r, &t) in chunk.iter().enumerate() {
            out[t] = v[r * k..(r + 1) * k].to_vec();
        }
    }
    out
}
