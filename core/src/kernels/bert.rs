//! BERT inference on the host, for the CPU backend's sentence embeddings.
//!
//! Burn's generic operations pad every window of a batch to its longest, then run attention,
//! softmax, layer norm and GELU as separate passes over `[batch, length, hidden]` tensors. Here
//! the windows are packed end to end with no padding: the dense layers are one matrix product
//! over every token of the batch (the query, key and value projections fused into one), and
//! attention runs per window and head on that window's tokens only, so nothing is computed on
//! pads. Residual additions and layer norms are fused into one pass over each row.
//!
//! The arithmetic is the one [`crate::text::encoder::Bert::forward`] does with Burn's
//! operations (f32, GELU with `erf`, layer norm with the biased variance), which the tests
//! compare it against.

use super::conv::{matmul, with_scratch};
use super::{par_chunks_mut, simd};

/// A dense layer `y = x·W + b`, `W` stored `[inputs, outputs]` row-major (Burn's layout).
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
}

/// Layer normalisation's scale and shift.
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// One transformer layer; `qkv` is the query, key and value projections side by side
/// (`[hidden, 3·hidden]`).
pub struct Layer {
    pub qkv: Dense,
    pub attention_out: Dense,
    pub attention_norm: Norm,
    pub intermediate: Dense,
    pub output: Dense,
    pub output_norm: Norm,
}

/// The weights of a BERT encoder stack, copied out of the Burn module.
pub struct HostBert {
    pub hidden: usize,
    pub heads: usize,
    pub eps: f32,
    /// `[vocab, hidden]`.
    pub word: Vec<f32>,
    /// `[positions, hidden]`.
    pub position: Vec<f32>,
    /// Token type 0's row (sentence embeddings use no other).
    pub token_type: Vec<f32>,
    pub embedding_norm: Norm,
    pub layers: Vec<Layer>,
}

/// Rows of a matrix product handed to one task: enough tasks to keep every thread busy, each
/// large enough for the product's packing to pay.
pub(super) fn rows_per_task(rows: usize) -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    let threads = rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    let threads = 1;
    rows.div_ceil(threads).max(32)
}

impl Dense {
    /// `x·W + b` for `rows` rows of `x`.
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        dense(x, &self.weight, &self.bias, rows, self.inputs, self.outputs)
    }
}

/// `x·W + b` for the `rows` rows of `x` (`[rows, k]`; `W` `[k, n]` row-major).
pub(super) fn dense(x: &[f32], w: &[f32], b: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), rows * k);
    let mut y = vec![0f32; rows * n];
    let block = rows_per_task(rows);
    par_chunks_mut(&mut y, block * n, |i, out| {
        let r = out.len() / n;
        for row in out.chunks_exact_mut(n) {
            row.copy_from_slice(b);
        }
        let lhs = &x[i * block * k..(i * block + r) * k];
        matmul((r, n, k), out, n, true, lhs, (k, 1), w, (n, 1));
    });
    y
}

impl Norm {
    /// `row ← LayerNorm(row)`.
    fn normalise(&self, row: &mut [f32], eps: f32) {
        let h = row.len() as f32;
        let mean = row.iter().sum::<f32>() / h;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }

    /// Every `h`-row of `x` ← LayerNorm(row + the same row of `residual`, if any).
    fn normalise_rows(&self, x: &mut [f32], residual: Option<&[f32]>, h: usize, eps: f32) {
        let block = rows_per_task(x.len() / h) * h;
        par_chunks_mut(x, block, |i, rows| {
            if let Some(residual) = residual {
                let res = &residual[i * block..i * block + rows.len()];
                for (v, r) in rows.iter_mut().zip(res) {
                    *v += r;
                }
            }
            for row in rows.chunks_exact_mut(h) {
                self.normalise(row, eps);
            }
        });
    }
}

