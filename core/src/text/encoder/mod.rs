//! A BERT sentence encoder in Burn (all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads), loaded
//! from the `safetensors` weights and `tokenizer.json` of a sentence-transformers release.
//!
//! An embedding is the attention-masked mean of the last layer's token vectors, L2-normalised.
//! Reports longer than the model's window (`max_tokens`, 256 for MiniLM, counting `[CLS]` and
//! `[SEP]`) are cut into consecutive windows of `max_tokens − 2` word pieces, each framed by
//! `[CLS]` … `[SEP]` and encoded on its own; the text's embedding is the mean over the token
//! vectors of all windows (each window weighted by its length), then L2-normalised. A text that
//! fits one window gets exactly the sentence-transformers embedding; a longer one is read in
//! full instead of truncated.

mod tuning;
mod weights;

pub use tuning::TokenStates;

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::gradient::gradient_of;
use crate::kernels::bert as host;

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let c: BertConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid("encoder config.json", e.to_string()))?;
        if c.vocab_size == 0 || c.type_vocab_size == 0 || c.intermediate_size == 0 {
            return Err(Error::invalid(
                "encoder config.json",
                "vocab_size, type_vocab_size and intermediate_size must be positive",
            ));
        }
        if c.hidden_size == 0
            || c.num_attention_heads == 0
            || !c.hidden_size.is_multiple_of(c.num_attention_heads)
        {
            return Err(Error::invalid(
                "encoder config.json",
                "hidden_size must be a positive multiple of num_attention_heads",
            ));
        }
        Ok(c)
    }
}

/// One transformer layer (the unit fine-tuning trains: see [`crate::text::finetune`]).
#[derive(Module, Debug)]
pub struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    /// The norms' epsilon (LayerNorm keeps its own private), for the host kernel.
    #[module(skip)]
    eps: f64,
}

/// BERT's encoder stack (no pooler: sentence embeddings pool the token vectors).
#[derive(Module, Debug)]
pub struct Bert {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<BertLayer>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    eps: f64,
}

/// GELU written as x·Φ(x) with `erf`, so that its gradient is autodiff's of `erf`
/// (2/√π·e^(−x²), finite everywhere). Burn's fused `gelu` backward goes through `tanh` of a
/// cubic, which WebGPU implementations may evaluate as inf/inf = NaN for large inputs: the
/// word attributions were all NaN on Chromium's WebGPU with it.
fn gelu(x: Tensor<3>) -> Tensor<3> {
    x.clone() * ((x / std::f64::consts::SQRT_2).erf() + 1.0) * 0.5
}

impl BertLayer {
    /// `x` `[batch, length, hidden]`; `bias` `[batch, 1, 1, length]` is added to the attention
    /// scores (0 for tokens, −1e9 for padding).
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>, heads: usize) -> Tensor<3> {
        let [b, l, h] = x.dims();
        let dh = h / heads;
        let split = |t: Tensor<3>| t.reshape([b, l, heads, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt() + bias;
        let context = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, l, h]);
        let x = self
            .attention_norm
            .forward(self.attention_out.forward(context) + x);
        let inner = gelu(self.intermediate.forward(x.clone()));
        self.output_norm.forward(self.output.forward(inner) + x)
    }
}

impl Bert {
    /// Token vectors of the last layer, `[batch, length, hidden]`. `mask` is 1 for tokens and
    /// 0 for padding.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.forward_embedded(self.embed_words(ids), mask)
    }

    /// The word-piece vectors of `ids`, `[batch, length, hidden]`: the input that
    /// attributions are taken with respect to.
    pub fn embed_words(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.word_embeddings.forward(ids)
    }

    /// [`Bert::forward`] from word-piece vectors instead of ids (position and token-type
    /// embeddings are added here).
    pub fn forward_embedded(&self, words: Tensor<3>, mask: Tensor<2>) -> Tensor<3> {
        self.forward_embedded_until(words, mask, self.layers.len())
    }

    /// The token vectors entering layer `layers` (all of them: the last layer's output).
    fn forward_embedded_until(
        &self,
        words: Tensor<3>,
        mask: Tensor<2>,
        layers: usize,
    ) -> Tensor<3> {
        let [b, l, _] = words.dims();
        let device = mask.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
            .reshape([1, l])
            .expand([b, l]);
        let types = Tensor::<2, Int>::zeros([b, l], &device);
        let x = words
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(types);
        let mut x = self.embedding_norm.forward(x);
        let bias = attention_bias(mask);
        for layer in &self.layers[..layers.min(self.layers.len())] {
            x = layer.forward(x, bias.clone(), self.heads);
        }
        x
    }
}

