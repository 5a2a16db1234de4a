//! 2-D convolution (any stride, symmetric padding, one group) on host memory. Stride-1 3×3 and
//! 5×5 convolutions go to [`winograd`]; the others run as one matrix product per image: the
//! image's patches unrolled (im2col, `[C_in·k_h·k_w, H_out·W_out]`, in a per-thread scratch
//! buffer that stays in cache and is never reallocated) times the weights
//! `[C_out, C_in·k_h·k_w]`, written straight into the NCHW output. Burn's flex backend instead
//! transposes to NHWC, allocates an im2col tile and a result buffer per image and scatters the
//! result back. The input gradient is either a forward convolution of the output gradient (see
//! [`input_grad`]) or the transposed product per image, scattered back (col2im); the weight
//! gradient is the product of the output gradient with the unrolled input, over groups of
//! images.
//!
//! Every sum runs in a fixed order whatever the thread count, so results are reproducible.

use std::cell::RefCell;

use super::{par_chunks_mut, simd, winograd};

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

    /// Whether the kernels handle it: the image and the output are at least one pixel, and the
    /// padding is smaller than the kernel (no output row or column made of padding alone).
    pub fn supported(&self) -> bool {
        self.h > 0
            && self.w > 0
            && self.kh > 0
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
    if rhs_cs == 1 && m.saturating_mul(n).saturating_mul(k) <= SMALL_PRODUCT {
        let small = Small {
            n,
            k,
            lhs,
            lhs_rs,
            lhs_cs,
            rhs,
            rhs_rs,
            accumulate,
        };
        simd(
            #[inline(always)]
            || small.matmul(m, dst, dst_rs),
        );
        return;
    }
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

/// Multiply-adds up to which [`matmul`] computes a product with a row-major right operand
/// itself ([`Small`]): below it, `gemm`'s dispatch and packing cost more than the arithmetic
/// (a single image's Winograd products, 49 × 16 × 8 as (m, n, k), took a third of the
/// browser's classify).
const SMALL_PRODUCT: usize = 1 << 15;

/// A product small enough for [`matmul`] to compute itself, with a row-major right operand.
struct Small<'a> {
    n: usize,
    k: usize,
    lhs: &'a [f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &'a [f32],
    rhs_rs: usize,
    accumulate: bool,
}

