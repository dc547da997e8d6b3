//! The objective of Gatys, Ecker & Bethge 2015 (eq. 1, 3-7) for one image size: content
//! terms (feature differences at the content layers), style terms (Gram-matrix differences,
//! or the W2 distance of [`crate::objective::w2`], optionally per region as in Gatys et al. 2017),
//! total variation and the temporal term of video frames (Ruder et al. 2016), with the
//! gradient of their weighted sum with respect to the image.

use burn::prelude::*;

use crate::config::LossForm;
use crate::config::{LossWeights, StyleLoss, TransferConfig};
use crate::error::{Error, Result};
use crate::model::tensor::values;
use crate::model::vgg::{Layer, Vgg};
use crate::objective::loss;
use crate::objective::mask::Mask;
use crate::objective::parts::{EvaluationTimes, LossParts};
use crate::objective::statistics::{StyleCache, StyleInput, StyleStats};
use crate::objective::tiles;
use crate::objective::w2::{W2Target, feature_moments, w2_loss};

/// One content layer's term.
pub(super) struct ContentTerm {
    /// Index of the activation among the objective's layers.
    pub(super) index: usize,
    pub(super) target: Tensor<4>,
    /// 1 / target energy in the normalised form, else 1.
    pub(super) normaliser: f32,
    /// Per-position weights at this layer's resolution, `[1, 1, H, W]`.
    pub(super) mask: Option<Tensor<4>>,
}

/// What a style layer's activations are compared with.
pub(super) enum StyleTarget {
    /// A Gram matrix.
    Gram(Tensor<2>),
    /// Mean and covariance, with the mean as a `[C, 1]` tensor.
    W2(Box<W2Target>, Tensor<2>),
}

/// One style layer's term (for one region when masked).
pub(super) struct StyleTerm {
    /// Index of the activation among the objective's layers.
    pub(super) index: usize,
    /// The target statistics.
    pub(super) target: StyleTarget,
    /// Layer weight × normalisation × region weight.
    pub(super) weight: f32,
    /// The region at this layer's resolution: the square root of the mask as `[1, H·W]`,
    /// and its area.
    pub(super) mask: Option<(Tensor<2>, f32)>,
}

/// The differentiable objective: losses against fixed targets for one image size.
pub struct Objective<'a> {
    pub(super) net: &'a Vgg,
    pub(super) layers: Vec<Layer>,
    pub(super) content: Vec<ContentTerm>,
    pub(super) style: Vec<StyleTerm>,
    /// Multiplies the TV sum (1 except in the normalised form).
    pub(super) tv_normaliser: f32,
    /// The temporal target, its per-position weights (`[1, 1, H, W]`) and the term's
    /// weight over the squared network-input pixel range.
    pub(super) temporal: Option<(Tensor<4>, Tensor<4>, f32)>,
    pub(super) weights: LossWeights,
    pub(super) form: LossForm,
    pub(super) width: usize,
    pub(super) height: usize,
    /// The parts of the last [`Objective::evaluate`]'s time.
    pub(super) times: std::sync::Mutex<EvaluationTimes>,
}

