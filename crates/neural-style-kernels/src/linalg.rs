//! Dense linear algebra on row-major `f32` slices for the style loss: the Gram matrix
//! `G = F Fᵀ` of a layer's features (Gatys et al. 2015, eq. 3), with faer's matrix product
//! on each thread's share of the positions, and its gradient `∂L/∂F = (G' + G'ᵀ) F`.

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

/// The gradient of a loss through the Gram matrix: `(G' + G'ᵀ) F` for the Gram matrix's
/// gradient `dg` (`[c, c]`) and the features `f` (`[c, n]`, row-major): `[c, n]`, in blocks
/// of positions shared among the threads.
pub fn gram_gradient(dg: &[f32], f: &[f32], c: usize, n: usize) -> Vec<f32> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    assert_eq!(dg.len(), c * c, "the Gram gradient is [c, c]");
    assert_eq!(f.len(), c * n, "features are [c, n]");
    let mut out = vec![0.0f32; c * n];
    if c == 0 || n == 0 {
        return out;
    }
    let sym: Vec<f32> = (0..c * c)
        .map(|k| dg[k] + dg[(k % c) * c + k / c])
        .collect();
    let s = MatRef::from_row_major_slice(&sym, c, c);
    let fm = MatRef::from_row_major_slice(f, c, n);
    // Column blocks of the output, one product each.
    let chunk = n.div_ceil((rayon::current_num_threads() * 2).clamp(1, n.div_ceil(1024)));
    let mut blocks = Vec::new();
    let mut rest = MatMut::from_row_major_slice_mut(&mut out, c, n);
    let mut start = 0;
    while rest.ncols() > 0 {
        let cols = chunk.min(rest.ncols());
        let (block, tail) = rest.split_at_col_mut(cols);
        blocks.push((start, block));
        start += chunk;
        rest = tail;
    }
    blocks.into_par_iter().for_each(|(start, block)| {
        let cols = block.ncols();
        let fc = fm.subcols(start, cols);
        matmul(block, Accum::Replace, s, fc, 1.0f32, Par::Seq);
    });
    out
}

/// [`gram_gradient`] as plain sums: the reference its test compares with.
#[cfg(test)]
fn gram_gradient_plain(dg: &[f32], f: &[f32], c: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; c * n];
    for i in 0..c {
        for k in 0..n {
            out[i * n + k] = (0..c)
                .map(|j| {
                    (f64::from(dg[i * c + j]) + f64::from(dg[j * c + i])) * f64::from(f[j * n + k])
                })
                .sum::<f64>() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_gradient_equals_the_plain_sums() {
        for (c, n) in [(1, 1), (3, 7), (5, 1025), (3, 5000), (64, 300)] {
            let dg: Vec<f32> = (0..c * c)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
                .collect();
            let f: Vec<f32> = (0..c * n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let got = gram_gradient(&dg, &f, c, n);
            let want = gram_gradient_plain(&dg, &f, c, n);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "c={c} n={n} [{k}]: {g} vs {w}"
                );
            }
        }
        assert_eq!(gram_gradient(&[], &[], 0, 0), Vec::<f32>::new());
    }

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
