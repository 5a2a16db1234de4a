//! Stride-1 3×3 and 5×5 convolutions by Winograd's minimal filtering, F(2×2, r×r) (Lavin &
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2×2 block of output
//! comes from an α×α tile of input (α = r + 1), as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Across channels
//! the element-wise product is a sum, so a group of images costs α² matrix products
//! `[c_out × c_in] · [c_in × tiles]`: 16 products of 4 terms per output pixel and channel pair
//! for 3×3 instead of 9 (2.25× fewer), 36 / 4 = 9 for 5×5 instead of 25 (2.8× fewer), plus the
//! transforms, which are linear in the channels.
//!
//! The matrices are the Toom-Cook ones for the points 0, ±1 (3×3) and 0, ±1, ±2 (5×5) and
//! infinity, checked in `bench/winograd_matrices.py`. The transforms round differently from a
//! direct sum; the kernel tests hold them to the im2col path's tolerance against Burn (1e-5
//! relative), up to 64 channels for 3×3 and 32 for 5×5. An infinite input becomes
//! NaN (the transforms subtract it from itself) where a direct sum may keep it infinite.
//!
//! Grouping images trades parallelism for larger products: at batch 128, the 4×4 outputs of
//! PreAct ResNet-18's last stage make two groups of 64 images, enough for two cores, not more.

use super::conv::{ConvShape, matmul, with_scratch};
use super::{par_chunks_mut, simd};

/// The three matrices of F(2×2, R×R), with α = A = R + 1 input rows per tile.
struct Transform<const A: usize, const R: usize> {
    /// `Aᵀ`: output rows from the α products (the code is [`Minimal::at`]; the tests hold it
    /// to this).
    #[cfg_attr(not(test), allow(dead_code))]
    at: [[f32; A]; 2],
    /// `G`: the kernel's α rows from its R taps.
    g: [[f32; R]; A],
    /// `Bᵀ`: the input's α rows from the tile's α rows (the code is [`Minimal::bt`]).
    #[cfg_attr(not(test), allow(dead_code))]
    bt: [[f32; A]; A],
}

const F2_3: Transform<4, 3> = Transform {
    at: [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 1.0]],
    g: [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ],
    bt: [
        [1.0, 0.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 0.0],
        [0.0, -1.0, 0.0, 1.0],
    ],
};

const F2_5: Transform<6, 5> = Transform {
    at: [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 1.0],
    ],
    g: [
        [1.0 / 4.0, 0.0, 0.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0, 2.0 / 3.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ],
    bt: [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ],
};

/// One F(2×2, R×R): its matrices, and its input and output transforms along one axis written
/// out by hand (zero terms dropped, shared terms computed once), which a loop over the matrices
/// does not compile to: unrolled it is too large, rolled it tests every coefficient. The tests
/// below hold them equal to the matrices.
trait Minimal<const A: usize, const R: usize> {
    const T: Transform<A, R>;
    /// `Bᵀ d` for the α rows `d` of `N` lanes each.
    fn bt<const N: usize>(d: &[[f32; N]; A]) -> [[f32; N]; A];
    /// `Aᵀ m` for the α rows `m` of `N` lanes each.
    fn at<const N: usize>(m: &[[f32; N]; A]) -> [[f32; N]; 2];
}

/// `N` lanes, each `f(lane)`. A plain loop: `std::array::from_fn` can stay a call.
#[inline(always)]
fn lanes<const N: usize>(mut f: impl FnMut(usize) -> f32) -> [f32; N] {
    let mut out = [0.0f32; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(i);
    }
    out
}

struct F23;

impl Minimal<4, 3> for F23 {
    const T: Transform<4, 3> = F2_3;

    #[inline(always)]
    fn bt<const N: usize>(d: &[[f32; N]; 4]) -> [[f32; N]; 4] {
        [
            lanes(|i| d[0][i] - d[2][i]),
            lanes(|i| d[1][i] + d[2][i]),
            lanes(|i| d[2][i] - d[1][i]),
            lanes(|i| d[3][i] - d[1][i]),
        ]
    }

    #[inline(always)]
    fn at<const N: usize>(m: &[[f32; N]; 4]) -> [[f32; N]; 2] {
        [
            lanes(|i| m[0][i] + m[1][i] + m[2][i]),
            lanes(|i| m[1][i] - m[2][i] + m[3][i]),
        ]
    }
}

struct F25;

impl Minimal<6, 5> for F25 {
    const T: Transform<6, 5> = F2_5;

