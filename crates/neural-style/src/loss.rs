//! The losses of Gatys, Ecker & Bethge 2015: content (feature reconstruction), style (Gram
//! matrix matching) and total variation, in jcjohnson/neural-style's mean form or the
//! paper's exact form (eq. 1, 3-5).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// How the loss terms are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossForm {
    /// jcjohnson/neural-style: content = mean((F-P)²); G = FFᵀ/(C·H·W); style = mean((G-A)²).
    #[default]
    Mean,
    /// The paper: content = ½Σ(F-P)²; G = FFᵀ; style E_l = Σ(G-A)²/(4N²M²).
    Paper,
}

/// The Gram matrix of a `[1, C, H, W]` activation: `[C, C]`, divided by `C·H·W` in the mean
/// form and not at all in the paper's.
pub fn gram(features: Tensor<4>, form: LossForm) -> Tensor<2> {
    let [_, c, h, w] = features.dims();
    let f = features.reshape([c, h * w]);
    let g = f.clone().matmul(f.transpose());
    match form {
        LossForm::Mean => g.div_scalar((c * h * w) as f32),
        LossForm::Paper => g,
    }
}

/// Content loss between an activation and its target.
pub fn content_loss(features: Tensor<4>, target: Tensor<4>, form: LossForm) -> Tensor<1> {
    let d = features.sub(target);
    match form {
        LossForm::Mean => d.square().mean(),
        LossForm::Paper => d.square().sum().mul_scalar(0.5),
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
        LossForm::Mean => d.mean(),
        LossForm::Paper => {
            let (n, m) = (channels as f64, positions as f64);
            d.sum().div_scalar((4.0 * n * n * m * m) as f32)
        }
    }
}

/// Total variation of a `[1, 3, H, W]` image: Σ|x(i+1,j) - x(i,j)| + Σ|x(i,j+1) - x(i,j)|.
pub fn tv_loss(image: Tensor<4>) -> Tensor<1> {
    let [_, c, h, w] = image.dims();
    let dy = image
        .clone()
        .narrow(2, 1, h - 1)
        .sub(image.clone().narrow(2, 0, h - 1));
    let dx = image
        .clone()
        .narrow(3, 1, w - 1)
        .sub(image.narrow(3, 0, w - 1));
    let _ = c;
    dy.abs().sum().add(dx.abs().sum())
}
