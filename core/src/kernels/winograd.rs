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
    /// `Aᵀ`: output rows from the α products.
    at: [[f32; A]; 2],
    /// `G`: the kernel's α rows from its R taps.
    g: [[f32; R]; A],
    /// `Bᵀ`: the input's α rows from the tile's α rows.
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
        3 => forward_with(&F2_3, x, weight, bias, s),
        _ => forward_with(&F2_5, x, weight, bias, s),
    }
}

fn forward_with<const A: usize, const R: usize>(
    t: &Transform<A, R>,
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
    let u = kernel_transform(t, weight, s);
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
                || input_transform(t, xs, s, (hp, wp), padded, v, nt),
            );
            // M[ξ] (tiles × c_out) = V[ξ] (tiles × c_in) · U[ξ]ᵀ.
            for xi in 0..A * A {
                matmul(
                    (nt, s.c_out, s.c_in),
                    &mut m[xi * nt * s.c_out..],
                    s.c_out,
                    false,
                    &v[xi * nt * s.c_in..],
                    (s.c_in, 1),
                    &u[xi * s.c_out * s.c_in..],
                    (1, s.c_in),
                );
            }
            simd(
                #[inline(always)]
                || output_transform(t, m, bias, s, y, pixels, nt),
            );
        });
    });
    out
}

/// `U = G g Gᵀ` for every kernel `g` (`[c_out, c_in, R, R]`), laid out `[α², c_out, c_in]`.
fn kernel_transform<const A: usize, const R: usize>(
    t: &Transform<A, R>,
    weight: &[f32],
    s: &ConvShape,
) -> Vec<f32> {
    let pairs = s.c_out * s.c_in;
    let mut u = vec![0.0f32; A * A * pairs];
    for (pair, g) in weight.chunks_exact(R * R).enumerate() {
        // (G g): A × R, then (G g) Gᵀ: A × A.
        let mut gg = [[0.0f32; R]; A];
        for (a, row) in gg.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..R).map(|i| t.g[a][i] * g[i * R + j]).sum();
            }
        }
        for a in 0..A {
            for b in 0..A {
                u[(a * A + b) * pairs + pair] = (0..R).map(|j| gg[a][j] * t.g[b][j]).sum();
            }
        }
    }
    u
}

/// `V = Bᵀ d B` for every tile of the group's images `xs` (`[g, c_in, h, w]`), laid out
/// `[α², nt, c_in]` (tiles of an image in row order, images one after the other). Each image is
/// first copied channels-last into the zero-padded `padded` (`[hp, wp, c_in]`), so that every
/// step of the transform is a sum of whole channel vectors.
#[inline(always)]
fn input_transform<const A: usize, const R: usize>(
    t: &Transform<A, R>,
    xs: &[f32],
    s: &ConvShape,
    (hp, wp): (usize, usize),
    padded: &mut [f32],
    v: &mut [f32],
    nt: usize,
) {
    let c_in = s.c_in;
    let (tiles_y, tiles_x) = (s.out_h().div_ceil(2), s.out_w().div_ceil(2));
    let stride = nt * c_in;
    let padded = &mut padded[..hp * wp * c_in];
    // Bᵀ d for one tile: [α][α][c_in].
    let mut bd = vec![0.0f32; A * A * c_in];
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
                bd.fill(0.0);
                for a in 0..A {
                    for q in 0..A {
                        let src = &padded[((2 * ty + q) * wp + 2 * tx) * c_in..][..A * c_in];
                        add_scaled(&mut bd[a * A * c_in..][..A * c_in], t.bt[a][q], src);
                    }
                }
                for a in 0..A {
                    for b in 0..A {
                        let dst = &mut v[(a * A + b) * stride + tile * c_in..][..c_in];
                        dst.fill(0.0);
                        for q in 0..A {
                            add_scaled(dst, t.bt[b][q], &bd[(a * A + q) * c_in..][..c_in]);
                        }
                    }
                }
            }
        }
    }
}

/// `Y = Aᵀ M A` for every tile (`m`: `[α², nt, c_out]`), plus the bias, into the group's output
/// `y` (`[g, c_out, out_h, out_w]`), the last row and column of tiles cut at odd sizes. Each
/// image's pixels are first gathered channels-last in `pixels` (`[out_h·out_w, c_out]`), then
/// transposed into `y`.
#[inline(always)]
fn output_transform<const A: usize, const R: usize>(
    t: &Transform<A, R>,
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
    let stride = nt * c_out;
    let pixels = &mut pixels[..oh * ow * c_out];
    // Aᵀ M for one tile: [2][α][c_out].
    let mut am = vec![0.0f32; 2 * A * c_out];
    for (j, img) in y.chunks_exact_mut(c_out * oh * ow).enumerate() {
        for ty in 0..tiles_y {
            for tx in 0..tiles_x {
                let tile = (j * tiles_y + ty) * tiles_x + tx;
                am.fill(0.0);
                for a in 0..A {
                    for b in 0..A {
                        let src = &m[(a * A + b) * stride + tile * c_out..][..c_out];
                        for i in 0..2 {
                            add_scaled(&mut am[(i * A + b) * c_out..][..c_out], t.at[i][a], src);
                        }
                    }
                }
                for i in 0..2 {
                    let oy = 2 * ty + i;
                    for jj in 0..2 {
                        let ox = 2 * tx + jj;
                        if oy >= oh || ox >= ow {
                            continue;
                        }
                        let dst = &mut pixels[(oy * ow + ox) * c_out..][..c_out];
                        dst.copy_from_slice(bias);
                        for b in 0..A {
                            add_scaled(dst, t.at[jj][b], &am[(i * A + b) * c_out..][..c_out]);
                        }
                    }
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

/// `dst += coef · src`, skipped for the transforms' many zero coefficients.
#[inline(always)]
fn add_scaled(dst: &mut [f32], coef: f32, src: &[f32]) {
    if coef != 0.0 {
        for (d, x) in dst.iter_mut().zip(src) {
            *d += coef * x;
        }
    }
}