    #[inline(always)]
    fn bt<const N: usize>(d: &[[f32; N]; 6]) -> [[f32; N]; 6] {
        // Rows 1 and 2 are t1 ± t2, rows 3 and 4 are t3 ± t4.
        let t1: [f32; N] = lanes(|i| d[4][i] - 4.0 * d[2][i]);
        let t2: [f32; N] = lanes(|i| d[3][i] - 4.0 * d[1][i]);
        let t3: [f32; N] = lanes(|i| d[4][i] - d[2][i]);
        let t4: [f32; N] = lanes(|i| 2.0 * (d[3][i] - d[1][i]));
        [
            lanes(|i| 4.0 * d[0][i] - 5.0 * d[2][i] + d[4][i]),
            lanes(|i| t1[i] + t2[i]),
            lanes(|i| t1[i] - t2[i]),
            lanes(|i| t3[i] + t4[i]),
            lanes(|i| t3[i] - t4[i]),
            lanes(|i| 4.0 * d[1][i] - 5.0 * d[3][i] + d[5][i]),
        ]
    }

    #[inline(always)]
    fn at<const N: usize>(m: &[[f32; N]; 6]) -> [[f32; N]; 2] {
        [
            lanes(|i| m[0][i] + m[1][i] + m[2][i] + m[3][i] + m[4][i]),
            lanes(|i| m[1][i] - m[2][i] + 2.0 * (m[3][i] - m[4][i]) + m[5][i]),
        ]
    }
}

/// Channels a tile transform handles at once: one AVX2 register of `f32`. Channel counts that
/// are not a multiple of it end with one channel at a time.
const LANES: usize = 8;

/// Tiles per matrix product, at least: images are grouped until they reach it, so that the
/// products of the small late layers (4×4 outputs: 4 tiles an image) are not mostly packing.
const MIN_TILES: usize = 256;

/// Whether [`forward`] computes this convolution: stride 1, a square 3×3 or 5×5 kernel, and
/// more than one input channel (with one, each product is an outer product, no faster than
/// im2col's matrix-vector product).
pub fn applies(s: &ConvShape) -> bool {
    s.sh == 1 && s.sw == 1 && s.kh == s.kw && matches!(s.kh, 3 | 5) && s.c_in > 1
}

/// The convolution of `x` (`[n, c_in, h, w]`) with `weight` (`[c_out, c_in, r, r]`) plus `bias`
/// (`[c_out]`), for a shape that [`applies`].
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], s: &ConvShape) -> Vec<f32> {
    debug_assert!(applies(s));
    match s.kh {
        3 => forward_with::<F23, 4, 3>(x, weight, bias, s),
        _ => forward_with::<F25, 6, 5>(x, weight, bias, s),
    }
}

fn forward_with<W: Minimal<A, R>, const A: usize, const R: usize>(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: &ConvShape,
) -> Vec<f32> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let plane = oh * ow;
    let mut out = vec![0.0f32; s.n * s.c_out * plane];
    if out.is_empty() {
        return out;
    }
    let tiles = oh.div_ceil(2) * ow.div_ceil(2);
    let group = MIN_TILES.div_ceil(tiles).clamp(1, s.n);
    let u = kernel_transform(&W::T, weight, s);
    let image = s.c_in * s.h * s.w;
    // The padded image a tile reads from: every tile whole inside it, the image at (ph, pw).
    let (hp, wp) = (2 * oh.div_ceil(2) + A - 2, 2 * ow.div_ceil(2) + A - 2);
    par_chunks_mut(&mut out, group * s.c_out * plane, |gi, y| {
        let g = y.len() / (s.c_out * plane);
        let nt = g * tiles;
        let xs = &x[gi * group * image..][..g * image];
        let len = A * A * (s.c_in + s.c_out) * nt + hp * wp * s.c_in + plane * s.c_out;
        with_scratch(len, |buf| {
            let (v, rest) = buf.split_at_mut(A * A * s.c_in * nt);
            let (m, rest) = rest.split_at_mut(A * A * s.c_out * nt);
            let (padded, pixels) = rest.split_at_mut(hp * wp * s.c_in);
            simd(
                #[inline(always)]
                || input_transform::<W, A, R>(xs, s, (hp, wp), padded, v, nt),
            );
            // M[ξ] (tiles × c_out) = V[ξ] (tiles × c_in) · U[ξ].
            for xi in 0..A * A {
                matmul(
                    (nt, s.c_out, s.c_in),
                    &mut m[xi * nt * s.c_out..],
                    s.c_out,
                    false,
                    &v[xi * nt * s.c_in..],
                    (s.c_in, 1),
                    &u[xi * s.c_out * s.c_in..],
                    (s.c_out, 1),
                );
            }
            simd(
                #[inline(always)]
                || output_transform::<W, A, R>(m, bias, s, y, pixels, nt),
            );
        });
    });
    out
}

