//! The objective evaluated tile by tile with exact global statistics (Galerne et al. 2024):
//! pass 1 runs the network forward on each tile and sums, over the cores, the Gram products
//! `F Fᵀ` of every style layer; the whole-image Gram matrices give the style loss and its
//! derivative `D = ∂L/∂G`. Pass 2 runs each tile forward and backward on the surrogate
//! `Σ ⟨D, F_core F_coreᵀ⟩ / norm` plus the content terms of its core, whose image gradient
//! is exactly that tile's share of the whole-image gradient. Total variation and the
//! temporal term read pixels only and are taken on the whole image.

use std::ops::ControlFlow;

use burn::prelude::*;

use crate::config::LossForm;
use crate::error::Result;
use crate::model::tensor::values;
use crate::objective::loss;
use crate::objective::parts::LossParts;
use crate::objective::terms::{Objective, StyleTarget};
use crate::objective::tiles::{crop, crop_input};
use crate::objective::tiling::{Rect, Tile, Tiling};

/// How the style loss changes with a style term's core sums, found in pass 1: the
/// surrogate of pass 2 is `⟨first, Σ f⟩ + ⟨second, Σ f fᵀ⟩` over a tile's core.
struct Slope {
    /// Multiplies `Σ f` (`[C, 1]`; W2 only).
    first: Option<Tensor<2>>,
    /// Multiplies `Σ f fᵀ` (`[C, C]`).
    second: Tensor<2>,
}

impl Objective<'_> {
    /// [`Objective::evaluate`] computed tile by tile as `tiling` cuts the image: the same
    /// loss and gradient (up to rounding) with the memory of one tile's evaluation.
    pub fn evaluate_tiled(&self, x: &[f32], tiling: &Tiling) -> Result<(LossParts, Vec<f32>)> {
        let evaluated =
            self.evaluate_tiled_observed(x, tiling, &mut |_, _| ControlFlow::Continue(()));
        Ok(evaluated?.expect("never stopped"))
    }

    /// [`Objective::evaluate_tiled`] calling `on_tile(done, of)` after each tile pass (see
    /// [`crate::Event::Tile`]); `None` when it returns `Break`.
    pub fn evaluate_tiled_observed(
        &self,
        x: &[f32],
        tiling: &Tiling,
        on_tile: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Option<(LossParts, Vec<f32>)>> {
        let pass = Passes {
            objective: self,
            x,
            tiles: tiling.tiles(self.width, self.height),
            device: self.net.device().clone(),
        };
        let passes = if self.style.is_empty() { 1 } else { 2 } * pass.tiles.len();
        let mut done = 0;
        let mut tile_done = || {
            done += 1;
            on_tile(done, passes)
        };
        // Pass 1: the whole image's sums, and from them the style loss and its slopes.
        let Some(sums) = pass.style_sums(&mut tile_done) else {
            return Ok(None);
        };
        let (style_value, slopes) = pass.style_slopes(sums)?;
        // Pass 2: each tile's share of the gradient, and the content terms of its core.
        let mut grad = vec![0.0f32; x.len()];
        let mut content_value = 0.0f32;
        for tile in &pass.tiles {
            let g = pass.tile_gradient(tile, &slopes, &mut content_value);
            if tile_done().is_break() {
                return Ok(None);
            }
            if let Some(g) = g {
                pass.add_tile(&mut grad, tile, &values(g, "a tile's gradient")?);
            }
        }
        // Pixel terms on the whole image.
        let (tv_value, temporal_value) = pass.pixel_terms(&mut grad)?;
        let loss = LossParts {
            content: content_value,
            style: style_value,
            tv: tv_value,
            temporal: temporal_value,
            total: content_value + style_value + tv_value + temporal_value,
        };
        Ok(Some((loss, grad)))
    }
}

/// The core sums of one style term: `Σ w f` (`[C, 1]`, W2 only) and `Σ w f fᵀ`.
type Sums = (Option<Tensor<2>>, Option<Tensor<2>>);

/// One tiled evaluation: the objective, the point, its tiles, and what each pass needs.
struct Passes<'o, 'a> {
    objective: &'o Objective<'a>,
    x: &'o [f32],
    tiles: Vec<Tile>,
    device: Device,
}

