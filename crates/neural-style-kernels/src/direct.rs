//! Direct 3×3 convolution for the layers with few channels on one side: VGG's first
//! convolution (3 input channels) and its input gradient (3 output channels), where
//! Winograd's transforms ([`crate::winograd`]) would cost more than the products they save.
//! Each output row is the definition of the convolution, `y[o] = b[o] + Σ_c Σ_{ky,kx}
//! w[o, c, ky, kx] · x[c, y + ky, x + kx]`, summed over 64 outputs at a time in registers,
//! with the bias and the rectifier fused and the input read through the padding rule (and the
//! rectifier's mask) once, like the Winograd convolution's.

use rayon::prelude::*;

use crate::winograd::{Fuse, Shape, pad_row, source};

/// Vectors of adjacent outputs summed in registers per output channel.
const VECTORS: usize = 4;

/// Output channels summed together, so that each input vector loaded feeds all of them: with
/// [`VECTORS`], 16 of AVX-512's 32 registers hold the sums.
const GROUP: usize = 4;

/// Floats the padded input carries past its end, so that a row's last vectors may be read
/// whole (the sums past the row's end are not stored): [`VECTORS`] of the widest (16-lane)
/// vectors.
const SLACK: usize = VECTORS * 16;

/// The convolution of `input` (`shape`) with `weight` (`[rows, channels, 3, 3]`), with what
/// `fuse` adds: `[n, rows, ho, wo]`.
pub fn conv3x3(
    input: &[f32],
    shape: &Shape,
    weight: &[f32],
    rows: usize,
    fuse: Fuse<'_>,
) -> Vec<f32> {
    let Shape { n, channels, .. } = *shape;
    shape.check_input(input, &fuse);
    assert_eq!(
        weight.len(),
        rows * channels * 9,
        "weight is [rows, c, 3, 3]"
    );
    let (ho, wo) = shape.output();
    let mut out = vec![0.0f32; n * rows * ho * wo];
    if out.is_empty() {
        return out;
    }
    let padded = pad(input, shape, fuse.input_mask);
    let job = Job {
        padded: &padded,
        channels,
        size: (ho, wo),
        weight,
        fuse,
    };
    let arch = pulp::Arch::new();
    if rows > GROUP {
        // A task per group of output channels of one image, row after row.
        for (img, image) in out.chunks_mut(rows * ho * wo).enumerate() {
            image
                .par_chunks_mut(GROUP * ho * wo)
                .enumerate()
                .for_each(|(group, planes)| {
                    let at = (img, group * GROUP);
                    arch.dispatch(Task(&job, at, Part::Planes(planes)));
                });
        }
        return out;
    }
    // Too few output channels to share out: a task per output row of every channel
    // (`[n, ho, rows, wo]`), then laid out as `[n, rows, ho, wo]`.
    let mut lines = vec![0.0f32; out.len()];
    lines
        .par_chunks_mut(rows * wo)
        .with_min_len(4)
        .enumerate()
        .for_each(|(index, lines)| {
            let (img, y) = (index / ho, index % ho);
            arch.dispatch(Task(&job, (img, 0), Part::Lines(y, lines)));
        });
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane, out)| {
            let (img, o) = (plane / rows, plane % rows);
            for (y, line) in out.chunks_exact_mut(wo).enumerate() {
                line.copy_from_slice(&lines[((img * ho + y) * rows + o) * wo..][..wo]);
            }
        });
    out
}

/// The input read through the padding rule and the mask: `[n, c, ho + 2, wo + 2]`, and
/// [`SLACK`] zeros.
fn pad(input: &[f32], shape: &Shape, mask: Option<&[f32]>) -> Vec<f32> {
    let Shape {
        n,
        channels,
        height: h,
        width: w,
        pad,
        border,
    } = *shape;
    let (ho, wo) = shape.output();
    let (hp, wp) = (ho + 2, wo + 2);
    let cols: Vec<Option<usize>> = (0..wp)
        .map(|c| source(c as isize - pad as isize, w, border))
        .collect();
    let mut padded = vec![0.0f32; n * channels * hp * wp + SLACK];
    padded
        .par_chunks_mut(hp * wp)
        .take(n * channels)
        .enumerate()
        .for_each(|(plane, out)| {
            let at = plane * h * w;
            for (py, line) in out.chunks_exact_mut(wp).enumerate() {
                if let Some(y) = source(py as isize - pad as isize, h, border) {
                    let keep = mask.map(|m| &m[at + y * w..][..w]);
                    pad_row(&input[at + y * w..][..w], keep, line, pad, &cols);
                }
            }
        });
    padded
}

/// One convolution's inputs, shared by its threads.
struct Job<'a> {
    padded: &'a [f32],
    channels: usize,
    size: (usize, usize),
    weight: &'a [f32],
    fuse: Fuse<'a>,
}

/// Where a task writes.
enum Part<'b> {
    /// Every row of its output channels' planes (`[count, ho, wo]`).
    Planes(&'b mut [f32]),
    /// Output row `.0` of each of its output channels (`[count, wo]`).
    Lines(usize, &'b mut [f32]),
}

/// The sums of the output channels `.2` holds, from `.1` = (image, first channel), with the
/// CPU's vector instructions enabled.
struct Task<'a, 'b>(&'a Job<'a>, (usize, usize), Part<'b>);

impl pulp::WithSimd for Task<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let (ho, wo) = self.0.size;
        let count = match &self.2 {
            Part::Planes(planes) => planes.len() / (ho * wo),
            Part::Lines(_, lines) => lines.len() / wo,
        };
        match count {
            1 => self.run::<S, 1>(simd),
            2 => self.run::<S, 2>(simd),
            3 => self.run::<S, 3>(simd),
            _ => self.run::<S, GROUP>(simd),
        }
    }
}

