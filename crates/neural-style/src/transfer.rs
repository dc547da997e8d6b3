//! The style-transfer run (Gatys, Ecker & Bethge 2015, sec. 2): content and style targets,
//! the image initialisation, and the optimisation of the image's pixels, reported to an
//! observer as events.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::prelude::*;
use rand::{Rng, SeedableRng};

use crate::checkpoint::Checkpoint;
use crate::color::{PreserveColors, keep_luminance, match_histogram};
use crate::config::{Init, LossWeights, OptimizerKind, Scale, Size, StyleLoss, TransferConfig};
use crate::error::{Error, Result};
use crate::image_io::{Image, fit_longest};
use crate::loss::{self, LossForm};
use crate::mask::Mask;
use crate::optim::{Adam, Lbfgs, LbfgsState};
use crate::vgg::{Arch, InputConvention, Layer, Vgg};
use crate::w2::W2Target;
use crate::weights::{WeightFile, WeightsInfo};

/// A loaded network with the convention its inputs follow.
pub struct Network {
    /// The feature extractor.
    pub vgg: Vgg,
    /// How pixels become its input.
    pub convention: InputConvention,
    /// What the weights file provides.
    pub info: WeightsInfo,
    /// Style statistics already computed on this network.
    style_cache: StyleCache,
}

/// Style statistics (per style layer: a Gram matrix, or mean and second moment) of the style
/// images a network has seen, by image, size and settings: a batch, a video or a contact
/// sheet runs many times with the same styles and computes each one once per size.
#[derive(Default)]
struct StyleCache {
    stats: std::sync::Mutex<std::collections::HashMap<u64, Vec<Stat>>>,
    computed: std::sync::atomic::AtomicUsize,
}

impl StyleCache {
    /// At most this many (style, size) entries are kept; past it the cache starts afresh.
    const ENTRIES: usize = 64;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Vec<Stat>>> {
        // A panic elsewhere cannot leave an entry half-written: use the map as it is.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The statistics of `style` under `config`, computed by `compute` unless known.
    fn get(
        &self,
        config: &TransferConfig,
        style: &StyleInput,
        compute: impl FnOnce() -> Vec<Stat>,
    ) -> Vec<Stat> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (style.width, style.height).hash(&mut h);
        style.data.iter().for_each(|v| v.to_bits().hash(&mut h));
        config.style_layers().hash(&mut h);
        (config.loss_form, config.style_loss).hash(&mut h);
        let key = h.finish();
        if let Some(found) = self.lock().get(&key) {
            return found.clone();
        }
        let stats = compute();
        self.computed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.lock();
        if map.len() >= Self::ENTRIES {
            map.clear();
        }
        map.insert(key, stats.clone());
        stats
    }
}

impl Network {
    /// Loads the convolutions `config` needs from a weights file onto `device`.
    pub fn load(path: &Path, config: &TransferConfig, device: &Device) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let info = file.info(config.arch)?;
        let arch: Arch = info.arch;
        let config = config.with_layers_for(arch, &info.convs);
        let wanted = config.layers();
        let params = file.conv_params(arch, &wanted)?;
        let deepest = wanted.iter().copied().max().unwrap_or(Layer::Relu1_1);
        let vgg = Vgg::new(
            arch,
            params,
            deepest,
            config.pooling,
            config.padding,
            device,
        )?
        .with_convolution(config.convolution);
        let convention = config
            .convention
            .or(info.convention)
            .unwrap_or(InputConvention::TorchRgb01);
        Ok(Self {
            vgg,
            convention,
            info,
            style_cache: StyleCache::default(),
        })
    }

    /// How many times this network has computed the statistics of a style image (once per
    /// style, size and style settings, however many runs use them).
    pub fn style_targets_computed(&self) -> usize {
        self.style_cache
            .computed
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The images of a run, at any size (they are resized to the configured size).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The content photo (none for texture synthesis).
    pub content: Option<Image>,
    /// One or more style images (none for content reconstruction).
    pub styles: Vec<Image>,
    /// The initial image when `init` is [`Init::Image`].
    pub init: Option<Image>,
    /// One region per style image (Gatys et al. 2017): style `i` is matched only where
    /// mask `i` is white. Empty: every style everywhere. Stretched to the output size.
    pub style_masks: Vec<Mask>,
    /// Weights the content term per position, scaled to mean 1 so the term keeps its
    /// overall weight: bright regions stay closer to the photo than without the mask, black
    /// ones are left to the style. Stretched to the output size.
    pub content_mask: Option<Mask>,
    /// For a video frame: the previous stylised frame warped onto this one, to stay close
    /// to where the optical flow says it is reliable (Ruder et al. 2016).
    pub temporal: Option<Temporal>,
}

