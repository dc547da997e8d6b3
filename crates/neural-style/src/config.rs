//! `TransferConfig`: every setting of a run, validated once; the CLI, a config file and the
//! web API all produce one.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss::LossForm;
use crate::vgg::{Arch, InputConvention, Layer, Padding, Pooling};

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// L-BFGS (the paper's choice).
    #[default]
    Lbfgs,
    /// Adam.
    Adam,
}

/// How the image being optimised starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The content photo (the default; falls back to noise without a content image).
    #[default]
    Content,
    /// Uniform white noise in 0..1, from `seed`.
    Noise,
    /// A given image (supplied in [`crate::Inputs::init`]).
    Image,
}

/// The output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Longest side in pixels; the other follows the content's aspect ratio (square without
    /// a content image).
    Longest(u32),
    /// Exact width and height.
    Exact(u32, u32),
}

impl std::str::FromStr for Size {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "size",
                format!("`{s}` is neither a number like 512 nor WxH like 640x480"),
            )
        };
        let n = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        match s.split_once(['x', 'X']) {
            Some((w, h)) => Ok(Size::Exact(n(w)?, n(h)?)),
            None => Ok(Size::Longest(n(s)?)),
        }
    }
}

/// Every setting of a style-transfer run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// The network (`None`: from the weights file).
    pub arch: Option<Arch>,
    /// Input convention (`None`: from the weights file's metadata, else torch-rgb-01).
    pub convention: Option<InputConvention>,
    /// Layers whose activations are matched to the content photo (`None`: `relu4_2`, or the
    /// deepest rectifier the weights have when they stop earlier).
    pub content_layers: Option<Vec<Layer>>,
    /// Layers whose Gram matrices are matched to the style image(s) (`None`: `relu1_1`,
    /// `relu2_1`, `relu3_1`, `relu4_1`, `relu5_1`, or those of them the weights have).
    pub style_layers: Option<Vec<Layer>>,
    /// Per-style-layer weights (`None`: 1 each in the mean form, 1/L in the paper form).
    pub style_layer_weights: Option<Vec<f32>>,
    /// Content weight (α) (`None`: the default for the loss form and convention).
    pub content_weight: Option<f32>,
    /// Style weight (β) (`None`: the default for the loss form and convention).
    pub style_weight: Option<f32>,
    /// Total-variation weight (`None`: the default for the loss form and convention).
    pub tv_weight: Option<f32>,
    /// How loss terms are normalised.
    pub loss_form: LossForm,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Loss evaluations (L-BFGS) or steps (Adam).
    pub iterations: usize,
    /// L-BFGS history size.
    pub lbfgs_history: usize,
    /// L-BFGS strong-Wolfe line search.
    pub line_search: bool,
    /// L-BFGS divergence guard (see [`crate::optim::Lbfgs::safeguard`]).
    pub safeguard: bool,
    /// Adam step size, in 0..255 pixel units (scaled to the network's input convention).
    pub learning_rate: f32,
    /// Initial image.
    pub init: Init,
    /// Seed for the noise initialisation.
    pub seed: u64,
    /// Max or average pooling.
    pub pooling: Pooling,
    /// Convolution border handling.
    pub padding: Padding,
    /// Output size.
    pub size: Size,
    /// Style image size relative to the output size.
    pub style_scale: f32,
    /// Weights of the style images (`None`: equal), normalised to sum to 1.
    pub style_blend: Option<Vec<f32>>,
    /// Emit an intermediate image every N evaluations (0: never).
    pub snapshot_every: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            arch: None,
            convention: None,
            content_layers: None,
            style_layers: None,
            style_layer_weights: None,
            content_weight: None,
            style_weight: None,
            tv_weight: None,
            loss_form: LossForm::Normalized,
            optimizer: OptimizerKind::Lbfgs,
            iterations: 500,
            lbfgs_history: 100,
            line_search: false,
            safeguard: true,
            learning_rate: 10.0,
            init: Init::Content,
            seed: 0,
            pooling: Pooling::Max,
            padding: Padding::Zero,
            size: Size::Longest(512),
            style_scale: 1.0,
            style_blend: None,
            snapshot_every: 0,
        }
    }
}

