//! Winograd F(4×4, 3×3) convolution (Lavin & Gray 2016, "Fast Algorithms for Convolutional
//! Neural Networks"): a 3×3, stride-1 convolution computed tile by tile as
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, with `d` a 6×6 input tile and `Y` a 4×4 output tile.
//! The element-wise products summed over input channels become 36 matrix products
//! `M[ξ] = U[ξ] · V[ξ]` (`U`: transformed weights, `Cout × Cin`; `V`: transformed input,
//! `Cin × tiles`), so the multiply count falls from 9 to 36/16 = 2.25 per output and input
//! channel: a quarter of a direct convolution's.
//!
//! This module is plain arithmetic on row-major `f32` slices (NCHW); [`crate::fastconv`]
//! wires it into burn's CPU backend. The input transform reads the input through a padding
//! rule (zero, reflect, replicate), so no padded copy of the input is made; the output
//! transform adds the bias.

use rayon::prelude::*;

/// Output tile side.
const M: usize = 4;
/// Input tile side (`M + 3 - 1`).
const A: usize = 6;
/// Number of transform positions (`A²`): the number of matrix products per convolution.
pub const POSITIONS: usize = A * A;

/// Input transform `Bᵀ` for F(4, 3) (interpolation points 0, ±1, ±2, ∞).
const BT: [[f32; A]; A] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// Filter transform `G`.
const G: [[f64; 3]; A] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Output transform `Aᵀ`.
const AT: [[f32; A]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// How the input is read outside its borders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Zeros.
    Zero,
    /// Mirror without repeating the edge (`x[-1] = x[1]`); one pixel deep at most.
    Reflect,
    /// Repeat the edge (`x[-1] = x[0]`); one pixel deep at most.
    Replicate,
}

/// The shape of one convolution: `n` images of `channels × height × width`, padded by `pad`
/// on every side (1 keeps the size; 0 shrinks it by 2; 2 grows it by 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Images in the batch.
    pub n: usize,
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Padding on each side.
    pub pad: usize,
    /// How the padding is read.
    pub border: Border,
}

impl Shape {
    /// Output height and width.
    pub fn output(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.pad).saturating_sub(2),
            (self.width + 2 * self.pad).saturating_sub(2),
        )
    }

    /// Tiles down and across one image.
    fn tiles(&self) -> (usize, usize) {
        let (ho, wo) = self.output();
        (ho.div_ceil(M), wo.div_ceil(M))
    }

    /// Tiles in the whole batch: the width of the matrices `V` and `M`.
    pub fn tile_count(&self) -> usize {
        let (th, tw) = self.tiles();
        self.n * th * tw
    }
}

/// Transforms 3×3 filters `[cout, cin, 3, 3]` into `U`, laid out `[36, cout, cin]`.
/// With `transpose_flip`, transforms instead the filters of the input gradient
/// (`g'[ci][co] = g[co][ci]` rotated by 180°), laid out `[36, cin, cout]`.
pub fn transform_filters(
    weight: &[f32],
    cout: usize,
    cin: usize,
    transpose_flip: bool,
) -> Vec<f32> {
    assert_eq!(
        weight.len(),
        cout * cin * 9,
        "filters are [cout, cin, 3, 3]"
    );
    let (rows, cols) = if transpose_flip {
        (cin, cout)
    } else {
        (cout, cin)
    };
    let mut u = vec![0.0f32; POSITIONS * rows * cols];
    for co in 0..cout {
        for ci in 0..cin {
            let g = &weight[(co * cin + ci) * 9..][..9];
            let tap = |r: usize, c: usize| -> f64 {
                if transpose_flip {
                    f64::from(g[(2 - r) * 3 + (2 - c)])
                } else {
                    f64::from(g[r * 3 + c])
                }
            };
            // G g: 6×3.
            let mut gg = [[0.0f64; 3]; A];
            for (i, row) in gg.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|r| G[i][r] * tap(r, c)).sum();
                }
            }
            let (row, col) = if transpose_flip { (ci, co) } else { (co, ci) };
            for i in 0..A {
                for j in 0..A {
                    let v: f64 = (0..3).map(|c| gg[i][c] * G[j][c]).sum();
                    u[((i * A + j) * rows + row) * cols + col] = v as f32;
                }
            }
        }
    }
    u
}