/// The temporal consistency target of a video frame (Ruder, Dosovitskiy & Brox 2016, eq. 5):
/// the term `mean(c · (x − ω)²)`, in 0..1 pixel units, pulls the image `x` towards the
/// previous stylised frame warped by the optical flow, `ω`, where the per-pixel weight `c`
/// is 1 (the flow is consistent and the pixel was visible) and leaves it free where `c` is
/// 0 (occlusions, motion boundaries, pixels entering the frame). Its weight is
/// [`TransferConfig::temporal_weight`].
#[derive(Debug, Clone)]
pub struct Temporal {
    /// The previous stylised frame warped onto this one, any size with the output's aspect
    /// ratio (stretched to each size of the schedule).
    pub previous: Image,
    /// Per-pixel weight `c`, 0..1, the same size as `previous`.
    pub confidence: Mask,
}

/// The loss terms at one evaluation, each already multiplied by its weight.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LossParts {
    /// The sum of the others.
    pub total: f32,
    /// α · content.
    pub content: f32,
    /// β · style.
    pub style: f32,
    /// TV weight · total variation.
    pub tv: f32,
    /// Temporal weight · temporal consistency (video frames only).
    pub temporal: f32,
}

/// What a run reports while it works.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The optimisation starts.
    Started {
        /// Planned loss evaluations, all sizes together.
        evaluations: usize,
        /// Output width.
        width: u32,
        /// Output height.
        height: u32,
    },
    /// Optimisation at one size of the coarse-to-fine schedule starts.
    Scale {
        /// 0-based index in the schedule.
        index: usize,
        /// Number of sizes in the schedule.
        scales: usize,
        /// Width at this size.
        width: u32,
        /// Height at this size.
        height: u32,
        /// Evaluations planned at this size.
        evaluations: usize,
    },
    /// One loss evaluation finished.
    Evaluation {
        /// 1-based evaluation count.
        evaluation: usize,
        /// The loss at this evaluation.
        loss: LossParts,
        /// Time since the optimisation started.
        elapsed: Duration,
    },
    /// The run's state at an L-BFGS iteration boundary (every `checkpoint_every`
    /// iterations): saved, it lets [`run_resumable`] continue exactly from here.
    Checkpoint {
        /// The state.
        checkpoint: &'a Checkpoint,
    },
    /// An intermediate image (every `snapshot_every` evaluations).
    Snapshot {
        /// The evaluation it was taken at.
        evaluation: usize,
        /// The image.
        image: &'a Image,
    },
}

/// Receives a run's events; returning `Break` stops the run, which then returns its best
/// image so far.
pub trait Observer {
    /// Called for each event.
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()>;
}

/// An observer that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_event(&mut self, _: &Event<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl<F: FnMut(&Event<'_>) -> ControlFlow<()>> Observer for F {
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()> {
        self(event)
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Output {
    /// The image with the lowest loss seen at the last size optimised, at the output size.
    pub image: Image,
    /// Its loss (at the size it was optimised at).
    pub best_loss: LossParts,
    /// The loss at the last evaluation.
    pub final_loss: LossParts,
    /// Loss evaluations made.
    pub evaluations: usize,
    /// Whether the observer stopped the run early.
    pub stopped: bool,
    /// How many times L-BFGS's divergence guard went back to the best point.
    pub recoveries: usize,
    /// The first evaluation whose loss or gradient was not finite, if any.
    pub non_finite_at: Option<usize>,
}

/// One content layer's term.
struct ContentTerm {
    /// Index of the activation among the objective's layers.
    index: usize,
    target: Tensor<4>,
    /// 1 / target energy in the normalised form, else 1.
    scale: f32,
    /// Per-position weights at this layer's resolution, `[1, 1, H, W]`.
    mask: Option<Tensor<4>>,
}

/// What a style layer's activations are compared with.
enum StyleStat {
    /// A Gram matrix.
    Gram(Tensor<2>),
    /// Mean and covariance, with the mean as a `[C, 1]` tensor.
    W2(Box<W2Target>, Tensor<2>),
}

/// One style layer's term (for one region when masked).
struct StyleTerm {
    /// Index of the activation among the objective's layers.
    index: usize,
    /// The target statistics.
    target: StyleStat,
    /// Layer weight × normalisation × region weight.
    weight: f32,
    /// The region at this layer's resolution: the square root of the mask as `[1, H·W]`,
    /// and its area.
    mask: Option<(Tensor<2>, f32)>,
}

/// A style image prepared for one size: network-input pixels, its size, and its blend
/// weight (normalised over the styles).
pub struct StyleInput {
    /// Network input, planar.
    pub data: Vec<f32>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Blend weight.
    pub blend: f32,
}

/// The differentiable objective: losses against fixed targets for one image size.
pub struct Objective<'a> {
    net: &'a Vgg,
    layers: Vec<Layer>,
    content: Vec<ContentTerm>,
    style: Vec<StyleTerm>,
    /// Multiplies the TV sum (1 except in the normalised form).
    tv_scale: f32,
    /// The temporal target, its per-position weights (`[1, 1, H, W]`) and the term's
    /// weight over the squared network-input pixel scale.
    temporal: Option<(Tensor<4>, Tensor<4>, f32)>,
    weights: LossWeights,
    form: LossForm,
    width: usize,
    height: usize,
}