impl Passes<'_, '_> {
    /// Objective layer `i`'s pooling factor.
    fn stride(&self, i: usize) -> usize {
        1usize << self.objective.layers[i].poolings_before()
    }

    /// Objective layer `i`'s size.
    fn dims(&self, i: usize) -> (usize, usize) {
        let o = self.objective;
        (o.width / self.stride(i), o.height / self.stride(i))
    }

    /// A tile's core at objective layer `i`: in the layer's and the tile's positions.
    fn core_in_tile(&self, i: usize, tile: &Tile) -> (Rect, Rect) {
        tile.core_at(self.stride(i), self.dims(i))
    }

    /// The point's pixels in a tile's region, as the network's input.
    fn tile_input(&self, tile: &Tile) -> Tensor<4> {
        let o = self.objective;
        crop_input(self.x, (o.width, o.height), tile.region, &self.device)
    }

    /// The core sums of style term `k` over `c` (whole-layer positions) from its cropped
    /// features `f`: `Σ w f` (`[C, 1]`, W2 only) and `Σ w f fᵀ`, `w` being the region's
    /// weight at each position (1 without a region).
    fn core_sums(&self, k: usize, f: Tensor<4>, c: Rect) -> (Option<Tensor<2>>, Tensor<2>) {
        let t = &self.objective.style[k];
        let [_, ch, h, w] = f.dims();
        let m = f.reshape([ch, h * w]);
        // The region weights, cropped to `c` as `[1, h·w]`.
        let sqrt = t.mask.as_ref().map(|(sqrt, _)| {
            let (w, h) = self.dims(t.index);
            crop(sqrt.clone().reshape([1, 1, h, w]), c).reshape([1, c.width() * c.height()])
        });
        let first = matches!(t.target, StyleTarget::W2(..)).then(|| match &sqrt {
            Some(r) => m.clone().mul(r.clone().square()).sum_dim(1),
            None => m.clone().sum_dim(1),
        });
        let second = loss::outer(match sqrt {
            Some(r) => m.mul(r),
            None => m,
        });
        (first, second)
    }

    /// Pass 1: every style term's sums over the whole image, tile by tile (`None` when
    /// `tile_done` says stop).
    fn style_sums(&self, tile_done: &mut dyn FnMut() -> ControlFlow<()>) -> Option<Vec<Sums>> {
        let o = self.objective;
        let add_to = |acc: Option<Tensor<2>>, t: Tensor<2>| match acc {
            Some(a) => a.add(t),
            None => t,
        };
        let mut sums: Vec<Sums> = vec![(None, None); o.style.len()];
        if o.style.is_empty() {
            return Some(sums);
        }
        for tile in &self.tiles {
            let feats = o.net.features(self.tile_input(tile), &o.layers);
            for (k, t) in o.style.iter().enumerate() {
                let (c, r) = self.core_in_tile(t.index, tile);
                if c.width() == 0 || c.height() == 0 {
                    continue;
                }
                let (first, second) = self.core_sums(k, crop(feats[t.index].clone(), r), c);
                let (f1, f2) = sums[k].clone();
                sums[k] = (
                    first.map(|f| add_to(f1, f.detach())),
                    Some(add_to(f2, second.detach())),
                );
            }
            if tile_done().is_break() {
                return None;
            }
        }
        Some(sums)
    }

    /// The style loss of the whole image from its sums, and each term's slope.
    fn style_slopes(&self, sums: Vec<Sums>) -> Result<(f32, Vec<Option<Slope>>)> {
        let o = self.objective;
        let mut style_value = 0.0f32;
        let mut slopes: Vec<Option<Slope>> = Vec::with_capacity(o.style.len());
        for (t, (first, second)) in o.style.iter().zip(sums) {
            let Some(second) = second else {
                slopes.push(None);
                continue;
            };
            let (w, h) = self.dims(t.index);
            let weight = t.weight * o.weights.style;
            let (value, slope) = match (&t.target, first) {
                (StyleTarget::Gram(target), _) => {
                    gram_slope(second, target, t.mask.as_ref(), (w, h), o.form, weight)?
                }
                (StyleTarget::W2(target, _), Some(first)) => {
                    let area = t.mask.as_ref().map_or((w * h) as f32, |(_, a)| *a);
                    w2_slope(first, second, target, area, weight)?
                }
                (StyleTarget::W2(..), None) => continue,
            };
            style_value += value;
            slopes.push(Some(slope));
        }
        Ok((style_value, slopes))
    }

