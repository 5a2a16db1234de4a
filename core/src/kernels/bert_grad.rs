//! One trained BERT layer on the host, forward and backward: fine-tuning on the CPU backend.
//!
//! Burn's autodiff runs a layer as some forty operations on padded `[windows, length, hidden]`
//! tensors, each keeping its inputs and running its own backward pass (0.45× PyTorch's speed,
//! docs/BENCHMARKS.md). Here the layer is one operation: the windows packed end to end with no
//! padding, the forward pass of [`super::bert`] keeping what the backward pass needs, and the
//! backward pass written out — dense layers as matrix products, layer norm, GELU with `erf`,
//! attention per window and head. Tested against Burn's values and gradients (the unit test in
//! `text::encoder::tuning`).
//!
//! Like the inference kernel, the dense products split their rows into one block per thread,
//! and gemm's sums depend on a block's size, so results are reproducible for a given thread
//! count (a resumed run on the same machine ends bit for bit where an uninterrupted one does)
//! but may differ in the last bits on another.

use super::bert::{dense, erf, exp_nonpositive, gelu_in_place, rows_per_task, softmax_in_place};
use super::conv::{matmul, with_scratch};
use super::{par_chunks_mut, simd};

/// A layer's sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerShape {
    pub hidden: usize,
    /// The feed-forward block's width.
    pub inner: usize,
    pub heads: usize,
    /// Layer norm's epsilon.
    pub eps: f32,
}

impl LayerShape {
    /// Values in the layer's flat parameter vector, in the order of [`Params`].
    pub fn params(&self) -> usize {
        let (h, f) = (self.hidden, self.inner);
        4 * h * h + 2 * h * f + 9 * h + f
    }
}

/// One layer's parameters, cut out of the flat vector in this order: the query, key and value
/// projections side by side (`[hidden, 3·hidden]`, row i = q's row i, then k's, then v's) and
/// their biases, the attention output projection and bias, the first norm's scale and shift,
/// the feed-forward block's two projections and biases, the second norm's scale and shift.
/// Weights are `[inputs, outputs]` row-major (Burn's layout).
struct Params<'a> {
    wqkv: &'a [f32],
    bqkv: &'a [f32],
    wo: &'a [f32],
    bo: &'a [f32],
    g1: &'a [f32],
    b1: &'a [f32],
    wi: &'a [f32],
    bi: &'a [f32],
    w2: &'a [f32],
    b2: &'a [f32],
    g2: &'a [f32],
    b2n: &'a [f32],
}

impl<'a> Params<'a> {
    fn split(p: &'a [f32], s: LayerShape) -> Self {
        let (h, f) = (s.hidden, s.inner);
        let mut rest = p;
        let mut take = |n: usize| {
            let (a, b) = rest.split_at(n);
            rest = b;
            a
        };
        Self {
            wqkv: take(3 * h * h),
            bqkv: take(3 * h),
            wo: take(h * h),
            bo: take(h),
            g1: take(h),
            b1: take(h),
            wi: take(h * f),
            bi: take(f),
            w2: take(f * h),
            b2: take(h),
            g2: take(h),
            b2n: take(h),
        }
    }
}

/// What the backward pass needs of a forward pass.
pub struct Saved {
    shape: LayerShape,
    lengths: Vec<usize>,
    params: Vec<f32>,
    /// The packed input `[t, h]`.
    x: Vec<f32>,
    qkv: Vec<f32>,
    /// Per head: the attention probabilities of every window (`Σ l²`), then the head's
    /// context `[t, dh]`.
    attention: Vec<f32>,
    context: Vec<f32>,
    xhat1: Vec<f32>,
    inv1: Vec<f32>,
    x1: Vec<f32>,
    u: Vec<f32>,
    gelu: Vec<f32>,
    xhat2: Vec<f32>,
    inv2: Vec<f32>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("shape", &self.shape)
            .field("tokens", &self.lengths.iter().sum::<usize>())
            .finish()
    }
}

impl Saved {
    /// Each window's tokens.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }
}

/// The valid rows of padded `[windows, length, h]` values, packed end to end.
pub fn pack(padded: &[f32], lengths: &[usize], length: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(lengths.iter().sum::<usize>() * h);
    for (w, &l) in lengths.iter().enumerate() {
        out.extend_from_slice(&padded[w * length * h..(w * length + l) * h]);
    }
    out
}

/// [`pack`]'s inverse, with zeros in the padding.
pub fn unpack(packed: &[f32], lengths: &[usize], length: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; lengths.len() * length * h];
    let mut start = 0;
    for (w, &l) in lengths.iter().enumerate() {
        out[w * length * h..(w * length + l) * h]
            .copy_from_slice(&packed[start * h..(start + l) * h]);
        start += l;
    }
    out
}