/// `U = G g Gᵀ` for every kernel `g` (`[c_out, c_in, R, R]`), laid out `[α², c_in, c_out]`:
/// each U[ξ] is the row-major right operand of its product, which the small products of a
/// single image need (`matmul` multiplies those itself).
fn kernel_transform<const A: usize, const R: usize>(
    t: &Transform<A, R>,
    weight: &[f32],
    s: &ConvShape,
) -> Vec<f32> {
    let pairs = s.c_out * s.c_in;
    let mut u = vec![0.0f32; A * A * pairs];
    for (pair, g) in weight.chunks_exact(R * R).enumerate() {
        let (co, ci) = (pair / s.c_in, pair % s.c_in);
        // (G g): A × R, then (G g) Gᵀ: A × A.
        let mut gg = [[0.0f32; R]; A];
        // Plain loops: the iterator sums stayed calls in the browser build.
        for (a, row) in gg.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                for i in 0..R {
                    *v += t.g[a][i] * g[i * R + j];
                }
            }
        }
        for a in 0..A {
            for b in 0..A {
                let mut sum = 0.0f32;
                for (x, y) in gg[a].iter().zip(&t.g[b]) {
                    sum += x * y;
                }
                u[(a * A + b) * pairs + ci * s.c_out + co] = sum;
            }
        }
    }
    u
}

/// `V = Bᵀ d B` for every tile of the group's images `xs` (`[g, c_in, h, w]`), laid out
/// `[α², nt, c_in]` (tiles of an image in row order, images one after the other). Each image is
/// first copied channels-last into the zero-padded `padded` (`[hp, wp, c_in]`), so that a tile
/// transform works on [`LANES`] channels at once (see [`input_tile`]).
#[inline(always)]
fn input_transform<W: Minimal<A, R>, const A: usize, const R: usize>(
    xs: &[f32],
    s: &ConvShape,
    (hp, wp): (usize, usize),
    padded: &mut [f32],
    v: &mut [f32],
    nt: usize,
) {
    let c_in = s.c_in;
    let (tiles_y, tiles_x) = (s.out_h().div_ceil(2), s.out_w().div_ceil(2));
    let padded = &mut padded[..hp * wp * c_in];
    for (j, img) in xs.chunks_exact(c_in * s.h * s.w).enumerate() {
        padded.fill(0.0);
        for (c, src) in img.chunks_exact(s.h * s.w).enumerate() {
            for y in 0..s.h {
                let row = &mut padded[((y + s.ph) * wp + s.pw) * c_in..];
                for (x, v) in src[y * s.w..][..s.w].iter().enumerate() {
                    row[x * c_in + c] = *v;
                }
            }
        }
        for ty in 0..tiles_y {
            for tx in 0..tiles_x {
                let tile = (j * tiles_y + ty) * tiles_x + tx;
                let src = &padded[(2 * ty * wp + 2 * tx) * c_in..];
                let dst = &mut v[tile * c_in..];
                let mut c = 0;
                while c + LANES <= c_in {
                    input_tile::<W, A, R, LANES>(src, wp * c_in, c_in, c, dst, nt * c_in);
                    c += LANES;
                }
                for c in c..c_in {
                    input_tile::<W, A, R, 1>(src, wp * c_in, c_in, c, dst, nt * c_in);
                }
            }
        }
    }
}

/// `Bᵀ d B` for `N` channels from `c` of one tile, whose value at row `q`, column `r` and channel
/// `c` is `src[q·row + r·c_in + c]`, written at `dst[ξ·stride + c..]` for each of the α² points ξ.
#[inline(always)]
fn input_tile<W: Minimal<A, R>, const A: usize, const R: usize, const N: usize>(
    src: &[f32],
    row: usize,
    c_in: usize,
    c: usize,
    dst: &mut [f32],
    stride: usize,
) {
    // Bᵀ d column by column, then each row of that times B.
    let mut e = [[[0.0f32; N]; A]; A];
    for r in 0..A {
        let mut column = [[0.0f32; N]; A];
        for (q, v) in column.iter_mut().enumerate() {
            v.copy_from_slice(&src[q * row + r * c_in + c..][..N]);
        }
        for (ea, v) in e.iter_mut().zip(W::bt(&column)) {
            ea[r] = v;
        }
    }
    for (a, ea) in e.iter().enumerate() {
        for (b, v) in W::bt(ea).iter().enumerate() {
            dst[(a * A + b) * stride + c..][..N].copy_from_slice(v);
        }
    }
}