/// The paper's content layer.
pub const DEFAULT_CONTENT_LAYERS: &[Layer] = &[Layer::Relu4_2];
/// The paper's style layers.
pub const DEFAULT_STYLE_LAYERS: &[Layer] = &[
    Layer::Relu1_1,
    Layer::Relu2_1,
    Layer::Relu3_1,
    Layer::Relu4_1,
    Layer::Relu5_1,
];

/// Default content weight of the normalised form.
pub const NORMALIZED_CONTENT: f32 = 1.0;
/// Default style weight of the normalised form.
pub const NORMALIZED_STYLE: f32 = 10.0;
/// Default total-variation weight of the normalised form.
pub const NORMALIZED_TV: f32 = 0.0;

/// Loss weights after defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// α.
    pub content: f32,
    /// β.
    pub style: f32,
    /// Total variation.
    pub tv: f32,
}

impl TransferConfig {
    /// The content layers (the defaults when unset).
    pub fn content_layers(&self) -> &[Layer] {
        self.content_layers
            .as_deref()
            .unwrap_or(DEFAULT_CONTENT_LAYERS)
    }

    /// The style layers (the defaults when unset).
    pub fn style_layers(&self) -> &[Layer] {
        self.style_layers.as_deref().unwrap_or(DEFAULT_STYLE_LAYERS)
    }

    /// Content layers, then style layers not already listed: every layer a run reads.
    pub fn layers(&self) -> Vec<Layer> {
        let mut out: Vec<Layer> = Vec::new();
        for l in self.content_layers().iter().chain(self.style_layers()) {
            if !out.contains(l) {
                out.push(*l);
            }
        }
        out
    }

    /// This config with unset layer lists chosen for weights that have the convolutions
    /// `convs`: the paper's layers when the weights reach them; otherwise the style layers
    /// among them that the weights have and, for content, the rectifier of the deepest
    /// convolution. Layers set explicitly are kept (and refused later if out of reach).
    pub fn with_layers_for(&self, arch: Arch, convs: &[Layer]) -> TransferConfig {
        let reachable = |l: &Layer| convs.contains(&l.source_conv(arch));
        let mut out = self.clone();
        if out.content_layers.is_none() {
            let layers = if DEFAULT_CONTENT_LAYERS.iter().all(reachable) {
                DEFAULT_CONTENT_LAYERS.to_vec()
            } else {
                // The rectifier right after the deepest convolution the weights have.
                let deepest = convs.iter().copied().max();
                Layer::ALL
                    .iter()
                    .copied()
                    .find(|l| {
                        l.kind() == crate::vgg::LayerKind::Relu
                            && Some(l.source_conv(arch)) == deepest
                    })
                    .into_iter()
                    .collect()
            };
            out.content_layers = Some(layers);
        }
        if out.style_layers.is_none() {
            out.style_layers = Some(
                DEFAULT_STYLE_LAYERS
                    .iter()
                    .copied()
                    .filter(reachable)
                    .collect(),
            );
        }
        out
    }
    /// The loss weights: those set, else the defaults for the loss form and convention.
    ///
    /// Mean form, Caffe convention: jcjohnson/neural-style's 5, 100, 1e-3. Mean form,
    /// torchvision convention (inputs about 57x smaller, features correspondingly smaller):
    /// 1, 1e6 (the PyTorch tutorial's ratio), 0. Paper form: α = 1, β = 1e3 (α/β = 1e-3), TV 0.
    pub fn loss_weights(&self, convention: &InputConvention) -> LossWeights {
        let (c, s, t) = match (self.loss_form, convention) {
            (LossForm::Normalized, _) => (NORMALIZED_CONTENT, NORMALIZED_STYLE, NORMALIZED_TV),
            (LossForm::Mean, InputConvention::CaffeBgr255 { .. }) => (5.0, 100.0, 1e-3),
            (LossForm::Mean, InputConvention::TorchRgb01) => (1.0, 1e6, 0.0),
            (LossForm::Paper, _) => (1.0, 1e3, 0.0),
        };
        LossWeights {
            content: self.content_weight.unwrap_or(c),
            style: self.style_weight.unwrap_or(s),
            tv: self.tv_weight.unwrap_or(t),
        }
    }

