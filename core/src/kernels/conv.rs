//! 2-D convolution (any stride, symmetric padding, one group) on host memory, as one matrix product per image: the image's
//! patches unrolled (im2col, `[C_in·k_h·k_w, H_out·W_out]`, in a per-thread scratch buffer that
//! stays in cache and is never reallocated) times the weights `[C_out, C_in·k_h·k_w]`, written
//! straight into the NCHW output. Burn's flex backend instead transposes to NHWC, allocates an
//! im2col tile and a result buffer per image and scatters the result back. The input gradient
//! is the transposed product per image, scattered back (col2im), and the weight gradient the
//! product of the output gradient with the unrolled input.
//!
//! Every sum runs in a fixed order whatever the thread count, so results are reproducible.

use std::cell::RefCell;

use super::{par_chunks_mut, simd};

/// A dilation-1, single-group convolution of `n` images with stride `sh`×`sw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
    pub sh: usize,
    pub sw: usize,
}

impl ConvShape {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.ph - self.kh) / self.sh + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pw - self.kw) / self.sw + 1
    }

    /// Rows of an image's im2col matrix.
    fn patch_len(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Whether the kernels handle it: the output is at least one pixel, and the padding is
    /// smaller than the kernel (no output row or column made of padding alone).
    pub fn supported(&self) -> bool {
        self.kh > 0
            && self.kw > 0
            && self.sh > 0
            && self.sw > 0
            && self.ph < self.kh
            && self.pw < self.kw
            && self.h + 2 * self.ph >= self.kh
            && self.w + 2 * self.pw >= self.kw
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]`, every matrix given by its row and
/// column strides into a slice; the bounds are checked here so that the call below is sound.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, n, dst_rs, 1) < dst.len());
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    assert!(last(m, k, lhs_rs, lhs_cs) < lhs.len());
    assert!(last(k, n, rhs_rs, rhs_cs) < rhs.len());
    // SAFETY: the three assertions keep every element the product touches inside its slice,
    // and `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer grown to at least `len` values.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// Values copied per block by [`im2col`]; its buffers carry this much slack at the end.
const BLOCK: usize = 16;

/// Scratch values [`im2col`] needs: the unrolled matrix, then a zero-padded copy of the image.
fn im2col_len(s: &ConvShape) -> usize {
    let padded = s.c_in * (s.h + 2 * s.ph) * (s.w + 2 * s.pw);
    s.patch_len() * s.out_h() * s.out_w() + BLOCK + padded + BLOCK
}

/// Unrolls one image `x` (`[c_in, h, w]`) into the front of `scratch` (`[c_in·kh·kw,
/// out_h·out_w]`, returned): row `(c, ky, kx)` holds the input values that kernel tap meets at
/// each output position, 0 in the padding. The image is first copied into a zero-padded plane,
/// so that with stride 1 every output row is one contiguous run of the padded plane; runs are
/// copied in fixed blocks of [`BLOCK`] values (no call per run, no bounds logic), each block's
/// overshoot landing where a later block writes, or in the slack. Wider column strides gather
/// every `sw`-th value of the run.
#[inline(always)]
fn im2col<'a>(x: &[f32], s: &ConvShape, scratch: &'a mut [f32]) -> &'a [f32] {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (hp, wp) = (s.h + 2 * s.ph, s.w + 2 * s.pw);
    let p = oh * ow;
    let (cols, padded) = scratch.split_at_mut(s.patch_len() * p + BLOCK);
    padded.fill(0.0);
    for c in 0..s.c_in {
        for y in 0..s.h {
            let src = &x[(c * s.h + y) * s.w..][..s.w];
            padded[(c * hp + y + s.ph) * wp + s.pw..][..s.w].copy_from_slice(src);
        }
    }
    let mut at = 0;
    for c in 0..s.c_in {
        let plane = &padded[c * hp * wp..];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                for oy in 0..oh {
                    let src = &plane[(oy * s.sh + ky) * wp + kx..];
                    if s.sw == 1 {
                        let mut j = 0;
                        while j < ow {
                            let dst: &mut [f32; BLOCK] = (&mut cols[at + j..at + j + BLOCK])
                                .try_into()
                                .expect("block");
                            dst.copy_from_slice(&src[j..j + BLOCK]);
                            j += BLOCK;
                        }
                    } else {
                        let src = &src[..(ow - 1) * s.sw + 1];
                        for (d, v) in cols[at..at + ow].iter_mut().zip(src.iter().step_by(s.sw)) {
                            *d = *v;
                        }
                    }
                    at += ow;
                }
            }
        }
    }
    &cols[..s.patch_len() * p]
}

/// The convolution of `x` (`[n, c_in, h, w]`) with `weight` (`[c_out, c_in, kh, kw]`) plus
/// `bias` (`[c_out]`): `[n, c_out, out_h, out_w]`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], s: &ConvShape) -> Vec<f32> {
    let (k, p) = (s.patch_len(), s.out_h() * s.out_w());
    let mut out = vec![0.0f32; s.n * s.c_out * p];
    if out.is_empty() {
        return out;
    }
    par_chunks_mut(&mut out, s.c_out * p, |i, y| {
        // The product accumulates onto the bias.
        for (row, &b) in y.chunks_exact_mut(p).zip(bias) {
            row.fill(b);
        }
        let xi = &x[i * s.c_in * s.h * s.w..(i + 1) * s.c_in * s.h * s.w];
        with_scratch(im2col_len(s), |scratch| {
            let cols = simd(
                #[inline(always)]
                || im2col(xi, s, scratch),
            );
            matmul((s.c_out, p, k), y, p, true, weight, (k, 1), cols, (p, 1));
        });
    });
    out
}