/// `Y = Aᵀ M A` for every tile (`m`: `[α², nt, c_out]`), plus the bias, into the group's output
/// `y` (`[g, c_out, out_h, out_w]`), the last row and column of tiles cut at odd sizes. Each
/// image's pixels are first gathered channels-last in `pixels` (`[out_h·out_w, c_out]`), then
/// transposed into `y`.
#[inline(always)]
fn output_transform<W: Minimal<A, R>, const A: usize, const R: usize>(
    m: &[f32],
    bias: &[f32],
    s: &ConvShape,
    y: &mut [f32],
    pixels: &mut [f32],
    nt: usize,
) {
    let c_out = s.c_out;
    let (oh, ow) = (s.out_h(), s.out_w());
    let (tiles_y, tiles_x) = (oh.div_ceil(2), ow.div_ceil(2));
    let pixels = &mut pixels[..oh * ow * c_out];
    for (j, img) in y.chunks_exact_mut(c_out * oh * ow).enumerate() {
        for ty in 0..tiles_y {
            for tx in 0..tiles_x {
                let tile = (j * tiles_y + ty) * tiles_x + tx;
                let src = &m[tile * c_out..];
                // The tile's pixels that lie inside the output, and where they go.
                let mut at = [[None; 2]; 2];
                for (i, row) in at.iter_mut().enumerate() {
                    for (jj, p) in row.iter_mut().enumerate() {
                        let (oy, ox) = (2 * ty + i, 2 * tx + jj);
                        if oy < oh && ox < ow {
                            *p = Some((oy * ow + ox) * c_out);
                        }
                    }
                }
                let mut c = 0;
                while c + LANES <= c_out {
                    output_tile::<W, A, R, LANES>(src, nt * c_out, c, bias, pixels, &at);
                    c += LANES;
                }
                for c in c..c_out {
                    output_tile::<W, A, R, 1>(src, nt * c_out, c, bias, pixels, &at);
                }
            }
        }
        for (k, plane) in img.chunks_exact_mut(oh * ow).enumerate() {
            for (p, o) in plane.iter_mut().enumerate() {
                *o = pixels[p * c_out + k];
            }
        }
    }
}

/// `Aᵀ M A` plus the bias for `N` channels from `c` of one tile, whose point ξ is at
/// `src[ξ·stride + c..]`; pixel (i, j) of the 2×2 result goes to `pixels[at[i][j] + c..]`.
#[inline(always)]
fn output_tile<W: Minimal<A, R>, const A: usize, const R: usize, const N: usize>(
    src: &[f32],
    stride: usize,
    c: usize,
    bias: &[f32],
    pixels: &mut [f32],
    at: &[[Option<usize>; 2]; 2],
) {
    // Aᵀ M column by column, then each of its two rows times A.
    let mut e = [[[0.0f32; N]; A]; 2];
    for b in 0..A {
        let mut column = [[0.0f32; N]; A];
        for (a, v) in column.iter_mut().enumerate() {
            v.copy_from_slice(&src[(a * A + b) * stride + c..][..N]);
        }
        for (ei, v) in e.iter_mut().zip(W::at(&column)) {
            ei[b] = v;
        }
    }
    let mut b = [0.0f32; N];
    b.copy_from_slice(&bias[c..][..N]);
    for (ei, row) in e.iter().zip(at) {
        for (y, p) in W::at(ei).iter().zip(row) {
            if let Some(p) = *p {
                let o: [f32; N] = lanes(|i| b[i] + y[i]);
                pixels[p + c..][..N].copy_from_slice(&o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written transforms of `W` applied to each unit vector give the matrices' columns.
    fn check<W: Minimal<A, R>, const A: usize, const R: usize>() {
        for k in 0..A {
            let unit: [[f32; 1]; A] = std::array::from_fn(|q| [f32::from(q == k)]);
            let (bt, at) = (W::bt(&unit), W::at(&unit));
            for (a, row) in bt.iter().enumerate() {
                assert_eq!(row[0], W::T.bt[a][k], "Bᵀ[{a}][{k}], α = {A}");
            }
            for (i, row) in at.iter().enumerate() {
                assert_eq!(row[0], W::T.at[i][k], "Aᵀ[{i}][{k}], α = {A}");
            }
        }
    }

    #[test]
    fn transforms_equal_the_matrices() {
        check::<F23, 4, 3>();
        check::<F25, 6, 5>();
    }
}