impl<'a> Objective<'a> {
    /// Builds the targets: content activations of `content` (network input, planar) and the
    /// blended Gram matrices of `styles`, or with `style_masks` (one per style, any size with
    /// the output's aspect ratio) each style's own Gram matrices restricted to its region.
    /// `pixel_scale` is the network-input size of one 0..1 pixel step
    /// ([`InputConvention::pixel_scale`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: &'a Vgg,
        config: &TransferConfig,
        weights: LossWeights,
        pixel_scale: f32,
        content: Option<&[f32]>,
        styles: &[StyleInput],
        masks: (&[Mask], Option<&Mask>),
        width: u32,
        height: u32,
    ) -> Self {
        Self::build(
            net,
            config,
            weights,
            pixel_scale,
            content,
            styles,
            masks,
            (width, height),
            None,
        )
    }

    /// [`Self::new`], taking style statistics from `cache` when it has them.
    #[allow(clippy::too_many_arguments)]
    fn build(
        net: &'a Vgg,
        config: &TransferConfig,
        weights: LossWeights,
        pixel_scale: f32,
        content: Option<&[f32]>,
        styles: &[StyleInput],
        masks: (&[Mask], Option<&Mask>),
        (width, height): (u32, u32),
        cache: Option<&StyleCache>,
    ) -> Self {
        let (style_masks, content_mask) = masks;
        let device = net.device().clone();
        let to_tensor = |x: &[f32], w: u32, h: u32| {
            Tensor::<4>::from_data(
                TensorData::new(x.to_vec(), [1, 3, h as usize, w as usize]),
                &device,
            )
            .autodiff()
        };
        let at_layer = |m: &Mask, l: Layer| {
            let (w, h) = crate::mask::layer_size(l, width, height);
            m.resized(w.max(1), h.max(1))
        };
        let layers = config.layers();
        let index = |l: &Layer| layers.iter().position(|x| x == l).unwrap_or(0);
        let mut content_terms = Vec::new();
        if let Some(c) = content.filter(|_| !config.content_layers().is_empty()) {
            let feats = net.features(to_tensor(c, width, height), config.content_layers());
            for (l, f) in config.content_layers().iter().zip(feats) {
                let f = f.detach();
                let scale = loss::target_scale(&f, config.loss_form);
                let mask = content_mask.map(|m| {
                    let [_, _, h, w] = f.dims();
                    // Scaled to mean 1, so the content term keeps its overall weight and
                    // moves from the dark regions to the bright ones.
                    let m = m.resized(w as u32, h as u32);
                    let mean = (m.area() / (w * h) as f32).max(1e-6);
                    let data: Vec<f32> = m.data.iter().map(|v| v / mean).collect();
                    Tensor::<4>::from_data(TensorData::new(data, [1, 1, h, w]), &device).autodiff()
                });
                content_terms.push(ContentTerm {
                    index: index(l),
                    target: f,
                    scale,
                    mask,
                });
            }
        }
        let mut style_terms = Vec::new();
        let style_layers = config.style_layers();
        if !styles.is_empty() && !style_layers.is_empty() {
            let w2 = config.style_loss == StyleLoss::W2;
            // Per style and style layer: the Gram matrix, or the mean and second moment.
            let stats: Vec<Vec<Stat>> = styles
                .iter()
                .map(|s| {
                    let compute = || {
                        net.features(to_tensor(&s.data, s.width, s.height), style_layers)
                            .into_iter()
                            .map(|f| {
                                if w2 {
                                    let (mean, second) = feature_moments(f.detach());
                                    Stat::Moments(mean, second)
                                } else {
                                    Stat::Gram(loss::gram(f, config.loss_form).detach())
                                }
                            })
                            .collect()
                    };
                    match cache {
                        Some(c) => c.get(config, s, compute),
                        None => compute(),
                    }
                })
                .collect();
            let layer_weights = config.layer_weights();
            // The target of layer `j` from styles `chosen` (index, weight), and the factor
            // that normalises its term.
            let target = |j: usize, chosen: &[(usize, f32)]| -> (StyleStat, f32) {
                if w2 {
                    let parts: Vec<_> = chosen
                        .iter()
                        .filter_map(|(i, b)| match &stats[*i][j] {
                            Stat::Moments(m, s) => Some((*b, m.clone(), s.clone())),
                            Stat::Gram(_) => None,
                        })
                        .collect();
                    let t = W2Target::from_blend(&parts);
                    let c = t.mean.len();
                    let scale = match config.loss_form {
                        LossForm::Normalized => (1.0 / t.energy) as f32,
                        LossForm::Mean => 1.0 / c as f32,
                        LossForm::Paper => 1.0,
                    };
                    let mean =
                        Tensor::<2>::from_data(TensorData::new(t.mean.clone(), [c, 1]), &device)
                            .autodiff();
                    (StyleStat::W2(Box::new(t), mean), scale)
                } else {
                    let g = chosen
                        .iter()
                        .filter_map(|(i, b)| match &stats[*i][j] {
                            Stat::Gram(g) => Some(g.clone().mul_scalar(*b)),
                            Stat::Moments(..) => None,
                        })
                        .reduce(|a, b| a.add(b))
                        .expect("at least one style");
                    let scale = loss::target_scale(&g, config.loss_form);
                    (StyleStat::Gram(g), scale)
                }
            };
            if style_masks.is_empty() {
                // One target per layer: the blend of the styles' statistics.
                let all: Vec<(usize, f32)> = styles
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i, s.blend))
                    .collect();
                for (j, (l, w)) in style_layers.iter().zip(&layer_weights).enumerate() {
                    let (target, scale) = target(j, &all);
                    style_terms.push(StyleTerm {
                        index: index(l),
                        target,
                        weight: w * scale,
                        mask: None,
                    });
                }
            } else {
                // One target per layer and region; each region weighs its blend weight
                // times the number of regions (1 each by default).
                let regions = styles.len() as f32;
                for (i, (s, m)) in styles.iter().zip(style_masks).enumerate() {
                    for (j, (l, w)) in style_layers.iter().zip(&layer_weights).enumerate() {
                        let m = at_layer(m, *l);
                        let area = m.area();
                        if area < 0.5 {
                            // The region vanishes at this resolution.
                            continue;
                        }
                        let sqrt: Vec<f32> = m.data.iter().map(|v| v.sqrt()).collect();
                        let n = sqrt.len();
                        let sqrt = Tensor::<2>::from_data(TensorData::new(sqrt, [1, n]), &device)
                            .autodiff();
                        let (target, scale) = target(j, &[(i, 1.0)]);
                        style_terms.push(StyleTerm {
                            index: index(l),
                            target,
                            weight: w * scale * s.blend * regions,
                            mask: Some((sqrt, area)),
                        });
                    }
                }
            }
        }
        Self {
            net,
            layers,
            content: content_terms,
            style: style_terms,
            temporal: None,
            tv_scale: match config.loss_form {
                LossForm::Normalized => 1.0 / (3.0 * width as f32 * height as f32 * pixel_scale),
                LossForm::Mean | LossForm::Paper => 1.0,
            },
            weights,
            form: config.loss_form,
            width: width as usize,
            height: height as usize,
        }
    }

    /// Adds the temporal term `weight · mean(c · (x − ω)²)` in 0..1 pixel units, `ω` being
    /// `previous` (network input, planar, this objective's size) and `c` `confidence` (one
    /// value per pixel). See [`Temporal`].
    pub fn with_temporal(
        mut self,
        previous: &[f32],
        confidence: &[f32],
        weight: f32,
        pixel_scale: f32,
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
        self.temporal = Some((target, c, weight / (pixel_scale * pixel_scale)));
        self
    }

    /// Loss terms and the gradient of the total with respect to `x` (network input, planar).
    pub fn evaluate(&self, x: &[f32]) -> (LossParts, Vec<f32>) {
        let device = self.net.device();
        let image = Tensor::<4>::from_data(
            TensorData::new(x.to_vec(), [1, 3, self.height, self.width]),
            device,
        )
        .autodiff()
        .require_grad();
        let feats = self.net.features(image.clone(), &self.layers);
        let mut content: Option<Tensor<1>> = None;
        for t in &self.content {
            let l = loss::content_loss(
                feats[t.index].clone(),
                t.target.clone(),
                self.form,
                t.mask.as_ref(),
            )
            .mul_scalar(t.scale);
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
                StyleStat::Gram(target) => {
                    let (g, positions) = match &t.mask {
                        Some((sqrt, area)) => (
                            loss::masked_gram(f, sqrt.clone(), *area, self.form),
                            area.round() as usize,
                        ),
                        None => (loss::gram(f, self.form), h * wd),
                    };
                    loss::style_loss(g, target.clone(), self.form, c, positions)
                }
                StyleStat::W2(target, mean) => {
                    w2_loss(f, target, mean.clone(), t.mask.as_ref(), self.net.device())
                }
            }
            .mul_scalar(t.weight);
            style = Some(match style {
                Some(acc) => acc.add(l),
                None => l,
            });
        }
        let tv = (self.weights.tv != 0.0)
            .then(|| loss::tv_loss(image.clone()).mul_scalar(self.weights.tv * self.tv_scale));
        let temporal = self.temporal.as_ref().map(|(target, c, weight)| {
            image
                .clone()
                .sub(target.clone())
                .square()
                .mul(c.clone())
                .mean()
                .mul_scalar(*weight)
        });
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
        let grad = match total {
            Some(total) => {
                loss.total = total.clone().into_scalar::<f32>();
                let grads = total.backward();
                image
                    .grad(&grads)
                    .map(|g| g.into_data().try_into_vec::<f32>().unwrap_or_default())
                    .unwrap_or_else(|| vec![0.0; x.len()])
            }
            None => vec![0.0; x.len()],
        };
        (loss, grad)
    }
}