    /// Pass 2 on one tile: the gradient of its share of the style surrogate and of the
    /// content terms of its core (`None` when it has no term); adds its content loss to
    /// `content_value`.
    fn tile_gradient(
        &self,
        tile: &Tile,
        slopes: &[Option<Slope>],
        content_value: &mut f32,
    ) -> Option<Tensor<4>> {
        let o = self.objective;
        let input = self.tile_input(tile).require_grad();
        let feats = o.net.features(input.clone(), &o.layers);
        let mut total: Option<Tensor<1>> = None;
        let mut add = |l: Tensor<1>| {
            total = Some(match total.take() {
                Some(acc) => acc.add(l),
                None => l,
            });
        };
        for (k, t) in o.style.iter().enumerate() {
            let Some(slope) = &slopes[k] else { continue };
            let (c, r) = self.core_in_tile(t.index, tile);
            if c.width() == 0 || c.height() == 0 {
                continue;
            }
            let (first, second) = self.core_sums(k, crop(feats[t.index].clone(), r), c);
            add(second.mul(slope.second.clone()).sum());
            if let (Some(f), Some(a)) = (first, &slope.first) {
                add(f.mul(a.clone()).sum());
            }
        }
        let mut content: Option<Tensor<1>> = None;
        for t in &o.content {
            let (c, r) = self.core_in_tile(t.index, tile);
            if c.width() == 0 || c.height() == 0 {
                continue;
            }
            let f = crop(feats[t.index].clone(), r);
            let target = crop(t.target.clone(), c);
            let mask = t.mask.as_ref().map(|m| crop(m.clone(), c));
            let (w, h) = self.dims(t.index);
            // The mean forms average over the whole layer, not the core.
            let share = match o.form {
                LossForm::Mean | LossForm::Normalized => {
                    (c.width() * c.height()) as f32 / (w * h) as f32
                }
                LossForm::Paper => 1.0,
            };
            let l = loss::content_loss(f, target, o.form, mask.as_ref())
                .mul_scalar(t.normaliser * share * o.weights.content);
            content = Some(match content {
                Some(acc) => acc.add(l),
                None => l,
            });
        }
        if let Some(c) = content {
            *content_value += c.clone().into_scalar::<f32>();
            add(c);
        }
        let grads = total.map(|t| t.backward());
        grads.and_then(|grads| input.grad(&grads))
    }

    /// Adds a tile's gradient `g` (planar over its region) into the image's `grad`.
    fn add_tile(&self, grad: &mut [f32], tile: &Tile, g: &[f32]) {
        let width = self.objective.width;
        let plane = width * self.objective.height;
        let r = tile.region;
        let tile_plane = r.width() * r.height();
        for ch in 0..3 {
            for (row, y) in (r.y0..r.y1).enumerate() {
                let from = ch * tile_plane + row * r.width();
                let to = ch * plane + y * width + r.x0;
                for (d, s) in grad[to..to + r.width()]
                    .iter_mut()
                    .zip(&g[from..from + r.width()])
                {
                    *d += s;
                }
            }
        }
    }

    /// Total variation and the temporal term on the whole image: their values, their
    /// gradient added into `grad`.
    fn pixel_terms(&self, grad: &mut [f32]) -> Result<(f32, f32)> {
        let o = self.objective;
        let (mut tv_value, mut temporal_value) = (0.0, 0.0);
        if o.weights.tv != 0.0 || o.temporal.is_some() {
            let image = Tensor::<4>::from_data(
                TensorData::new(self.x.to_vec(), [1, 3, o.height, o.width]),
                &self.device,
            )
            .autodiff()
            .require_grad();
            let (tv, temporal) = o.pixel_terms(&image);
            tv_value = tv.as_ref().map_or(0.0, |t| t.clone().into_scalar::<f32>());
            temporal_value = temporal
                .as_ref()
                .map_or(0.0, |t| t.clone().into_scalar::<f32>());
            if let Some(total) = [tv, temporal].into_iter().flatten().reduce(|a, b| a.add(b)) {
                let grads = total.backward();
                if let Some(g) = image.grad(&grads) {
                    for (d, s) in grad.iter_mut().zip(values(g, "the image gradient")?) {
                        *d += s;
                    }
                }
            }
        }
        Ok((tv_value, temporal_value))
    }
}