impl<'a> Objective<'a> {
    /// Builds the targets: content activations of `content` (network input, planar) and the
    /// blended Gram matrices of `styles`, or with `style_masks` (one per style, any size with
    /// the output's aspect ratio) each style's own Gram matrices restricted to its region.
    /// `pixel_range` is the network-input size of one 0..1 pixel step
    /// ([`InputConvention::pixel_range`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: &'a Vgg,
        config: &TransferConfig,
        weights: LossWeights,
        pixel_range: f32,
        content: Option<&[f32]>,
        styles: &[StyleInput],
        masks: (&[Mask], Option<&Mask>),
        width: u32,
        height: u32,
    ) -> Result<Self> {
        Self::build(
            net,
            config,
            weights,
            pixel_range,
            content,
            styles,
            masks,
            (width, height),
            None,
            None,
        )
    }

    /// [`Self::new`], taking style statistics from `cache` when it has them, and computing
    /// the targets of images larger than a tile of `tiling` tile by tile.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        net: &'a Vgg,
        config: &TransferConfig,
        weights: LossWeights,
        pixel_range: f32,
        content: Option<&[f32]>,
        styles: &[StyleInput],
        masks: (&[Mask], Option<&Mask>),
        (width, height): (u32, u32),
        cache: Option<&StyleCache>,
        tiling: Option<&crate::objective::tiling::Tiling>,
    ) -> Result<Self> {
        let (style_masks, content_mask) = masks;
        let layers = config.layers();
        let size = (width, height);
        let content_terms = match content.filter(|_| !config.content_layers().is_empty()) {
            Some(c) => content_terms(net, config, &layers, c, content_mask, size, tiling)?,
            None => Vec::new(),
        };
        let style_terms = if styles.is_empty() || config.style_layers().is_empty() {
            Vec::new()
        } else {
            let stats = style_statistics(net, config, styles, cache, tiling)?;
            let targets = Targets {
                config,
                stats: &stats,
                device: net.device().clone(),
            };
            targets.terms(&layers, styles, style_masks, size)?
        };
        Ok(Self {
            net,
            layers,
            content: content_terms,
            style: style_terms,
            temporal: None,
            tv_normaliser: match config.loss_form {
                LossForm::Normalized => 1.0 / (3.0 * width as f32 * height as f32 * pixel_range),
                LossForm::Mean | LossForm::Paper => 1.0,
            },
            weights,
            form: config.loss_form,
            width: width as usize,
            height: height as usize,
            times: Default::default(),
        })
    }

    /// Adds the temporal term `weight · mean(c · (x − ω)²)` in 0..1 pixel units, `ω` being
    /// `previous` (network input, planar, this objective's size) and `c` `confidence` (one
    /// value per pixel). See [`Temporal`].
    pub fn with_temporal(
        mut self,
        previous: &[f32],
        confidence: &[f32],
        weight: f32,
        pixel_range: f32,
    ) -> Self {
        let (h, w) = (self.height, self.width);
        assert_eq!(previous.len(), 3 * h * w, "temporal target size");
        assert_eq!(confidence.len(), h * w, "temporal weights size");
        let device = self.net.device();
        let target =
            Tensor::<4>::from_data(TensorData::new(previous.to_vec(), [1, 3, h, w]), device)
                .autodiff();
        let c = Tensor::<4>::from_data(TensorData::new(confidence.to_vec(), [1, 1, h, w]), device)
            .autodiff();
        self.temporal = Some((target, c, weight / (pixel_range * pixel_range)));
        self
    }

    /// The terms that read pixels only: total variation and the temporal term.
    pub(super) fn pixel_terms(&self, image: &Tensor<4>) -> (Option<Tensor<1>>, Option<Tensor<1>>) {
        let tv = (self.weights.tv != 0.0)
            .then(|| loss::tv_loss(image.clone()).mul_scalar(self.weights.tv * self.tv_normaliser));
        let temporal = self.temporal.as_ref().map(|(target, c, weight)| {
            let d = image.clone().sub(target.clone()).square().mul(c.clone());
            loss::mean_in_order(d).mul_scalar(*weight)
        });
        (tv, temporal)
    }

    /// Loss terms and the gradient of the total with respect to `x` (network input, planar).
    pub fn evaluate(&self, x: &[f32]) -> Result<(LossParts, Vec<f32>)> {
        let device = self.net.device();
        let image = Tensor::<4>::from_data(
            TensorData::new(x.to_vec(), [1, 3, self.height, self.width]),
            device,
        )
        .autodiff()
        .require_grad();
        let started = std::time::Instant::now();
        let feats = self.net.features(image.clone(), &self.layers);
        let forward = started.elapsed();
        let mut content: Option<Tensor<1>> = None;
        for t in &self.content {
            let l = loss::content_loss(
                feats[t.index].clone(),
                t.target.clone(),
                self.form,
                t.mask.as_ref(),
            )
            .mul_scalar(t.normaliser);
            content = Some(match content {
                Some(acc) => acc.add(l),
                None => l,
            });
        }
        let mut style: Option<Tensor<1>> = None;
        for t in &self.style {
            let f = feats[t.index].clone();
            let [_, c, h, wd] = f.dims();
            let l = match &t.target {
                StyleTarget::Gram(target) => {
                    let (g, positions) = match &t.mask {
                        Some((sqrt, area)) => (
                            loss::masked_gram(f, sqrt.clone(), *area, self.form),
                            area.round() as usize,
                        ),
                        None => (loss::gram(f, self.form), h * wd),
                    };
                    loss::style_loss(g, target.clone(), self.form, c, positions)
                }
                StyleTarget::W2(target, mean) => {
                    w2_loss(f, target, mean.clone(), t.mask.as_ref(), self.net.device())?
                }
            }
            .mul_scalar(t.weight);
            style = Some(match style {
                Some(acc) => acc.add(l),
                None => l,
            });
        }
        let (tv, temporal) = self.pixel_terms(&image);
        let content = content.map(|c| c.mul_scalar(self.weights.content));
        let style = style.map(|s| s.mul_scalar(self.weights.style));
        let value =
            |t: &Option<Tensor<1>>| t.as_ref().map_or(0.0, |t| t.clone().into_scalar::<f32>());
        let parts = [content, style, tv, temporal];
        let mut loss = LossParts {
            content: value(&parts[0]),
            style: value(&parts[1]),
            tv: value(&parts[2]),
            temporal: value(&parts[3]),
            total: 0.0,
        };
        let total = parts.into_iter().flatten().reduce(|a, b| a.add(b));
        let losses = started.elapsed() - forward;
        let grad = match total {
            Some(total) => {
                loss.total = total.clone().into_scalar::<f32>();
                let grads = total.backward();
                match image.grad(&grads) {
                    Some(g) => values(g, "the image gradient")?,
                    None => vec![0.0; x.len()],
                }
            }
            None => vec![0.0; x.len()],
        };
        let total = started.elapsed();
        *self.times.lock().unwrap_or_else(|e| e.into_inner()) = EvaluationTimes {
            forward,
            losses,
            backward: total - forward - losses,
            total,
        };
        Ok((loss, grad))
    }

    /// Where the last [`Objective::evaluate`]'s time went.
    pub fn last_times(&self) -> EvaluationTimes {
        *self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where layer `l` is among the objective's `layers`. Every content and style layer is
/// among them; one that is not is a bug to report, never a term silently read from another
/// layer.
fn layer_index(layers: &[Layer], l: &Layer) -> Result<usize> {
    layers
        .iter()
        .position(|x| x == l)
        .ok_or_else(|| Error::InvalidConfig {
            field: "layers",
            message: format!("{l} is not among the layers the objective computes"),
        })
}

/// A planar RGB image of `w` x `h` (network input) as the network's input tensor.
fn image_tensor(x: &[f32], (w, h): (u32, u32), device: &Device) -> Tensor<4> {
    Tensor::<4>::from_data(
        TensorData::new(x.to_vec(), [1, 3, h as usize, w as usize]),
        device,
    )
    .autodiff()
}

/// The content terms: the photo's features at each content layer (tile by tile when
/// `tiling` cuts an image this large), each with its normaliser and the content mask at
/// that layer's size.
fn content_terms(
    net: &Vgg,
    config: &TransferConfig,
    layers: &[Layer],
    content: &[f32],
    content_mask: Option<&Mask>,
    (width, height): (u32, u32),
    tiling: Option<&crate::objective::tiling::Tiling>,
) -> Result<Vec<ContentTerm>> {
    let device = net.device().clone();
    let feats = match tiles::cuts(tiling, width, height) {
        Some(t) => tiles::features_tiled(
            net,
            content,
            (width as usize, height as usize),
            config.content_layers(),
            t,
        )?,
        None => net.features(
            image_tensor(content, (width, height), &device),
            config.content_layers(),
        ),
    };
    let mut terms = Vec::new();
    for (l, f) in config.content_layers().iter().zip(feats) {
        let f = f.detach();
        let normaliser = loss::target_normaliser(&f, config.loss_form);
        let mask = content_mask.map(|m| {
            let [_, _, h, w] = f.dims();
            // Scaled to mean 1, so the content term keeps its overall weight and
            // moves from the dark regions to the bright ones.
            let m = m.resized(w as u32, h as u32);
            let mean = (m.area() / (w * h) as f32).max(1e-6);
            let data: Vec<f32> = m.data.iter().map(|v| v / mean).collect();
            Tensor::<4>::from_data(TensorData::new(data, [1, 1, h, w]), &device).autodiff()
        });
        terms.push(ContentTerm {
            index: layer_index(layers, l)?,
            target: f,
            normaliser,
            mask,
        });
    }
    Ok(terms)
}

/// Per style image and style layer: the Gram matrix, or (W2) the mean and second moment,
/// from `cache` when it has them, tile by tile when `tiling` cuts an image this large.
fn style_statistics(
    net: &Vgg,
    config: &TransferConfig,
    styles: &[StyleInput],
    cache: Option<&StyleCache>,
    tiling: Option<&crate::objective::tiling::Tiling>,
) -> Result<Vec<Vec<StyleStats>>> {
    let w2 = config.style_loss == StyleLoss::W2;
    let style_layers = config.style_layers();
    let device = net.device().clone();
    styles
        .iter()
        .map(|s| {
            let compute = || {
                if let Some(t) = tiles::cuts(tiling, s.width, s.height) {
                    let size = (s.width as usize, s.height as usize);
                    if w2 {
                        let moments = tiles::moments_tiled(net, &s.data, size, style_layers, t)?;
                        return Ok(moments
                            .into_iter()
                            .map(|(m, s)| StyleStats::Moments(m, s))
                            .collect());
                    }
                    let grams =
                        tiles::grams_tiled(net, &s.data, size, style_layers, t, config.loss_form)?;
                    return Ok(grams.into_iter().map(StyleStats::Gram).collect());
                }
                net.features(
                    image_tensor(&s.data, (s.width, s.height), &device),
                    style_layers,
                )
                .into_iter()
                .map(|f| {
                    Ok(if w2 {
                        let (mean, second) = feature_moments(f.detach())?;
                        StyleStats::Moments(mean, second)
                    } else {
                        StyleStats::Gram(loss::gram(f, config.loss_form).detach())
                    })
                })
                .collect()
            };
            match cache {
                Some(c) => c.get(config, s, compute),
                None => compute(),
            }
        })
        .collect()
}

/// The style targets, made from the styles' statistics.
struct Targets<'s> {
    config: &'s TransferConfig,
    /// Per style image and style layer.
    stats: &'s [Vec<StyleStats>],
    device: Device,
}