/// A style layer's statistics before blending.
#[derive(Clone)]
enum Stat {
    Gram(Tensor<2>),
    Moments(Vec<f64>, nalgebra::DMatrix<f64>),
}

/// Mean and second moment E[ffᵀ] of a `[1, C, H, W]` activation, in f64.
fn feature_moments(f: Tensor<4>) -> (Vec<f64>, nalgebra::DMatrix<f64>) {
    let [_, c, h, w] = f.dims();
    let f = f.reshape([c, h * w]);
    let mean = f
        .clone()
        .mean_dim(1)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let second = f
        .clone()
        .matmul(f.transpose())
        .div_scalar((h * w) as f32)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    (
        mean.iter().map(|v| f64::from(*v)).collect(),
        nalgebra::DMatrix::from_fn(c, c, |i, j| f64::from(second[i * c + j])),
    )
}

/// The W2 style term of one layer ([`crate::w2`]): |μx − μs|² + tr Σx + tr Σs −
/// 2 tr (Σs^½ Σx Σs^½)^½, the last term entering the graph as ⟨Σx, G⟩ with its gradient G
/// computed outside, plus a constant that makes the value exact. With a region, the
/// statistics are those of the positions inside it (`sqrt` is the mask's square root).
fn w2_loss(
    f: Tensor<4>,
    target: &W2Target,
    target_mean: Tensor<2>,
    region: Option<&(Tensor<2>, f32)>,
    device: &Device,
) -> Tensor<1> {
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
    let cov_values = cov
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let mean_values = mean
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
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
    surrogate
        .clone()
        .sub(surrogate.detach())
        .add_scalar(value as f32)
}

