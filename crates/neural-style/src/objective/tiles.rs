//! The passes over tiles that build exact whole-image statistics (Galerne et al. 2024,
//! "Scaling Painting Style Transfer"): each tile's core activations, their sums `Σ f` and
//! products `Σ f fᵀ` over the cores, and from those the Gram matrices and the W2 moments of
//! an image larger than one evaluation can hold.

use burn::prelude::*;
use nalgebra::DMatrix;

use crate::config::LossForm;
use crate::error::Result;
use crate::model::tensor::values;
use crate::model::vgg::{Layer, Vgg};
use crate::objective::loss;
use crate::objective::tiling::{Rect, Tiling};

/// A `[C, H, W]` planar image's pixels inside `r`, as a `[1, C, h, w]` tensor.
pub(crate) fn crop_input(x: &[f32], (w, h): (usize, usize), r: Rect, device: &Device) -> Tensor<4> {
    let plane = w * h;
    let mut data = Vec::with_capacity(3 * r.width() * r.height());
    for c in 0..3 {
        for y in r.y0..r.y1 {
            let row = c * plane + y * w;
            data.extend_from_slice(&x[row + r.x0..row + r.x1]);
        }
    }
    Tensor::<4>::from_data(TensorData::new(data, [1, 3, r.height(), r.width()]), device).autodiff()
}

/// The positions `r` of a `[1, C, H, W]` activation.
pub(crate) fn crop(f: Tensor<4>, r: Rect) -> Tensor<4> {
    f.narrow(2, r.y0, r.height()).narrow(3, r.x0, r.width())
}

/// Whether `tiling` cuts a `width` x `height` image into more than one tile.
pub(crate) fn cuts(tiling: Option<&Tiling>, width: u32, height: u32) -> Option<&Tiling> {
    tiling.filter(|t| t.core < width as usize || t.core < height as usize)
}

/// Runs the network forward on each tile of `x` and gives `visit` every layer's core
/// activations: the layer's index in `layers`, the core in the whole layer's positions,
/// the layer's size, and the core's activations (detached).
fn for_each_core(
    net: &Vgg,
    x: &[f32],
    (width, height): (usize, usize),
    layers: &[Layer],
    tiling: &Tiling,
    mut visit: impl FnMut(usize, Rect, (usize, usize), Tensor<4>) -> Result<()>,
) -> Result<()> {
    let device = net.device().clone();
    for tile in tiling.tiles(width, height) {
        let feats = net.features(crop_input(x, (width, height), tile.region, &device), layers);
        for (i, (layer, f)) in layers.iter().zip(feats).enumerate() {
            let s = 1usize << layer.poolings_before();
            let size = (width / s, height / s);
            let (c, r) = tile.core_at(s, size);
            if c.width() > 0 && c.height() > 0 {
                visit(i, c, size, crop(f.detach(), r))?;
            }
        }
    }
    Ok(())
}

/// The activations of `layers` of the planar network input `x`, computed tile by tile
/// (forward only) and assembled: the whole image's, with the memory of one tile's pass.
pub(crate) fn features_tiled(
    net: &Vgg,
    x: &[f32],
    size: (usize, usize),
    layers: &[Layer],
    tiling: &Tiling,
) -> Result<Vec<Tensor<4>>> {
    let mut whole: Vec<Option<(Vec<f32>, [usize; 4])>> = vec![None; layers.len()];
    for_each_core(net, x, size, layers, tiling, |i, c, (w, h), f| {
        let [_, ch, _, _] = f.dims();
        let part = values(f, "a tile's activations")?;
        let (data, _) = whole[i].get_or_insert_with(|| (vec![0.0; ch * h * w], [1, ch, h, w]));
        for k in 0..ch {
            for (row, y) in (c.y0..c.y1).enumerate() {
                let from = (k * c.height() + row) * c.width();
                let to = (k * h + y) * w + c.x0;
                data[to..to + c.width()].copy_from_slice(&part[from..from + c.width()]);
            }
        }
        Ok(())
    })?;
    let device = net.device();
    Ok(whole
        .into_iter()
        .map(|w| {
            let (data, shape) = w.unwrap_or((Vec::new(), [1, 0, 0, 0]));
            Tensor::<4>::from_data(TensorData::new(data, shape), device).autodiff()
        })
        .collect())
}

/// Per layer of `layers`, the sums over the whole image of the activations `Σ f` (`[C, 1]`)
/// and of their products `Σ f fᵀ` (`[C, C]`), and the number of positions: computed tile
/// by tile (forward only), with the memory of one tile's pass.
fn layer_sums(
    net: &Vgg,
    x: &[f32],
    (width, height): (usize, usize),
    layers: &[Layer],
    tiling: &Tiling,
) -> Result<Vec<(Tensor<2>, Tensor<2>, usize)>> {
    let device = net.device().clone();
    let mut sums: Vec<Option<(Tensor<2>, Tensor<2>)>> = vec![None; layers.len()];
    for_each_core(net, x, (width, height), layers, tiling, |i, _, _, f| {
        let [_, ch, h, w] = f.dims();
        let m = f.reshape([ch, h * w]);
        let (first, second) = (m.clone().sum_dim(1), loss::outer(m).detach());
        sums[i] = Some(match sums[i].take() {
            Some((a, b)) => (a.add(first), b.add(second)),
            None => (first, second),
        });
        Ok(())
    })?;
    Ok(layers
        .iter()
        .zip(sums)
        .map(|(layer, sum)| {
            let s = 1usize << layer.poolings_before();
            let positions = (width / s) * (height / s);
            let (first, second) = sum.unwrap_or_else(|| {
                let zero = |d: [usize; 2]| Tensor::<2>::zeros(d, &device).autodiff();
                (zero([0, 1]), zero([0, 0]))
            });
            (first, second, positions)
        })
        .collect())
}

/// The Gram matrices ([`loss::gram`]) of `layers` of the planar network input `x`, from
/// [`layer_sums`].
pub(crate) fn grams_tiled(
    net: &Vgg,
    x: &[f32],
    size: (usize, usize),
    layers: &[Layer],
    tiling: &Tiling,
    form: LossForm,
) -> Result<Vec<Tensor<2>>> {
    Ok(layer_sums(net, x, size, layers, tiling)?
        .into_iter()
        .map(|(_, second, positions)| {
            let [ch, _] = second.dims();
            match form {
                LossForm::Mean | LossForm::Normalized => second.div_scalar((ch * positions) as f32),
                LossForm::Paper => second,
            }
        })
        .collect())
}

/// The mean and second moment ([`crate::objective::w2::feature_moments`]) of `layers` of the planar
/// network input `x`, from [`layer_sums`].
pub(crate) fn moments_tiled(
    net: &Vgg,
    x: &[f32],
    size: (usize, usize),
    layers: &[Layer],
    tiling: &Tiling,
) -> Result<Vec<(Vec<f64>, DMatrix<f64>)>> {
    layer_sums(net, x, size, layers, tiling)?
        .into_iter()
        .map(|(first, second, positions)| {
            let n = positions.max(1) as f64;
            let [ch, _] = second.dims();
            let first = values(first, "a style feature sum")?;
            let second = values(second, "a style feature product sum")?;
            Ok((
                first.iter().map(|v| f64::from(*v) / n).collect(),
                DMatrix::from_fn(ch, ch, |i, j| f64::from(second[i * ch + j]) / n),
            ))
        })
        .collect()
}
