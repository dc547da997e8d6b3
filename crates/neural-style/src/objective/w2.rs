//! Wasserstein-2 style loss: each layer's features are summarised by their mean μ and
//! covariance Σ, and the style term is the closed-form W2 distance between the Gaussians
//! they define (Givens & Shortt 1984; used for style by Kolkin et al. 2019 and crowsonkb's
//! style-transfer-pytorch):
//!
//! W2² = |μx − μs|² + tr Σx + tr Σs − 2 tr (Σs^½ Σx Σs^½)^½.
//!
//! The last term's gradient with respect to Σx is Σs^½ (Σs^½ Σx Σs^½)^−½ Σs^½ / 2, found by
//! a symmetric eigendecomposition (nalgebra, f64) at each evaluation; the autodiff graph
//! carries it as a linear term with that constant gradient.

use burn::prelude::*;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::Result;
use crate::model::tensor::values;

/// Eigenvalues of Σs^½ Σx Σs^½ below this fraction of the largest count as zero (the
/// covariance of a deep layer of a small image, with fewer positions than channels, is
/// singular) ...
const ZERO: f64 = 1e-6;
/// ... and are replaced by this fraction of the largest when inverting: at zero the square
/// root has no finite derivative, and the exact one near it is so large that L-BFGS crawls
/// (measured: vgg16-hed, 128 px, the loss moved by 1e-5 in 4 evaluations; with this floor
/// it fell by 68% in 30). Well-conditioned layers keep the exact gradient.
const FLOOR: f64 = 1e-3;

/// The feature statistics of one style layer (blended over styles, or of one region).
#[derive(Debug, Clone)]
pub struct W2Target {
    /// μs, one value per channel.
    pub mean: Vec<f32>,
    /// The channels the style uses (those with variance): the others have zero rows in
    /// Σs^½, so everything below is computed on this block (exactly, and the
    /// eigendecomposition never sees the zero rows it handles badly).
    alive: Vec<usize>,
    /// Σs^½ on the `alive` block.
    sqrt_cov: DMatrix<f64>,
    /// tr Σs.
    trace_cov: f64,
    /// tr E[ffᵀ] = tr Σs + |μs|²: the target's energy, which the normalised form divides by.
    pub energy: f64,
}

impl W2Target {
    /// The target from a blend of styles' moments: `(weight, mean, second moment)` each;
    /// the blend is the mixture's mean and covariance.
    pub fn from_blend(parts: &[(f32, Vec<f64>, DMatrix<f64>)]) -> Self {
        let c = parts.first().map_or(0, |p| p.1.len());
        let mut mean = DVector::<f64>::zeros(c);
        let mut second = DMatrix::<f64>::zeros(c, c);
        for (b, m, s) in parts {
            mean += DVector::from_column_slice(m) * f64::from(*b);
            second += s * f64::from(*b);
        }
        let cov = &second - &mean * mean.transpose();
        let top = (0..c).map(|i| cov[(i, i)]).fold(0.0, f64::max);
        let alive: Vec<usize> = (0..c)
            .filter(|&i| cov[(i, i)] > 1e-12 * top.max(1e-300))
            .collect();
        let block = DMatrix::from_fn(alive.len(), alive.len(), |i, j| cov[(alive[i], alive[j])]);
        let sqrt_cov = sym_power(&block, 0.5);
        let trace_cov = cov.trace();
        Self {
            mean: mean.iter().map(|v| *v as f32).collect(),
            alive,
            sqrt_cov,
            trace_cov,
            energy: second.trace().max(1e-12),
        }
    }

    /// tr Σs.
    pub fn trace_cov(&self) -> f64 {
        self.trace_cov
    }

    /// For the current covariance Σx (`C·C` values): tr (Σs^½ Σx Σs^½)^½ and its gradient
    /// with respect to Σx.
    pub fn cross_term(&self, cov: &[f32]) -> (f64, DMatrix<f64>) {
        let c = self.mean.len();
        let a = &self.alive;
        let k = a.len();
        let x = DMatrix::from_fn(k, k, |i, j| {
            let (p, q) = (a[i], a[j]);
            0.5 * (f64::from(cov[p * c + q]) + f64::from(cov[q * c + p]))
        });
        let s = &self.sqrt_cov;
        let m = s * x * s;
        let eig = SymmetricEigen::new(m);
        let top = eig.eigenvalues.max().max(1e-30);
        let value: f64 = eig.eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum();
        let inv_sqrt = DVector::from_iterator(
            k,
            eig.eigenvalues
                .iter()
                .map(|l| 1.0 / if *l < ZERO * top { FLOOR * top } else { *l }.sqrt()),
        );
        let v = &eig.eigenvectors;
        let m_inv_sqrt = v * DMatrix::from_diagonal(&inv_sqrt) * v.transpose();
        let block = (s * m_inv_sqrt * s) * 0.5;
        let mut grad = DMatrix::zeros(c, c);
        for (i, &p) in a.iter().enumerate() {
            for (j, &q) in a.iter().enumerate() {
                grad[(p, q)] = block[(i, j)];
            }
        }
        (value, grad)
    }
}