impl Small<'_> {
    /// In blocks of 4 rows × 8 columns of `dst`, held in registers while the `k` terms are
    /// summed (8 columns: two `simd128` or one AVX2 register a row).
    #[inline(always)]
    fn matmul(&self, m: usize, dst: &mut [f32], dst_rs: usize) {
        let mut r = 0;
        while r + 4 <= m {
            self.rows::<4>(r, dst, dst_rs);
            r += 4;
        }
        for r in r..m {
            self.rows::<1>(r, dst, dst_rs);
        }
    }

    /// Rows `r0..r0 + MR` of `dst`.
    #[inline(always)]
    fn rows<const MR: usize>(&self, r0: usize, dst: &mut [f32], dst_rs: usize) {
        const NR: usize = 8;
        let a = |i: usize, p: usize| self.lhs[(r0 + i) * self.lhs_rs + p * self.lhs_cs];
        let store = |dst: &mut [f32], sums: &[f32]| {
            for (d, s) in dst.iter_mut().zip(sums) {
                *d = if self.accumulate { *d + s } else { *s };
            }
        };
        let mut j = 0;
        while j + NR <= self.n {
            let mut acc = [[0.0f32; NR]; MR];
            for p in 0..self.k {
                let b: &[f32; NR] = self.rhs[p * self.rhs_rs + j..][..NR].try_into().unwrap();
                for (i, row) in acc.iter_mut().enumerate() {
                    let a = a(i, p);
                    for (c, b) in row.iter_mut().zip(b) {
                        *c += a * b;
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                store(&mut dst[(r0 + i) * dst_rs + j..][..NR], row);
            }
            j += NR;
        }
        for j in j..self.n {
            for i in 0..MR {
                let mut sum = 0.0f32;
                for p in 0..self.k {
                    sum += a(i, p) * self.rhs[p * self.rhs_rs + j];
                }
                store(&mut dst[(r0 + i) * dst_rs + j..][..1], &[sum]);
            }
        }
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
/// Values per block of a stride-2 gather: half a block, read from a whole one.
const HALF: usize = BLOCK / 2;

/// Scratch values [`im2col`] needs for one image: the unrolled matrix, then a zero-padded copy
/// of the image.
fn im2col_len(s: &ConvShape) -> usize {
    s.patch_len() * s.out_h() * s.out_w() + BLOCK + padded_len(s)
}

/// Values of the zero-padded copy of one image, with [`BLOCK`] values of slack.
fn padded_len(s: &ConvShape) -> usize {
    s.c_in * (s.h + 2 * s.ph) * (s.w + 2 * s.pw) + BLOCK
}

/// Unrolls one image `x` (`[c_in, h, w]`) into the front of `scratch` (`[c_in·kh·kw,
/// out_h·out_w]`, returned), the rest of `scratch` holding the padded copy (see [`unroll`]).
#[inline(always)]
fn im2col<'a>(x: &[f32], s: &ConvShape, scratch: &'a mut [f32]) -> &'a [f32] {
    let p = s.out_h() * s.out_w();
    let (cols, padded) = scratch.split_at_mut(s.patch_len() * p + BLOCK);
    unroll(x, s, cols, p, padded);
    &cols[..s.patch_len() * p]
}

/// Writes row `(c, ky, kx)` of one image's unrolled matrix — the input values that kernel tap
/// meets at each output position, 0 in the padding — at `cols[row·ld..][..out_h·out_w]`. The
/// image is first copied into the zero-padded plane `padded` ([`padded_len`] values), so that
/// with stride 1 every output row is one contiguous run of the padded plane; runs are copied in
/// fixed blocks of [`BLOCK`] values (no call per run, no bounds logic), each block's overshoot
/// landing where a later run or row (or a later image of a group, see [`weight_grad`]) writes,
/// or in the [`BLOCK`] values of slack that `cols` must have past its last row. Wider column
/// strides gather every `sw`-th value of the run.
#[inline(always)]
fn unroll(x: &[f32], s: &ConvShape, cols: &mut [f32], ld: usize, padded: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (hp, wp) = (s.h + 2 * s.ph, s.w + 2 * s.pw);
    let padded = &mut padded[..padded_len(s)];
    padded.fill(0.0);
    for c in 0..s.c_in {
        for y in 0..s.h {
            let src = &x[(c * s.h + y) * s.w..][..s.w];
            padded[(c * hp + y + s.ph) * wp + s.pw..][..s.w].copy_from_slice(src);
        }
    }
    let mut row = 0;
    for c in 0..s.c_in {
        let plane = &padded[c * hp * wp..];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let mut at = row * ld;
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
                    } else if s.sw == 2 {
                        // Fixed blocks here too: a stride-2 gather of 8 values compiles to
                        // shuffles, the loop over a run's length to one load per value.
                        let mut j = 0;
                        while j < ow {
                            let dst: &mut [f32; HALF] = (&mut cols[at + j..at + j + HALF])
                                .try_into()
                                .expect("block");
                            let src: &[f32; BLOCK] =
                                src[2 * j..2 * j + BLOCK].try_into().expect("block");
                            for (i, d) in dst.iter_mut().enumerate() {
                                *d = src[2 * i];
                            }
                            j += HALF;
                        }
                    } else {
                        let src = &src[..(ow - 1) * s.sw + 1];
                        for (d, v) in cols[at..at + ow].iter_mut().zip(src.iter().step_by(s.sw)) {
                            *d = *v;
                        }
                    }
                    at += ow;
                }
                row += 1;
            }
        }
    }
}

/// The convolution of `x` (`[n, c_in, h, w]`) with `weight` (`[c_out, c_in, kh, kw]`) plus
/// `bias` (`[c_out]`): `[n, c_out, out_h, out_w]`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], s: &ConvShape) -> Vec<f32> {
    if winograd::applies(s) {
        return winograd::forward(x, weight, bias, s);
    }
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