/// GELU with `erf`, as the Burn encoder computes it: x·(erf(x/√2) + 1)/2.
pub(super) fn gelu_in_place(x: &mut [f32]) {
    let block = rows_per_task(x.len() / 1024 + 1) * 1024;
    par_chunks_mut(x, block, |_, xs| {
        simd(
            #[inline(always)]
            || {
                for v in xs.iter_mut() {
                    *v = *v * (erf(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5;
                }
            },
        )
    });
}

/// erf in f32 as a rational function of x on [−4, 4] (±1 beyond, where f32's erf is ±1):
/// the approximation of Eigen's and XLA's vectorised `erf`, within 1e-6 of libm's `erff`
/// (tested). Written out because libm's scalar `erff` was 16 % of an embedding's time, and a
/// branch-free polynomial compiles to SIMD.
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_6e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_5e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    x * p / q
}

/// e^x for x ≤ 0 (softmax's shifted scores), Cephes' `expf`: x = n·ln 2 + r, e^r by a degree-5
/// polynomial, 2ⁿ put into the exponent bits; within 2 ulp of `f32::exp` (tested), 0 below
/// −87. Branch-free so that it compiles to SIMD, unlike the libm call.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = r.mul_add(1.987_569_1e-4, 1.398_2e-3);
    p = r.mul_add(p, 8.333_452e-3);
    p = r.mul_add(p, 4.166_579_6e-2);
    p = r.mul_add(p, 1.666_666_5e-1);
    p = r.mul_add(p, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Softmax of one row, in place.
pub(super) fn softmax_in_place(row: &mut [f32], scale: f32) {
    simd(
        #[inline(always)]
        || {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) * scale;
            for v in row.iter_mut() {
                *v = exp_nonpositive(v.mul_add(scale, -max));
            }
            // Eight partial sums, so that the reduction vectorises.
            let mut acc = [0f32; 8];
            let mut chunks = row.chunks_exact(8);
            for c in chunks.by_ref() {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a += v;
                }
            }
            let sum = acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
        },
    )
}

impl HostBert {
    /// The last layer's token vectors of each window, packed end to end (`[Σ len, hidden]`, the
    /// windows in order). Every id must be below the vocabulary's size and every window no
    /// longer than the position table (the tokenizer check and the window size guarantee both).
    pub fn forward(&self, windows: &[&[u32]]) -> Vec<f32> {
        self.forward_until(windows, self.layers.len())
    }