/// `dx = dy·Wᵀ`, or `dx += dy·Wᵀ` when `add` (`dy` `[t, n]`, `W` `[k, n]`, so `Wᵀ`'s element
/// (j, c) is `W[c·n + j]`).
fn dense_input_grad(
    dy: &[f32],
    w: &[f32],
    t: usize,
    k: usize,
    n: usize,
    dx: &mut [f32],
    add: bool,
) {
    let block = rows_per_task(t);
    par_chunks_mut(&mut dx[..t * k], block * k, |i, out| {
        let r = out.len() / k;
        let lhs = &dy[i * block * n..(i * block + r) * n];
        matmul((r, k, n), out, k, add, lhs, (n, 1), w, (1, n));
    });
}

/// `xᵀ·dy` (`[k, n]`) and the column sums of `dy` (`[n]`): a dense layer's weight and bias
/// gradients.
fn dense_param_grads(x: &[f32], dy: &[f32], t: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0f32; k * n];
    let block = rows_per_task(k);
    par_chunks_mut(&mut dw, block * n, |i, out| {
        let r = out.len() / n;
        // xᵀ's rows i·block.. : element (a, s) is x[s·k + i·block + a].
        matmul(
            (r, n, t),
            out,
            n,
            false,
            &x[i * block..],
            (1, k),
            dy,
            (n, 1),
        );
    });
    (dw, column_sums(dy, n))
}

fn column_sums(y: &[f32], n: usize) -> Vec<f32> {
    let mut s = vec![0f32; n];
    simd(
        #[inline(always)]
        || {
            for row in y.chunks_exact(n) {
                for (a, v) in s.iter_mut().zip(row) {
                    *a += v;
                }
            }
        },
    );
    s
}

