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
//!
//! One file of ~800 lines of code (plus its tests): the transforms, the banded and whole-image
//! strategies and the padding fold all work on the same tile layout, and splitting them
//! would only scatter that layout's invariants.

use rayon::prelude::*;

use crate::bf16;
use crate::vgg::Padding;

/// Output tile side.
const M: usize = 4;
/// Input tile side (`M + 3 - 1`).
const A: usize = 6;
/// Number of transform positions (`A²`): the number of matrix products per convolution.
pub const POSITIONS: usize = A * A;

/// Input transform `Bᵀ` for F(4, 3) (interpolation points 0, ±1, ±2, ∞), as [`bt6`]
/// computes it.
#[cfg_attr(not(test), allow(dead_code))]
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

/// Output transform `Aᵀ`, as [`at6`] computes it.
#[cfg_attr(not(test), allow(dead_code))]
const AT: [[f32; A]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

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
    pub border: Padding,
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

    /// Checks that `input` (and `fuse`'s mask) hold `[n, channels, height, width]` values.
    pub(crate) fn check_input(&self, input: &[f32], fuse: &Fuse<'_>) {
        let len = self.n * self.channels * self.height * self.width;
        assert_eq!(input.len(), len, "input is [n, c, h, w]");
        if let Some(mask) = fuse.input_mask {
            assert_eq!(mask.len(), len, "the mask is shaped as the input");
        }
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

/// Transformed filters (`rows × channels` per position), as the matrix products read them.
#[derive(Debug, Clone, Copy)]
pub enum Filters<'a> {
    /// f32, `[36, rows, channels]`, from [`transform_filters`].
    F32(&'a [f32]),
    /// bfloat16 pairs, each position packed by [`bf16::pack_a`] ([`pack_filters_bf16`]): the
    /// products run as bf16 with f32 sums (only where [`bf16::available`]).
    Bf16(&'a [u32]),
}

/// Filters from [`transform_filters`] (`u`: `[36, rows, channels]`) packed for bf16
/// products, position after position.
pub fn pack_filters_bf16(u: &[f32], rows: usize, channels: usize) -> Vec<u32> {
    assert_eq!(u.len(), POSITIONS * rows * channels, "u is [36, rows, c]");
    u.chunks_exact(rows * channels)
        .flat_map(|position| bf16::pack_a(position, rows, channels))
        .collect()
}

/// Where one padded coordinate reads from: `Some(index)` inside, `None` for a zero.
pub(crate) fn source(v: isize, len: usize, border: Padding) -> Option<usize> {
    let len = len as isize;
    if (0..len).contains(&v) {
        return Some(v as usize);
    }
    let mapped = match border {
        Padding::Zero => return None,
        Padding::Reflect if v == -1 && len >= 2 => 1,
        Padding::Reflect if v == len && len >= 2 => len - 2,
        Padding::Replicate | Padding::Reflect if v == -1 => 0,
        Padding::Replicate | Padding::Reflect if v == len => len - 1,
        _ => return None,
    };
    Some(mapped as usize)
}

/// Where the rows and columns of the padded input come from, tile by tile.
struct Sources {
    /// Per tile row: the six input rows it reads (`None`: a zero row).
    rows: Vec<[Option<usize>; A]>,
    /// Per padded column 0..4·(tw + 1): the input column it reads (`None`: zero).
    cols: Vec<Option<usize>>,
    /// The padding on the left (padded column `pad` is input column 0).
    pad: usize,
}

impl Sources {
    fn new(shape: &Shape) -> Self {
        let (th, tw) = shape.tiles();
        let pad = shape.pad as isize;
        let cols = (0..M * (tw + 1))
            .map(|c| source(c as isize - pad, shape.width, shape.border))
            .collect();
        let rows = (0..th)
            .map(|ty| {
                std::array::from_fn(|r| {
                    source((M * ty + r) as isize - pad, shape.height, shape.border)
                })
            })
            .collect();
        Self {
            rows,
            cols,
            pad: shape.pad,
        }
    }

    /// Tiles across.
    fn tw(&self) -> usize {
        self.cols.len() / M - 1
    }

    /// Writes input row `line` padded to `4·(tw + 1)` columns into `out`, zeroing the values
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
    fn new(tw: usize) -> Self {
        let span = tw + 1;
        Self {
            line: vec![0.0; M * span],
            strip: vec![0.0; A * M * span],
            vert: vec![0.0; A * M * span],
            q: vec![0.0; M * A * tw],
            y: vec![0.0; M * M * tw],
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

/// Applies `f` (6 values in, `N` out) element by element along six input rows, writing
/// `N` output rows.
#[inline(always)]
fn along<const N: usize>(d: [&[f32]; A], o: [&mut [f32]; N], f: impl Fn([f32; A]) -> [f32; N]) {
    let mut o = o;
    let n = o[0].len();
    let mut i = 0;
    while i + LANES <= n {
        let x: [&[f32; LANES]; A] =
            std::array::from_fn(|r| d[r][i..i + LANES].try_into().expect("a full chunk"));
        let mut y = [[0.0f32; LANES]; N];
        for k in 0..LANES {
            let out = f(std::array::from_fn(|r| x[r][k]));
            for j in 0..N {
                y[j][k] = out[j];
            }
        }
        for (oj, yj) in o.iter_mut().zip(&y) {
            oj[i..i + LANES].copy_from_slice(yj);
        }
        i += LANES;
    }
    for k in i..n {
        let out = f(std::array::from_fn(|r| d[r][k]));
        for (oj, v) in o.iter_mut().zip(out) {
            oj[k] = v;
        }
    }
}

/// `Bᵀ` applied along six rows: `o = Bᵀ d`, element by element.
#[inline(always)]
fn bt6(d: [&[f32]; A], o: [&mut [f32]; A]) {
    along(d, o, |[a0, a1, a2, a3, a4, a5]| {
        [
            4.0 * a0 - 5.0 * a2 + a4,
            (a3 + a4) - 4.0 * (a1 + a2),
            (a4 - a3) + 4.0 * (a1 - a2),
            (a4 - a2) + 2.0 * (a3 - a1),
            (a4 - a2) - 2.0 * (a3 - a1),
            4.0 * a1 - 5.0 * a3 + a5,
        ]
    });
}

/// `Aᵀ` applied along six rows: `o = Aᵀ m`, element by element.
#[inline(always)]
fn at6(m: [&[f32]; A], o: [&mut [f32]; M]) {
    along(m, o, |[m0, m1, m2, m3, m4, m5]| {
        let (s12, d12) = (m1 + m2, m1 - m2);
        let (s34, d34) = (m3 + m4, m3 - m4);
        [
            m0 + s12 + s34,
            d12 + 2.0 * d34,
            s12 + 4.0 * s34,
            d12 + 8.0 * d34 + m5,
        ]
    });
}

/// The input transform `V = Bᵀ d B` of the `tw` tiles of tile row `ty` of one channel
/// `plane` (`h × w`), written to `v[ξ·stride + base ..][..tw]` for the 36 positions ξ.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_row(
    plane: &[f32],
    mask: Option<&[f32]>,
    w: usize,
    sources: &Sources,
    ty: usize,
    scratch: &mut Scratch,
    v: &mut [f32],
    base: usize,
    stride: usize,
) {
    let tw = sources.tw();
    let span = tw + 1;
    let Scratch {
        line, strip, vert, ..
    } = scratch;
    // The six padded rows of this tile row, de-interleaved by phase: phase k of tile column
    // t' is padded column 4t' + k (tile t reads phases 0..4 of t' = t and 0..2 of t + 1).
    for (r, src) in sources.rows[ty].iter().enumerate() {
        let dst = &mut strip[r * M * span..][..M * span];
        match src {
            Some(y) => {
                let mask_line = mask.map(|m| &m[y * w..][..w]);
                sources.pad_row(&plane[y * w..][..w], mask_line, line);
                let (p0, rest) = dst.split_at_mut(span);
                let (p1, rest) = rest.split_at_mut(span);
                let (p2, p3) = rest.split_at_mut(span);
                for ((((quad, a), b), c), d) in line.chunks_exact(M).zip(p0).zip(p1).zip(p2).zip(p3)
                {
                    (*a, *b, *c, *d) = (quad[0], quad[1], quad[2], quad[3]);
                }
            }
            None => dst.fill(0.0),
        }
    }
    // Bᵀ d: combine rows.
    {
        let d: [&[f32]; A] = std::array::from_fn(|r| &strip[r * M * span..][..M * span]);
        bt6(d, rows_mut(vert, 0, M * span, M * span));
    }
    // (Bᵀ d) B: combine columns s = 0..6 of every tile (phase s % 4, shifted by s / 4 tiles).
    for i in 0..A {
        let t = &vert[i * M * span..][..M * span];
        let xs: [&[f32]; A] = std::array::from_fn(|s| &t[(s % M) * span + s / M..][..tw]);
        bt6(xs, rows_mut(v, i * A * stride + base, stride, tw));
    }
}

/// The output transform `Y = Aᵀ m A` of `tw` tiles read from `m[ξ·stride + base ..][..tw]`,
/// plus `bias` (and then the rectifier with `relu`), written to the `rows` (up to 4) output
/// rows of `out` (`rows × wo`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_row(
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
    // Aᵀ m: q[a][j] = Σ_i Aᵀ[a][i] m[i·6 + j].
    for j in 0..A {
        let col: [&[f32]; A] = std::array::from_fn(|i| &m[(i * A + j) * stride + base..][..tw]);
        at6(col, rows_mut(q, j * tw, A * tw, tw));
    }
    // (Aᵀ m) A: y[a][b] = Σ_j Aᵀ[b][j] q[a][j].
    for a in 0..M {
        let qa: [&[f32]; A] = std::array::from_fn(|j| &q[(a * A + j) * tw..][..tw]);
        at6(qa, rows_mut(y, a * M * tw, tw, tw));
    }
    for (a, line) in out.chunks_mut(wo).enumerate().take(M) {
        let ya: [&[f32]; M] = std::array::from_fn(|b| &y[(a * M + b) * tw..][..tw]);
        let full = (wo / M).min(tw);
        for ((((quad, &y0), &y1), &y2), &y3) in line
            .chunks_exact_mut(M)
            .zip(ya[0])
            .zip(ya[1])
            .zip(ya[2])
            .zip(ya[3])
        {
            quad.copy_from_slice(&[y0 + bias, y1 + bias, y2 + bias, y3 + bias]);
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

/// `c = a · b` for row-major `a` (`m × k`), `b` (`k × n`, rows `b_stride` apart) and `c`.
fn gemm(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, b_stride: usize) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let a = MatRef::from_row_major_slice(a, m, k);
    let b = MatRef::from_row_major_slice_with_stride(b, k, n, b_stride);
    let c = MatMut::from_row_major_slice_mut(c, m, n);
    matmul(c, Accum::Replace, a, b, 1.0f32, Par::Seq);
}

/// Bytes of `V` and `M` one band should stay within (about a core's share of the cache).
const BAND_BYTES: usize = 1 << 20;
/// The fewest tiles a band's matrix products should have (fewer: the filters are read
/// from memory for too little work).
const BAND_MIN_TILES: usize = 32;

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
    /// The strategy for `shape` with `rows` output channels on `threads` threads.
    pub fn choose(shape: &Shape, rows: usize, threads: usize) -> Self {
        let (th, tw) = shape.tiles();
        let per_tile = POSITIONS * (shape.channels + rows) * 4;
        let tiles = (BAND_BYTES / per_tile.max(1)).max(BAND_MIN_TILES);
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
    let strategy = Strategy::choose(shape, rows, rayon::current_num_threads());
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

/// One convolution's inputs, shared by its threads.
struct Job<'a> {
    input: &'a [f32],
    shape: Shape,
    sources: Sources,
    u: Filters<'a>,
    rows: usize,
    fuse: Fuse<'a>,
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
    /// The input transform of one channel of every image into `v` (`[36, n·tiles]`).
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
struct Vectorised<'a, 'b>(&'a Job<'a>, Part<'b>);

impl pulp::WithSimd for Vectorised<'_, '_> {
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

impl Job<'_> {
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
        match self.u {
            Filters::F32(u) => gemm(
                m,
                &u[p * rows * channels..][..rows * channels],
                v,
                rows,
                channels,
                n,
                stride,
            ),
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
        let (th, tw) = self.shape.tiles();
        let (_, wo) = self.shape.output();
        let bands_per_image = th.div_ceil(band_rows);
        let img = index / bands_per_image;
        let ty0 = (index % bands_per_image) * band_rows;
        let ty1 = (ty0 + band_rows).min(th);
        let ntc = (ty1 - ty0) * tw;
        let rows = self.rows;
        let mut scratch = Scratch::new(tw);
        let mut v = vec![0.0f32; POSITIONS * channels * ntc];
        for c in 0..channels {
            let (plane, mask) = self.plane(img, c);
            for ty in ty0..ty1 {
                let base = c * ntc + (ty - ty0) * tw;
                input_row(
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
        let mut m = vec![0.0f32; POSITIONS * rows * ntc];
        let mut words = Vec::new();
        for (p, mp) in m.chunks_exact_mut(rows * ntc).enumerate() {
            self.product(p, &v[p * channels * ntc..], ntc, ntc, mp, &mut words);
        }
        for (co, piece) in planes.iter_mut().enumerate() {
            for ty in ty0..ty1 {
                let local = &mut piece[M * (ty - ty0) * wo..];
                let base = co * ntc + (ty - ty0) * tw;
                output_row(
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
        let (th, tw) = self.shape.tiles();
        let nt = self.shape.tile_count();
        let mut scratch = Scratch::new(tw);
        for img in 0..n {
            let (plane, mask) = self.plane(img, c);
            for ty in 0..th {
                let base = (img * th + ty) * tw;
                input_row(plane, mask, w, &self.sources, ty, &mut scratch, v, base, nt);
            }
        }
    }

    #[inline(always)]
    fn output_plane(&self, index: usize, m: &[f32], plane: &mut [f32]) {
        let (th, tw) = self.shape.tiles();
        let (_, wo) = self.shape.output();
        let nt = self.shape.tile_count();
        let rows = self.rows;
        let (img, co) = (index / rows, index % rows);
        let mut scratch = Scratch::new(tw);
        for ty in 0..th {
            let base = co * nt + (img * th + ty) * tw;
            output_row(
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
    let Shape { n, channels, .. } = *shape;
    shape.check_input(input, &fuse);
    match u {
        Filters::F32(u) => assert_eq!(u.len(), POSITIONS * rows * channels, "u is [36, rows, c]"),
        Filters::Bf16(u) => assert_eq!(
            u.len(),
            POSITIONS * bf16::packed_a_len(rows, channels),
            "u is [36] packed rows × c"
        ),
    }
    let (ho, wo) = shape.output();
    let (th, tw) = shape.tiles();
    let mut out = vec![0.0f32; n * rows * ho * wo];
    if out.is_empty() {
        return out;
    }
    let job = Job {
        input,
        shape: *shape,
        sources: Sources::new(shape),
        u,
        rows,
        fuse,
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
            // V laid out [channels, 36, tiles] so that each channel is one thread's to write.
            let mut v = vec![0.0f32; channels * POSITIONS * nt];
            v.par_chunks_mut(POSITIONS * nt)
                .enumerate()
                .for_each(|(channel, v)| {
                    arch.dispatch(Vectorised(&job, Part::Input { channel, v }));
                });
            let mut m = vec![0.0f32; POSITIONS * rows * nt];
            m.par_chunks_mut(rows * nt).enumerate().for_each(|(p, mp)| {
                job.product(p, &v[p * nt..], POSITIONS * nt, nt, mp, &mut Vec::new());
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
pub fn fold_padding(
    padded: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    border: Padding,
) -> Vec<f32> {
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
        let whole = conv3x3_with(
            input,
            shape,
            Filters::F32(&u),
            cout,
            Fuse::default(),
            Strategy::Whole,
        );
        // Bands of one and of two tile rows give the same numbers, up to the order in which
        // the matrix products add.
        let scale = whole.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for rows in [1, 2] {
            let bands = conv3x3_with(
                input,
                shape,
                Filters::F32(&u),
                cout,
                Fuse::default(),
                Strategy::Bands { rows },
            );
            assert_eq!(bands.len(), whole.len());
            for (b, w) in bands.iter().zip(&whole) {
                assert!(
                    (b - w).abs() <= 1e-6 * scale,
                    "{shape:?}: bands of {rows}: {b} vs {w}"
                );
            }
        }
        whole
    }

    #[test]
    fn matches_direct_convolution_for_every_border_and_odd_sizes() {
        for (i, &(n, cin, cout, h, w, pad, border)) in [
            (1, 3, 5, 8, 8, 1, Padding::Zero),
            (2, 4, 3, 7, 9, 1, Padding::Zero),
            (1, 6, 4, 13, 5, 1, Padding::Reflect),
            (1, 2, 2, 6, 11, 1, Padding::Replicate),
            (1, 3, 2, 5, 6, 0, Padding::Zero),
            (2, 3, 4, 9, 7, 2, Padding::Zero),
            (1, 2, 3, 1, 1, 1, Padding::Zero),
            (1, 2, 3, 1, 3, 1, Padding::Replicate),
            (1, 2, 3, 2, 2, 1, Padding::Reflect),
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
            border: Padding::Zero,
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
        let gy = conv3x3(&y, &back_shape, Filters::F32(&u), cin, Fuse::default());
        let lhs: f64 = fx.iter().zip(&y).map(|(a, b)| f64::from(*a * *b)).sum();
        let rhs: f64 = x.iter().zip(&gy).map(|(a, b)| f64::from(*a * *b)).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn bf16_products_stay_within_a_few_percent_of_the_direct_convolution() {
        if !bf16::available() {
            eprintln!("skipping: this CPU has no AVX512-BF16 (the bf16 path never runs here)");
            return;
        }
        // VGG-like channel counts and a ragged image, in bands and whole, zero and reflect.
        for (i, &(cin, cout, h, w, border)) in [
            (64, 64, 21, 30, Padding::Zero),
            (32, 48, 17, 9, Padding::Reflect),
            (17, 5, 6, 7, Padding::Replicate),
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
            let want = direct(&input, &weight, cout, &shape);
            let u = pack_filters_bf16(&transform_filters(&weight, cout, cin, false), cout, cin);
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

    #[test]
    fn transform_formulas_are_the_matrices() {
        for r in 0..A {
            let unit: Vec<[f32; 1]> = (0..A).map(|k| [f32::from(u8::from(k == r))]).collect();
            let d: [&[f32]; A] = std::array::from_fn(|k| &unit[k][..]);
            let mut o = [[0.0f32; 1]; A];
            let [o0, o1, o2, o3, o4, o5] = &mut o;
            bt6(d, [o0, o1, o2, o3, o4, o5]);
            for i in 0..A {
                assert_eq!(o[i][0], BT[i][r], "Bᵀ[{i}][{r}]");
            }
            let mut o = [[0.0f32; 1]; M];
            let [o0, o1, o2, o3] = &mut o;
            at6(d, [o0, o1, o2, o3]);
            for i in 0..M {
                assert_eq!(o[i][0], AT[i][r], "Aᵀ[{i}][{r}]");
            }
        }
    }

    #[test]
    fn fold_padding_is_the_adjoint_of_padding() {
        for border in [Padding::Reflect, Padding::Replicate, Padding::Zero] {
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