/// The attention-score bias of a `[batch, length]` mask (1: token, 0: padding), shaped
/// `[batch, 1, 1, length]`: padding gets a large negative score, whose exp() is exactly 0 in f32.
pub fn attention_bias(mask: Tensor<2>) -> Tensor<4> {
    let [b, l] = mask.dims();
    (mask.reshape([b, 1, 1, l]) - 1.0) * 1e9
}

/// A text's word pieces: ids, the index of the pre-tokenised word (BERT splits words at
/// spaces and punctuation) each belongs to, and byte spans in the text.
#[derive(Debug, Clone)]
pub struct Pieces {
    pub ids: Vec<u32>,
    pub words: Vec<Option<u32>>,
    pub offsets: Vec<(usize, usize)>,
}

/// One window of word pieces, framed by `[CLS]` and `[SEP]`, and the text it belongs to.
struct Window {
    text: usize,
    ids: Vec<u32>,
}

/// Tokeniser + BERT + pooling: texts in, unit vectors out.
pub struct SentenceEncoder {
    tokenizer: tokenizers::Tokenizer,
    bert: Bert,
    cls: u32,
    sep: u32,
    pad: u32,
    max_tokens: usize,
    hidden: usize,
    /// The host kernel's copy of the weights, made on the first embedding on the CPU backend.
    host: std::sync::OnceLock<host::HostBert>,
    /// SHA-256 of the weights and tokeniser: embeddings cached under another model are stale.
    pub fingerprint: String,
}