/// The output width and height for `config.size` and the content image, if any.
pub fn output_size(size: Size, content: Option<&Image>) -> (u32, u32) {
    match (size, content) {
        (Size::Exact(w, h), _) => (w, h),
        (Size::Longest(n), Some(c)) => fit_longest(c.width, c.height, n),
        (Size::Longest(n), None) => (n, n),
    }
}

/// Uniform white noise in 0..1, planar RGB, reproducible from `seed`.
pub fn noise_image(width: u32, height: u32, seed: u64) -> Image {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..3 * width as usize * height as usize)
        .map(|_| rng.random::<f32>())
        .collect();
    Image::new(width, height, data)
}

/// Runs style transfer: resizes the inputs, builds the targets, optimises the image and
/// returns the best one seen. With `config.multiscale` the image is first optimised at
/// smaller sizes ([`TransferConfig::schedule`]), each result upsampled to start the next.
/// `observer` sees every evaluation and can stop the run; a run stopped before the final
/// size returns its best image so far upsampled to the output size.
pub fn run(
    net: &Network,
    config: &TransferConfig,
    inputs: &Inputs,
    observer: &mut dyn Observer,
) -> Result<Output> {
    run_resumable(net, config, inputs, observer, None, 0)
}

/// As [`run`], also emitting [`Event::Checkpoint`] every `checkpoint_every` L-BFGS
/// iterations (0: never) and, given `resume`, continuing from that checkpoint (made by a
/// run with the same settings and images; anything else is refused).
pub fn run_resumable(
    net: &Network,
    config: &TransferConfig,
    inputs: &Inputs,
    observer: &mut dyn Observer,
    resume: Option<(Checkpoint, &std::path::Path)>,
    checkpoint_every: usize,
) -> Result<Output> {
    // Hashing every input pixel is only worth it when checkpoints are in play.
    let fingerprint = if resume.is_some() || checkpoint_every > 0 {
        crate::checkpoint::fingerprint(config, inputs)
    } else {
        String::new()
    };
    let config = &config.with_layers_for(net.info.arch, &net.info.convs);
    config.check_style_layer_weights()?;
    if (resume.is_some() || checkpoint_every > 0) && config.optimizer != OptimizerKind::Lbfgs {
        return Err(Error::config(
            "optimizer",
            "checkpoints and resuming need L-BFGS (the default optimiser)",
        ));
    }
    if let Some((c, path)) = &resume
        && c.fingerprint != fingerprint
    {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: "it was made with other settings or images; give the same flags and files"
                .into(),
        });
    }
    let mut resume = resume.map(|(c, _)| c);
    config.validate(inputs.styles.len())?;
    crate::mask::check(
        &inputs.style_masks,
        inputs.styles.len(),
        inputs.content_mask.as_ref(),
        inputs.content.as_ref().map(|c| (c.width, c.height)),
    )?;
    if inputs.content.is_none() && inputs.styles.is_empty() {
        return Err(Error::config(
            "inputs",
            "a content image, a style image, or both are needed",
        ));
    }
    let arch = net.vgg.arch();
    for l in &config.layers() {
        arch.check_layer(*l)?;
        if !net.vgg.has_layer(*l) {
            return Err(Error::config(
                "layers",
                format!(
                    "{l} is deeper than the layers this network was loaded for; load it with this config"
                ),
            ));
        }
    }
    if config.init == Init::Image && inputs.init.is_none() {
        return Err(Error::config(
            "init",
            "init is `image` but no init image was given",
        ));
    }
    // Histogram mode: the style images take the photo's colour statistics first.
    let recoloured;
    let inputs = match (config.preserve_colors, &inputs.content) {
        (Some(PreserveColors::Histogram), Some(photo)) => {
            recoloured = Inputs {
                styles: inputs
                    .styles
                    .iter()
                    .map(|s| match_histogram(s, photo))
                    .collect(),
                ..inputs.clone()
            };
            &recoloured
        }
        _ => inputs,
    };
    let (width, height) = output_size(config.size, inputs.content.as_ref());
    let schedule = config.schedule(width, height);
    let evaluations: usize = schedule.iter().map(|s| s.evaluations).sum();
    if observer
        .on_event(&Event::Started {
            evaluations,
            width,
            height,
        })
        .is_break()
    {
        let start = start_image(config, inputs, width, height);
        return Ok(Output {
            image: start,
            best_loss: LossParts::default(),
            final_loss: LossParts::default(),
            evaluations: 0,
            stopped: true,
            recoveries: 0,
            non_finite_at: None,
        });
    }
    let started = Instant::now();
    let mut previous: Option<Image> = None;
    // L-BFGS's curvature scale at the end of the previous size, per pixel.
    let mut curvature: Option<f32> = None;
    let mut total = Output {
        image: Image::new(1, 1, vec![0.0; 3]),
        best_loss: LossParts::default(),
        final_loss: LossParts::default(),
        evaluations: 0,
        stopped: false,
        recoveries: 0,
        non_finite_at: None,
    };
    let first = resume.as_ref().map_or(0, |c| c.scale);
    if let Some(c) = &resume {
        if c.scale >= schedule.len() {
            return Err(Error::config(
                "resume",
                "the checkpoint's size is not in this schedule",
            ));
        }
        total.evaluations = c.done;
    }
    for (index, scale) in schedule.iter().enumerate().skip(first) {
        if observer
            .on_event(&Event::Scale {
                index,
                scales: schedule.len(),
                width: scale.width,
                height: scale.height,
                evaluations: scale.evaluations,
            })
            .is_break()
        {
            total.stopped = true;
            break;
        }
        let init = match previous.take() {
            Some(p) => p.resized(scale.width, scale.height),
            None => start_image(config, inputs, scale.width, scale.height),
        };
        let pixels = (scale.width * scale.height) as f32;
        let (out, h_diag) = run_scale(
            net,
            config,
            inputs,
            *scale,
            init,
            Progress {
                index,
                done: total.evaluations,
                started,
                fingerprint: &fingerprint,
                checkpoint_every,
                resume: resume.take(),
                // The terms are means over positions, so the gradient per pixel, and with
                // it the curvature, shrinks as the image grows: the inverse scales with it.
                initial_h_diag: curvature.map(|h| h * pixels),
            },
            observer,
        )?;
        curvature = h_diag.map(|h| h / pixels);
        total.evaluations += out.evaluations;
        total.recoveries += out.recoveries;
        total.non_finite_at = total.non_finite_at.or(out.non_finite_at);
        total.best_loss = out.best_loss;
        total.final_loss = out.final_loss;
        previous = Some(out.image);
        if out.stopped {
            total.stopped = true;
            break;
        }
    }
    total.image = match previous {
        Some(image) => image.resized(width, height),
        None => start_image(config, inputs, width, height),
    };
    if let (Some(PreserveColors::Luminance), Some(photo)) =
        (config.preserve_colors, &inputs.content)
    {
        total.image = keep_luminance(&total.image, photo);
    }
    Ok(total)
}

