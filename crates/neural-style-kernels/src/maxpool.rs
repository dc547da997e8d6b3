//! 2×2, stride-2 max pooling (VGG's pooling, Simonyan & Zisserman 2014) on `f32` slices
//! (NCHW), and its gradient: each output's gradient goes to the first largest of its four
//! inputs (in reading order, as PyTorch picks it). The gradient is recomputed from the
//! input, which the network keeps anyway, instead of storing argmax indices.

use rayon::prelude::*;

/// Outputs handled together: a whole number of SIMD registers at any width, so the
/// fixed-length loops below vectorise (compiled for the CPU `pulp` finds at run time).
const LANES: usize = 16;

/// The larger of two values, as the CPU's `max` instruction computes it (`b` when either
/// is NaN; the features are finite).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// `[planes, h, w]` pooled to `[planes, h / 2, w / 2]` (odd edges dropped).
pub fn forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    assert_eq!(x.len(), planes * h * w, "input is [planes, h, w]");
    let mut out = vec![0.0f32; planes * ho * wo];
    if out.is_empty() {
        return out;
    }
    let arch = pulp::Arch::new();
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, p)| arch.dispatch(Plane::Forward { o, p, w }));
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
    let arch = pulp::Arch::new();
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(g.par_chunks(ho * wo))
        .for_each(|((o, p), g)| arch.dispatch(Plane::Backward { o, p, g, w }));
    out
}

/// One plane's pooling or gradient, run with the CPU's vector instructions enabled.
enum Plane<'a> {
    /// `o` (`h / 2 × w / 2`) from the plane `p` (`h × w`).
    Forward {
        o: &'a mut [f32],
        p: &'a [f32],
        w: usize,
    },
    /// The plane's gradient `o` (`h × w`, zeros) from its input `p` and the output's `g`.
    Backward {
        o: &'a mut [f32],
        p: &'a [f32],
        g: &'a [f32],
        w: usize,
    },
}

impl pulp::WithSimd for Plane<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        match self {
            Plane::Forward { o, p, w } => {
                let wo = w / 2;
                for (y, row) in o.chunks_exact_mut(wo).enumerate() {
                    let (a, b) = (&p[2 * y * w..][..2 * wo], &p[(2 * y + 1) * w..][..2 * wo]);
                    forward_row(a, b, row);
                }
            }
            Plane::Backward { o, p, g, w } => {
                let wo = w / 2;
                for (y, grow) in g.chunks_exact(wo).enumerate() {
                    let (top, bottom) = o[2 * y * w..].split_at_mut(w);
                    let (a, b) = (&p[2 * y * w..][..2 * wo], &p[(2 * y + 1) * w..][..2 * wo]);
                    backward_row(a, b, grow, &mut top[..2 * wo], &mut bottom[..2 * wo]);
                }
            }
        }
    }
}

/// One output row from its two input rows `a` and `b`.
#[inline(always)]
fn forward_row(a: &[f32], b: &[f32], out: &mut [f32]) {
    let mut outs = out.chunks_exact_mut(LANES);
    let (mut ac, mut bc) = (a.chunks_exact(2 * LANES), b.chunks_exact(2 * LANES));
    for ((o, a), b) in outs.by_ref().zip(ac.by_ref()).zip(bc.by_ref()) {
        let v: [f32; 2 * LANES] = std::array::from_fn(|i| max(a[i], b[i]));
        for (j, o) in o.iter_mut().enumerate() {
            *o = max(v[2 * j], v[2 * j + 1]);
        }
    }
    let (a, b) = (ac.remainder(), bc.remainder());
    for (j, o) in outs.into_remainder().iter_mut().enumerate() {
        *o = max(max(a[2 * j], a[2 * j + 1]), max(b[2 * j], b[2 * j + 1]));
    }
}

/// The gradient of one output row `g` sent to the first largest of each window's four
/// inputs (rows `a`, `b`), written to `top` and `bottom` (the other three get zero).
#[inline(always)]
fn backward_row(a: &[f32], b: &[f32], g: &[f32], top: &mut [f32], bottom: &mut [f32]) {
    #[inline(always)]
    fn window(a: [f32; 2], b: [f32; 2], g: f32) -> [f32; 4] {
        let m = max(max(a[0], a[1]), max(b[0], b[1]));
        let s0 = a[0] == m;
        let s1 = !s0 && a[1] == m;
        let s2 = !s0 && !s1 && b[0] == m;
        let s3 = !(s0 || s1 || s2);
        [s0, s1, s2, s3].map(|s| if s { g } else { 0.0 })
    }
    let n = g.len();
    let full = n - n % LANES;
    for j0 in (0..full).step_by(LANES) {
        let (a, b) = (&a[2 * j0..][..2 * LANES], &b[2 * j0..][..2 * LANES]);
        let (t, u) = (
            &mut top[2 * j0..][..2 * LANES],
            &mut bottom[2 * j0..][..2 * LANES],
        );
        let g = &g[j0..][..LANES];
        for j in 0..LANES {
            let [t0, t1, u0, u1] = window([a[2 * j], a[2 * j + 1]], [b[2 * j], b[2 * j + 1]], g[j]);
            (t[2 * j], t[2 * j + 1], u[2 * j], u[2 * j + 1]) = (t0, t1, u0, u1);
        }
    }
    for j in full..n {
        let [t0, t1, u0, u1] = window([a[2 * j], a[2 * j + 1]], [b[2 * j], b[2 * j + 1]], g[j]);
        (top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]) = (t0, t1, u0, u1);
    }
}

/// The plain forms the functions above compute, window by window.
#[cfg(test)]
mod plain {
    pub fn forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let (ho, wo) = (h / 2, w / 2);
        let mut out = vec![0.0; planes * ho * wo];
        for (i, o) in out.iter_mut().enumerate() {
            let (pl, y, xx) = (i / (ho * wo), i / wo % ho, i % wo);
            let at = |r: usize, c: usize| x[(pl * h + 2 * y + r) * w + 2 * xx + c];
            *o = at(0, 0).max(at(0, 1)).max(at(1, 0).max(at(1, 1)));
        }
        out
    }

    pub fn backward(x: &[f32], g: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let (ho, wo) = (h / 2, w / 2);
        let mut out = vec![0.0; planes * h * w];
        for (i, &gv) in g.iter().enumerate() {
            let (pl, y, xx) = (i / (ho * wo), i / wo % ho, i % wo);
            let index = |r: usize, c: usize| (pl * h + 2 * y + r) * w + 2 * xx + c;
            let first = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .into_iter()
                .map(|(r, c)| index(r, c))
                .reduce(|best, k| if x[k] > x[best] { k } else { best })
                .expect("four inputs");
            out[first] += gv;
        }
        out
    }
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

    #[test]
    fn the_vectorised_loops_match_the_plain_form_with_ties_and_ragged_rows() {
        // Widths around the 16-output chunks, odd heights, values on a coarse grid (ties).
        for (planes, h, w) in [(3, 7, 70), (2, 4, 64), (1, 9, 35), (4, 2, 2)] {
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i * 7919) % 13) as f32 - 6.0)
                .collect();
            let g: Vec<f32> = (0..planes * (h / 2) * (w / 2))
                .map(|i| i as f32 + 1.0)
                .collect();
            assert_eq!(forward(&x, planes, h, w), plain::forward(&x, planes, h, w));
            assert_eq!(
                backward(&x, &g, planes, h, w),
                plain::backward(&x, &g, planes, h, w)
            );
        }
    }
}