/// Where one padded coordinate reads from: `Some(index)` inside, `None` for a zero.
fn source(v: isize, len: usize, border: Border) -> Option<usize> {
    let len = len as isize;
    if (0..len).contains(&v) {
        return Some(v as usize);
    }
    let mapped = match border {
        Border::Zero => return None,
        Border::Reflect if v == -1 && len >= 2 => 1,
        Border::Reflect if v == len && len >= 2 => len - 2,
        Border::Replicate | Border::Reflect if v == -1 => 0,
        Border::Replicate | Border::Reflect if v == len => len - 1,
        _ => return None,
    };
    Some(mapped as usize)
}

/// `out = Σ coef[k] · rows[k]` over the non-zero coefficients.
#[inline(always)]
fn combine(out: &mut [f32], coefs: &[f32], rows: &[&[f32]]) {
    let mut first = true;
    for (&c, row) in coefs.iter().zip(rows) {
        if c == 0.0 {
            continue;
        }
        let row = &row[..out.len()];
        if first {
            for (o, &x) in out.iter_mut().zip(row) {
                *o = c * x;
            }
            first = false;
        } else {
            for (o, &x) in out.iter_mut().zip(row) {
                *o += c * x;
            }
        }
    }
    if first {
        out.fill(0.0);
    }
}

/// The input transform `V = Bᵀ d B` of every tile, laid out `[cin, 36, n·tiles]`.
pub fn transform_input(input: &[f32], shape: &Shape) -> Vec<f32> {
    let Shape {
        n,
        channels,
        height: h,
        width: w,
        pad,
        border,
    } = *shape;
    assert_eq!(input.len(), n * channels * h * w, "input is [n, c, h, w]");
    let (th, tw) = shape.tiles();
    let tiles = th * tw;
    let nt = n * tiles;
    let mut v = vec![0.0f32; channels * POSITIONS * nt];
    if nt == 0 {
        return v;
    }
    // Column sources in phase order: phase k (0..4) of tile column t' reads padded column
    // 4t' + k, for t' in 0..=tw (tile t reads phases 0..4 of t' = t and 0..2 of t + 1).
    let span = tw + 1;
    let cols: Vec<Option<usize>> = (0..M)
        .flat_map(|k| (0..span).map(move |t| (M * t + k) as isize - pad as isize))
        .map(|v| source(v, w, border))
        .collect();
    let rows: Vec<Vec<Option<usize>>> = (0..th)
        .map(|ty| {
            (0..A)
                .map(|r| source((M * ty + r) as isize - pad as isize, h, border))
                .collect()
        })
        .collect();
    let arch = pulp::Arch::new();
    v.par_chunks_mut(POSITIONS * nt)
        .enumerate()
        .for_each(|(c, vc)| {
            arch.dispatch(|| {
                let mut strip = vec![0.0f32; A * M * span];
                let mut vert = vec![0.0f32; A * M * span];
                for img in 0..n {
                    let plane = &input[(img * channels + c) * h * w..][..h * w];
                    for (ty, row_src) in rows.iter().enumerate() {
                        // Gather the six padded rows of this tile row, de-interleaved by phase.
                        for (r, src) in row_src.iter().enumerate() {
                            let dst = &mut strip[r * M * span..][..M * span];
                            match src {
                                Some(y) => {
                                    let line = &plane[y * w..][..w];
                                    for (d, s) in dst.iter_mut().zip(&cols) {
                                        *d = s.map_or(0.0, |x| line[x]);
                                    }
                                }
                                None => dst.fill(0.0),
                            }
                        }
                        // Bᵀ d: combine rows.
                        {
                            let srcs: Vec<&[f32]> = strip.chunks(M * span).collect();
                            for (i, out) in vert.chunks_mut(M * span).enumerate() {
                                combine(out, &BT[i], &srcs);
                            }
                        }
                        // (Bᵀ d) B: combine columns s = 0..6 of every tile (phase s % 4,
                        // shifted by s / 4 tiles), written to V[c][i·6 + j][tile].
                        let base = img * tiles + ty * tw;
                        for i in 0..A {
                            let t = &vert[i * M * span..][..M * span];
                            let xs: [&[f32]; A] =
                                std::array::from_fn(|s| &t[(s % M) * span + s / M..][..tw]);
                            for j in 0..A {
                                let out = &mut vc[(i * A + j) * nt + base..][..tw];
                                combine(out, &BT[j], &xs);
                            }
                        }
                    }
                }
            });
        });
    v
}