impl SentenceEncoder {
    /// Builds the encoder from the bytes of `config.json`, `model.safetensors` and
    /// `tokenizer.json` (no file system needed, so the browser can use it too).
    pub fn from_bytes(
        config_json: &[u8],
        weights: &[u8],
        tokenizer_json: &[u8],
        max_tokens: usize,
        device: &Device,
    ) -> Result<Self> {
        let config = BertConfig::from_json(config_json)?;
        if !(3..=config.max_position_embeddings).contains(&max_tokens) {
            return Err(Error::invalid(
                "encoder",
                format!(
                    "max_tokens must be in 3..={}, got {max_tokens}",
                    config.max_position_embeddings
                ),
            ));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| Error::invalid("tokenizer.json", e.to_string()))?;
        // The release's tokenizer pads and truncates to 128; windows are made here instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::invalid("tokenizer.json", e.to_string()))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| Error::invalid("tokenizer.json", format!("no {t} token")))
        };
        let (cls, sep, pad) = (id("[CLS]")?, id("[SEP]")?, id("[PAD]")?);
        // Every id the tokeniser can produce must have a row in the embedding table: a lookup
        // past its end would panic (a trap in wasm) on the first text that used it.
        let largest = tokenizer.get_vocab(true).into_values().max().unwrap_or(0) as usize;
        if largest >= config.vocab_size {
            return Err(Error::invalid(
                "tokenizer.json",
                format!(
                    "token id {largest} is beyond the model's vocabulary of {} rows",
                    config.vocab_size
                ),
            ));
        }
        let bert = Bert::from_safetensors(&config, weights, device)?;
        let mut hash = Sha256::new();
        hash.update(config_json);
        hash.update(weights);
        hash.update(tokenizer_json);
        hash.update((max_tokens as u64).to_le_bytes());
        let fingerprint = format!("{:x}", hash.finalize());
        Ok(Self {
            tokenizer,
            bert,
            cls,
            sep,
            pad,
            max_tokens,
            hidden: config.hidden_size,
            host: std::sync::OnceLock::new(),
            fingerprint,
        })
    }

    /// The encoder of a sentence-transformers folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), with windows of 256 tokens.
    pub fn load(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let read = |name: &str| crate::read_file(&dir.join(name));
        Self::from_bytes(
            &read("config.json")?,
            &read("model.safetensors")?,
            &read("tokenizer.json")?,
            256,
            device,
        )
    }

    pub fn dim(&self) -> usize {
        self.hidden
    }

    /// Transformer layers in the stack.
    pub fn num_layers(&self) -> usize {
        self.bert.layers.len()
    }

    /// Attention heads per layer.
    pub fn heads(&self) -> usize {
        self.bert.heads
    }

    /// Word-piece ids of a text, without special tokens.
    pub fn word_pieces(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::invalid("tokenizer", e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// A text's word pieces (no special tokens), each with the pre-tokenised word it belongs
    /// to and its byte span in `text`.
    pub fn pieces(&self, text: &str) -> Result<Pieces> {
        let e = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::invalid("tokenizer", e.to_string()))?;
        Ok(Pieces {
            ids: e.get_ids().to_vec(),
            words: e.get_word_ids().to_vec(),
            offsets: e.get_offsets().to_vec(),
        })
    }

    /// Gradient × input of `objective(embedding)` for each word piece of `text` (the dot
    /// product of the piece's word vector with the objective's gradient there), in the order
    /// of [`SentenceEncoder::pieces`]. `objective` maps the `[1, hidden]` unit embedding,
    /// pooled exactly as [`SentenceEncoder::embed`] pools it, to a scalar.
    pub async fn attribute(
        &self,
        text: &str,
        device: &Device,
        objective: &dyn Fn(Tensor<2>) -> Tensor<1>,
    ) -> Result<Vec<f32>> {
        let pieces = self.pieces(text)?.ids;
        let windows = self.frame(&pieces, 0);
        let (w, l) = (windows.len(), windows[0].ids.len());
        let (ids, mask) = self.batch(&windows, &(0..w).collect::<Vec<_>>(), l, device);
        let words = self.bert.embed_words(ids).detach();
        let g = gradient_of(words.clone(), |w| objective(self.pool(w, mask)));
        let scores = (g * words.without_autodiff()).sum_dim(2);
        let scores = crate::tensor_io::read_floats(scores).await?;
        // Window k, position p (after `[CLS]`) holds piece k·span + p − 1.
        let span = self.max_tokens - 2;
        Ok((0..pieces.len())
            .map(|i| scores[(i / span) * l + i % span + 1])
            .collect())
    }

    /// The unit embedding `[1, hidden]` of one text from the word vectors of its windows
    /// `[windows, length, hidden]`: the token-weighted mean over all windows, as in `embed`.
    fn pool(&self, words: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [w, l, h] = words.dims();
        let count = mask.clone().sum().reshape([1, 1]);
        let tokens = self.bert.forward_embedded(words, mask.clone());
        let mean = (tokens * mask.reshape([w, l, 1]))
            .sum_dim(1)
            .reshape([w, h])
            .sum_dim(0)
            / count;
        let norm = mean.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        mean / norm
    }

    /// Splits one text's pieces into `[CLS] … [SEP]` windows of at most `max_tokens`.
    fn frame(&self, pieces: &[u32], text: usize) -> Vec<Window> {
        let span = self.max_tokens - 2;
        // An empty text still gets one `[CLS] [SEP]` window, as in sentence-transformers.
        let chunks: Vec<&[u32]> = if pieces.is_empty() {
            vec![&[]]
        } else {
            pieces.chunks(span).collect()
        };
        chunks
            .into_iter()
            .map(|chunk| {
                let mut ids = Vec::with_capacity(chunk.len() + 2);
                ids.push(self.cls);
                ids.extend_from_slice(chunk);
                ids.push(self.sep);
                Window { text, ids }
            })
            .collect()
    }

    /// Ids and mask of the windows `batch`, padded to length `l`.
    fn batch(
        &self,
        windows: &[Window],
        batch: &[usize],
        l: usize,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2>) {
        let b = batch.len();
        let mut ids = vec![self.pad as i64; b * l];
        let mut mask = vec![0f32; b * l];
        for (r, &w) in batch.iter().enumerate() {
            for (c, &id) in windows[w].ids.iter().enumerate() {
                ids[r * l + c] = id as i64;
                mask[r * l + c] = 1.0;
            }
        }
        (
            Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), device),
            Tensor::<2>::from_data(TensorData::new(mask, [b, l]), device),
        )
    }

    fn windows(&self, texts: &[&str]) -> Result<Vec<Window>> {
        let mut windows = Vec::new();
        for (t, text) in texts.iter().enumerate() {
            windows.extend(self.frame(&self.word_pieces(text)?, t));
        }
        Ok(windows)
    }

    /// Unit-norm embeddings, one per text. `batch_tokens` bounds the padded tokens encoded
    /// at once (windows are sorted by length so padding stays small); `progress(done, total)`
    /// counts windows. On the CPU backend the host kernel ([`crate::kernels::bert`]) encodes
    /// them, without padding; elsewhere Burn's operations do.
    pub async fn embed(
        &self,
        texts: &[&str],
        batch_tokens: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let host = crate::kernels::serves(device);
        self.embed_on(texts, batch_tokens, device, host, progress)
            .await
    }

    /// [`SentenceEncoder::embed`] with Burn's operations on every device: the reference the
    /// host kernel is tested against.
    pub async fn embed_with_burn(
        &self,
        texts: &[&str],
        batch_tokens: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_on(texts, batch_tokens, device, false, progress)
            .await
    }

    async fn host_bert(&self) -> Result<&host::HostBert> {
        if self.host.get().is_none() {
            let weights = self.bert.to_host().await?;
            let _ = self.host.set(weights);
        }
        Ok(self.host.get().expect("set above"))
    }

    async fn embed_on(
        &self,
        texts: &[&str],
        batch_tokens: usize,
        device: &Device,
        host: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let host = if host {
            Some(self.host_bert().await?)
        } else {
            None
        };
        let windows = self.windows(texts)?;
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].ids.len());
        let h = self.hidden;
        let mut sums = vec![vec![0f64; h]; texts.len()];
        let mut counts = vec![0usize; texts.len()];
        let mut done = 0;
        let mut start = 0;
        while start < order.len() {
            // Grow the batch while its padded size stays within the budget.
            let mut end = start + 1;
            while end < order.len()
                && (end + 1 - start) * windows[order[end]].ids.len() <= batch_tokens.max(1)
            {
                end += 1;
            }
            let batch = &order[start..end];
            let b = batch.len();
            // Sum of each window's token vectors: `[b, h]`.
            let values = match host {
                Some(bert) => {
                    let ids: Vec<&[u32]> = batch.iter().map(|&w| &windows[w].ids[..]).collect();
                    let tokens = bert.forward(&ids);
                    let mut summed = vec![0f32; b * h];
                    let mut rows = tokens.chunks_exact(h);
                    for (r, window) in ids.iter().enumerate() {
                        let acc = &mut summed[r * h..(r + 1) * h];
                        for row in rows.by_ref().take(window.len()) {
                            for (a, v) in acc.iter_mut().zip(row) {
                                *a += v;
                            }
                        }
                    }
                    summed
                }
                None => {
                    let l = windows[batch[b - 1]].ids.len();
                    let (ids, mask) = self.batch(&windows, batch, l, device);
                    let tokens = self.bert.forward(ids, mask.clone());
                    let summed = (tokens * mask.reshape([b, l, 1]))
                        .sum_dim(1)
                        .reshape([b, h]);
                    crate::tensor_io::read_floats(summed).await?
                }
            };
            for (r, &w) in batch.iter().enumerate() {
                let t = windows[w].text;
                for (s, v) in sums[t].iter_mut().zip(&values[r * h..(r + 1) * h]) {
                    *s += *v as f64;
                }
                counts[t] += windows[w].ids.len();
            }
            done += b;
            progress(done, windows.len());
            start = end;
        }
        Ok(sums
            .into_iter()
            .zip(counts)
            .map(|(s, n)| {
                let mean: Vec<f64> = s.iter().map(|v| v / n.max(1) as f64).collect();
                let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                mean.iter().map(|v| (v / norm) as f32).collect()
            })
            .collect())
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient × input of piece i is the derivative of the objective as that piece's word
    /// vector is scaled by (1 + t), at t = 0: checked by central differences (f32, t = 1e-2).
    #[test]
    fn attribution_matches_finite_differences() {
        let dir = crate::data::resolve_data_dir(None).join("../models/all-MiniLM-L6-v2");
        if !dir.join("model.safetensors").exists() {
            eprintln!("skipped: no MiniLM under {}", dir.display());
            return;
        }
        let device = Device::flex();
        let e = SentenceEncoder::load(&dir, &device).unwrap();
        let text = "A worker fell from a ladder and broke his arm.";
        let v: Vec<f32> = (0..e.dim())
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let v = Tensor::<2>::from_data(TensorData::new(v, [e.dim(), 1]), &device);
        let objective = |x: Tensor<2>| x.matmul(v.clone()).reshape([1]);
        let scores = pollster::block_on(e.attribute(text, &device, &objective)).unwrap();
        let pieces = e.pieces(text).unwrap().ids;
        assert_eq!(scores.len(), pieces.len());
        let windows = e.frame(&pieces, 0);
        let l = windows[0].ids.len();
        let (ids, mask) = e.batch(&windows, &[0], l, &device);
        let words = e.bert.embed_words(ids);
        let value = |i: usize, t: f32| {
            let mut scale = vec![1f32; l];
            scale[i + 1] += t;
            let scale = Tensor::<3>::from_data(TensorData::new(scale, [1, l, 1]), &device);
            let y = objective(e.pool(words.clone() * scale, mask.clone()));
            y.into_data().try_to_vec::<f32>().unwrap()[0]
        };
        let t = 1e-2;
        let largest = scores.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(largest > 0.05, "attributions too small to test: {largest}");
        for (i, s) in scores.iter().enumerate() {
            let fd = (value(i, t) - value(i, -t)) / (2.0 * t);
            assert!(
                (fd - s).abs() <= 2e-3 + 0.05 * s.abs(),
                "piece {i}: gradient×input {s} vs finite difference {fd}"
            );
        }
    }
}