    /// Per-style-layer weights after defaults.
    pub fn layer_weights(&self) -> Vec<f32> {
        match &self.style_layer_weights {
            Some(w) => w.clone(),
            None => {
                let n = self.style_layers().len().max(1);
                let w = match self.loss_form {
                    LossForm::Mean => 1.0,
                    LossForm::Paper | LossForm::Normalized => 1.0 / n as f32,
                };
                vec![w; self.style_layers().len()]
            }
        }
    }

    /// Checks every value; `styles` is the number of style images given.
    pub fn validate(&self, styles: usize) -> Result<()> {
        let finite_nonneg = |field: &'static str, v: Option<f32>| match v {
            Some(x) if !x.is_finite() || x < 0.0 => Err(Error::config(
                field,
                format!("{x} is not allowed; use a finite number >= 0"),
            )),
            _ => Ok(()),
        };
        finite_nonneg("content_weight", self.content_weight)?;
        finite_nonneg("style_weight", self.style_weight)?;
        finite_nonneg("tv_weight", self.tv_weight)?;
        if self.iterations == 0 {
            return Err(Error::config("iterations", "must be at least 1"));
        }
        if self.lbfgs_history == 0 {
            return Err(Error::config("lbfgs_history", "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::config(
                "learning_rate",
                format!("{} is not allowed; use a number > 0", self.learning_rate),
            ));
        }
        match self.size {
            Size::Longest(n) if !(16..=16384).contains(&n) => {
                return Err(Error::config(
                    "size",
                    format!("{n} is not allowed; use 16..=16384 pixels"),
                ));
            }
            Size::Exact(w, h) if !(16..=16384).contains(&w) || !(16..=16384).contains(&h) => {
                return Err(Error::config(
                    "size",
                    format!("{w}x{h} is not allowed; each side must be 16..=16384"),
                ));
            }
            _ => {}
        }
        if !(self.style_scale.is_finite() && self.style_scale > 0.0 && self.style_scale <= 8.0) {
            return Err(Error::config(
                "style_scale",
                format!(
                    "{} is not allowed; use a number in (0, 8]",
                    self.style_scale
                ),
            ));
        }
        if self.content_layers().is_empty() && self.style_layers().is_empty() {
            return Err(Error::config(
                "layers",
                "at least one content or style layer is needed",
            ));
        }
        if let Some(w) = &self.style_layer_weights {
            if w.len() != self.style_layers().len() {
                return Err(Error::config(
                    "style_layer_weights",
                    format!(
                        "{} weights given for {} style layers",
                        w.len(),
                        self.style_layers().len()
                    ),
                ));
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) {
                return Err(Error::config(
                    "style_layer_weights",
                    "each weight must be a finite number >= 0",
                ));
            }
        }
        if let Some(b) = &self.style_blend {
            if b.len() != styles {
                return Err(Error::config(
                    "style_blend",
                    format!("{} weights given for {styles} style images", b.len()),
                ));
            }
            if b.iter().any(|x| !x.is_finite() || *x < 0.0) || b.iter().sum::<f32>() <= 0.0 {
                return Err(Error::config(
                    "style_blend",
                    "weights must be finite, >= 0, and not all zero",
                ));
            }
        }
        if let Some(arch) = self.arch {
            for l in self.layers().iter() {
                arch.check_layer(*l)?;
            }
        }
        Ok(())
    }
}