/// The output transform `Y = Aᵀ m A` of every tile of `m` (`[36, cout, n·tiles]`), plus the
/// bias, into `[n, cout, ho, wo]`.
pub fn transform_output(m: &[f32], cout: usize, shape: &Shape, bias: Option<&[f32]>) -> Vec<f32> {
    let (ho, wo) = shape.output();
    let (th, tw) = shape.tiles();
    let n = shape.n;
    let tiles = th * tw;
    let nt = n * tiles;
    assert_eq!(m.len(), POSITIONS * cout * nt, "m is [36, cout, n·tiles]");
    let mut out = vec![0.0f32; n * cout * ho * wo];
    if out.is_empty() {
        return out;
    }
    let arch = pulp::Arch::new();
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane_index, plane)| {
            arch.dispatch(|| {
                let img = plane_index / cout;
                let co = plane_index % cout;
                let b = bias.map_or(0.0, |b| b[co]);
                let mut q = vec![0.0f32; M * A * tw];
                let mut y = vec![0.0f32; M * M * tw];
                for ty in 0..th {
                    let base = img * tiles + ty * tw;
                    let ms: [&[f32]; POSITIONS] =
                        std::array::from_fn(|p| &m[(p * cout + co) * nt + base..][..tw]);
                    // Aᵀ m: q[a][j] = Σ_i Aᵀ[a][i] m[i·6 + j].
                    for a in 0..M {
                        for j in 0..A {
                            let col: [&[f32]; A] = std::array::from_fn(|i| ms[i * A + j]);
                            combine(&mut q[(a * A + j) * tw..][..tw], &AT[a], &col);
                        }
                    }
                    // (Aᵀ m) A: y[a][b] = Σ_j Aᵀ[b][j] q[a][j].
                    for a in 0..M {
                        let qa: [&[f32]; A] = std::array::from_fn(|j| &q[(a * A + j) * tw..][..tw]);
                        for bb in 0..M {
                            combine(&mut y[(a * M + bb) * tw..][..tw], &AT[bb], &qa);
                        }
                    }
                    for a in 0..M {
                        let oy = M * ty + a;
                        if oy >= ho {
                            break;
                        }
                        let line = &mut plane[oy * wo..][..wo];
                        for bb in 0..M {
                            let ya = &y[(a * M + bb) * tw..][..tw];
                            for (t, &val) in ya.iter().enumerate() {
                                if let Some(o) = line.get_mut(M * t + bb) {
                                    *o = val + b;
                                }
                            }
                        }
                    }
                }
            });
        });
    out
}

/// Multiplies the 36 pairs `U[ξ] (rows × k) · V[ξ] (k × cols)`, with `V` laid out
/// `[k, 36, cols]` as [`transform_input`] makes it: the reference product, for tests and
/// backends without a faster one.
pub fn multiply_reference(u: &[f32], v: &[f32], rows: usize, k: usize, cols: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; POSITIONS * rows * cols];
    m.par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(p, mp)| {
            for r in 0..rows {
                let out = &mut mp[r * cols..][..cols];
                for kk in 0..k {
                    let a = u[(p * rows + r) * k + kk];
                    let row = &v[(kk * POSITIONS + p) * cols..][..cols];
                    for (o, &x) in out.iter_mut().zip(row) {
                        *o += a * x;
                    }
                }
            }
        });
    m
}