/// A symmetric matrix to the power `p` through its eigendecomposition (negative
/// eigenvalues, from rounding, taken as 0).
fn sym_power(a: &DMatrix<f64>, p: f64) -> DMatrix<f64> {
    let sym = (a + a.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let d = DVector::from_iterator(
        a.nrows(),
        eig.eigenvalues.iter().map(|l| l.max(0.0).powf(p)),
    );
    let v = &eig.eigenvectors;
    v * DMatrix::from_diagonal(&d) * v.transpose()
}

/// Mean and second moment E[ffᵀ] of a `[1, C, H, W]` activation, in f64.
pub(crate) fn feature_moments(f: Tensor<4>) -> Result<(Vec<f64>, DMatrix<f64>)> {
    let [_, c, h, w] = f.dims();
    let f = f.reshape([c, h * w]);
    let mean = values(f.clone().mean_dim(1), "a style feature mean")?;
    let second = values(
        f.clone().matmul(f.transpose()).div_scalar((h * w) as f32),
        "a style feature second moment",
    )?;
    Ok((
        mean.iter().map(|v| f64::from(*v)).collect(),
        DMatrix::from_fn(c, c, |i, j| f64::from(second[i * c + j])),
    ))
}

/// The W2 style term of one layer ([`crate::objective::w2`]): |μx − μs|² + tr Σx + tr Σs −
/// 2 tr (Σs^½ Σx Σs^½)^½, the last term entering the graph as ⟨Σx, G⟩ with its gradient G
/// computed outside, plus a constant that makes the value exact. With a region, the
/// statistics are those of the positions inside it (`sqrt` is the mask's square root).
pub(crate) fn w2_loss(
    f: Tensor<4>,
    target: &W2Target,
    target_mean: Tensor<2>,
    region: Option<&(Tensor<2>, f32)>,
    device: &Device,
) -> Result<Tensor<1>> {
    let [_, c, h, w] = f.dims();
    let f = f.reshape([c, h * w]);
    let (mean, centred, area) = match region {
        Some((sqrt, area)) => {
            let mean = f
                .clone()
                .mul(sqrt.clone().square())
                .sum_dim(1)
                .div_scalar(*area);
            (mean.clone(), f.sub(mean).mul(sqrt.clone()), *area)
        }
        None => {
            let mean = f.clone().mean_dim(1);
            (mean.clone(), f.sub(mean), (h * w) as f32)
        }
    };
    let cov = centred
        .clone()
        .matmul(centred.clone().transpose())
        .div_scalar(area);
    let trace = centred.square().sum().div_scalar(area);
    let cov_values = values(cov.clone(), "a feature covariance")?;
    let mean_values = values(mean.clone(), "a feature mean")?;
    let (root, grad) = target.cross_term(&cov_values);
    // The value, in f64 from the downloaded statistics: its terms are large and nearly
    // cancel, so summing them on the device in f32 would lose digits.
    let mean_term: f64 = mean_values
        .iter()
        .zip(&target.mean)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum();
    let trace_x: f64 = (0..c).map(|i| f64::from(cov_values[i * c + i])).sum();
    let value = mean_term + trace_x + target.trace_cov() - 2.0 * root;
    // The gradient: |μx − μs|² + tr Σx − 2⟨Σx, G⟩ has the W2 term's gradient (G is that
    // of the trace root); subtracting its own detached value leaves exactly 0, to which
    // the value is added.
    let grad: Vec<f32> = (0..c * c).map(|k| grad[(k / c, k % c)] as f32).collect();
    let grad = Tensor::<2>::from_data(TensorData::new(grad, [c, c]), device).autodiff();
    let surrogate = mean
        .sub(target_mean)
        .square()
        .sum()
        .add(trace)
        .sub(cov.mul(grad).sum().mul_scalar(2.0));
    Ok(surrogate
        .clone()
        .sub(surrogate.detach())
        .add_scalar(value as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference (CPU, f64): mean and second moment E[ffᵀ] of features given as `[C, N]` (row-major, one row per
    /// channel), each position weighted by `weights` (`N` values summing to `area`; `None`: 1).
    fn moments(
        features: &[f32],
        channels: usize,
        weights: Option<&[f32]>,
    ) -> (Vec<f64>, DMatrix<f64>) {
        let n = features.len() / channels.max(1);
        let w: Vec<f64> = match weights {
            Some(w) => w.iter().map(|v| f64::from(*v)).collect(),
            None => vec![1.0; n],
        };
        let area: f64 = w.iter().sum::<f64>().max(1e-12);
        let sqrt_w: Vec<f64> = w.iter().map(|v| v.sqrt()).collect();
        let f = DMatrix::from_fn(channels, n, |c, i| {
            f64::from(features[c * n + i]) * sqrt_w[i]
        });
        let mean = (0..channels)
            .map(|c| (0..n).map(|i| f[(c, i)] * sqrt_w[i]).sum::<f64>() / area)
            .collect();
        let second = (&f * f.transpose()) / area;
        (mean, second)
    }

    fn features(c: usize, n: usize, seed: u64) -> Vec<f32> {
        (0..c * n)
            .map(|i| {
                let h = (i as u64 + seed).wrapping_mul(6364136223846793005) >> 33;
                (h % 1000) as f32 / 500.0 + (i / n) as f32 * 0.1
            })
            .collect()
    }

    fn w2(x: &[f32], target: &W2Target, c: usize) -> f64 {
        let (m, s) = moments(x, c, None);
        let mean = DVector::from_column_slice(&m);
        let cov = &s - &mean * mean.transpose();
        let cov32: Vec<f32> = (0..c * c).map(|k| cov[(k / c, k % c)] as f32).collect();
        let d: f64 = m
            .iter()
            .zip(&target.mean)
            .map(|(a, b)| (a - f64::from(*b)).powi(2))
            .sum();
        d + cov.trace() + target.trace_cov() - 2.0 * target.cross_term(&cov32).0
    }

    #[test]
    fn distance_to_itself_is_zero_and_to_a_shift_is_the_shift() {
        let (c, n) = (4, 50);
        let f = features(c, n, 1);
        let (m, s) = moments(&f, c, None);
        let t = W2Target::from_blend(&[(1.0, m, s)]);
        assert!(w2(&f, &t, c).abs() < 1e-4, "{}", w2(&f, &t, c));
        // Shifting every feature by 0.5 moves the mean only: W2² = C · 0.25.
        let shifted: Vec<f32> = f.iter().map(|v| v + 0.5).collect();
        assert!((w2(&shifted, &t, c) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn cross_term_gradient_matches_finite_differences() {
        let (c, n) = (3, 40);
        let (m, s) = moments(&features(c, n, 2), c, None);
        let t = W2Target::from_blend(&[(1.0, m, s)]);
        let (m2, s2) = moments(&features(c, n, 9), c, None);
        let mean = DVector::from_column_slice(&m2);
        let cov = &s2 - &mean * mean.transpose();
        let at = |d: &DMatrix<f64>| {
            let v: Vec<f32> = (0..c * c).map(|k| d[(k / c, k % c)] as f32).collect();
            t.cross_term(&v)
        };
        let (_, grad) = at(&cov);
        let h = 1e-3;
        for (i, j) in [(0, 0), (0, 1), (2, 1)] {
            // A symmetric perturbation of entries (i, j) and (j, i).
            let mut e = DMatrix::zeros(c, c);
            e[(i, j)] += h;
            if i != j {
                e[(j, i)] += h;
            }
            let numeric = (at(&(&cov + &e)).0 - at(&(&cov - &e)).0) / (2.0 * h);
            let analytic = grad[(i, j)] * if i == j { 1.0 } else { 2.0 };
            assert!(
                (numeric - analytic).abs() < 2e-3 * analytic.abs().max(1.0),
                "({i},{j}): {numeric} vs {analytic}"
            );
        }
    }

    #[test]
    fn channels_the_style_never_uses_are_handled_exactly() {
        // Channel 1 is dead in the style (all zero), alive in the image; the result must be
        // finite and equal the W2 computed with that channel's variance counted directly.
        let (c, n) = (3, 30);
        let mut f = features(c, n, 4);
        f[n..2 * n].iter_mut().for_each(|v| *v = 0.0);
        let (m, s) = moments(&f, c, None);
        let t = W2Target::from_blend(&[(1.0, m, s)]);
        let x = features(c, n, 5);
        let value = w2(&x, &t, c);
        assert!(value.is_finite());
        let (m2, s2) = moments(&x, c, None);
        let mean = DVector::from_column_slice(&m2);
        let cov = &s2 - &mean * mean.transpose();
        let cov32: Vec<f32> = (0..c * c).map(|k| cov[(k / c, k % c)] as f32).collect();
        let (_, grad) = t.cross_term(&cov32);
        assert!(grad.iter().all(|g| g.is_finite()));
        assert_eq!(grad[(1, 0)], 0.0);
        assert_eq!(grad[(1, 1)], 0.0);
    }

    #[test]
    fn a_region_weighted_moment_is_that_regions_moment() {
        let (c, n) = (2, 10);
        let f = features(c, n, 3);
        let w: Vec<f32> = (0..n).map(|i| if i < 4 { 1.0 } else { 0.0 }).collect();
        let (m, s) = moments(&f, c, Some(&w));
        let part: Vec<f32> = (0..c)
            .flat_map(|ch| f[ch * n..ch * n + 4].to_vec())
            .collect();
        let (m4, s4) = moments(&part, c, None);
        for k in 0..c {
            assert!((m[k] - m4[k]).abs() < 1e-9);
        }
        assert!((s - s4).abs().max() < 1e-9);
    }
}
