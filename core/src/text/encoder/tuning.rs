//! What fine-tuning needs of the encoder: copies of its top layers, the encoder with them
//! replaced (and a fingerprint that says so), and the token vectors under them.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::{BertLayer, SentenceEncoder};
use crate::error::{Error, Result};

/// A text's token vectors at some layer: its windows' lengths and their vectors packed end
/// to end (`[Σ lengths, hidden]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenStates {
    pub lengths: Vec<usize>,
    pub values: Vec<f32>,
}

impl BertLayer {
    /// The layer's parameters as one vector in the host kernel's order
    /// ([`crate::kernels::bert_grad`]); autodiff carries the gradient back to each.
    fn flat_params(&self) -> Tensor<1> {
        let flat = |t: Tensor<2>| {
            let [r, c] = t.dims();
            t.reshape([r * c])
        };
        let bias = |l: &Linear| match &l.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([l.weight.dims()[1]], &l.weight.device()),
        };
        let beta = |n: &LayerNorm| match &n.beta {
            Some(b) => b.val(),
            None => Tensor::zeros(n.gamma.dims(), &n.gamma.device()),
        };
        let (q, k, v) = (&self.query, &self.key, &self.value);
        Tensor::cat(
            vec![
                flat(Tensor::cat(
                    vec![q.weight.val(), k.weight.val(), v.weight.val()],
                    1,
                )),
                Tensor::cat(vec![bias(q), bias(k), bias(v)], 0),
                flat(self.attention_out.weight.val()),
                bias(&self.attention_out),
                self.attention_norm.gamma.val(),
                beta(&self.attention_norm),
                flat(self.intermediate.weight.val()),
                bias(&self.intermediate),
                flat(self.output.weight.val()),
                bias(&self.output),
                self.output_norm.gamma.val(),
                beta(&self.output_norm),
            ],
            0,
        )
    }

    /// [`BertLayer::forward`] on windows of `lengths` tokens (`x` `[windows, length, hidden]`
    /// padded, `bias` from their mask). On the CPU backend it runs as one operation of the host
    /// kernel, forward and backward, on the windows packed without padding; rows past a
    /// window's length then come out 0 instead of Burn's values, which nothing reads (their
    /// keys are masked and pooling skips them).
    pub fn forward_windows(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        lengths: &[usize],
        heads: usize,
    ) -> Tensor<3> {
        let [w, l, h] = x.dims();
        let shape = crate::kernels::bert_grad::LayerShape {
            hidden: h,
            inner: self.intermediate.weight.dims()[1],
            heads,
            eps: self.eps as f32,
        };
        let fits =
            lengths.len() == w && lengths.iter().all(|&n| n <= l) && heads > 0 && h % heads == 0;
        // The flat parameters are built only where the kernel takes them (a concatenation
        // the autodiff graph would otherwise carry for nothing).
        if fits && crate::kernels::serves(&x.device()) && x.dtype() == DType::F32 {
            let params = self.flat_params();
            if params.dims()[0] == shape.params() && params.dtype() == DType::F32 {
                return crate::kernels::bert_layer(x, params, lengths.to_vec(), shape);
            }
        }
        self.forward(x, bias, heads)
    }

    fn linears(&self) -> [&Linear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_out,
            &self.intermediate,
            &self.output,
        ]
    }

    /// The layer's shapes, weights then biases and norms, in a fixed order.
    fn shapes(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for l in self.linears() {
            out.push(l.weight.dims().to_vec());
            out.extend(l.bias.iter().map(|b| b.dims().to_vec()));
        }
        for n in [&self.attention_norm, &self.output_norm] {
            out.push(n.gamma.dims().to_vec());
            out.extend(n.beta.iter().map(|b| b.dims().to_vec()));
        }
        out
    }

    /// The layer's values in the order of [`BertLayer::shapes`].
    async fn values(&self) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for l in self.linears() {
            out.push(crate::tensor_io::read_floats(l.weight.val()).await?);
            if let Some(b) = &l.bias {
                out.push(crate::tensor_io::read_floats(b.val()).await?);
            }
        }
        for n in [&self.attention_norm, &self.output_norm] {
            out.push(crate::tensor_io::read_floats(n.gamma.val()).await?);
            if let Some(b) = &n.beta {
                out.push(crate::tensor_io::read_floats(b.val()).await?);
            }
        }
        Ok(out)
    }

    /// An inference copy (no autodiff graph) on `device`.
    fn valid_on(self, device: &Device) -> Self {
        self.valid().fork(device)
    }
}