/// Adds the gradient of a one-pixel `border` padding back onto the unpadded input: `padded`
/// is `[planes, h + 2, w + 2]`, the result `[planes, h, w]`.
pub fn fold_padding(padded: &[f32], planes: usize, h: usize, w: usize, border: Border) -> Vec<f32> {
    let (hp, wp) = (h + 2, w + 2);
    assert_eq!(padded.len(), planes * hp * wp);
    let mut out = vec![0.0f32; planes * h * w];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(h * w)
        .zip(padded.par_chunks(hp * wp))
        .for_each(|(o, p)| {
            for py in 0..hp {
                let Some(y) = source(py as isize - 1, h, border) else {
                    continue;
                };
                for px in 0..wp {
                    if let Some(x) = source(px as isize - 1, w, border) {
                        o[y * w + x] += p[py * wp + px];
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Direct 3×3 convolution in f64, the reference.
    fn direct(input: &[f32], weight: &[f32], cout: usize, shape: &Shape) -> Vec<f64> {
        let (ho, wo) = shape.output();
        let Shape {
            n,
            channels: cin,
            height: h,
            width: w,
            pad,
            border,
        } = *shape;
        let mut out = vec![0.0f64; n * cout * ho * wo];
        for img in 0..n {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = 0.0f64;
                        for ci in 0..cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let y = source((oy + ky) as isize - pad as isize, h, border);
                                    let x = source((ox + kx) as isize - pad as isize, w, border);
                                    if let (Some(y), Some(x)) = (y, x) {
                                        s += f64::from(input[((img * cin + ci) * h + y) * w + x])
                                            * f64::from(
                                                weight[((co * cin + ci) * 3 + ky) * 3 + kx],
                                            );
                                    }
                                }
                            }
                        }
                        out[((img * cout + co) * ho + oy) * wo + ox] = s;
                    }
                }
            }
        }
        out
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn winograd(input: &[f32], weight: &[f32], cout: usize, shape: &Shape) -> Vec<f32> {
        let u = transform_filters(weight, cout, shape.channels, false);
        let v = transform_input(input, shape);
        let (th, tw) = shape.tiles();
        let m = multiply_reference(&u, &v, cout, shape.channels, shape.n * th * tw);
        transform_output(&m, cout, shape, None)
    }

    #[test]
    fn matches_direct_convolution_for_every_border_and_odd_sizes() {
        for (i, &(n, cin, cout, h, w, pad, border)) in [
            (1, 3, 5, 8, 8, 1, Border::Zero),
            (2, 4, 3, 7, 9, 1, Border::Zero),
            (1, 6, 4, 13, 5, 1, Border::Reflect),
            (1, 2, 2, 6, 11, 1, Border::Replicate),
            (1, 3, 2, 5, 6, 0, Border::Zero),
            (2, 3, 4, 9, 7, 2, Border::Zero),
            (1, 2, 3, 1, 1, 1, Border::Zero),
            (1, 2, 3, 1, 3, 1, Border::Replicate),
            (1, 2, 3, 2, 2, 1, Border::Reflect),
        ]
        .iter()
        .enumerate()
        {
            let shape = Shape {
                n,
                channels: cin,
                height: h,
                width: w,
                pad,
                border,
            };
            let input = random(n * cin * h * w, i as u64);
            let weight = random(cout * cin * 9, 100 + i as u64);
            let want = direct(&input, &weight, cout, &shape);
            let got = winograd(&input, &weight, cout, &shape);
            assert_eq!(got.len(), want.len(), "case {i}");
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - w).abs() <= 1e-5 * scale * cin as f64,
                    "case {i} ({shape:?}) element {k}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn flipped_transposed_filters_give_the_input_gradient() {
        // <conv(x), y> = <x, conv'(y)> for zero padding 1: the adjoint is the convolution with
        // the transposed, flipped filters.
        let (cin, cout, h, w) = (3, 4, 9, 6);
        let shape = Shape {
            n: 1,
            channels: cin,
            height: h,
            width: w,
            pad: 1,
            border: Border::Zero,
        };
        let x = random(cin * h * w, 1);
        let weight = random(cout * cin * 9, 2);
        let y = random(cout * h * w, 3);
        let fx = winograd(&x, &weight, cout, &shape);
        let back_shape = Shape {
            channels: cout,
            ..shape
        };
        let u = transform_filters(&weight, cout, cin, true);
        let v = transform_input(&y, &back_shape);
        let (th, tw) = back_shape.tiles();
        let m = multiply_reference(&u, &v, cin, cout, th * tw);
        let gy = transform_output(&m, cin, &back_shape, None);
        let lhs: f64 = fx.iter().zip(&y).map(|(a, b)| f64::from(*a * *b)).sum();
        let rhs: f64 = x.iter().zip(&gy).map(|(a, b)| f64::from(*a * *b)).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn fold_padding_is_the_adjoint_of_padding() {
        for border in [Border::Reflect, Border::Replicate, Border::Zero] {
            let (h, w) = (4, 5);
            let x = random(h * w, 7);
            let g = random((h + 2) * (w + 2), 8);
            // <pad(x), g> = <x, fold(g)>
            let mut lhs = 0.0f64;
            for py in 0..h + 2 {
                for px in 0..w + 2 {
                    let y = source(py as isize - 1, h, border);
                    let xx = source(px as isize - 1, w, border);
                    if let (Some(y), Some(xx)) = (y, xx) {
                        lhs += f64::from(x[y * w + xx] * g[py * (w + 2) + px]);
                    }
                }
            }
            let folded = fold_padding(&g, 1, h, w, border);
            let rhs: f64 = x.iter().zip(&folded).map(|(a, b)| f64::from(*a * *b)).sum();
            assert!((lhs - rhs).abs() < 1e-5, "{border:?}: {lhs} vs {rhs}");
        }
    }
}
