//! `max_pool2d(relu(x))` with a 2×2 window and stride 2, fused, on host memory. It equals the
//! two Burn operations bit for bit (ReLU is monotone, so it commutes with the maximum, and the
//! gradient goes to the same element: the window's first maximum, or its last NaN), reads the
//! input once and keeps no index tensor: the backward pass finds each window's maximum again.

use super::par_chunks_mut;

/// The window's winner: its value and position (0..4, row-major). The rule is Burn's and
/// PyTorch's: the first maximum, except that a NaN always wins.
#[inline(always)]
fn window_max(v: [f32; 4]) -> (f32, usize) {
    let mut best = v[0];
    let mut at = 0;
    for (k, &x) in v.iter().enumerate().skip(1) {
        if x > best || x.is_nan() {
            best = x;
            at = k;
        }
    }
    (best, at)
}

/// ReLU's pass rule, NaN included (it propagates, as in Burn and PyTorch).
#[inline(always)]
fn passes(x: f32) -> bool {
    x > 0.0 || x.is_nan()
}

/// `x`: `planes` planes of `h × w` values. Returns `planes` planes of `(h/2) × (w/2)`.
pub fn forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0f32; planes * oh * ow];
    if out.is_empty() {
        return out;
    }
    par_chunks_mut(&mut out, oh * ow, |p, plane| {
        let src = &x[p * h * w..(p + 1) * h * w];
        for (r, row) in plane.chunks_exact_mut(ow).enumerate() {
            let (a, b) = (&src[2 * r * w..], &src[(2 * r + 1) * w..]);
            for (c, o) in row.iter_mut().enumerate() {
                let (m, _) = window_max([a[2 * c], a[2 * c + 1], b[2 * c], b[2 * c + 1]]);
                *o = if passes(m) { m } else { 0.0 };
            }
        }
    });
    out
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
        let src = &x[p * h * w..(p + 1) * h * w];
        let g = &grad[p * oh * ow..(p + 1) * oh * ow];
        for r in 0..oh {
            let (top, rest) = plane[2 * r * w..].split_at_mut(w);
            let bottom = &mut rest[..w];
            let (a, b) = (&src[2 * r * w..], &src[(2 * r + 1) * w..]);
            for c in 0..ow {
                let (m, at) = window_max([a[2 * c], a[2 * c + 1], b[2 * c], b[2 * c + 1]]);
                if passes(m) {
                    let gv = g[r * ow + c];
                    match at {
                        0 => top[2 * c] = gv,
                        1 => top[2 * c + 1] = gv,
                        2 => bottom[2 * c] = gv,
                        _ => bottom[2 * c + 1] = gv,
                    }
                }
            }
        }
    });
    dx
}
