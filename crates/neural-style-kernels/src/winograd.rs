//! Winograd F(m×m, 3×3) convolution (Lavin & Gray 2016, "Fast Algorithms for Convolutional
//! Neural Networks"): a 3×3, stride-1 convolution computed tile by tile as
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, with `d` an (m+2)×(m+2) input tile and `Y` an m×m
//! output tile. The element-wise products summed over input channels become (m+2)² matrix
//! products `M[ξ] = U[ξ] · V[ξ]` (`U`: transformed weights, `Cout × Cin`; `V`: transformed
//! input, `Cin × tiles`). Two tile sizes ([`Tile`]): F(4×4, 3×3), 36 products per 16 outputs
//! (2.25 multiplications per output and input channel, a quarter of a direct convolution's),
//! the engine's; and F(6×6, 3×3), 64 per 36 (1.78), whose interpolation points (0, ±1, ±2,
//! ±½, ∞; the matrices of NNPACK and Lavin & Gray) are closed under p → 1/p, so that the
//! transformed filters of the input gradient are those of the forward pass, transposed,
//! reordered and scaled by powers of two ([`Filters::F6Adjoint`]). F(6×6, 3×3) measured no
//! faster per evaluation on this project's CPU (its larger transforms cost what its products
//! save; docs/speed.md), so it is kept for measurement (`examples/band_sweep.rs`,
//! `winograd_profile.rs`, `pass_profile.rs`) and tested like the other.
//!
//! This module is plain arithmetic on row-major `f32` slices (NCHW); the library's
//! `fastconv` module wires it into burn's CPU backend. The input transform reads the input through a padding
//! rule (zero, reflect, replicate), so no padded copy of the input is made; the output
//! transform adds the bias.
//!
//! One file of ~900 lines of code (plus its tests): the transforms, the banded and whole-image
//! strategies and the padding fold all work on the same tile layout, and splitting them
//! would only scatter that layout's invariants.

use rayon::prelude::*;

use crate::Border;
use crate::bf16;

/// A tile size of Winograd's algorithm, F(m×m, 3×3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tile {
    /// F(4×4, 3×3): 6×6 input tiles, 36 products; its transforms' coefficients are small
    /// enough for bf16 operands.
    F4,
    /// F(6×6, 3×3): 8×8 input tiles, 64 products, 21% fewer multiplications than F4, with
    /// about twice its f32 rounding (a few 1e-6 relative).
    F6,
}

impl Tile {
    /// Output tile side `m`.
    pub const fn side(self) -> usize {
        match self {
            Self::F4 => 4,
            Self::F6 => 6,
        }
    }

    /// Transform positions `(m + 2)²`: the number of matrix products per convolution.
    pub const fn positions(self) -> usize {
        (self.side() + 2) * (self.side() + 2)
    }
}

/// Positions of F(4×4, 3×3), the tile of the bf16 products.
pub const POSITIONS: usize = Tile::F4.positions();

/// One tile size's transforms: `m = M` outputs from `a = A = M + 2` inputs per side.
trait Transforms<const M: usize, const A: usize>: Copy + Send + Sync + 'static {
    /// Filter transform `G` (`a × 3`).
    const G: [[f64; 3]; A];
    /// `Bᵀ x`: the input transform along one side.
    fn bt(x: [f32; A]) -> [f32; A];
    /// `Aᵀ x`: the output transform along one side.
    fn at(x: [f32; A]) -> [f32; M];
}

/// F(4×4, 3×3), interpolation points 0, ±1, ±2, ∞.
#[derive(Debug, Clone, Copy)]
struct F4;

impl Transforms<4, 6> for F4 {
    const G: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];

    #[inline(always)]
    fn bt([a0, a1, a2, a3, a4, a5]: [f32; 6]) -> [f32; 6] {
        let (s, d) = (a3 + a4, a4 - a3);
        let (e, o) = (a4 - a2, a3 - a1);
        [
            4.0f32.mul_add(a0, (-5.0f32).mul_add(a2, a4)),
            (-4.0f32).mul_add(a1 + a2, s),
            4.0f32.mul_add(a1 - a2, d),
            2.0f32.mul_add(o, e),
            (-2.0f32).mul_add(o, e),
            4.0f32.mul_add(a1, (-5.0f32).mul_add(a3, a5)),
        ]
    }

    #[inline(always)]
    fn at([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
        let (s12, d12) = (m1 + m2, m1 - m2);
        let (s34, d34) = (m3 + m4, m3 - m4);
        [
            m0 + s12 + s34,
            2.0f32.mul_add(d34, d12),
            4.0f32.mul_add(s34, s12),
            8.0f32.mul_add(d34, d12 + m5),
        ]
    }
}

/// F(6×6, 3×3), interpolation points 0, 1, −1, 2, −2, ½, −½, ∞ (in the order of `G`'s rows).
#[derive(Debug, Clone, Copy)]
struct F6;

