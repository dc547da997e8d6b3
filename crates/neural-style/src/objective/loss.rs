//! The losses of Gatys, Ecker & Bethge 2015: content (feature reconstruction), style (Gram
//! matrix matching) and total variation, in a scale-free normalised form (the default),
//! jcjohnson/neural-style's mean form, or the paper's exact form (eq. 1, 3-5).

use burn::prelude::*;

use crate::config::LossForm;

/// `F Fᵀ`: on the CPU by [`crate::model::fastconv::gram`] (the long dimension split among the
/// threads), elsewhere by the backend's matrix product.
pub(crate) fn outer(f: Tensor<2>) -> Tensor<2> {
    if f.device() == crate::model::device::cpu() {
        crate::model::fastconv::gram(f)
    } else {
        f.clone().matmul(f.transpose())
    }
}

/// The Gram matrix of a `[1, C, H, W]` activation: `[C, C]`, divided by `C·H·W` in the mean
/// form and not at all in the paper's.
pub fn gram(features: Tensor<4>, form: LossForm) -> Tensor<2> {
    let [_, c, h, w] = features.dims();
    let g = outer(features.reshape([c, h * w]));
    match form {
        LossForm::Mean | LossForm::Normalized => g.div_scalar((c * h * w) as f32),
        LossForm::Paper => g,
    }
}

/// The Gram matrix of the part of an activation inside a region (Gatys et al. 2017, eq. 6):
/// the features at each position weighted by `sqrt_mask` (`[1, H·W]`, the square root of
/// the mask at this layer's resolution, so the products carry the mask once), divided by
/// `C·area` in the mean form, `area` being the mask's sum. With a mask of ones this is
/// [`gram`].
pub fn masked_gram(
    features: Tensor<4>,
    sqrt_mask: Tensor<2>,
    area: f32,
    form: LossForm,
) -> Tensor<2> {
    let [_, c, h, w] = features.dims();
    let g = outer(features.reshape([c, h * w]).mul(sqrt_mask));
    match form {
        LossForm::Mean | LossForm::Normalized => g.div_scalar(c as f32 * area),
        LossForm::Paper => g,
    }
}

/// The sum of every element of `t`, added in an order fixed by its shape: each row of the
/// last dimension in order (flex's row kernel, one thread), then the row sums along the
/// dimension before, and so on. burn-flex's own `sum` (and `mean`) splits a tensor of 4M
/// floats or more among rayon's threads as they steal work, so its additions, and the last
/// bits of a loss such as the content term at relu2_2 of a 512 px image, changed with the
/// thread schedule. They reach the path through the normalised form's target energy (a
/// factor on every gradient) and L-BFGS's comparisons of losses (the best image, which
/// also starts the next size, and when to stop or recover), so the same run, seed and
/// machine ended at another picture.
pub fn sum_in_order<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let dims = t.dims();
    let n: usize = dims.iter().product();
    if n == 0 {
        return t.sum();
    }
    let mut rows: Tensor<2> = t.reshape([n / dims[D - 1], dims[D - 1]]);
    for d in (0..D - 1).rev() {
        let [r, _] = rows.dims();
        rows = rows.sum_dim(1).reshape([r / dims[d], dims[d]]);
    }
    rows.sum_dim(1).reshape([1])
}

/// The mean of every element of `t`, in [`sum_in_order`]'s fixed order.
pub fn mean_in_order<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n: usize = t.dims().iter().product();
    sum_in_order(t).div_scalar(n as f32)
}

/// Content loss between an activation and its target; `mask` (`[1, 1, H, W]`) weights each
/// position.
pub fn content_loss(
    features: Tensor<4>,
    target: Tensor<4>,
    form: LossForm,
    mask: Option<&Tensor<4>>,
) -> Tensor<1> {
    let mut d = features.sub(target).square();
    if let Some(m) = mask {
        d = d.mul(m.clone());
    }
    match form {
        LossForm::Mean | LossForm::Normalized => mean_in_order(d),
        LossForm::Paper => sum_in_order(d).mul_scalar(0.5),
    }
}