impl SentenceEncoder {
    /// Copies of the top `k` transformer layers (bottom first), on `device`: the start of
    /// fine-tuning.
    pub fn top_layers(&self, k: usize, device: &Device) -> Result<Vec<BertLayer>> {
        let n = self.num_layers();
        if !(1..=n).contains(&k) {
            return Err(Error::invalid(
                "fine-tuned layers",
                format!("the encoder has {n} layers; 1..={n} can be fine-tuned, not {k}"),
            ));
        }
        Ok(self.bert.layers[n - k..]
            .iter()
            .map(|l| l.clone().fork(device))
            .collect())
    }

    /// The encoder with its top `layers.len()` layers replaced (e.g. by fine-tuned ones). The
    /// fingerprint becomes SHA-256 of the base's fingerprint, the number of layers replaced and
    /// their weights: embeddings cached under the base are not reused.
    pub async fn with_top_layers(mut self, layers: Vec<BertLayer>) -> Result<Self> {
        let (n, k) = (self.num_layers(), layers.len());
        if !(1..=n).contains(&k) {
            return Err(Error::invalid(
                "fine-tuned layers",
                format!("the encoder has {n} layers; 1..={n} can be replaced, not {k}"),
            ));
        }
        let mut hash = Sha256::new();
        hash.update(self.fingerprint.as_bytes());
        hash.update((k as u64).to_le_bytes());
        let device = self.bert.word_embeddings.weight.device();
        let mut placed = Vec::with_capacity(k);
        for (new, old) in layers.into_iter().zip(&self.bert.layers[n - k..]) {
            let new = new.valid_on(&device);
            let (got, want) = (new.shapes(), old.shapes());
            if got.len() != want.len() {
                return Err(Error::invalid(
                    "fine-tuned layers",
                    format!("{} weights where the encoder has {}", got.len(), want.len()),
                ));
            }
            for (a, b) in got.iter().zip(want) {
                if *a != b {
                    return Err(Error::invalid(
                        "fine-tuned layers",
                        format!("a weight of shape {a:?} where the encoder has {b:?}"),
                    ));
                }
            }
            for v in new.values().await? {
                for x in v {
                    hash.update(x.to_le_bytes());
                }
            }
            placed.push(new);
        }
        self.bert.layers.truncate(n - k);
        self.bert.layers.extend(placed);
        self.host = std::sync::OnceLock::new();
        self.fingerprint = format!("{:x}", hash.finalize());
        Ok(self)
    }