impl Transforms<6, 8> for F6 {
    const G: [[f64; 3]; 8] = [
        [1.0, 0.0, 0.0],
        [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
        [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
        [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
        [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
        [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
        [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
        [0.0, 0.0, 1.0],
    ];

    #[inline(always)]
    fn bt([a0, a1, a2, a3, a4, a5, a6, a7]: [f32; 8]) -> [f32; 8] {
        let e1 = (-4.25f32).mul_add(a4, a2 + a6);
        let o1 = (-4.25f32).mul_add(a3, a1 + a5);
        let e2 = (-1.25f32).mul_add(a4, 0.25f32.mul_add(a2, a6));
        let o2 = 2.0f32.mul_add(a5, (-2.5f32).mul_add(a3, 0.5 * a1));
        let e3 = (-5.0f32).mul_add(a4, 4.0f32.mul_add(a2, a6));
        let o3 = 0.5f32.mul_add(a5, (-2.5f32).mul_add(a3, 2.0 * a1));
        [
            5.25f32.mul_add(a4 - a2, a0 - a6),
            e1 + o1,
            e1 - o1,
            e2 + o2,
            e2 - o2,
            e3 + o3,
            e3 - o3,
            5.25f32.mul_add(a3 - a5, a7 - a1),
        ]
    }

    #[inline(always)]
    fn at([m0, m1, m2, m3, m4, m5, m6, m7]: [f32; 8]) -> [f32; 6] {
        let (s12, d12) = (m1 + m2, m1 - m2);
        let (s34, d34) = (m3 + m4, m3 - m4);
        let (s56, d56) = (m5 + m6, m5 - m6);
        [
            m0 + s12 + s34 + s56,
            0.5f32.mul_add(d56, 2.0f32.mul_add(d34, d12)),
            0.25f32.mul_add(s56, 4.0f32.mul_add(s34, s12)),
            0.125f32.mul_add(d56, 8.0f32.mul_add(d34, d12)),
            0.0625f32.mul_add(s56, 16.0f32.mul_add(s34, s12)),
            0.03125f32.mul_add(d56, 32.0f32.mul_add(d34, d12 + m7)),
        ]
    }
}

/// For F(6×6, 3×3): the transform of a flipped filter `(g₂, g₁, g₀)` at the point `p` is
/// `p²` times the transform of `g` at `1/p`, rescaled by `G`'s row factors: row `i` of
/// `G g'` is `F6_SCALE[i]` times row `F6_MIRROR[i]` of `G g` (0 ↔ ∞, ±2 ↔ ±½; powers of two,
/// so the products round as with the flipped filters transformed directly).
const F6_MIRROR: [usize; 8] = [7, 1, 2, 5, 6, 3, 4, 0];
/// See [`F6_MIRROR`].
const F6_SCALE: [f32; 8] = [1.0, 1.0, 1.0, 1.0 / 16.0, 1.0 / 16.0, 16.0, 16.0, 1.0];

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

    /// Tiles of side `m` down and across one image.
    fn tiles(&self, m: usize) -> (usize, usize) {
        let (ho, wo) = self.output();
        (ho.div_ceil(m), wo.div_ceil(m))
    }

    /// Checks that `input` (and `fuse`'s mask) hold `[n, channels, height, width]` values.
    pub(crate) fn check_input(&self, input: &[f32], fuse: &Fuse<'_>) {
        let len = self.n * self.channels * self.height * self.width;
        assert_eq!(input.len(), len, "input is [n, c, h, w]");
        if let Some(mask) = fuse.input_mask {
            assert_eq!(mask.len(), len, "the mask is shaped as the input");
        }
    }
}

/// Transforms 3×3 filters `[cout, cin, 3, 3]` into `U`, laid out `[positions, cout, cin]`.
/// With `transpose_flip`, transforms instead the filters of the input gradient
/// (`g'[ci][co] = g[co][ci]` rotated by 180°), laid out `[positions, cin, cout]`.
pub fn transform_filters(
    weight: &[f32],
    cout: usize,
    cin: usize,
    transpose_flip: bool,
    tile: Tile,
) -> Vec<f32> {
    match tile {
        Tile::F4 => transform_filters_with::<F4, 4, 6>(weight, cout, cin, transpose_flip),
        Tile::F6 => transform_filters_with::<F6, 6, 8>(weight, cout, cin, transpose_flip),
    }
}

fn transform_filters_with<T: Transforms<M, A>, const M: usize, const A: usize>(
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
    let mut u = vec![0.0f32; A * A * rows * cols];
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
            // G g: a×3.
            let mut gg = [[0.0f64; 3]; A];
            for (i, row) in gg.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|r| T::G[i][r] * tap(r, c)).sum();
                }
            }
            let (row, col) = if transpose_flip { (ci, co) } else { (co, ci) };
            for i in 0..A {
                for j in 0..A {
                    let v: f64 = (0..3).map(|c| gg[i][c] * T::G[j][c]).sum();
                    u[((i * A + j) * rows + row) * cols + col] = v as f32;
                }
            }
        }
    }
    u
}

/// Transformed filters (`rows × channels` per position), as the matrix products read them.
#[derive(Debug, Clone, Copy)]
pub enum Filters<'a> {
    /// f32, `[positions, rows, channels]`, from [`transform_filters`] with `tile`.
    F32 {
        /// The tile size they were transformed for.
        tile: Tile,
        /// The transformed filters.
        u: &'a [f32],
    },
    /// The input gradient's filters read from the forward convolution's F(6×6, 3×3) ones
    /// (`u`: `[64, channels, rows]`, [`transform_filters`] without `transpose_flip`): position
    /// `(i, j)` multiplies by `F6_SCALE[i]·F6_SCALE[j]` times the transpose of position
    /// `(F6_MIRROR[i], F6_MIRROR[j])`. The same numbers as the transposed, flipped filters'
    /// transform, without a second copy. (Measurement only: the engine runs F(4×4, 3×3).)
    F6Adjoint(&'a [f32]),
    /// bfloat16 pairs for F(4×4, 3×3), each position packed by [`bf16::pack_a`]
    /// ([`pack_filters_bf16`]): the products run as bf16 with f32 sums (only where
    /// [`bf16::available`]).
    Bf16(&'a [u32]),
}

impl Filters<'_> {
    /// The tile size the filters are for.
    pub fn tile(&self) -> Tile {
        match self {
            Self::F32 { tile, .. } => *tile,
            Self::F6Adjoint(_) => Tile::F6,
            Self::Bf16(_) => Tile::F4,
        }
    }

    /// Checks that the filters hold `rows` outputs of `channels` inputs.
    fn check(&self, rows: usize, channels: usize) {
        let len = rows * channels;
        match self {
            Self::F32 { tile, u } => {
                assert_eq!(u.len(), tile.positions() * len, "u is [positions, rows, c]");
            }
            Self::F6Adjoint(u) => {
                assert_eq!(u.len(), Tile::F6.positions() * len, "u is [64, c, rows]");
            }
            Self::Bf16(u) => assert_eq!(
                u.len(),
                POSITIONS * bf16::packed_a_len(rows, channels),
                "u is [36] packed rows × c"
            ),
        }
    }
}

