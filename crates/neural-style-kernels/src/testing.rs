//! What the kernels' tests share: reproducible data, the 3×3 convolution by its definition
//! in f64 (`y[o] = b[o] + Σ_c Σ_{ky,kx} w[o, c, ky, kx] · x[c, y + ky − pad, x + kx − pad]`,
//! read through the padding rule and the rectifier's mask), the reference every fast
//! convolution is checked against, and the table of shapes they are checked on.

use crate::Border;
use crate::winograd::{Fuse, Shape, source};

/// `len` values in [-1, 1] from a xorshift generator started at `seed`: the same on every
/// machine, and different for each seed.
pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 20_001) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

/// The convolution of `input` (`shape`) with `weight` (`[rows, channels, 3, 3]`) by its
/// definition in f64, with `fuse`'s bias, input mask and rectifier: `[n, rows, ho, wo]`.
pub fn conv3x3_reference(
    input: &[f32],
    weight: &[f32],
    rows: usize,
    shape: &Shape,
    fuse: Fuse,
) -> Vec<f64> {
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
                    out.push(if fuse.relu { s.max(0.0) } else { s });
                }
            }
        }
    }
    out
}

/// One convolution to check: its input's shape and how many outputs it computes.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub shape: Shape,
    pub rows: usize,
}

/// The shapes every convolution is checked on: each border rule; padding 0, 1 and 2; one
/// and two images; single pixels, odd sizes; widths below, at and above one register chunk
/// of 64 and a tail; 1 to 4 outputs (one group) and more (groups of 4 and a smaller last).
pub fn cases() -> Vec<Case> {
    [
        // (images, input channels, outputs, height, width, padding, border)
        (1, 3, 5, 8, 8, 1, Border::Zero),
        (2, 4, 3, 7, 9, 1, Border::Zero),
        (1, 6, 4, 13, 5, 1, Border::Reflect),
        (1, 2, 2, 6, 11, 1, Border::Replicate),
        (1, 3, 2, 5, 6, 0, Border::Zero),
        (2, 3, 4, 9, 7, 2, Border::Zero),
        (1, 2, 3, 1, 1, 1, Border::Zero),
        (1, 2, 3, 1, 3, 1, Border::Replicate),
        (1, 2, 3, 2, 2, 1, Border::Reflect),
        (1, 3, 64, 5, 70, 1, Border::Reflect),
        (2, 3, 5, 4, 64, 1, Border::Zero),
        (1, 16, 3, 6, 131, 2, Border::Zero),
        (1, 4, 2, 3, 7, 1, Border::Replicate),
        (2, 5, 4, 3, 67, 1, Border::Reflect),
        (2, 6, 1, 4, 9, 2, Border::Zero),
    ]
    .into_iter()
    .map(|(n, channels, rows, height, width, pad, border)| Case {
        shape: Shape {
            n,
            channels,
            height,
            width,
            pad,
            border,
        },
        rows,
    })
    .collect()
}
