//! Dense linear algebra on row-major `f32` slices for the style loss: the Gram matrix
//! `G = F Fᵀ` of a layer's features (Gatys et al. 2015, eq. 3), with faer's matrix product
//! on each thread's share of the positions.

use rayon::prelude::*;

/// The Gram matrix `F Fᵀ` of `f` (`[c, n]`, row-major): `[c, c]`. The long inner dimension
/// is split among the threads and their partial products summed.
pub fn gram(f: &[f32], c: usize, n: usize) -> Vec<f32> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    assert_eq!(f.len(), c * n, "features are [c, n]");
    let mut g = vec![0.0f32; c * c];
    if c == 0 || n == 0 {
        return g;
    }
    let parts = (rayon::current_num_threads() * 2).clamp(1, n.div_ceil(1024));
    let chunk = n.div_ceil(parts);
    let partials: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let start = (p * chunk).min(n);
            let len = chunk.min(n - start);
            let mut part = vec![0.0f32; c * c];
            if len > 0 {
                let fc = MatRef::from_row_major_slice_with_stride(&f[start..], c, len, n);
                let dst = MatMut::from_row_major_slice_mut(&mut part, c, c);
                matmul(dst, Accum::Replace, fc, fc.transpose(), 1.0f32, Par::Seq);
            }
            part
        })
        .collect();
    for part in partials {
        for (a, b) in g.iter_mut().zip(part) {
            *a += b;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_equals_the_plain_sum_for_uneven_shares() {
        // 3 channels, positions not a multiple of any share size.
        for n in [1, 7, 1025, 5000] {
            let c = 3;
            let f: Vec<f32> = (0..c * n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let g = gram(&f, c, n);
            for i in 0..c {
                for j in 0..c {
                    let want: f64 = (0..n)
                        .map(|k| f64::from(f[i * n + k]) * f64::from(f[j * n + k]))
                        .sum();
                    let got = f64::from(g[i * c + j]);
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "n={n} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
        assert_eq!(gram(&[], 0, 0), Vec::<f32>::new());
    }
}