/// Filters from [`transform_filters`] for [`Tile::F4`] (`u`: `[36, rows, channels]`) packed
/// for bf16 products, position after position.
pub fn pack_filters_bf16(u: &[f32], rows: usize, channels: usize) -> Vec<u32> {
    assert_eq!(u.len(), POSITIONS * rows * channels, "u is [36, rows, c]");
    u.chunks_exact(rows * channels)
        .flat_map(|position| bf16::pack_a(position, rows, channels))
        .collect()
}

/// Where one padded coordinate reads from: `Some(index)` inside, `None` for a zero.
pub(crate) fn source(v: isize, len: usize, border: Border) -> Option<usize> {
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

/// Where the rows and columns of the padded input come from, tile by tile.
struct Sources<const A: usize> {
    /// Per tile row: the `a` input rows it reads (`None`: a zero row).
    rows: Vec<[Option<usize>; A]>,
    /// Per padded column 0..m·(tw + 1): the input column it reads (`None`: zero).
    cols: Vec<Option<usize>>,
    /// The padding on the left (padded column `pad` is input column 0).
    pad: usize,
    /// Tiles across.
    tw: usize,
}

impl<const A: usize> Sources<A> {
    fn new(shape: &Shape, m: usize) -> Self {
        let (th, tw) = shape.tiles(m);
        let pad = shape.pad as isize;
        let cols = (0..m * (tw + 1))
            .map(|c| source(c as isize - pad, shape.width, shape.border))
            .collect();
        let rows = (0..th)
            .map(|ty| {
                std::array::from_fn(|r| {
                    source((m * ty + r) as isize - pad, shape.height, shape.border)
                })
            })
            .collect();
        Self {
            rows,
            cols,
            pad: shape.pad,
            tw,
        }
    }

    /// Writes input row `line` padded to `m·(tw + 1)` columns into `out`, zeroing the values
    /// whose `mask` value is not positive when a mask row is given.
    #[inline(always)]
    fn pad_row(&self, line: &[f32], mask: Option<&[f32]>, out: &mut [f32]) {
        pad_row(line, mask, out, self.pad, &self.cols);
    }
}

/// Writes input row `line` into `out` from column `pad` on, and each other column `c` from
/// input column `cols[c]` (zero where `None`), zeroing the values whose `mask` value is not
/// positive when a mask row is given: a row read through the padding rule.
#[inline(always)]
pub(crate) fn pad_row(
    line: &[f32],
    mask: Option<&[f32]>,
    out: &mut [f32],
    pad: usize,
    cols: &[Option<usize>],
) {
    let w = line.len();
    let inner = w.min(out.len().saturating_sub(pad));
    let body = &mut out[pad..pad + inner];
    match mask {
        None => body.copy_from_slice(&line[..inner]),
        Some(mask) => {
            for ((o, &x), &m) in body.iter_mut().zip(line).zip(mask) {
                *o = if m > 0.0 { x } else { 0.0 };
            }
        }
    }
    let edge = |c: usize| {
        cols[c].map_or(0.0, |x| match mask {
            Some(mask) if mask[x] <= 0.0 => 0.0,
            _ => line[x],
        })
    };
    for c in (0..pad).chain(pad + inner..out.len()) {
        out[c] = edge(c);
    }
}

/// Scratch space of one thread for the transforms of one tile row.
struct Scratch {
    line: Vec<f32>,
    strip: Vec<f32>,
    vert: Vec<f32>,
    q: Vec<f32>,
    y: Vec<f32>,
}

impl Scratch {
    fn new(tw: usize, m: usize) -> Self {
        let (span, a) = (tw + 1, m + 2);
        Self {
            line: vec![0.0; m * span],
            strip: vec![0.0; a * m * span],
            vert: vec![0.0; a * m * span],
            q: vec![0.0; m * a * tw],
            y: vec![0.0; m * m * tw],
        }
    }
}

/// `N` disjoint rows of `len` values, `stride` apart, from `start` on.
#[inline(always)]
fn rows_mut<const N: usize>(
    buf: &mut [f32],
    start: usize,
    stride: usize,
    len: usize,
) -> [&mut [f32]; N] {
    let mut rest = &mut buf[start..];
    std::array::from_fn(|_| {
        let take = stride.min(rest.len());
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(take);
        rest = tail;
        &mut head[..len]
    })
}

/// Values processed together by the transforms: a whole number of SIMD registers, so that the
/// compiler vectorises the fixed-length inner loops at whatever width the CPU has.
const LANES: usize = 16;

/// Applies `f` (`A` values in, `N` out) element by element along `A` input rows, writing
/// `N` output rows (which must not overlap the input rows). Rows of at least 8 values run in
/// whole vectors only: the last chunk overlaps the one before it (recomputing a few values)
/// instead of ending in a scalar loop, which for rows of a few dozen tiles would cost as
/// much as the rest of the row.
#[inline(always)]
fn along<const A: usize, const N: usize>(
    d: [&[f32]; A],
    o: [&mut [f32]; N],
    f: impl Fn([f32; A]) -> [f32; N],
) {
    let mut o = o;
    let n = o[0].len();
    if n >= LANES {
        along_chunks::<LANES, A, N>(&d, &mut o, n, &f);
    } else if n >= LANES / 2 {
        along_chunks::<{ LANES / 2 }, A, N>(&d, &mut o, n, &f);
    } else {
        for k in 0..n {
            let out = f(std::array::from_fn(|r| d[r][k]));
            for (oj, v) in o.iter_mut().zip(out) {
                oj[k] = v;
            }
        }
    }
}

/// [`along`] in chunks of `W` values (`n ≥ W`), the last one ending at `n`.
#[inline(always)]
fn along_chunks<const W: usize, const A: usize, const N: usize>(
    d: &[&[f32]; A],
    o: &mut [&mut [f32]; N],
    n: usize,
    f: &impl Fn([f32; A]) -> [f32; N],
) {
    let mut i = 0;
    loop {
        let x: [&[f32; W]; A] =
            std::array::from_fn(|r| d[r][i..i + W].try_into().expect("a full chunk"));
        let mut y = [[0.0f32; W]; N];
        for k in 0..W {
            let out = f(std::array::from_fn(|r| x[r][k]));
            for j in 0..N {
                y[j][k] = out[j];
            }
        }
        for (oj, yj) in o.iter_mut().zip(&y) {
            oj[i..i + W].copy_from_slice(yj);
        }
        if i + W == n {
            break;
        }
        i = (i + W).min(n - W);
    }
}

/// The input transform `V = Bᵀ d B` of the `tw` tiles of tile row `ty` of one channel
/// `plane` (`h × w`), written to `v[ξ·stride + base ..][..tw]` for the `a²` positions ξ.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_row<T: Transforms<M, A>, const M: usize, const A: usize>(
    plane: &[f32],
    mask: Option<&[f32]>,
    w: usize,
    sources: &Sources<A>,
    ty: usize,
    scratch: &mut Scratch,
    v: &mut [f32],
    base: usize,
    stride: usize,
) {
    let tw = sources.tw;
    let span = tw + 1;
    let Scratch {
        line, strip, vert, ..
    } = scratch;
    // The `a` padded rows of this tile row, de-interleaved by phase: phase k of tile column
    // t' is padded column m·t' + k (tile t reads phases 0..m of t' = t and 0..2 of t + 1).
    for (r, src) in sources.rows[ty].iter().enumerate() {
        let dst = &mut strip[r * M * span..][..M * span];
        match src {
            Some(y) => {
                let mask_line = mask.map(|m| &m[y * w..][..w]);
                sources.pad_row(&plane[y * w..][..w], mask_line, line);
                let phases: [&mut [f32]; M] = rows_mut(dst, 0, span, span);
                for (k, phase) in phases.into_iter().enumerate() {
                    for (o, group) in phase.iter_mut().zip(line.chunks_exact(M)) {
                        *o = group[k];
                    }
                }
            }
            None => dst.fill(0.0),
        }
    }
    // Bᵀ d: combine rows.
    {
        let d: [&[f32]; A] = std::array::from_fn(|r| &strip[r * M * span..][..M * span]);
        along(d, rows_mut(vert, 0, M * span, M * span), T::bt);
    }
    // (Bᵀ d) B: combine columns s = 0..a of every tile (phase s % m, shifted by s / m tiles).
    for i in 0..A {
        let t = &vert[i * M * span..][..M * span];
        let xs: [&[f32]; A] = std::array::from_fn(|s| &t[(s % M) * span + s / M..][..tw]);
        along(xs, rows_mut(v, i * A * stride + base, stride, tw), T::bt);
    }
}