/// A Gram term's value and slope from `Σ w f fᵀ` over the whole layer (`size` positions, or
/// a region's): `D / norm`, `D` being `∂L/∂G` found by autodiff on the loss itself.
fn gram_slope(
    second: Tensor<2>,
    target: &Tensor<2>,
    region: Option<&(Tensor<2>, f32)>,
    (w, h): (usize, usize),
    form: LossForm,
    weight: f32,
) -> Result<(f32, Slope)> {
    let device = second.device();
    let [c, _] = second.dims();
    let (positions, norm) = match region {
        Some((_, area)) => (area.round() as usize, c as f32 * area),
        None => (w * h, (c * w * h) as f32),
    };
    let norm = match form {
        LossForm::Mean | LossForm::Normalized => norm,
        LossForm::Paper => 1.0,
    };
    let g = second.div_scalar(norm).detach().require_grad();
    let l = loss::style_loss(g.clone(), target.clone(), form, c, positions).mul_scalar(weight);
    let value = l.clone().into_scalar::<f32>();
    let grads = l.backward();
    let d = match g.grad(&grads) {
        Some(d) => values(d, "a Gram matrix's gradient")?,
        None => vec![0.0; c * c],
    };
    let d: Vec<f32> = d.iter().map(|v| v / norm).collect();
    let second = Tensor::<2>::from_data(TensorData::new(d, [c, c]), &device).autodiff();
    Ok((
        value,
        Slope {
            first: None,
            second,
        },
    ))
}

/// A W2 term's value and slope ([`crate::objective::w2`]) from `S₁ = Σ w f` and `S₂ = Σ w f fᵀ` over
/// the whole layer (`area` = `Σ w`): with `μ = S₁/A` and `Σ = S₂/A − μμᵀ`, the loss
/// `|μ − μs|² + tr Σ + tr Σs − 2 tr(Σs^½ Σ Σs^½)^½` has `∂L/∂Σ = I − 2G` (`G` from
/// [`W2Target::cross_term`]), so `∂L/∂S₂ = (I − 2G)/A` and
/// `∂L/∂S₁ = (2(μ − μs) − (B + Bᵀ)μ)/A` with `B = I − 2G`.
fn w2_slope(
    first: Tensor<2>,
    second: Tensor<2>,
    target: &crate::objective::w2::W2Target,
    area: f32,
    weight: f32,
) -> Result<(f32, Slope)> {
    let device = second.device();
    let [c, _] = second.dims();
    let a = f64::from(area.max(1e-12));
    let s1 = values(first, "a feature sum")?;
    let s2 = values(second, "a feature product sum")?;
    let mean: Vec<f64> = s1.iter().map(|v| f64::from(*v) / a).collect();
    let cov: Vec<f32> = (0..c * c)
        .map(|k| (f64::from(s2[k]) / a - mean[k / c] * mean[k % c]) as f32)
        .collect();
    let (root, g) = target.cross_term(&cov);
    let mean_term: f64 = mean
        .iter()
        .zip(&target.mean)
        .map(|(m, s)| (m - f64::from(*s)).powi(2))
        .sum();
    let trace: f64 = (0..c).map(|i| f64::from(cov[i * c + i])).sum();
    let value = (mean_term + trace + target.trace_cov() - 2.0 * root) * f64::from(weight);
    let b = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * g[(i, j)];
    let k = f64::from(weight) / a;
    let second: Vec<f32> = (0..c * c).map(|n| (b(n / c, n % c) * k) as f32).collect();
    let first: Vec<f32> = (0..c)
        .map(|i| {
            let bm: f64 = (0..c).map(|j| (b(i, j) + b(j, i)) * mean[j]).sum();
            ((2.0 * (mean[i] - f64::from(target.mean[i])) - bm) * k) as f32
        })
        .collect();
    Ok((
        value as f32,
        Slope {
            first: Some(Tensor::<2>::from_data(TensorData::new(first, [c, 1]), &device).autodiff()),
            second: Tensor::<2>::from_data(TensorData::new(second, [c, c]), &device).autodiff(),
        },
    ))
}