/// The gradient with respect to the input, given the output's gradient `grad`.
///
/// Two routes, chosen by shape. With stride 1 it is the convolution of `grad` with the kernel
/// flipped and transposed (`[c_in, c_out, kh, kw]`), padded by `kh − 1 − ph`: one product per
/// image with `c_out·kh·kw` terms per sum, as in the forward pass, and through [`winograd`]
/// where that applies (PreAct ResNet-18's stride-1 3×3 convolutions, the Madry CNN's conv2;
/// `cargo run --release -p rampart --example opbench [resnet]` times them). It is taken when
/// there are no more output than input channels, or when Winograd applies and there are at least
/// [`FLIPPED_MIN_C_IN`] input channels. Otherwise, per image `Wᵀ · grad` (`[C_in·k_h·k_w ×
/// C_out] · [C_out × H_out·W_out]`), its columns added back onto the input pixels they came
/// from (col2im): with more output than input channels and im2col, the flipped route unrolls
/// the larger tensor, and with one input channel its products are matrix-vector products; it
/// timed slower for both (the Madry CNN's conv1 and, before the Winograd transforms were
/// written by hand, its conv2).
pub fn input_grad(grad: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
    if s.sh == 1
        && s.sw == 1
        && (s.c_out <= s.c_in || (s.c_in >= FLIPPED_MIN_C_IN && winograd::applies(&flipped(s))))
    {
        return input_grad_flipped(grad, weight, s);
    }
    let (k, p) = (s.patch_len(), s.out_h() * s.out_w());
    let mut dx = vec![0.0f32; s.n * s.c_in * s.h * s.w];
    if dx.is_empty() {
        return dx;
    }
    par_chunks_mut(&mut dx, s.c_in * s.h * s.w, |i, dxi| {
        // Written before col2im reads it, for the reason given in `weight_grad`.
        dxi.fill(0.0);
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

/// Input channels from which the stride-1 input gradient of a convolution with more output than
/// input channels goes through the flipped route when Winograd applies: with fewer, each of its
/// products has fewer columns than one AVX2 register holds.
const FLIPPED_MIN_C_IN: usize = 8;

/// The stride-1 input gradient as a forward convolution of `grad` (see [`input_grad`]).
fn input_grad_flipped(grad: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
    let t = flipped(s);
    debug_assert!(t.supported() && t.out_h() == s.h && t.out_w() == s.w);
    let taps = s.kh * s.kw;
    let mut flipped = vec![0.0f32; weight.len()];
    for o in 0..s.c_out {
        for i in 0..s.c_in {
            let src = &weight[(o * s.c_in + i) * taps..][..taps];
            let dst = &mut flipped[(i * s.c_out + o) * taps..][..taps];
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
    }
    forward(grad, &flipped, &vec![0.0; s.c_in], &t)
}

/// The stride-1 convolution whose forward pass is `s`'s input gradient.
fn flipped(s: &ConvShape) -> ConvShape {
    ConvShape {
        n: s.n,
        c_in: s.c_out,
        h: s.out_h(),
        w: s.out_w(),
        c_out: s.c_in,
        kh: s.kh,
        kw: s.kw,
        ph: s.kh - 1 - s.ph,
        pw: s.kw - 1 - s.pw,
        sh: 1,
        sw: 1,
    }
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
                        let mut dst = &mut plane[first..][..(hi - lo - 1) * s.sw + 1];
                        let mut src = src;
                        if s.sw == 2 {
                            // Whole blocks of 8 values (see `unroll`), then the rest one by one.
                            while dst.len() >= BLOCK {
                                let (d, rest) = dst.split_at_mut(BLOCK);
                                let d: &mut [f32; BLOCK] = d.try_into().expect("block");
                                let v: &[f32; HALF] = src[..HALF].try_into().expect("block");
                                for (i, v) in v.iter().enumerate() {
                                    d[2 * i] += v;
                                }
                                (dst, src) = (rest, &src[HALF..]);
                            }
                        }
                        for (d, v) in dst.iter_mut().step_by(s.sw).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// Images per partial sum of the weight gradient, at least. Fixed (with [`group_len`] a function
/// of the shape alone), so that the order of the float additions (and so the result) does not
/// depend on the number of threads.
const WEIGHT_GRAD_CHUNK: usize = 8;

/// Terms per sum that a weight-gradient product should have at least: images are grouped until
/// their output positions reach it. One image of PreAct ResNet-18's last stage has 16 (4×4), a
/// product per image would reread and rewrite the whole `[512, 4608]` gradient for 16 terms.
const MIN_TERMS: usize = 256;

/// Images unrolled side by side into one weight-gradient product.
fn group_len(p: usize) -> usize {
    MIN_TERMS.div_ceil(p.max(1)).max(1)
}

/// The gradients with respect to the weights (`[c_out, c_in, kh, kw]`) and the bias
/// (`[c_out]`), given the input `x` and the output's gradient `grad`. Per group of images,
/// `dW[c_out × k] += grad_g[c_out × g·p] · cols_g[k × g·p]ᵀ`, the group's images unrolled side
/// by side into the columns of `cols_g`.
pub fn weight_grad(x: &[f32], grad: &[f32], s: &ConvShape) -> (Vec<f32>, Vec<f32>) {
    let (k, p) = (s.patch_len(), s.out_h() * s.out_w());
    let wlen = s.c_out * k;
    let group = group_len(p).min(s.n);
    let chunk = WEIGHT_GRAD_CHUNK.max(group);
    let chunks = s.n.div_ceil(chunk);
    // One partial (weights then bias) per chunk of images, summed below in chunk order.
    let mut partials = vec![0.0f32; chunks * (wlen + s.c_out)];
    if partials.is_empty() {
        return (vec![0.0; wlen], vec![0.0; s.c_out]);
    }
    let image = s.c_in * s.h * s.w;
    // The group's unrolled inputs (rows of `ld` values, slack included), the padded plane and the
    // group's output gradients.
    let ld = group * p + BLOCK;
    let scratch = k * ld + padded_len(s) + s.c_out * group * p;
    par_chunks_mut(&mut partials, wlen + s.c_out, |c, acc| {
        let (dw, db) = acc.split_at_mut(wlen);
        let end = ((c + 1) * chunk).min(s.n);
        let mut first = c * chunk;
        while first < end {
            let g = group.min(end - first);
            with_scratch(scratch, |buf| {
                let (cols, rest) = buf.split_at_mut(k * ld);
                let (padded, grads) = rest.split_at_mut(padded_len(s));
                for j in 0..g {
                    let i = first + j;
                    simd(
                        #[inline(always)]
                        || unroll(&x[i * image..][..image], s, &mut cols[j * p..], ld, padded),
                    );
                    let gi = &grad[i * s.c_out * p..][..s.c_out * p];
                    for (o, row) in gi.chunks_exact(p).enumerate() {
                        grads[o * group * p + j * p..][..p].copy_from_slice(row);
                    }
                }
                // dW[c_out × k] += grads[c_out × g·p] · cols[k × g·p]ᵀ. The chunk's first
                // product overwrites: reading the fresh zeroed pages first would map the shared
                // zero page, and each write then copies it and interrupts the other threads to
                // flush their TLBs.
                matmul(
                    (s.c_out, k, g * p),
                    dw,
                    k,
                    first > c * chunk,
                    grads,
                    (group * p, 1),
                    cols,
                    (1, ld),
                );
            });
            for i in first..first + g {
                let gi = &grad[i * s.c_out * p..][..s.c_out * p];
                for (b, row) in db.iter_mut().zip(gi.chunks_exact(p)) {
                    *b += row.iter().sum::<f32>();
                }
            }
            first += g;
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

#[cfg(test)]
mod tests {
    use super::{SMALL_PRODUCT, matmul};

    /// Products on both sides of [`SMALL_PRODUCT`] against a plain triple loop: row counts and
    /// column counts that leave blocks over, a transposed (strided) left operand, a right
    /// operand whose rows are longer than the product's (as attention's are), and accumulation
    /// onto what `dst` holds.
    #[test]
    fn matmul_matches_the_definition() {
        let value = |i: usize| ((i * 7919) % 23) as f32 / 11.0 - 1.0;
        for (m, n, k) in [(7, 13, 5), (4, 8, 1), (1, 3, 9), (49, 16, 8), (40, 40, 30)] {
            let lhs: Vec<f32> = (0..m * k).map(value).collect();
            let rhs_rs = n + 3;
            let rhs: Vec<f32> = (0..k * rhs_rs).map(|i| value(i + 5)).collect();
            for (transposed, accumulate) in [(false, false), (true, true)] {
                // Row-major, or stored `[k, m]` and read through strides.
                let (lhs_s, lhs) = if transposed {
                    let t: Vec<f32> = (0..k * m).map(|i| lhs[(i % m) * k + i / m]).collect();
                    ((1, m), t)
                } else {
                    ((k, 1), lhs.clone())
                };
                let dst_rs = n + 2;
                let start: Vec<f32> = (0..m * dst_rs).map(|i| value(i + 11)).collect();
                let mut dst = start.clone();
                matmul(
                    (m, n, k),
                    &mut dst,
                    dst_rs,
                    accumulate,
                    &lhs,
                    lhs_s,
                    &rhs,
                    (rhs_rs, 1),
                );
                for r in 0..m {
                    for c in 0..dst_rs {
                        let want = if c >= n {
                            start[r * dst_rs + c]
                        } else {
                            let sum: f32 = (0..k)
                                .map(|p| lhs[r * lhs_s.0 + p * lhs_s.1] * rhs[p * rhs_rs + c])
                                .sum();
                            sum + if accumulate {
                                start[r * dst_rs + c]
                            } else {
                                0.0
                            }
                        };
                        let got = dst[r * dst_rs + c];
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{m}×{n}×{k} (small: {}), transposed {transposed}, [{r}, {c}]: {got} against {want}",
                            m * n * k <= SMALL_PRODUCT
                        );
                    }
                }
            }
        }
    }
}