/// The output transform `Y = Aᵀ m A` of `tw` tiles read from `m[ξ·stride + base ..][..tw]`,
/// plus `bias` (and then the rectifier with `relu`), written to the `rows` (up to `m`)
/// output rows of `out` (`rows × wo`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_row<T: Transforms<M, A>, const M: usize, const A: usize>(
    m: &[f32],
    base: usize,
    stride: usize,
    tw: usize,
    (bias, relu): (f32, bool),
    scratch: &mut Scratch,
    out: &mut [f32],
    wo: usize,
) {
    let Scratch { q, y, .. } = scratch;
    // Aᵀ m: q[a][j] = Σ_i Aᵀ[a][i] m[i·a + j].
    for j in 0..A {
        let col: [&[f32]; A] = std::array::from_fn(|i| &m[(i * A + j) * stride + base..][..tw]);
        along(col, rows_mut(q, j * tw, A * tw, tw), T::at);
    }
    // (Aᵀ m) A: y[a][b] = Σ_j Aᵀ[b][j] q[a][j].
    for a in 0..M {
        let qa: [&[f32]; A] = std::array::from_fn(|j| &q[(a * A + j) * tw..][..tw]);
        along(qa, rows_mut(y, a * M * tw, tw, tw), T::at);
    }
    for (a, line) in out.chunks_mut(wo).enumerate().take(M) {
        let ya: [&[f32]; M] = std::array::from_fn(|b| &y[(a * M + b) * tw..][..tw]);
        let full = (wo / M).min(tw);
        for (t, group) in line.chunks_exact_mut(M).enumerate().take(full) {
            for (o, yb) in group.iter_mut().zip(&ya) {
                *o = yb[t] + bias;
            }
        }
        for (b, o) in line[M * full..].iter_mut().enumerate() {
            *o = ya[b][full] + bias;
        }
        if relu {
            for o in line.iter_mut() {
                *o = o.max(0.0);
            }
        }
    }
}