impl Targets<'_> {
    /// The target of style layer `j` from styles `chosen` (index, weight), and the factor
    /// that normalises its term.
    fn target(&self, j: usize, chosen: &[(usize, f32)]) -> (StyleTarget, f32) {
        let (config, stats) = (self.config, self.stats);
        if config.style_loss == StyleLoss::W2 {
            let parts: Vec<_> = chosen
                .iter()
                .filter_map(|(i, b)| match &stats[*i][j] {
                    StyleStats::Moments(m, s) => Some((*b, m.clone(), s.clone())),
                    StyleStats::Gram(_) => None,
                })
                .collect();
            let t = W2Target::from_blend(&parts);
            let c = t.mean.len();
            let normaliser = match config.loss_form {
                LossForm::Normalized => (1.0 / t.energy) as f32,
                LossForm::Mean => 1.0 / c as f32,
                LossForm::Paper => 1.0,
            };
            let mean =
                Tensor::<2>::from_data(TensorData::new(t.mean.clone(), [c, 1]), &self.device)
                    .autodiff();
            (StyleTarget::W2(Box::new(t), mean), normaliser)
        } else {
            let g = chosen
                .iter()
                .filter_map(|(i, b)| match &stats[*i][j] {
                    StyleStats::Gram(g) => Some(g.clone().mul_scalar(*b)),
                    StyleStats::Moments(..) => None,
                })
                .reduce(|a, b| a.add(b))
                .expect("at least one style");
            let normaliser = loss::target_normaliser(&g, config.loss_form);
            (StyleTarget::Gram(g), normaliser)
        }
    }

    /// The style terms: without masks one a layer, the blend of the styles' statistics;
    /// with masks one a layer and region, each region weighing its blend weight times the
    /// number of regions (1 each by default).
    fn terms(
        &self,
        layers: &[Layer],
        styles: &[StyleInput],
        style_masks: &[Mask],
        (width, height): (u32, u32),
    ) -> Result<Vec<StyleTerm>> {
        let style_layers = self.config.style_layers();
        let layer_weights = self.config.layer_weights();
        let mut terms = Vec::new();
        if style_masks.is_empty() {
            let all: Vec<(usize, f32)> = styles
                .iter()
                .enumerate()
                .map(|(i, s)| (i, s.blend))
                .collect();
            for (j, (l, w)) in style_layers.iter().zip(&layer_weights).enumerate() {
                let (target, normaliser) = self.target(j, &all);
                terms.push(StyleTerm {
                    index: layer_index(layers, l)?,
                    target,
                    weight: w * normaliser,
                    mask: None,
                });
            }
            return Ok(terms);
        }
        let regions = styles.len() as f32;
        for (i, (s, m)) in styles.iter().zip(style_masks).enumerate() {
            for (j, (l, w)) in style_layers.iter().zip(&layer_weights).enumerate() {
                let (lw, lh) = crate::objective::mask::layer_size(*l, width, height);
                let m = m.resized(lw.max(1), lh.max(1));
                let area = m.area();
                if area < 0.5 {
                    // The region vanishes at this resolution.
                    continue;
                }
                let sqrt: Vec<f32> = m.data.iter().map(|v| v.sqrt()).collect();
                let n = sqrt.len();
                let sqrt =
                    Tensor::<2>::from_data(TensorData::new(sqrt, [1, n]), &self.device).autodiff();
                let (target, normaliser) = self.target(j, &[(i, 1.0)]);
                terms.push(StyleTerm {
                    index: layer_index(layers, l)?,
                    target,
                    weight: w * normaliser * s.blend * regions,
                    mask: Some((sqrt, area)),
                });
            }
        }
        Ok(terms)
    }
}