/// Style loss of one layer: Gram matrix `g` of an activation with `channels` channels and
/// `positions` = H·W positions against the target Gram matrix.
pub fn style_loss(
    g: Tensor<2>,
    target: Tensor<2>,
    form: LossForm,
    channels: usize,
    positions: usize,
) -> Tensor<1> {
    let d = g.sub(target).square();
    match form {
        LossForm::Mean | LossForm::Normalized => mean_in_order(d),
        LossForm::Paper => {
            let (n, m) = (channels as f64, positions as f64);
            sum_in_order(d).div_scalar((4.0 * n * n * m * m) as f32)
        }
    }
}

/// The factor that makes a mean-form content or style term free of its target's size: 1 / mean(target²)
/// for [`LossForm::Normalized`], 1 otherwise.
pub fn target_normaliser<const D: usize>(target: &Tensor<D>, form: LossForm) -> f32 {
    match form {
        LossForm::Normalized => {
            let energy = mean_in_order(target.clone().square()).into_scalar::<f32>();
            1.0 / energy.max(1e-12)
        }
        LossForm::Mean | LossForm::Paper => 1.0,
    }
}

/// Total variation of a `[1, 3, H, W]` image: Σ|x(i+1,j) - x(i,j)| + Σ|x(i,j+1) - x(i,j)|.
pub fn tv_loss(image: Tensor<4>) -> Tensor<1> {
    let [_, _, h, w] = image.dims();
    let dy = image
        .clone()
        .narrow(2, 1, h - 1)
        .sub(image.clone().narrow(2, 0, h - 1));
    let dx = image
        .clone()
        .narrow(3, 1, w - 1)
        .sub(image.narrow(3, 0, w - 1));
    sum_in_order(dy.abs()).add(sum_in_order(dx.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(seed: u64, device: &Device) -> Tensor<4> {
        let data: Vec<f32> = (0..2 * 3 * 4)
            .map(|i| ((i as u64 * 2654435761 + seed) % 97) as f32 / 97.0)
            .collect();
        Tensor::<4>::from_data(TensorData::new(data, [1, 2, 3, 4]), device)
    }

    #[test]
    fn identical_inputs_give_zero_loss() {
        let device = crate::model::device::default_device();
        for form in [LossForm::Mean, LossForm::Paper] {
            let f = features(1, &device);
            let c = content_loss(f.clone(), f.clone(), form, None).into_scalar::<f32>();
            let g = gram(f.clone(), form);
            let s = style_loss(g.clone(), g, form, 2, 12).into_scalar::<f32>();
            assert_eq!((c, s), (0.0, 0.0));
        }
    }

    #[test]
    fn gram_matches_a_hand_computation() {
        let device = crate::model::device::default_device();
        // Two channels at two positions: F = [[1, 2], [3, 4]] -> F Fᵀ = [[5, 11], [11, 25]].
        let f = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 2, 1, 2]),
            &device,
        );
        let paper = gram(f.clone(), LossForm::Paper)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(paper, vec![5.0, 11.0, 11.0, 25.0]);
        let mean = gram(f, LossForm::Mean)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(mean, vec![1.25, 2.75, 2.75, 6.25]);
    }

    #[test]
    fn gradient_reaches_the_image_and_not_the_weights() {
        let device = crate::model::device::default_device();
        let x = features(3, &device).autodiff().require_grad();
        let w = Tensor::<4>::from_data(
            TensorData::new(vec![0.5f32; 2 * 2 * 3 * 3], [2, 2, 3, 3]),
            &device,
        )
        .autodiff();
        let y = burn::tensor::module::conv2d(
            x.clone(),
            w.clone(),
            None,
            burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let target = gram(features(5, &device), LossForm::Mean);
        let loss = style_loss(gram(y, LossForm::Mean), target, LossForm::Mean, 2, 12);
        let grads = loss.backward();
        let gx = x.grad(&grads).expect("image gradient");
        assert!(gx.abs().sum().into_scalar::<f32>() > 0.0);
        assert!(
            w.grad(&grads).is_none(),
            "the network's weights must not get gradients"
        );
    }

    #[test]
    fn masked_gram_of_ones_is_the_gram_and_of_a_half_is_that_halfs_gram() {
        let device = crate::model::device::default_device();
        let f = features(7, &device);
        let ones = Tensor::<2>::ones([1, 12], &device);
        let a = gram(f.clone(), LossForm::Mean)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let b = masked_gram(f.clone(), ones, 12.0, LossForm::Mean)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(a, b);
        // The first two columns (of four) in each of the three rows.
        let left: Vec<f32> = (0..12).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
        let m = Tensor::<2>::from_data(TensorData::new(left, [1, 12]), &device);
        let half = f.clone().narrow(3, 0, 2);
        let expected = gram(half, LossForm::Mean)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let got = masked_gram(f, m, 6.0, LossForm::Mean)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for (e, g) in expected.iter().zip(&got) {
            assert!((e - g).abs() < 1e-6, "{expected:?} vs {got:?}");
        }
    }

    #[test]
    fn content_mask_weights_positions() {
        let device = crate::model::device::default_device();
        let (f, t) = (features(1, &device), features(2, &device));
        let full = content_loss(f.clone(), t.clone(), LossForm::Mean, None).into_scalar::<f32>();
        let ones = Tensor::<4>::ones([1, 1, 3, 4], &device);
        let same =
            content_loss(f.clone(), t.clone(), LossForm::Mean, Some(&ones)).into_scalar::<f32>();
        assert_eq!(full, same);
        let zeros = Tensor::<4>::zeros([1, 1, 3, 4], &device);
        let none = content_loss(f, t, LossForm::Mean, Some(&zeros)).into_scalar::<f32>();
        assert!(full > 0.0 && none == 0.0);
    }

    #[test]
    fn tv_counts_vertical_and_horizontal_steps() {
        let device = crate::model::device::default_device();
        // A 2x2 image per channel: [[0, 1], [3, 5]] -> |1| + |2| (rows) + |3| + |4| (columns) = 10.
        let data: Vec<f32> = [0.0, 1.0, 3.0, 5.0].repeat(3);
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 3, 2, 2]), &device);
        assert_eq!(tv_loss(x).into_scalar::<f32>(), 30.0);
    }

    /// 4.2M floats: past the size at which flex's `sum` splits the work among threads.
    fn large(device: &Device) -> (Tensor<4>, f64) {
        let data: Vec<f32> = (0..64u64 * 256 * 256)
            .map(|i| ((i * 2654435761) % 10007) as f32 / 10007.0)
            .collect();
        let exact = data.iter().map(|v| f64::from(*v)).sum();
        let t = Tensor::<4>::from_data(TensorData::new(data, [1, 64, 256, 256]), device);
        (t, exact)
    }

    #[test]
    fn sum_in_order_is_the_sum_with_the_same_bits_on_any_number_of_threads() {
        let device = crate::model::device::default_device();
        let (t, exact) = large(&device);
        let sums: Vec<f32> = (1..=4)
            .map(|threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| sum_in_order(t.clone()).into_scalar::<f32>())
            })
            .collect();
        assert!(
            (f64::from(sums[0]) - exact).abs() <= 1e-6 * exact,
            "{} vs {exact}",
            sums[0]
        );
        assert!(
            sums.iter().all(|s| s.to_bits() == sums[0].to_bits()),
            "{sums:?}"
        );
    }

    #[test]
    fn sum_in_order_passes_a_gradient_of_ones() {
        let device = crate::model::device::default_device();
        let x = features(4, &device).autodiff().require_grad();
        let grads = sum_in_order(x.clone()).mul_scalar(2.0).backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(g, vec![2.0; 24]);
    }
}