/// `c = alpha · a · b` for row-major `a` (`m × k`; with `a_transposed`, `a` holds its
/// transpose, `k × m`), `b` (`k × n`, rows `b_stride` apart) and `c`.
#[allow(clippy::too_many_arguments)]
fn gemm(
    c: &mut [f32],
    (a, a_transposed, alpha): (&[f32], bool, f32),
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    b_stride: usize,
) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let a = if a_transposed {
        MatRef::from_row_major_slice(a, k, m).transpose()
    } else {
        MatRef::from_row_major_slice(a, m, k)
    };
    let b = MatRef::from_row_major_slice_with_stride(b, k, n, b_stride);
    let c = MatMut::from_row_major_slice_mut(c, m, n);
    matmul(c, Accum::Replace, a, b, alpha, Par::Seq);
}

/// Bytes of `V` and `M` one band should stay within (about a core's share of the cache).
const BAND_BYTES: usize = 1 << 20;
/// The fewest tiles a band's matrix products should have (fewer: the filters are read
/// from memory for too little work), per tile size. Measured per VGG layer at 512x384 on one
/// thread (`examples/band_sweep.rs`): F(4×4, 3×3) is fastest with bands of 64-128 tiles
/// (bands of 32 took up to twice as long from relu3_1 on), F(6×6, 3×3)'s larger filters
/// with about 80-90.
const fn band_min_tiles(tile: Tile) -> usize {
    match tile {
        Tile::F4 => 128,
        Tile::F6 => 80,
    }
}

/// How a convolution is split among threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Bands of tile rows, each transformed, multiplied and transformed back by one thread
    /// in its cache: for large images.
    Bands {
        /// Tile rows per band.
        rows: usize,
    },
    /// Each step over the whole image, the threads sharing each step: for small images.
    Whole,
}

impl Strategy {
    /// The strategy for `shape` with `rows` output channels in tiles of `tile` on `threads`
    /// threads.
    pub fn choose(shape: &Shape, rows: usize, tile: Tile, threads: usize) -> Self {
        let (th, tw) = shape.tiles(tile.side());
        let per_tile = tile.positions() * (shape.channels + rows) * 4;
        let tiles = (BAND_BYTES / per_tile.max(1)).max(band_min_tiles(tile));
        let band_rows = tiles.div_ceil(tw.max(1)).clamp(1, th.max(1));
        let bands = shape.n * th.div_ceil(band_rows);
        if bands >= 2 * threads.max(1) {
            Self::Bands { rows: band_rows }
        } else {
            Self::Whole
        }
    }
}

/// The convolution of `input` (`shape`) with transformed filters `u` (`rows` of them), with
/// what `fuse` adds: `[n, rows, ho, wo]`.
pub fn conv3x3(
    input: &[f32],
    shape: &Shape,
    u: Filters<'_>,
    rows: usize,
    fuse: Fuse<'_>,
) -> Vec<f32> {
    let strategy = Strategy::choose(shape, rows, u.tile(), rayon::current_num_threads());
    conv3x3_with(input, shape, u, rows, fuse, strategy)
}

/// What a convolution computes besides the convolution itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fuse<'a> {
    /// Added to each output channel (`[rows]`).
    pub bias: Option<&'a [f32]>,
    /// Rectify the output (ReLU).
    pub relu: bool,
    /// Read the input as zero where this tensor (shaped as the input) is not positive: the
    /// rectifier's gradient, applied to an incoming gradient on the fly.
    pub input_mask: Option<&'a [f32]>,
}

/// One convolution's inputs, shared by its threads, for tiles of `M` outputs from `A` inputs
/// per side.
struct Job<'a, T, const M: usize, const A: usize> {
    input: &'a [f32],
    shape: Shape,
    sources: Sources<A>,
    u: Filters<'a>,
    rows: usize,
    fuse: Fuse<'a>,
    transforms: std::marker::PhantomData<T>,
}

/// One thread's share of a convolution.
enum Part<'a> {
    /// Band `index` (image-major) of `band_rows` tile rows, with its piece of every output
    /// plane of its image.
    Band {
        index: usize,
        band_rows: usize,
        planes: Vec<&'a mut [f32]>,
    },
    /// The input transform of one channel of every image into `v` (`[a², n·tiles]`).
    Input { channel: usize, v: &'a mut [f32] },
    /// The output transform of output plane `index` (image-major) from `m`.
    Output {
        index: usize,
        m: &'a [f32],
        plane: &'a mut [f32],
    },
}

/// A part run with the CPU's vector instructions enabled: the transforms below are written
/// as plain fixed-length loops, inlined here, and vectorised by the compiler for the
/// instruction set `pulp` detects at run time.
struct Vectorised<'a, 'b, T, const M: usize, const A: usize>(&'a Job<'a, T, M, A>, Part<'b>);

impl<T: Transforms<M, A>, const M: usize, const A: usize> pulp::WithSimd
    for Vectorised<'_, '_, T, M, A>
{
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Vectorised(job, part) = self;
        match part {
            Part::Band {
                index,
                band_rows,
                planes,
            } => job.band(index, band_rows, planes),
            Part::Input { channel, v } => job.input_channel(channel, v),
            Part::Output { index, m, plane } => job.output_plane(index, m, plane),
        }
    }
}

