//! `max_pool2d(relu(x))` with a 2×2 window and stride 2, fused, on host memory. It equals the
//! two Burn operations bit for bit (ReLU is monotone, so it commutes with the maximum, and the
//! gradient goes to the same element: the window's first maximum, or its last NaN), reads the
//! input once and keeps no index tensor: the backward pass finds each window's maximum again.

use super::{par_chunks_mut, simd};

/// All ones if `c`, else zero: for selecting by bit masks, which the compiler cannot turn back
/// into branches.
#[inline(always)]
fn mask(c: bool) -> u32 {
    0u32.wrapping_sub(c as u32)
}

/// `if c { x } else { y }` without a branch.
#[inline(always)]
fn select(c: bool, x: f32, y: f32) -> f32 {
    let m = mask(c);
    f32::from_bits((x.to_bits() & m) | (y.to_bits() & !m))
}

/// The window's value under the pooling rule (Burn's and PyTorch's): its maximum, or its last
/// NaN where it holds one. Selected by bit masks, like everything here: plain `if`s and `match`es
/// became jumps that the data make unpredictable, and mispredicted branches had made the backward
/// pass the step's second largest cost.
#[inline(always)]
fn window_value(v: [f32; 4]) -> f32 {
    let mut best = v[0];
    for &x in &v[1..] {
        best = select((x > best) | x.is_nan(), x, best);
    }
    best
}

/// Which of a window's four values (row-major) takes its gradient: the first maximum, or the
/// last NaN where there is one (the value [`window_value`] picks), written as lane-wise
/// comparisons only, so that the loop over windows vectorises.
#[inline(always)]
fn winners([p, q, r, t]: [f32; 4]) -> [bool; 4] {
    let [np, nq, nr, nt] = [p.is_nan(), q.is_nan(), r.is_nan(), t.is_nan()];
    // With a NaN in the window every comparison below is false and only the NaN terms count.
    [
        ((p >= q) & (p >= r) & (p >= t)) | (np & !nq & !nr & !nt),
        ((q > p) & (q >= r) & (q >= t)) | (nq & !nr & !nt),
        ((r > p) & (r > q) & (r >= t)) | (nr & !nt),
        ((t > p) & (t > q) & (t > r)) | nt,
    ]
}

/// ReLU's pass rule, NaN included (it propagates, as in Burn and PyTorch).
#[inline(always)]
fn passes(x: f32) -> bool {
    (x > 0.0) | x.is_nan()
}

/// `x`: `planes` planes of `h × w` values. Returns `planes` planes of `(h/2) × (w/2)`.
pub fn forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0f32; planes * oh * ow];
    if out.is_empty() {
        return out;
    }
    par_chunks_mut(&mut out, oh * ow, |p, plane| {
        simd(
            #[inline(always)]
            || forward_plane(&x[p * h * w..(p + 1) * h * w], w, plane, ow),
        )
    });
    out
}

#[inline(always)]
fn forward_plane(src: &[f32], w: usize, plane: &mut [f32], ow: usize) {
    for (r, row) in plane.chunks_exact_mut(ow).enumerate() {
        let a = &src[2 * r * w..][..2 * ow];
        let b = &src[(2 * r + 1) * w..][..2 * ow];
        for ((a, b), o) in a.chunks_exact(2).zip(b.chunks_exact(2)).zip(row) {
            let m = window_value([a[0], a[1], b[0], b[1]]);
            *o = select(passes(m), m, 0.0);
        }
    }
}

/// The gradient with respect to `x` given the output's gradient `grad`
/// (`planes × (h/2) × (w/2)`).
pub fn backward(x: &[f32], grad: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    // Zeroed: rows and columns past an odd edge belong to no window.
    let mut dx = vec![0.0f32; planes * h * w];
    if dx.is_empty() || oh * ow == 0 {
        return dx;
    }
    par_chunks_mut(&mut dx, h * w, |p, plane| {
        let g = &grad[p * oh * ow..(p + 1) * oh * ow];
        simd(
            #[inline(always)]
            || backward_plane(&x[p * h * w..(p + 1) * h * w], g, w, plane, (oh, ow)),
        )
    });
    dx
}

// Lane loops index four arrays at once; iterator chains would hide that they are one loop.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn backward_plane(src: &[f32], g: &[f32], w: usize, plane: &mut [f32], (oh, ow): (usize, usize)) {
    // Windows are taken LANES at a time: their four values are first gathered into separate
    // fixed-size arrays, so that the winner test runs on whole vectors.
    const LANES: usize = 32;
    for r in 0..oh {
        let (top, rest) = plane[2 * r * w..].split_at_mut(w);
        let bottom = &mut rest[..w];
        let a = &src[2 * r * w..][..2 * ow];
        let b = &src[(2 * r + 1) * w..][..2 * ow];
        let g = &g[r * ow..(r + 1) * ow];
        for c0 in (0..ow).step_by(LANES) {
            let n = LANES.min(ow - c0);
            let mut v = [[0.0f32; LANES]; 4];
            let mut gv = [0.0f32; LANES];
            for c in 0..n {
                let j = 2 * (c0 + c);
                v[0][c] = a[j];
                v[1][c] = a[j + 1];
                v[2][c] = b[j];
                v[3][c] = b[j + 1];
                gv[c] = g[c0 + c];
            }
            let mut out = [[0.0f32; LANES]; 4];
            for c in 0..LANES {
                let win = winners([v[0][c], v[1][c], v[2][c], v[3][c]]);
                // Every position written, the gradient masked in: no data-dependent branch.
                for k in 0..4 {
                    out[k][c] = f32::from_bits(gv[c].to_bits() & mask(win[k] & passes(v[k][c])));
                }
            }
            for c in 0..n {
                let j = 2 * (c0 + c);
                top[j] = out[0][c];
                top[j + 1] = out[1][c];
                bottom[j] = out[2][c];
                bottom[j + 1] = out[3][c];
            }
        }
    }
}