fn add_in_place(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Rows of `a` ← LayerNorm(row); returns the normalised rows (x̂) and each row's 1/σ.
fn norm_forward(a: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let mut xhat = vec![0f32; a.len()];
    let mut inv = vec![0f32; a.len() / h];
    for ((row, xh), iv) in a
        .chunks_exact_mut(h)
        .zip(xhat.chunks_exact_mut(h))
        .zip(inv.iter_mut())
    {
        let n = h as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        *iv = 1.0 / (var + eps).sqrt();
        for (((v, x), g), b) in row.iter_mut().zip(xh.iter_mut()).zip(gamma).zip(beta) {
            *x = (*v - mean) * *iv;
            *v = *x * g + b;
        }
    }
    (xhat, inv)
}

/// LayerNorm's input gradient from `dy`, adding the scale's and shift's gradients.
fn norm_backward(
    dy: &[f32],
    xhat: &[f32],
    inv: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Vec<f32> {
    let h = gamma.len();
    let n = h as f32;
    let mut da = vec![0f32; dy.len()];
    for (((d, x), iv), out) in dy
        .chunks_exact(h)
        .zip(xhat.chunks_exact(h))
        .zip(inv)
        .zip(da.chunks_exact_mut(h))
    {
        let (mut m1, mut m2) = (0f32, 0f32);
        for i in 0..h {
            let g = d[i] * gamma[i];
            m1 += g;
            m2 += g * x[i];
            dgamma[i] += d[i] * x[i];
            dbeta[i] += d[i];
        }
        let (m1, m2) = (m1 / n, m2 / n);
        for i in 0..h {
            out[i] = iv * (d[i] * gamma[i] - m1 - x[i] * m2);
        }
    }
    da
}

/// GELU with `erf`: u·Φ(u), the inference kernel's.
fn gelu(u: &[f32]) -> Vec<f32> {
    let mut g = u.to_vec();
    gelu_in_place(&mut g);
    g
}

/// `dg` ← `dg`·GELU′(u), GELU′(u) = Φ(u) + u·φ(u).
fn gelu_backward(dg: &mut [f32], u: &[f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let block = rows_per_task(dg.len() / 1024 + 1) * 1024;
    par_chunks_mut(dg, block, |i, ds| {
        let us = &u[i * block..i * block + ds.len()];
        simd(
            #[inline(always)]
            || {
                for (d, &x) in ds.iter_mut().zip(us) {
                    let cdf = (erf(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5;
                    let pdf = exp_nonpositive(-0.5 * x * x) * INV_SQRT_2PI;
                    *d *= cdf + x * pdf;
                }
            },
        )
    });
}

/// Σ l² over the windows: one head's attention probabilities.
fn square_sum(lengths: &[usize]) -> usize {
    lengths.iter().map(|l| l * l).sum()
}

/// Attention of each window with itself from the fused projections `qkv` (`[t, 3h]`): the
/// context `[t, h]` and, per head, the probabilities and the head's context (see [`Saved`]).
fn attention_forward(qkv: &[f32], lengths: &[usize], s: LayerShape) -> (Vec<f32>, Vec<f32>) {
    let (h, heads) = (s.hidden, s.heads);
    let (dh, t) = (h / heads, lengths.iter().sum::<usize>());
    let scale = 1.0 / (dh as f32).sqrt();
    let sq = square_sum(lengths);
    let per_head = sq + t * dh;
    let mut work = vec![0f32; heads * per_head];
    par_chunks_mut(&mut work, per_head, |head, buf| {
        let (probs, ctx) = buf.split_at_mut(sq);
        let (mut start, mut p0) = (0, 0);
        for &l in lengths.iter().filter(|&&l| l > 0) {
            let q = &qkv[start * 3 * h + head * dh..];
            let k = &qkv[start * 3 * h + h + head * dh..];
            let v = &qkv[start * 3 * h + 2 * h + head * dh..];
            let p = &mut probs[p0..p0 + l * l];
            matmul((l, l, dh), p, l, false, q, (3 * h, 1), k, (1, 3 * h));
            for row in p.chunks_exact_mut(l) {
                softmax_in_place(row, scale);
            }
            let dst = &mut ctx[start * dh..(start + l) * dh];
            matmul((l, dh, l), dst, dh, false, p, (l, 1), v, (3 * h, 1));
            start += l;
            p0 += l * l;
        }
    });
    let mut context = vec![0f32; t * h];
    for (head, buf) in work.chunks_exact(per_head).enumerate() {
        for (row, src) in buf[sq..].chunks_exact(dh).enumerate() {
            context[row * h + head * dh..row * h + (head + 1) * dh].copy_from_slice(src);
        }
    }
    (context, work)
}

/// The gradient with respect to `qkv` of [`attention_forward`]'s context, from `dctx` `[t, h]`.
fn attention_backward(dctx: &[f32], saved: &Saved) -> Vec<f32> {
    let s = saved.shape;
    let (h, heads, lengths) = (s.hidden, s.heads, &saved.lengths[..]);
    let (dh, t) = (h / heads, lengths.iter().sum::<usize>());
    let scale = 1.0 / (dh as f32).sqrt();
    let sq = square_sum(lengths);
    let per_head = sq + t * dh;
    let qkv = &saved.qkv;
    // Per head: dq, dk, dv, each `[t, dh]`.
    let mut grads = vec![0f32; heads * 3 * t * dh];
    par_chunks_mut(&mut grads, 3 * t * dh, |head, buf| {
        let (dq, rest) = buf.split_at_mut(t * dh);
        let (dk, dv) = rest.split_at_mut(t * dh);
        let probs = &saved.attention[head * per_head..head * per_head + sq];
        let (mut start, mut p0) = (0, 0);
        for &l in lengths.iter().filter(|&&l| l > 0) {
            let q = &qkv[start * 3 * h + head * dh..];
            let k = &qkv[start * 3 * h + h + head * dh..];
            let v = &qkv[start * 3 * h + 2 * h + head * dh..];
            let dc = &dctx[start * h + head * dh..];
            let p = &probs[p0..p0 + l * l];
            let rows = start * dh..(start + l) * dh;
            with_scratch(l * l, |ds| {
                // dP = dctx·Vᵀ, then the softmax's backward: dS = P ⊙ (dP − Σ dP ⊙ P), scaled.
                matmul((l, l, dh), ds, l, false, dc, (h, 1), v, (1, 3 * h));
                for (drow, prow) in ds.chunks_exact_mut(l).zip(p.chunks_exact(l)) {
                    let dot: f32 = drow.iter().zip(prow).map(|(a, b)| a * b).sum();
                    for (d, pv) in drow.iter_mut().zip(prow) {
                        *d = pv * (*d - dot) * scale;
                    }
                }
                matmul(
                    (l, dh, l),
                    &mut dq[rows.clone()],
                    dh,
                    false,
                    ds,
                    (l, 1),
                    k,
                    (3 * h, 1),
                );
                matmul(
                    (l, dh, l),
                    &mut dk[rows.clone()],
                    dh,
                    false,
                    ds,
                    (1, l),
                    q,
                    (3 * h, 1),
                );
            });
            // dV = Pᵀ·dctx.
            matmul((l, dh, l), &mut dv[rows], dh, false, p, (1, l), dc, (h, 1));
            start += l;
            p0 += l * l;
        }
    });
    let mut dqkv = vec![0f32; t * 3 * h];
    for (head, buf) in grads.chunks_exact(3 * t * dh).enumerate() {
        for (part, block) in buf.chunks_exact(t * dh).enumerate() {
            for (row, src) in block.chunks_exact(dh).enumerate() {
                let at = row * 3 * h + part * h + head * dh;
                dqkv[at..at + dh].copy_from_slice(src);
            }
        }
    }
    dqkv
}

/// The layer's output for packed `x` (`[Σ lengths, hidden]`), and what [`backward`] needs when
/// `keep`. `params` is the flat vector of [`LayerShape::params`] values.
pub fn forward(
    x: &[f32],
    lengths: &[usize],
    params: &[f32],
    s: LayerShape,
    keep: bool,
) -> (Vec<f32>, Option<Saved>) {
    let (h, f) = (s.hidden, s.inner);
    let t = lengths.iter().sum::<usize>();
    assert_eq!(x.len(), t * h, "packed input");
    assert_eq!(params.len(), s.params(), "parameter count");
    if t == 0 {
        return (Vec::new(), None);
    }
    let p = Params::split(params, s);
    let qkv = dense(x, p.wqkv, p.bqkv, t, h, 3 * h);
    let (context, attention) = attention_forward(&qkv, lengths, s);
    let mut x1 = dense(&context, p.wo, p.bo, t, h, h);
    add_in_place(&mut x1, x);
    let (xhat1, inv1) = norm_forward(&mut x1, p.g1, p.b1, s.eps);
    let u = dense(&x1, p.wi, p.bi, t, h, f);
    let g = gelu(&u);
    let mut out = dense(&g, p.w2, p.b2, t, f, h);
    add_in_place(&mut out, &x1);
    let (xhat2, inv2) = norm_forward(&mut out, p.g2, p.b2n, s.eps);
    let saved = keep.then(|| Saved {
        shape: s,
        lengths: lengths.to_vec(),
        params: params.to_vec(),
        x: x.to_vec(),
        qkv,
        attention,
        context,
        xhat1,
        inv1,
        x1,
        u,
        gelu: g,
        xhat2,
        inv2,
    });
    (out, saved)
}

/// The gradients of the layer's input (packed, `[t, hidden]`) and, when `params_wanted`, of its
/// flat parameters (otherwise empty), from the output's gradient `dout` (packed).
pub fn backward(saved: &Saved, dout: &[f32], params_wanted: bool) -> (Vec<f32>, Vec<f32>) {
    let s = saved.shape;
    let (h, f) = (s.hidden, s.inner);
    let t = saved.lengths.iter().sum::<usize>();
    let p = Params::split(&saved.params, s);
    let zeros = |n: usize| vec![0f32; n];
    let (mut dg2, mut db2n, mut dg1, mut db1) = (zeros(h), zeros(h), zeros(h), zeros(h));

    // out = LN2(gelu(u)·W2 + b2 + x1)
    let dc = norm_backward(dout, &saved.xhat2, &saved.inv2, p.g2, &mut dg2, &mut db2n);
    let (dw2, db2) = if params_wanted {
        dense_param_grads(&saved.gelu, &dc, t, f, h)
    } else {
        Default::default()
    };
    let mut du = zeros(t * f);
    dense_input_grad(&dc, p.w2, t, f, h, &mut du, false);
    gelu_backward(&mut du, &saved.u);
    // u = x1·Wi + bi; x1 also reaches the output through the residual.
    let (dwi, dbi) = if params_wanted {
        dense_param_grads(&saved.x1, &du, t, h, f)
    } else {
        Default::default()
    };
    let mut dx1 = dc;
    dense_input_grad(&du, p.wi, t, h, f, &mut dx1, true);
    drop(du);
    // x1 = LN1(context·Wo + bo + x)
    let da = norm_backward(&dx1, &saved.xhat1, &saved.inv1, p.g1, &mut dg1, &mut db1);
    let (dwo, dbo) = if params_wanted {
        dense_param_grads(&saved.context, &da, t, h, h)
    } else {
        Default::default()
    };
    let mut dctx = zeros(t * h);
    dense_input_grad(&da, p.wo, t, h, h, &mut dctx, false);
    let dqkv = attention_backward(&dctx, saved);
    let mut dx = da;
    dense_input_grad(&dqkv, p.wqkv, t, h, 3 * h, &mut dx, true);
    if !params_wanted {
        return (dx, Vec::new());
    }
    let (dwqkv, dbqkv) = dense_param_grads(&saved.x, &dqkv, t, h, 3 * h);
    let dparams = [
        dwqkv, dbqkv, dwo, dbo, dg1, db1, dwi, dbi, dw2, db2, dg2, db2n,
    ]
    .concat();
    debug_assert_eq!(dparams.len(), s.params());
    (dx, dparams)
}
