//! Direct 3×3 convolution for the layers with few channels on one side: VGG's first
//! convolution (3 input channels) and its input gradient (3 output channels), where
//! Winograd's transforms ([`crate::winograd`]) would cost more than the products they save.
//! Each output row is the definition of the convolution, `y[o] = b[o] + Σ_c Σ_{ky,kx}
//! w[o, c, ky, kx] · x[c, y + ky, x + kx]`, summed over 64 outputs at a time in registers,
//! with the bias and the rectifier fused and the input read through the padding rule (and the
//! rectifier's mask) once, like the Winograd convolution's.

use rayon::prelude::*;

use crate::winograd::{Fuse, Shape, source};

/// Outputs summed together in registers: four 16-lane vectors.
const CHUNK: usize = 64;

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
        rows,
        size: (ho, wo),
        weight,
        fuse,
    };
    let arch = pulp::Arch::new();
    out.par_chunks_mut(wo)
        .with_min_len(8)
        .enumerate()
        .for_each(|(index, line)| arch.dispatch(Row(&job, index, line)));
    out
}

/// The input read through the padding rule and the mask: `[n, c, ho + 2, wo + 2]`.
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
    let mut padded = vec![0.0f32; n * channels * hp * wp];
    padded
        .par_chunks_mut(hp * wp)
        .enumerate()
        .for_each(|(plane, out)| {
            let at = plane * h * w;
            for (py, line) in out.chunks_exact_mut(wp).enumerate() {
                let Some(y) = source(py as isize - pad as isize, h, border) else {
                    continue;
                };
                let src = &input[at + y * w..][..w];
                let keep = mask.map(|m| &m[at + y * w..][..w]);
                for (o, c) in line.iter_mut().zip(&cols) {
                    if let Some(x) = *c {
                        *o = match keep {
                            Some(m) if m[x] <= 0.0 => 0.0,
                            _ => src[x],
                        };
                    }
                }
            }
        });
    padded
}

/// One convolution's inputs, shared by its threads.
struct Job<'a> {
    padded: &'a [f32],
    channels: usize,
    rows: usize,
    size: (usize, usize),
    weight: &'a [f32],
    fuse: Fuse<'a>,
}

/// Output row `.1` (image-major, then channel, then row) into `.2`, with the CPU's vector
/// instructions enabled.
struct Row<'a, 'b>(&'a Job<'a>, usize, &'b mut [f32]);

impl pulp::WithSimd for Row<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Row(job, index, line) = self;
        job.row(index, line);
    }
}

impl Job<'_> {
    #[inline(always)]
    fn row(&self, index: usize, line: &mut [f32]) {
        let (ho, wo) = self.size;
        let (hp, wp) = (ho + 2, wo + 2);
        let (plane, y) = (index / ho, index % ho);
        let (img, o) = (plane / self.rows, plane % self.rows);
        let bias = self.fuse.bias.map_or(0.0, |b| b[o]);
        let taps = &self.weight[o * self.channels * 9..][..self.channels * 9];
        let input = &self.padded[img * self.channels * hp * wp..][..self.channels * hp * wp];
        // The three padded input rows of channel c that output row y reads.
        let rows_of = |c: usize| -> [&[f32]; 3] {
            std::array::from_fn(|ky| &input[(c * hp + y + ky) * wp..][..wp])
        };
        let mut x0 = 0;
        while x0 + CHUNK <= wo {
            let mut acc = [bias; CHUNK];
            for c in 0..self.channels {
                let src = rows_of(c);
                for (k, &t) in taps[c * 9..][..9].iter().enumerate() {
                    let s: &[f32; CHUNK] = src[k / 3][x0 + k % 3..][..CHUNK]
                        .try_into()
                        .expect("a full chunk");
                    for (a, v) in acc.iter_mut().zip(s) {
                        *a += t * v;
                    }
                }
            }
            line[x0..x0 + CHUNK].copy_from_slice(&acc);
            x0 += CHUNK;
        }
        if x0 < wo {
            let tail = &mut line[x0..];
            tail.fill(bias);
            for c in 0..self.channels {
                let src = rows_of(c);
                for (k, &t) in taps[c * 9..][..9].iter().enumerate() {
                    let s = &src[k / 3][x0 + k % 3..];
                    for (a, v) in tail.iter_mut().zip(s) {
                        *a += t * v;
                    }
                }
            }
        }
        if self.fuse.relu {
            for v in line.iter_mut() {
                *v = v.max(0.0);
            }
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
    use crate::vgg::Padding;

    /// The definition in f64, element by element: the reference.
    fn plain(input: &[f32], weight: &[f32], rows: usize, shape: &Shape, fuse: Fuse) -> Vec<f32> {
        let (ho, wo) = shape.output();
        let Shape {
            n,
            channels,
            height: h,
            width: w,
            pad,
            border,
        } = *shape;
        let read = |img: usize, c: usize, y: usize, x: usize| -> f64 {
            let sy = source(y as isize - pad as isize, h, border);
            let sx = source(x as isize - pad as isize, w, border);
            let (Some(sy), Some(sx)) = (sy, sx) else {
                return 0.0;
            };
            let at = ((img * channels + c) * h + sy) * w + sx;
            match fuse.input_mask {
                Some(m) if m[at] <= 0.0 => 0.0,
                _ => f64::from(input[at]),
            }
        };
        let mut out = Vec::with_capacity(n * rows * ho * wo);
        for img in 0..n {
            for o in 0..rows {
                for y in 0..ho {
                    for x in 0..wo {
                        let mut s = fuse.bias.map_or(0.0, |b| f64::from(b[o]));
                        for c in 0..channels {
                            for k in 0..9 {
                                s += f64::from(weight[(o * channels + c) * 9 + k])
                                    * read(img, c, y + k / 3, x + k % 3);
                            }
                        }
                        out.push(if fuse.relu { s.max(0.0) } else { s } as f32);
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 211) as f32 / 105.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_the_definition_with_every_padding_bias_mask_and_rectifier() {
        // Widths below, at and above one register chunk (64), and a tail.
        for (n, channels, rows, h, w, pad, border) in [
            (1, 3, 64, 5, 70, 1, Padding::Reflect),
            (2, 3, 5, 4, 64, 1, Padding::Zero),
            (1, 16, 3, 6, 131, 2, Padding::Zero),
            (1, 4, 2, 3, 7, 1, Padding::Replicate),
            (1, 2, 3, 2, 2, 0, Padding::Zero),
        ] {
            let shape = Shape {
                n,
                channels,
                height: h,
                width: w,
                pad,
                border,
            };
            let input = values(n * channels * h * w, 1);
            let weight = values(rows * channels * 9, 2);
            let bias = values(rows, 3);
            let mask = values(input.len(), 4);
            for (relu, masked) in [(false, false), (true, true)] {
                let fuse = Fuse {
                    bias: Some(&bias),
                    relu,
                    input_mask: masked.then_some(&mask[..]),
                };
                let got = conv3x3(&input, &shape, &weight, rows, fuse);
                let want = plain(&input, &weight, rows, &shape, fuse);
                assert_eq!(got.len(), want.len());
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                        "{shape:?} [{i}]: {g} vs {e}"
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
