//! 2×2, stride-2 max pooling (VGG's pooling, Simonyan & Zisserman 2014) on `f32` slices
//! (NCHW), and its gradient: each output's gradient goes to the first largest of its four
//! inputs (in reading order, as PyTorch picks it). The gradient is recomputed from the
//! input, which the network keeps anyway, instead of storing argmax indices.

use rayon::prelude::*;

/// `[planes, h, w]` pooled to `[planes, h / 2, w / 2]` (odd edges dropped).
pub fn forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    assert_eq!(x.len(), planes * h * w, "input is [planes, h, w]");
    let mut out = vec![0.0f32; planes * ho * wo];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, p)| {
            for (y, row) in o.chunks_exact_mut(wo).enumerate() {
                let (a, b) = (&p[2 * y * w..][..2 * wo], &p[(2 * y + 1) * w..][..2 * wo]);
                for ((v, a), b) in row.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
                    *v = a[0].max(a[1]).max(b[0].max(b[1]));
                }
            }
        });
    out
}

/// The gradient of the input `x` (`[planes, h, w]`) from the gradient `g` of the output.
pub fn backward(x: &[f32], g: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    assert_eq!(x.len(), planes * h * w, "input is [planes, h, w]");
    assert_eq!(
        g.len(),
        planes * ho * wo,
        "gradient is [planes, h / 2, w / 2]"
    );
    let mut out = vec![0.0f32; planes * h * w];
    if out.is_empty() || g.is_empty() {
        return out;
    }
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(g.par_chunks(ho * wo))
        .for_each(|((o, p), gp)| {
            for (y, grow) in gp.chunks_exact(wo).enumerate() {
                let (top, bottom) = o[2 * y * w..].split_at_mut(w);
                let (a, b) = (&p[2 * y * w..][..2 * wo], &p[(2 * y + 1) * w..][..2 * wo]);
                for (xx, &gv) in grow.iter().enumerate() {
                    let (a0, a1, b0, b1) = (a[2 * xx], a[2 * xx + 1], b[2 * xx], b[2 * xx + 1]);
                    let m = a0.max(a1).max(b0.max(b1));
                    if a0 == m {
                        top[2 * xx] += gv;
                    } else if a1 == m {
                        top[2 * xx + 1] += gv;
                    } else if b0 == m {
                        bottom[2 * xx] += gv;
                    } else {
                        bottom[2 * xx + 1] += gv;
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_odd_sizes_and_routes_the_gradient_to_the_first_maximum() {
        // One 3x5 plane: the last row and column are dropped.
        let x = [
            1.0, 5.0, 2.0, 2.0, 9.0, //
            3.0, 4.0, 2.0, -1.0, 9.0, //
            7.0, 7.0, 7.0, 7.0, 7.0,
        ];
        assert_eq!(forward(&x, 1, 3, 5), vec![5.0, 2.0]);
        let g = backward(&x, &[10.0, 20.0], 1, 3, 5);
        // 5.0 takes the first gradient; the tie of 2.0s goes to the first in reading order.
        let mut want = vec![0.0; 15];
        want[1] = 10.0;
        want[2] = 20.0;
        assert_eq!(g, want);
    }
}