impl<T: Transforms<M, A>, const M: usize, const A: usize> Job<'_, T, M, A> {
    /// `m = U[ξ] · V[ξ]` for position `p`, `V[ξ]` being `channels` rows of `n` transformed
    /// tiles, `stride` apart, at the start of `v`; `words` is scratch for bf16 operands.
    fn product(
        &self,
        p: usize,
        v: &[f32],
        stride: usize,
        n: usize,
        m: &mut [f32],
        words: &mut Vec<u32>,
    ) {
        let (rows, channels) = (self.rows, self.shape.channels);
        let per = rows * channels;
        match self.u {
            Filters::F32 { u, .. } => {
                let a = (&u[p * per..][..per], false, 1.0);
                gemm(m, a, v, rows, channels, n, stride);
            }
            Filters::F6Adjoint(u) => {
                let (i, j) = (p / A, p % A);
                let mirrored = F6_MIRROR[i] * A + F6_MIRROR[j];
                let a = (&u[mirrored * per..][..per], true, F6_SCALE[i] * F6_SCALE[j]);
                gemm(m, a, v, rows, channels, n, stride);
            }
            Filters::Bf16(u) => {
                let per = bf16::packed_a_len(rows, channels);
                words.resize(channels.div_ceil(2) * n, 0);
                bf16::pack_b(v, channels, n, stride, words);
                bf16::gemm(m, &u[p * per..][..per], words, rows, channels, n);
            }
        }
    }

    /// The epilogue of output channel `co`: its bias and whether to rectify.
    fn epilogue(&self, co: usize) -> (f32, bool) {
        (self.fuse.bias.map_or(0.0, |b| b[co]), self.fuse.relu)
    }

    /// Input channel `c` of image `img`, and its mask.
    fn plane(&self, img: usize, c: usize) -> (&[f32], Option<&[f32]>) {
        let Shape {
            channels,
            height: h,
            width: w,
            ..
        } = self.shape;
        let at = (img * channels + c) * h * w;
        (
            &self.input[at..][..h * w],
            self.fuse.input_mask.map(|m| &m[at..][..h * w]),
        )
    }

    #[inline(always)]
    fn band(&self, index: usize, band_rows: usize, mut planes: Vec<&mut [f32]>) {
        let Shape {
            channels, width: w, ..
        } = self.shape;
        let (th, tw) = self.shape.tiles(M);
        let (_, wo) = self.shape.output();
        let bands_per_image = th.div_ceil(band_rows);
        let img = index / bands_per_image;
        let ty0 = (index % bands_per_image) * band_rows;
        let ty1 = (ty0 + band_rows).min(th);
        let ntc = (ty1 - ty0) * tw;
        let rows = self.rows;
        let mut scratch = Scratch::new(tw, M);
        let mut v = vec![0.0f32; A * A * channels * ntc];
        for c in 0..channels {
            let (plane, mask) = self.plane(img, c);
            for ty in ty0..ty1 {
                let base = c * ntc + (ty - ty0) * tw;
                input_row::<T, M, A>(
                    plane,
                    mask,
                    w,
                    &self.sources,
                    ty,
                    &mut scratch,
                    &mut v,
                    base,
                    channels * ntc,
                );
            }
        }
        let mut m = vec![0.0f32; A * A * rows * ntc];
        let mut words = Vec::new();
        for (p, mp) in m.chunks_exact_mut(rows * ntc).enumerate() {
            self.product(p, &v[p * channels * ntc..], ntc, ntc, mp, &mut words);
        }
        for (co, piece) in planes.iter_mut().enumerate() {
            for ty in ty0..ty1 {
                let local = &mut piece[M * (ty - ty0) * wo..];
                let base = co * ntc + (ty - ty0) * tw;
                output_row::<T, M, A>(
                    &m,
                    base,
                    rows * ntc,
                    tw,
                    self.epilogue(co),
                    &mut scratch,
                    local,
                    wo,
                );
            }
        }
    }

    #[inline(always)]
    fn input_channel(&self, c: usize, v: &mut [f32]) {
        let Shape { n, width: w, .. } = self.shape;
        let (th, tw) = self.shape.tiles(M);
        let nt = n * th * tw;
        let mut scratch = Scratch::new(tw, M);
        for img in 0..n {
            let (plane, mask) = self.plane(img, c);
            for ty in 0..th {
                let base = (img * th + ty) * tw;
                input_row::<T, M, A>(plane, mask, w, &self.sources, ty, &mut scratch, v, base, nt);
            }
        }
    }

    #[inline(always)]
    fn output_plane(&self, index: usize, m: &[f32], plane: &mut [f32]) {
        let (th, tw) = self.shape.tiles(M);
        let (_, wo) = self.shape.output();
        let nt = self.shape.n * th * tw;
        let rows = self.rows;
        let (img, co) = (index / rows, index % rows);
        let mut scratch = Scratch::new(tw, M);
        for ty in 0..th {
            let base = co * nt + (img * th + ty) * tw;
            output_row::<T, M, A>(
                m,
                base,
                rows * nt,
                tw,
                self.epilogue(co),
                &mut scratch,
                &mut plane[M * ty * wo..],
                wo,
            );
        }
    }
}

/// [`conv3x3`] with a given strategy.
pub fn conv3x3_with(
    input: &[f32],
    shape: &Shape,
    u: Filters<'_>,
    rows: usize,
    fuse: Fuse<'_>,
    strategy: Strategy,
) -> Vec<f32> {
    shape.check_input(input, &fuse);
    u.check(rows, shape.channels);
    match u.tile() {
        Tile::F4 => run::<F4, 4, 6>(input, shape, u, rows, fuse, strategy),
        Tile::F6 => run::<F6, 6, 8>(input, shape, u, rows, fuse, strategy),
    }
}