impl Task<'_, '_> {
    #[inline(always)]
    fn run<S: pulp::Simd, const R: usize>(self, simd: S) {
        let Task(job, (img, first), part) = self;
        let (ho, wo) = job.size;
        match part {
            Part::Planes(planes) => {
                let mut planes = planes.chunks_exact_mut(ho * wo);
                let mut planes: [&mut [f32]; R] =
                    std::array::from_fn(|_| planes.next().expect("a plane per channel"));
                for y in 0..ho {
                    let lines = planes.each_mut().map(|p| &mut p[y * wo..][..wo]);
                    job.sums(simd, (img, first, y), lines);
                }
            }
            Part::Lines(y, lines) => {
                let mut lines = lines.chunks_exact_mut(wo);
                let lines: [&mut [f32]; R] =
                    std::array::from_fn(|_| lines.next().expect("a line per channel"));
                job.sums(simd, (img, first, y), lines);
            }
        }
    }
}

impl Job<'_> {
    /// Output row `y` of image `img` for the `R` output channels from `first`, into `lines`:
    /// the definition, [`VECTORS`] vectors of adjacent outputs per channel at a time, each
    /// input vector loaded once for all `R` channels.
    #[inline(always)]
    fn sums<S: pulp::Simd, const R: usize>(
        &self,
        simd: S,
        (img, first, y): (usize, usize, usize),
        mut lines: [&mut [f32]; R],
    ) {
        let (ho, wo) = self.size;
        let (hp, wp) = (ho + 2, wo + 2);
        let lanes = S::F32_LANES;
        let chunk = VECTORS * lanes;
        debug_assert!(chunk <= SLACK);
        let zero = simd.splat_f32s(0.0);
        let bias: [S::f32s; R] =
            std::array::from_fn(|r| simd.splat_f32s(self.fuse.bias.map_or(0.0, |b| b[first + r])));
        let load = |src: &[f32]| -> S::f32s {
            bytemuck::pod_read_unaligned(bytemuck::cast_slice(&src[..lanes]))
        };
        let mut x0 = 0;
        while x0 < wo {
            let mut acc: [[S::f32s; VECTORS]; R] = std::array::from_fn(|r| [bias[r]; VECTORS]);
            for c in 0..self.channels {
                // From the first of the three input rows this output row reads, through the
                // padded input's end (the last chunk of a row reads on into the next).
                let from = &self.padded[((img * self.channels + c) * hp + y) * wp + x0..];
                let taps: [&[f32]; R] = std::array::from_fn(|r| {
                    &self.weight[((first + r) * self.channels + c) * 9..][..9]
                });
                for ky in 0..3 {
                    for kx in 0..3 {
                        let src = &from[ky * wp + kx..][..chunk];
                        let v: [S::f32s; VECTORS] =
                            std::array::from_fn(|j| load(&src[j * lanes..]));
                        for (a, t) in acc.iter_mut().zip(&taps) {
                            let t = simd.splat_f32s(t[ky * 3 + kx]);
                            for (a, v) in a.iter_mut().zip(&v) {
                                *a = simd.mul_add_f32s(t, *v, *a);
                            }
                        }
                    }
                }
            }
            let width = chunk.min(wo - x0);
            for (line, mut a) in lines.iter_mut().zip(acc) {
                if self.fuse.relu {
                    for v in &mut a {
                        *v = simd.max_f32s(*v, zero);
                    }
                }
                line[x0..x0 + width]
                    .copy_from_slice(&bytemuck::cast_slice::<S::f32s, f32>(&a)[..width]);
            }
            x0 += chunk;
        }
    }
}

/// The filters of the input gradient: `w'[c, o] = w[o, c]` rotated by 180°, `[channels,
/// rows, 3, 3]` from `weight` (`[rows, channels, 3, 3]`).
pub fn transpose_flip(weight: &[f32], rows: usize, channels: usize) -> Vec<f32> {
    assert_eq!(
        weight.len(),
        rows * channels * 9,
        "weight is [rows, c, 3, 3]"
    );
    let mut out = vec![0.0f32; weight.len()];
    for o in 0..rows {
        for c in 0..channels {
            for k in 0..9 {
                out[(c * rows + o) * 9 + (8 - k)] = weight[(o * channels + c) * 9 + k];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cases, conv3x3_reference, random};

    #[test]
    fn matches_the_definition_with_every_padding_bias_mask_and_rectifier() {
        for (i, case) in cases().into_iter().enumerate() {
            let (shape, rows, seed) = (case.shape, case.rows, 10 * i as u64);
            let input = random(shape.n * shape.channels * shape.height * shape.width, seed);
            let weight = random(rows * shape.channels * 9, seed + 1);
            let bias = random(rows, seed + 2);
            let mask = random(input.len(), seed + 3);
            for (relu, masked) in [(false, false), (true, true)] {
                let fuse = Fuse {
                    bias: Some(&bias),
                    relu,
                    input_mask: masked.then_some(&mask[..]),
                };
                let got = conv3x3(&input, &shape, &weight, rows, fuse);
                let want = conv3x3_reference(&input, &weight, rows, &shape, fuse);
                assert_eq!(got.len(), want.len());
                for (k, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(g) - e).abs() <= 1e-5 * e.abs().max(1.0),
                        "case {i} {shape:?} [{k}]: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn transpose_flip_swaps_the_channels_and_turns_the_taps() {
        // One output, two input channels: taps 0..9 and 9..18.
        let w: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let t = transpose_flip(&w, 1, 2);
        assert_eq!(&t[..9], &[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        assert_eq!(t[9], 17.0);
    }
}