/// The gradient with respect to the input, given the output's gradient `grad`: per image
/// `Wᵀ · grad` (`[C_in·k_h·k_w × C_out] · [C_out × H_out·W_out]`), its columns added back onto
/// the input pixels they came from (col2im). (The other route, the stride-1 convolution of
/// `grad` with the flipped, transposed kernel, unrolls a copy of `grad`, twice the input's size
/// for the Madry CNN's conv2, and with one input channel is a matrix-vector product; it timed
/// slower in `native/examples/opbench.rs` for both of that network's convolutions.)
pub fn input_grad(grad: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
    let (k, p) = (s.patch_len(), s.out_h() * s.out_w());
    let mut dx = vec![0.0f32; s.n * s.c_in * s.h * s.w];
    if dx.is_empty() {
        return dx;
    }
    par_chunks_mut(&mut dx, s.c_in * s.h * s.w, |i, dxi| {
        let gi = &grad[i * s.c_out * p..(i + 1) * s.c_out * p];
        with_scratch(k * p, |cols| {
            matmul((k, p, s.c_out), cols, p, false, weight, (1, k), gi, (p, 1));
            simd(
                #[inline(always)]
                || col2im(cols, s, dxi),
            );
        });
    });
    dx
}

/// Adds each row of `cols` (see [`im2col`]) back onto the input pixels it was read from.
#[inline(always)]
fn col2im(cols: &[f32], s: &ConvShape, dx: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let p = oh * ow;
    for c in 0..s.c_in {
        let plane = &mut dx[c * s.h * s.w..(c + 1) * s.h * s.w];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let row = &cols[((c * s.kh + ky) * s.kw + kx) * p..][..p];
                // Output columns lo..hi read input columns (ox·sw + kx − pw), inside the image.
                let lo = s.pw.saturating_sub(kx).div_ceil(s.sw).min(ow);
                let hi = (s.w + s.pw)
                    .saturating_sub(kx)
                    .div_ceil(s.sw)
                    .min(ow)
                    .max(lo);
                if lo == hi {
                    continue;
                }
                for oy in 0..oh {
                    let iy = oy * s.sh + ky;
                    if iy < s.ph || iy - s.ph >= s.h {
                        continue;
                    }
                    let first = (iy - s.ph) * s.w + lo * s.sw + kx - s.pw;
                    let src = &row[oy * ow + lo..oy * ow + hi];
                    if s.sw == 1 {
                        for (d, v) in plane[first..][..hi - lo].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        let dst = &mut plane[first..][..(hi - lo - 1) * s.sw + 1];
                        for (d, v) in dst.iter_mut().step_by(s.sw).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// Images per partial sum of the weight gradient. Fixed, so that the order of the float
/// additions (and so the result) does not depend on the number of threads.
const WEIGHT_GRAD_CHUNK: usize = 8;

/// The gradients with respect to the weights (`[c_out, c_in, kh, kw]`) and the bias
/// (`[c_out]`), given the input `x` and the output's gradient `grad`.
pub fn weight_grad(x: &[f32], grad: &[f32], s: &ConvShape) -> (Vec<f32>, Vec<f32>) {
    let (k, p) = (s.patch_len(), s.out_h() * s.out_w());
    let wlen = s.c_out * k;
    let chunks = s.n.div_ceil(WEIGHT_GRAD_CHUNK);
    // One partial (weights then bias) per chunk of images, summed below in chunk order.
    let mut partials = vec![0.0f32; chunks * (wlen + s.c_out)];
    if partials.is_empty() {
        return (vec![0.0; wlen], vec![0.0; s.c_out]);
    }
    par_chunks_mut(&mut partials, wlen + s.c_out, |chunk, acc| {
        let (dw, db) = acc.split_at_mut(wlen);
        let first = chunk * WEIGHT_GRAD_CHUNK;
        for i in first..(first + WEIGHT_GRAD_CHUNK).min(s.n) {
            let xi = &x[i * s.c_in * s.h * s.w..(i + 1) * s.c_in * s.h * s.w];
            let gi = &grad[i * s.c_out * p..(i + 1) * s.c_out * p];
            with_scratch(im2col_len(s), |scratch| {
                let cols = simd(
                    #[inline(always)]
                    || im2col(xi, s, scratch),
                );
                // dW[c_out × k] += grad_i[c_out × p] · cols[k × p]ᵀ
                matmul((s.c_out, k, p), dw, k, true, gi, (p, 1), cols, (1, p));
            });
            for (b, row) in db.iter_mut().zip(gi.chunks_exact(p)) {
                *b += row.iter().sum::<f32>();
            }
        }
    });
    let mut total = partials[..wlen + s.c_out].to_vec();
    for part in partials.chunks_exact(wlen + s.c_out).skip(1) {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    let db = total.split_off(wlen);
    (total, db)
}