/// [`conv3x3_with`] for one tile size's transforms.
fn run<T: Transforms<M, A>, const M: usize, const A: usize>(
    input: &[f32],
    shape: &Shape,
    u: Filters<'_>,
    rows: usize,
    fuse: Fuse<'_>,
    strategy: Strategy,
) -> Vec<f32> {
    let Shape { n, channels, .. } = *shape;
    let (ho, wo) = shape.output();
    let (th, tw) = shape.tiles(M);
    let mut out = vec![0.0f32; n * rows * ho * wo];
    if out.is_empty() {
        return out;
    }
    let job: Job<'_, T, M, A> = Job {
        input,
        shape: *shape,
        sources: Sources::new(shape, M),
        u,
        rows,
        fuse,
        transforms: std::marker::PhantomData,
    };
    let arch = pulp::Arch::new();
    match strategy {
        Strategy::Bands { rows: band_rows } => {
            // Split every output plane at band boundaries and hand each band its pieces.
            let bands_per_image = th.div_ceil(band_rows);
            let mut pieces: Vec<Vec<&mut [f32]>> = (0..n * bands_per_image)
                .map(|_| Vec::with_capacity(rows))
                .collect();
            for (plane_index, plane) in out.chunks_mut(ho * wo).enumerate() {
                let img = plane_index / rows;
                for (b, piece) in plane.chunks_mut(M * band_rows * wo).enumerate() {
                    pieces[img * bands_per_image + b].push(piece);
                }
            }
            pieces
                .into_par_iter()
                .enumerate()
                .for_each(|(index, planes)| {
                    let part = Part::Band {
                        index,
                        band_rows,
                        planes,
                    };
                    arch.dispatch(Vectorised(&job, part));
                });
        }
        Strategy::Whole => {
            let nt = n * th * tw;
            let positions = A * A;
            // V laid out [channels, a², tiles] so that each channel is one thread's to write.
            let mut v = vec![0.0f32; channels * positions * nt];
            v.par_chunks_mut(positions * nt)
                .enumerate()
                .for_each(|(channel, v)| {
                    arch.dispatch(Vectorised(&job, Part::Input { channel, v }));
                });
            let mut m = vec![0.0f32; positions * rows * nt];
            m.par_chunks_mut(rows * nt).enumerate().for_each(|(p, mp)| {
                job.product(p, &v[p * nt..], positions * nt, nt, mp, &mut Vec::new());
            });
            drop(v);
            let m = &m;
            out.par_chunks_mut(ho * wo)
                .enumerate()
                .for_each(|(index, plane)| {
                    arch.dispatch(Vectorised(&job, Part::Output { index, m, plane }));
                });
        }
    }
    out
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
            // Where the two padding columns land (the same for every row).
            let (left, right) = (source(-1, w, border), source(w as isize, w, border));
            for (py, prow) in p.chunks_exact(wp).enumerate() {
                let Some(y) = source(py as isize - 1, h, border) else {
                    continue;
                };
                // Left column, the row, right column: the order of the plain per-pixel loop,
                // so the sums round as they did.
                let orow = &mut o[y * w..][..w];
                if let Some(x) = left {
                    orow[x] += prow[0];
                }
                for (a, b) in orow.iter_mut().zip(&prow[1..=w]) {
                    *a += b;
                }
                if let Some(x) = right {
                    orow[x] += prow[wp - 1];
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cases, conv3x3_reference, random};

    fn winograd(input: &[f32], weight: &[f32], cout: usize, shape: &Shape, tile: Tile) -> Vec<f32> {
        let u = transform_filters(weight, cout, shape.channels, false, tile);
        let u = Filters::F32 { tile, u: &u };
        let whole = conv3x3_with(input, shape, u, cout, Fuse::default(), Strategy::Whole);
        // Bands of one and of two tile rows give the same numbers, up to the order in which
        // the matrix products add (which F(6×6, 3×3)'s output transform, with coefficients
        // up to 32 on both sides, amplifies more).
        let scale = whole.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let tolerance = match tile {
            Tile::F4 => 1e-6,
            Tile::F6 => 2e-5,
        };
        for rows in [1, 2] {
            let strategy = Strategy::Bands { rows };
            let bands = conv3x3_with(input, shape, u, cout, Fuse::default(), strategy);
            assert_eq!(bands.len(), whole.len());
            for (b, w) in bands.iter().zip(&whole) {
                assert!(
                    (b - w).abs() <= tolerance * scale,
                    "{tile:?} {shape:?}: bands of {rows}: {b} vs {w}"
                );
            }
        }
        whole
    }

    #[test]
    fn matches_direct_convolution_for_every_border_and_odd_sizes() {
        for (i, case) in cases().into_iter().enumerate() {
            let (shape, cout, cin) = (case.shape, case.rows, case.shape.channels);
            let input = random(shape.n * cin * shape.height * shape.width, i as u64);
            let weight = random(cout * cin * 9, 100 + i as u64);
            let want = conv3x3_reference(&input, &weight, cout, &shape, Fuse::default());
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for tile in [Tile::F4, Tile::F6] {
                let got = winograd(&input, &weight, cout, &shape, tile);
                assert_eq!(got.len(), want.len(), "case {i}");
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(*g) - w).abs() <= 1e-5 * scale * cin as f64,
                        "case {i} {tile:?} ({shape:?}) element {k}: {g} vs {w}"
                    );
                }
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
        let back_shape = Shape {
            channels: cout,
            ..shape
        };
        for tile in [Tile::F4, Tile::F6] {
            let fx = winograd(&x, &weight, cout, &shape, tile);
            let u = transform_filters(&weight, cout, cin, true, tile);
            let gy = conv3x3(
                &y,
                &back_shape,
                Filters::F32 { tile, u: &u },
                cin,
                Fuse::default(),
            );
            let lhs: f64 = fx.iter().zip(&y).map(|(a, b)| f64::from(*a * *b)).sum();
            let rhs: f64 = x.iter().zip(&gy).map(|(a, b)| f64::from(*a * *b)).sum();
            assert!(
                (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
                "{tile:?}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn f6_adjoint_reads_the_forward_filters_as_the_flipped_ones() {
        // The mirrored, rescaled forward filters are the flipped filters' transform (up to
        // the f64 sums' last bit), so both gradients agree to rounding, in bands and whole,
        // with a mask and the padding of a reflect gradient.
        let (cin, cout, h, w) = (5, 7, 14, 17);
        let weight = random(cout * cin * 9, 21);
        let forward = transform_filters(&weight, cout, cin, false, Tile::F6);
        let flipped = transform_filters(&weight, cout, cin, true, Tile::F6);
        let shape = Shape {
            n: 1,
            channels: cout,
            height: h,
            width: w,
            pad: 2,
            border: Border::Zero,
        };
        let grad = random(cout * h * w, 22);
        let mask = random(cout * h * w, 23);
        let fuse = Fuse {
            input_mask: Some(&mask),
            ..Fuse::default()
        };
        for strategy in [Strategy::Whole, Strategy::Bands { rows: 1 }] {
            let u = Filters::F32 {
                tile: Tile::F6,
                u: &flipped,
            };
            let want = conv3x3_with(&grad, &shape, u, cin, fuse, strategy);
            let got = conv3x3_with(
                &grad,
                &shape,
                Filters::F6Adjoint(&forward),
                cin,
                fuse,
                strategy,
            );
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6 * scale, "{strategy:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn bf16_products_stay_within_a_few_percent_of_the_direct_convolution() {
        if !bf16::available() {
            eprintln!("skipping: this CPU has no AVX512-BF16 (the bf16 path never runs here)");
            return;
        }
        // VGG-like channel counts and a ragged image, in bands and whole, zero and reflect.
        for (i, &(cin, cout, h, w, border)) in [
            (64, 64, 21, 30, Border::Zero),
            (32, 48, 17, 9, Border::Reflect),
            (17, 5, 6, 7, Border::Replicate),
        ]
        .iter()
        .enumerate()
        {
            let shape = Shape {
                n: 1,
                channels: cin,
                height: h,
                width: w,
                pad: 1,
                border,
            };
            let input = random(cin * h * w, 40 + i as u64);
            let weight = random(cout * cin * 9, 50 + i as u64);
            let want = conv3x3_reference(&input, &weight, cout, &shape, Fuse::default());
            let u = transform_filters(&weight, cout, cin, false, Tile::F4);
            let u = pack_filters_bf16(&u, cout, cin);
            let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
            for strategy in [Strategy::Whole, Strategy::Bands { rows: 1 }] {
                let got = conv3x3_with(
                    &input,
                    &shape,
                    Filters::Bf16(&u),
                    cout,
                    Fuse::default(),
                    strategy,
                );
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (f64::from(*g) - w).powi(2))
                    .sum::<f64>();
                let relative = (err / want.len() as f64).sqrt() / rms;
                // bf16 rounds each operand by up to 2⁻⁹ (0.2%); the output transform's large
                // coefficients (up to 8 × 8) amplify that about tenfold.
                assert!(
                    relative < 5e-2,
                    "case {i} {strategy:?}: relative RMS error {relative}"
                );
                assert!(
                    relative > 1e-4,
                    "case {i}: bf16 rounding should show ({relative})"
                );
            }
        }
    }

    /// `T::bt` and `T::at` are the matrices `bt` (`a × a`) and `at` (`m × a`).
    fn check_formulas<T: Transforms<M, A>, const M: usize, const A: usize>(
        bt: [[f32; A]; A],
        at: [[f32; A]; M],
    ) {
        for r in 0..A {
            let unit: [f32; A] = std::array::from_fn(|k| f32::from(u8::from(k == r)));
            let o = T::bt(unit);
            for i in 0..A {
                assert_eq!(o[i], bt[i][r], "Bᵀ[{i}][{r}] of F({M}, 3)");
            }
            let o = T::at(unit);
            for i in 0..M {
                assert_eq!(o[i], at[i][r], "Aᵀ[{i}][{r}] of F({M}, 3)");
            }
        }
    }

    #[test]
    fn transform_formulas_are_the_matrices() {
        check_formulas::<F4, 4, 6>(
            [
                [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
                [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
                [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
                [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
                [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
                [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
            ],
            [
                [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
                [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
                [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
            ],
        );
        check_formulas::<F6, 6, 8>(
            [
                [1.0, 0.0, -5.25, 0.0, 5.25, 0.0, -1.0, 0.0],
                [0.0, 1.0, 1.0, -4.25, -4.25, 1.0, 1.0, 0.0],
                [0.0, -1.0, 1.0, 4.25, -4.25, -1.0, 1.0, 0.0],
                [0.0, 0.5, 0.25, -2.5, -1.25, 2.0, 1.0, 0.0],
                [0.0, -0.5, 0.25, 2.5, -1.25, -2.0, 1.0, 0.0],
                [0.0, 2.0, 4.0, -2.5, -5.0, 0.5, 1.0, 0.0],
                [0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0],
                [0.0, -1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0],
            ],
            [
                [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0],
                [0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0],
                [0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 0.0],
                [0.0, 1.0, 1.0, 16.0, 16.0, 0.0625, 0.0625, 0.0],
                [0.0, 1.0, -1.0, 32.0, -32.0, 0.03125, -0.03125, 1.0],
            ],
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