    /// Each text's windows (see the module's documentation) and the token vectors entering
    /// layer `below` (`0..=num_layers`): what the frozen layers under fine-tuned ones compute,
    /// done once before training. On the CPU backend the host kernel computes them.
    pub async fn token_states(
        &self,
        texts: &[&str],
        below: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<TokenStates>> {
        if below > self.num_layers() {
            return Err(Error::invalid(
                "token states",
                format!("the encoder has {} layers, not {below}", self.num_layers()),
            ));
        }
        let host = if crate::kernels::serves(device) {
            Some(self.host_bert().await?)
        } else {
            None
        };
        let h = self.hidden;
        let mut out = Vec::with_capacity(texts.len());
        // A few texts at a time: enough tokens for the matrix products to pay.
        for (done, chunk) in texts.chunks(32).enumerate() {
            let windows = self.windows(chunk)?;
            let values = match host {
                Some(bert) => {
                    let ids: Vec<&[u32]> = windows.iter().map(|w| &w.ids[..]).collect();
                    bert.forward_until(&ids, below)
                }
                None => {
                    let l = windows.iter().map(|w| w.ids.len()).max().unwrap_or(0);
                    let all: Vec<usize> = (0..windows.len()).collect();
                    let (ids, mask) = self.batch(&windows, &all, l, device);
                    let words = self.bert.embed_words(ids);
                    let x = self.bert.forward_embedded_until(words, mask, below);
                    let padded = crate::tensor_io::read_floats(x).await?;
                    let mut packed = Vec::new();
                    for (r, w) in windows.iter().enumerate() {
                        packed.extend_from_slice(&padded[r * l * h..(r * l + w.ids.len()) * h]);
                    }
                    packed
                }
            };
            let mut start = 0;
            for t in 0..chunk.len() {
                let lengths: Vec<usize> = windows
                    .iter()
                    .filter(|w| w.text == t)
                    .map(|w| w.ids.len())
                    .collect();
                let n: usize = lengths.iter().sum();
                out.push(TokenStates {
                    lengths,
                    values: values[start * h..(start + n) * h].to_vec(),
                });
                start += n;
            }
            progress((done * 32 + chunk.len()).min(texts.len()), texts.len());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{LayerNormConfig, LinearConfig};
    use burn::tensor::TensorData;

    /// Values in [-1, 1) from a xorshift stream.
    fn signed(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn tensor<const D: usize>(
        shape: [usize; D],
        seed: u64,
        scale: f32,
        device: &Device,
    ) -> Tensor<D> {
        let v = signed(shape.iter().product(), seed)
            .into_iter()
            .map(|x| x * scale)
            .collect::<Vec<_>>();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// A random layer: hidden `h`, feed-forward width `f`, norms with scales and shifts away
    /// from 1 and 0.
    fn layer(h: usize, f: usize, device: &Device) -> BertLayer {
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let norm = |seed| {
            let mut n = LayerNormConfig::new(h).with_epsilon(1e-12).init(device);
            n.gamma = Param::from_tensor(tensor([h], seed, 0.5, device) + 1.0);
            n.beta = Some(Param::from_tensor(tensor([h], seed + 1, 0.5, device)));
            n
        };
        BertLayer {
            query: linear(h, h),
            key: linear(h, h),
            value: linear(h, h),
            attention_out: linear(h, h),
            attention_norm: norm(11),
            intermediate: linear(h, f),
            output: linear(f, h),
            output_norm: norm(13),
            eps: 1e-12,
        }
    }

    fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// The gradient of every parameter of the layer, flattened, in a fixed order.
    fn param_grads(
        l: &BertLayer,
        grads: &burn::tensor::Gradients,
    ) -> Vec<(&'static str, Vec<f32>)> {
        let mut out = Vec::new();
        let names = [
            "query",
            "key",
            "value",
            "attention_out",
            "intermediate",
            "output",
        ];
        for (name, lin) in names.into_iter().zip(l.linears()) {
            out.push((name, floats(lin.weight.val().grad(grads).unwrap())));
            out.push((
                name,
                floats(lin.bias.as_ref().unwrap().val().grad(grads).unwrap()),
            ));
        }
        for (name, n) in [
            ("attention_norm", &l.attention_norm),
            ("output_norm", &l.output_norm),
        ] {
            out.push((name, floats(n.gamma.val().grad(grads).unwrap())));
            out.push((
                name,
                floats(n.beta.as_ref().unwrap().val().grad(grads).unwrap()),
            ));
        }
        out
    }

    /// The host kernel's layer against Burn's operations on the same weights: values on every
    /// window's tokens (0 on padding), and the gradients of a weighted sum of the tokens' outputs
    /// with respect to the input and every parameter; windows of several lengths, one of a
    /// single token and one empty.
    #[test]
    fn the_host_layer_matches_burn_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        for (h, heads, f, lengths, seed) in [
            (16, 4, 24, vec![5usize, 1, 9, 0], 1u64),
            (32, 2, 40, vec![3, 7], 2),
            // Over 64 tokens: the dense products split into row blocks across threads.
            (16, 2, 24, vec![70, 33, 2], 3),
        ] {
            let layer = layer(h, f, &device);
            let (w, l) = (lengths.len(), *lengths.iter().max().unwrap());
            let mask_values: Vec<f32> = lengths
                .iter()
                .flat_map(|&n| (0..l).map(move |i| if i < n { 1.0 } else { 0.0 }))
                .collect();
            let mask =
                Tensor::<2>::from_data(TensorData::new(mask_values.clone(), [w, l]), &device);
            let bias = crate::text::encoder::attention_bias(mask.clone());
            let x0 = tensor([w, l, h], seed, 2.0, &device);
            let r = tensor([w, l, h], seed + 7, 1.0, &device) * mask.clone().reshape([w, l, 1]);
            let run = |host: bool| {
                let x = x0.clone().require_grad();
                let y = if host {
                    layer.forward_windows(x.clone(), bias.clone(), &lengths, heads)
                } else {
                    layer.forward(x.clone(), bias.clone(), heads)
                };
                let grads = (y.clone() * r.clone()).sum().backward();
                let dx = floats(x.grad(&grads).unwrap());
                let dp = param_grads(&layer, &grads);
                (floats(y), dx, dp)
            };
            let (y, dx, dp) = run(true);
            let (y_ref, dx_ref, dp_ref) = run(false);
            let close = |a: &[f32], b: &[f32], what: &str| {
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                for (i, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= 2e-5 * scale,
                        "{what}[{i}]: {p} vs {q} (h {h})"
                    );
                }
            };
            // Tokens' rows equal Burn's; padding rows are 0 (Burn computes them, nothing reads them).
            let rows: Vec<bool> = mask_values.iter().map(|&m| m == 1.0).collect();
            for ((row, a), b) in rows.iter().zip(y.chunks(h)).zip(y_ref.chunks(h)) {
                if *row {
                    close(a, b, "output");
                } else {
                    assert!(a.iter().all(|&v| v == 0.0));
                }
            }
            close(&dx, &dx_ref, "input gradient");
            assert!(dx.iter().any(|&v| v != 0.0));
            for ((name, a), (_, b)) in dp.iter().zip(&dp_ref) {
                close(a, b, name);
                assert!(a.iter().any(|&v| v != 0.0), "{name}: all zero");
            }
        }
    }
}