    /// The token vectors entering layer `layers` (after the embeddings and the first `layers`
    /// layers; `layers` ≤ the number of layers), packed as in [`HostBert::forward`]: the frozen
    /// part of an encoder whose top layers are fine-tuned.
    pub fn forward_until(&self, windows: &[&[u32]], layers: usize) -> Vec<f32> {
        let h = self.hidden;
        let tokens: usize = windows.iter().map(|w| w.len()).sum();
        if tokens == 0 {
            // Nothing to encode (and a zero-length chunk is not a chunk to split into tasks).
            return Vec::new();
        }
        let mut x = vec![0f32; tokens * h];
        let mut row = 0;
        for w in windows {
            for (p, &id) in w.iter().enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                let word = &self.word[id as usize * h..(id as usize + 1) * h];
                let pos = &self.position[p * h..(p + 1) * h];
                for (((o, a), b), c) in out.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                    *o = a + b + c;
                }
                row += 1;
            }
        }
        self.embedding_norm
            .normalise_rows(&mut x, None, h, self.eps);
        let lengths: Vec<usize> = windows.iter().map(|w| w.len()).collect();
        for layer in &self.layers[..layers.min(self.layers.len())] {
            x = self.layer(layer, x, &lengths);
        }
        x
    }

    fn layer(&self, layer: &Layer, x: Vec<f32>, lengths: &[usize]) -> Vec<f32> {
        let h = self.hidden;
        let t = x.len() / h;
        let qkv = layer.qkv.forward(&x, t);
        let context = self.attention(&qkv, lengths, t);
        let mut x1 = layer.attention_out.forward(&context, t);
        layer
            .attention_norm
            .normalise_rows(&mut x1, Some(&x), h, self.eps);
        let mut inner = layer.intermediate.forward(&x1, t);
        gelu_in_place(&mut inner);
        let mut out = layer.output.forward(&inner, t);
        layer
            .output_norm
            .normalise_rows(&mut out, Some(&x1), h, self.eps);
        out
    }

    /// Scaled dot-product attention of each window with itself, from the fused projections
    /// `qkv` (`[t, 3·hidden]`), as `[t, hidden]` with the heads side by side.
    fn attention(&self, qkv: &[f32], lengths: &[usize], t: usize) -> Vec<f32> {
        let (h, heads) = (self.hidden, self.heads);
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        // Head-major `[heads, t, dh]`, so that each head is one contiguous task.
        let mut by_head = vec![0f32; heads * t * dh];
        par_chunks_mut(&mut by_head, t * dh, |head, out| {
            let mut start = 0;
            for &l in lengths {
                if l == 0 {
                    continue;
                }
                let q = &qkv[start * 3 * h + head * dh..];
                let k = &qkv[start * 3 * h + h + head * dh..];
                let v = &qkv[start * 3 * h + 2 * h + head * dh..];
                with_scratch(l * l, |scores| {
                    // q·kᵀ: kᵀ's element (j, c) is key c's component j.
                    matmul((l, l, dh), scores, l, false, q, (3 * h, 1), k, (1, 3 * h));
                    for row in scores.chunks_exact_mut(l) {
                        softmax_in_place(row, scale);
                    }
                    let dst = &mut out[start * dh..(start + l) * dh];
                    matmul((l, dh, l), dst, dh, false, scores, (l, 1), v, (3 * h, 1));
                });
                start += l;
            }
        });
        let mut context = vec![0f32; t * h];
        for (head, block) in by_head.chunks_exact(t * dh).enumerate() {
            for (row, src) in block.chunks_exact(dh).enumerate() {
                context[row * h + head * dh..row * h + (head + 1) * dh].copy_from_slice(src);
            }
        }
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small random encoder: hidden 8, 2 heads, 2 layers, vocabulary 11, 9 positions.
    fn tiny() -> HostBert {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut values = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
                })
                .collect()
        };
        let (h, inner) = (8, 16);
        let mut dense = |inputs: usize, outputs: usize| Dense {
            weight: values(inputs * outputs),
            bias: values(outputs),
            inputs,
            outputs,
        };
        let norm = |v: Vec<f32>| Norm {
            gamma: v.iter().map(|x| 1.0 + x).collect(),
            beta: v,
        };
        let layers = (0..2)
            .map(|_| Layer {
                qkv: dense(h, 3 * h),
                attention_out: dense(h, h),
                attention_norm: norm(vec![0.1; h]),
                intermediate: dense(h, inner),
                output: dense(inner, h),
                output_norm: norm(vec![-0.1; h]),
            })
            .collect();
        HostBert {
            hidden: h,
            heads: 2,
            eps: 1e-12,
            word: values(11 * h),
            position: values(9 * h),
            token_type: values(h),
            embedding_norm: norm(vec![0.0; h]),
            layers,
        }
    }

    /// Packing windows together changes nothing: each window's rows equal its rows encoded
    /// alone (batch = items one by one), empty windows add no rows, and no windows give none.
    #[test]
    fn packed_windows_encode_as_they_do_alone() {
        let bert = tiny();
        let windows: [&[u32]; 4] = [&[1, 5, 2], &[], &[1, 3, 3, 7, 10, 4, 2], &[9]];
        let packed = bert.forward(&windows);
        assert_eq!(packed.len(), 11 * 8);
        assert!(packed.iter().all(|v| v.is_finite()));
        let mut row = 0;
        for w in windows {
            let alone = bert.forward(&[w]);
            assert_eq!(alone.len(), w.len() * 8);
            for (a, b) in alone.iter().zip(&packed[row * 8..(row + w.len()) * 8]) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
            row += w.len();
        }
        assert!(bert.forward(&[]).is_empty());
        assert!(bert.forward(&[&[]]).is_empty());
    }

    #[test]
    fn erf_is_within_1e6_of_libm() {
        let worst = (-60_000..=60_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-1e30, -9.0, 9.0, 1e30])
            .map(|x| (erf(x) - libm::erff(x)).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "largest difference {worst}");
    }

    #[test]
    fn exp_is_within_2_ulp_of_std_and_0_far_below() {
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= 2.0 * f32::EPSILON * b, "e^{x}: {a} vs {b}");
        }
        assert!(exp_nonpositive(-1e9) < 1e-37);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row: Vec<f32> = (0..37).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let original = row.clone();
        softmax_in_place(&mut row, 0.5);
        let m = original.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let z: f32 = original.iter().map(|v| ((v - m) * 0.5).exp()).sum();
        for (p, v) in row.iter().zip(&original) {
            assert!((p - ((v - m) * 0.5).exp() / z).abs() < 1e-6);
        }
    }
}