/// The image the optimisation starts from, at `width` x `height`.
fn start_image(config: &TransferConfig, inputs: &Inputs, width: u32, height: u32) -> Image {
    match (&config.init, &inputs.content, &inputs.init) {
        (Init::Content, Some(c), _) => c.resized(width, height),
        (Init::Image, _, Some(i)) => i.resized(width, height),
        _ => noise_image(width, height, config.seed),
    }
}

/// Where a size sits in the run.
struct Progress<'a> {
    /// Its index in the schedule.
    index: usize,
    /// Evaluations made at earlier sizes (event numbers continue from here).
    done: usize,
    /// When the run started (event times count from here).
    started: Instant,
    fingerprint: &'a str,
    checkpoint_every: usize,
    /// A checkpoint taken at this size to continue from.
    resume: Option<Checkpoint>,
    /// L-BFGS's first step: the curvature scale carried from the previous size.
    initial_h_diag: Option<f32>,
}

/// Optimises one size of the schedule from `init` (or from `progress.resume`); also gives
/// L-BFGS's curvature scale at the end.
fn run_scale(
    net: &Network,
    config: &TransferConfig,
    inputs: &Inputs,
    scale: Scale,
    init: Image,
    progress: Progress<'_>,
    observer: &mut dyn Observer,
) -> Result<(Output, Option<f32>)> {
    let Progress {
        index,
        done,
        started,
        fingerprint,
        checkpoint_every,
        resume,
        initial_h_diag,
    } = progress;
    let conv = net.convention;
    let Scale {
        width,
        height,
        evaluations,
    } = scale;
    let content = inputs.content.as_ref().map(|c| c.resized(width, height));
    let blend: Vec<f32> = match &config.style_blend {
        Some(b) => {
            let s: f32 = b.iter().sum();
            b.iter().map(|x| x / s).collect()
        }
        None => vec![1.0 / inputs.styles.len().max(1) as f32; inputs.styles.len()],
    };
    let styles: Vec<StyleInput> = inputs
        .styles
        .iter()
        .zip(&blend)
        .map(|(s, b)| {
            let longest = ((width.max(height) as f32) * config.style_scale)
                .round()
                .max(16.0) as u32;
            let s = s.resized_to_longest(longest);
            StyleInput {
                data: conv.to_network(&s.data),
                width: s.width,
                height: s.height,
                blend: *b,
            }
        })
        .collect();
    let weights = config.loss_weights(&conv);
    let content_input = content.as_ref().map(|c| conv.to_network(&c.data));
    let objective = Objective::build(
        &net.vgg,
        config,
        weights,
        conv.pixel_scale(),
        content_input.as_deref(),
        &styles,
        (&inputs.style_masks, inputs.content_mask.as_ref()),
        (width, height),
        Some(&net.style_cache),
    );
    let objective = match &inputs.temporal {
        Some(t) if config.temporal_weight > 0.0 => {
            let previous = conv.to_network(&t.previous.resized(width, height).data);
            let confidence = t.confidence.resized(width, height);
            objective.with_temporal(
                &previous,
                &confidence.data,
                config.temporal_weight,
                conv.pixel_scale(),
            )
        }
        _ => objective,
    };

    let mut x = conv.to_network(&init.data);
    if let Some(c) = &resume
        && c.lbfgs.x.len() != x.len()
    {
        return Err(Error::config(
            "resume",
            "the checkpoint's image size does not match this run's",
        ));
    }
    let mut count = resume.as_ref().map_or(0, |c| c.lbfgs.evaluations);
    let best: std::cell::RefCell<Option<(LossParts, Vec<f32>)>> =
        std::cell::RefCell::new(resume.as_ref().and_then(|c| c.best.clone()));
    let observer = std::cell::RefCell::new(observer);
    let mut last = LossParts::default();
    let mut non_finite_at: Option<usize> = None;
    let mut f = |x: &[f32]| -> ControlFlow<(), (f32, Vec<f32>)> {
        let mut observer = observer.borrow_mut();
        let mut best = best.borrow_mut();
        count += 1;
        let (parts, grad) = objective.evaluate(x);
        last = parts;
        let finite = parts.total.is_finite() && grad.iter().all(|g| g.is_finite());
        if !finite {
            non_finite_at.get_or_insert(done + count);
            // L-BFGS's guard restores the best point; anything else stops here, keeping
            // the best image.
            if !(config.safeguard && config.optimizer == OptimizerKind::Lbfgs) {
                return ControlFlow::Break(());
            }
        } else if best.as_ref().is_none_or(|(b, _)| parts.total < b.total) {
            *best = Some((parts, x.to_vec()));
        }
        observer.on_event(&Event::Evaluation {
            evaluation: done + count,
            loss: parts,
            elapsed: started.elapsed(),
        })?;
        if config.snapshot_every > 0
            && (done + count).is_multiple_of(config.snapshot_every)
            && count < evaluations
        {
            let image = Image::new(width, height, conv.from_network(x));
            observer.on_event(&Event::Snapshot {
                evaluation: done + count,
                image: &image,
            })?;
        }
        ControlFlow::Continue((parts.total, grad))
    };
    let mut on_iteration = |state: &LbfgsState| -> ControlFlow<()> {
        if checkpoint_every == 0
            || state.n_iter == 0
            || !state.n_iter.is_multiple_of(checkpoint_every)
        {
            return ControlFlow::Continue(());
        }
        let checkpoint = Checkpoint {
            fingerprint: fingerprint.to_string(),
            scale: index,
            done,
            best: best.borrow().clone(),
            lbfgs: state.clone(),
        };
        observer.borrow_mut().on_event(&Event::Checkpoint {
            checkpoint: &checkpoint,
        })
    };
    let outcome = match config.optimizer {
        OptimizerKind::Lbfgs => {
            let mut lbfgs = Lbfgs::new(evaluations, config.lbfgs_history, config.line_search);
            lbfgs.safeguard = config.safeguard;
            lbfgs.initial_h_diag = initial_h_diag;
            lbfgs.minimize_resumable(&mut x, &mut f, resume.map(|c| c.lbfgs), &mut on_iteration)
        }
        OptimizerKind::Adam => Adam::new(
            config.learning_rate / 255.0 * conv.pixel_scale(),
            evaluations,
        )
        .minimize(&mut x, &mut f),
    };
    let Some((best_loss, best_x)) = best.into_inner() else {
        return Err(Error::Diverged {
            evaluation: non_finite_at.unwrap_or(done + 1),
        });
    };
    let mut data = conv.from_network(&best_x);
    data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Ok((
        Output {
            image: Image::new(width, height, data),
            best_loss,
            final_loss: last,
            evaluations: count,
            stopped: outcome.stopped && non_finite_at.is_none(),
            recoveries: outcome.recoveries,
            non_finite_at,
        },
        outcome.h_diag,
    ))
}
