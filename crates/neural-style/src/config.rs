//! `TransferConfig`: every setting of a run, with its default and allowed range defined
//! here once; the CLI, a config file and the web API all produce one, [`TransferConfig::check`]
//! checks it once, and [`crate::Plan::new`] resolves it against the loaded network.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::vgg::{Arch, Convolution, InputConvention, Layer, Padding, Pooling, Precision};

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OptimizerKind {
    /// L-BFGS (the paper's choice).
    #[default]
    Lbfgs,
    /// Adam.
    Adam,
}

/// How a style layer's statistics are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum StyleLoss {
    /// Gram matrices (the paper's).
    #[default]
    Gram,
    /// Wasserstein-2 distance between the features' Gaussians (mean and covariance),
    /// see [`crate::objective::w2`].
    W2,
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

/// As it is written on the command line: `N` or `WxH`.
impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Longest(n) => write!(f, "{n}"),
            Size::Exact(w, h) => write!(f, "{w}x{h}"),
        }
    }
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
    /// Layers whose activations are matched to the content photo (`None`: `relu2_2,relu4_2`, or the
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
    /// L-BFGS divergence guard (see [`crate::run::optim::Lbfgs::safeguard`]).
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
    /// How the CPU computes the convolutions.
    #[serde(default)]
    pub convolution: Convolution,
    /// The number format of the Winograd convolution's products on the CPU.
    #[serde(default)]
    pub precision: Precision,
    /// Whether the objective is evaluated by tiles ([`crate::objective::tiling`]).
    #[serde(default)]
    pub tile: crate::config::TileMode,
    /// Weight of the temporal consistency term of video frames ([`crate::Temporal`]).
    #[serde(default = "default_temporal_weight")]
    pub temporal_weight: f32,
    /// Output size.
    pub size: Size,
    /// Style image size relative to the output size.
    pub style_scale: f32,
    /// Weights of the style images (`None`: equal), normalised to sum to 1.
    pub style_blend: Option<Vec<f32>>,
    /// Emit an intermediate image every N evaluations (0: never).
    pub snapshot_every: usize,
    /// Coarse-to-fine: optimise at smaller sizes first (from `min_size` up in steps of √2)
    /// and start each size from the previous result, upsampled. (`multiscale` before.)
    #[serde(alias = "multiscale")]
    pub coarse_to_fine: bool,
    /// Longest side of the coarsest size of the coarse-to-fine schedule.
    pub min_size: u32,
    /// Keep the content photo's colours (`None`: take the painting's).
    pub preserve_colors: Option<crate::image::color::PreserveColors>,
    /// How style statistics are compared.
    pub style_loss: StyleLoss,
    /// Explicit longest sides of the stages before the final one (overrides `min_size`; an
    /// empty list means a single stage). (`scales` before.)
    #[serde(alias = "scales")]
    pub stage_sides: Option<Vec<u32>>,
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
            iterations: DEFAULT_ITERATIONS,
            lbfgs_history: DEFAULT_LBFGS_HISTORY,
            line_search: false,
            safeguard: true,
            learning_rate: DEFAULT_LEARNING_RATE,
            init: Init::Content,
            seed: 0,
            pooling: Pooling::Max,
            padding: Padding::Reflect,
            convolution: Convolution::Winograd,
            precision: Precision::Auto,
            tile: crate::config::TileMode::Auto,
            temporal_weight: DEFAULT_TEMPORAL_WEIGHT,
            size: Size::Longest(DEFAULT_SIZE),
            style_scale: DEFAULT_STYLE_SCALE,
            style_blend: None,
            snapshot_every: 0,
            coarse_to_fine: true,
            min_size: DEFAULT_MIN_SIZE,
            stage_sides: None,
            preserve_colors: None,
            style_loss: StyleLoss::Gram,
        }
    }
}

/// Longest side of the first size of the default coarse-to-fine schedule.
pub const DEFAULT_MIN_SIZE: u32 = 256;
/// Default output size (longest side, pixels).
pub const DEFAULT_SIZE: u32 = 512;
/// Default loss evaluations (L-BFGS) or steps (Adam) at the first stage. 250 at 256 px, 125
/// at 362 and 63 at 512 finish a 512 px picture in 0.59 of the time 500 took (156 s against
/// 262 s), with the subject kept as well or better on the quality pairs at 256, 512 and
/// 1024 px and the style loss, as a share of the photo's, within 0.25 points of 500's on
/// all but the rocket + Mondrian (docs/defaults.md, "Run length"); longer runs refine the
/// strokes, they do not paint more of the painting.
pub const DEFAULT_ITERATIONS: usize = 250;
/// Default L-BFGS history (pairs kept).
pub const DEFAULT_LBFGS_HISTORY: usize = 100;
/// Default Adam step, in 0..255 pixel units.
pub const DEFAULT_LEARNING_RATE: f32 = 10.0;
/// Default style image size relative to the output size.
pub const DEFAULT_STYLE_SCALE: f32 = 1.0;
/// Image sides (pixels) a run accepts: output size, stage sides, `min_size`.
pub const SIDES: std::ops::RangeInclusive<u32> = 16..=16384;
/// The longest L-BFGS history (each pair keeps two image-sized vectors; the memory check
/// shortens a history that does not fit).
pub const MAX_LBFGS_HISTORY: usize = 10_000;
/// The largest `style_scale`.
pub const MAX_STYLE_SCALE: f32 = 8.0;

/// The content layers: the paper's `relu4_2`, which keeps the photo's objects, and
/// `relu2_2`, which keeps their outlines. With `relu4_2` alone, small subjects in large
/// scenes (a skyline under a night sky, people on a beach) are painted over as a run goes
/// on: at 256 px their features there are a few positions wide, and the style's Gram
/// matrices outweigh them (measured in docs/defaults.md, "Keeping the subject").
pub const DEFAULT_CONTENT_LAYERS: &[Layer] = &[Layer::Relu2_2, Layer::Relu4_2];
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
/// Default style weight of the normalised form when every content layer is at `relu4_1` or
/// deeper (the paper's `relu4_2` alone).
pub const NORMALIZED_STYLE: f32 = 10.0;
/// Default style weight of the normalised form when the content layers mix shallow and deep
/// ones (the default `relu2_2,relu4_2`). The shallow layer's term pulls every flat region
/// of the photo (a sky) back to flat; 25 paints them again and leaves the style loss at the
/// end where `relu4_2` alone with 10 left it (0.4%, 1.1% and 0.2% of the photo's on three
/// pairs at 256 px, against 0.4%, 1.3% and 0.2%; 1.1%, 3.3% and 0.4% with 10), while the
/// outlines stay.
pub const NORMALIZED_STYLE_MIXED_CONTENT: f32 = 25.0;
/// Default style weight of the normalised form when every content layer is shallower than
/// `relu4_1`, as on a network that stops at `conv3_1`. A shallow content layer holds the
/// photo's fine texture, and without `relu4_1`/`relu5_1` among the style layers only the
/// Gram matrices of `relu1_1..relu3_1` can repaint it: measured on the shared
/// `vgg19-normalised-to-conv3_1` weights at 256 and 512 px on three photo + painting pairs,
/// 10 leaves the photos lightly textured, 100 is the least that paints them all with the
/// painting's strokes, and even 1000 keeps the photos' shapes; 300 sits between (README,
/// "Choosing the defaults").
pub const NORMALIZED_STYLE_SHALLOW_CONTENT: f32 = 300.0;
/// Default total-variation weight of the normalised form.
pub const NORMALIZED_TV: f32 = 0.0;

/// Default weight of the temporal term of video frames (mean squared change in 0..1 pixel
/// units, where the optical flow is reliable).
pub const DEFAULT_TEMPORAL_WEIGHT: f32 = 200.0;

fn default_temporal_weight() -> f32 {
    DEFAULT_TEMPORAL_WEIGHT
}

/// Loss weights after defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LossWeights {
    /// α.
    pub content: f32,
    /// β.
    pub style: f32,
    /// Total variation.
    pub tv: f32,
}

/// Settings whose names changed, with the names they had: identities made from the
/// settings ([`TransferConfig::identity_json`]) keep the old names, so that what they name
/// (a checkpoint, a queued job) is recognised across the rename.
const FORMER_NAMES: &[(&str, &str)] =
    &[("coarse_to_fine", "multiscale"), ("stage_sides", "scales")];

impl TransferConfig {
    /// The settings as JSON under the names they had when checkpoints and queued jobs were
    /// first keyed by them, for identities that must outlive a rename (the checkpoint
    /// fingerprint, the queue's job keys). Reading takes both names.
    pub fn identity_json(&self) -> String {
        let mut json = serde_json::to_string(self).unwrap_or_default();
        for (now, before) in FORMER_NAMES {
            json = json.replacen(&format!("\"{now}\":"), &format!("\"{before}\":"), 1);
        }
        json
    }

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

    /// The longest side a run uses of any input image, with a margin for the final
    /// resize: twice the output's longest side (or the style's, at a `style_scale` above
    /// 1). Larger inputs may be reduced while they are decoded
    /// ([`crate::Decoding::side_used`]).
    pub fn input_side_used(&self) -> u32 {
        let longest = match self.size {
            Size::Longest(n) => n,
            Size::Exact(w, h) => w.max(h),
        };
        let style = (f64::from(longest) * f64::from(self.style_scale.max(1.0))).ceil();
        (2.0 * style).min(f64::from(u32::MAX)) as u32
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

    /// The loss weights: those set, else the defaults for the loss form and convention.
    ///
    /// Mean form, Caffe convention: jcjohnson/neural-style's 5, 100, 1e-3. Mean form,
    /// torchvision convention (inputs about 57x smaller, features correspondingly smaller):
    /// 1, 1e6 (the PyTorch tutorial's ratio), 0. Paper form: α = 1, β = 1e3 (α/β = 1e-3), TV 0.
    ///
    /// Normalised form: content 1; style [`NORMALIZED_STYLE`] (10) when every one of the
    /// run's `content` layers lies in block 4 or deeper, [`NORMALIZED_STYLE_SHALLOW_CONTENT`]
    /// (300) when every one lies before block 4, [`NORMALIZED_STYLE_MIXED_CONTENT`] (25)
    /// when there are both (the default layers); TV 0.
    pub(crate) fn loss_weights(
        &self,
        convention: &InputConvention,
        content: &[Layer],
    ) -> LossWeights {
        let shallow = content.iter().filter(|l| l.block() < 4).count();
        let normalized_style = match shallow {
            0 => NORMALIZED_STYLE,
            n if n == content.len() => NORMALIZED_STYLE_SHALLOW_CONTENT,
            _ => NORMALIZED_STYLE_MIXED_CONTENT,
        };
        let (c, s, t) = match (self.loss_form, convention) {
            (LossForm::Normalized, _) => (NORMALIZED_CONTENT, normalized_style, NORMALIZED_TV),
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

    /// One weight per style layer when `style_layer_weights` is set (once the style layers
    /// are known: set explicitly, or resolved for the network by [`crate::Plan::new`]).
    pub(crate) fn check_style_layer_weights(&self) -> Result<()> {
        match &self.style_layer_weights {
            Some(w) if w.len() != self.style_layers().len() => Err(Error::config(
                "style_layer_weights",
                format!(
                    "{} weights given for {} style layers ({})",
                    w.len(),
                    self.style_layers().len(),
                    self.style_layers()
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            _ => Ok(()),
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

    /// Every number against its range, from one table: a setting, whether its value is
    /// outside the range, the value as the user gave it, and the range in words.
    fn check_ranges(&self) -> Result<()> {
        let nonneg = |v: f32| v.is_finite() && v >= 0.0;
        let weight = |v: Option<f32>| (v.is_some_and(|v| !nonneg(v)), v.unwrap_or_default());
        let side = |n: u32| SIDES.contains(&n);
        let sides = || format!("{}..={} pixels", SIDES.start(), SIDES.end());
        let size = match self.size {
            Size::Longest(n) => side(n),
            Size::Exact(w, h) => side(w) && side(h),
        };
        let tile = match self.tile {
            TileMode::Size(n) => (!side(n), n),
            TileMode::Auto | TileMode::Off => (false, 0),
        };
        let stages = self.stage_sides.as_deref().unwrap_or_default();
        let increasing = stages.iter().all(|s| side(*s)) && stages.windows(2).all(|w| w[0] < w[1]);
        let layer_weights = self.style_layer_weights.as_deref().unwrap_or_default();
        let (content, style, tv) = (
            weight(self.content_weight),
            weight(self.style_weight),
            weight(self.tv_weight),
        );
        let lr = self.learning_rate;
        let style_scale = self.style_scale;
        let history = self.lbfgs_history;
        let n = |v: &dyn std::fmt::Display| v.to_string();
        #[rustfmt::skip]
        let table: [(&'static str, bool, String, String); 13] = [
            ("content_weight", content.0, n(&content.1), "a finite number >= 0".into()),
            ("style_weight", style.0, n(&style.1), "a finite number >= 0".into()),
            ("tv_weight", tv.0, n(&tv.1), "a finite number >= 0".into()),
            ("temporal_weight", !nonneg(self.temporal_weight), n(&self.temporal_weight), "a finite number >= 0".into()),
            ("iterations", self.iterations == 0, n(&self.iterations), "at least 1".into()),
            ("tile", tile.0, n(&tile.1), sides()),
            ("lbfgs_history", !(1..=MAX_LBFGS_HISTORY).contains(&history), n(&history), format!("1..={MAX_LBFGS_HISTORY}")),
            ("learning_rate", !(lr.is_finite() && lr > 0.0), n(&lr), "a number > 0".into()),
            ("size", !size, n(&self.size), format!("{} a side", sides())),
            ("style_scale", !(style_scale > 0.0 && style_scale <= MAX_STYLE_SCALE), n(&style_scale), format!("a number in (0, {MAX_STYLE_SCALE}]")),
            ("min_size", !side(self.min_size), n(&self.min_size), sides()),
            ("stage_sides", !increasing, format!("{stages:?}"), format!("increasing sizes of {}", sides())),
            ("style_layer_weights", !layer_weights.iter().all(|w| nonneg(*w)), format!("{layer_weights:?}"), "finite weights >= 0".into()),
        ];
        match table.into_iter().find(|(_, outside, _, _)| *outside) {
            Some((field, _, value, allowed)) => Err(Error::not_allowed(field, value, allowed)),
            None => Ok(()),
        }
    }

    /// Checks every value against its range and the others, for a run with `styles` style
    /// images; what depends on the network is checked when the plan is made.
    pub fn check(self, styles: usize) -> Result<CheckedConfig> {
        self.validate(styles)?;
        Ok(CheckedConfig {
            config: self,
            styles,
        })
    }

    fn validate(&self, styles: usize) -> Result<()> {
        self.check_ranges()?;
        self.precision.resolve()?;
        if self.content_layers().is_empty() && self.style_layers().is_empty() {
            return Err(Error::config(
                "layers",
                "at least one content or style layer is needed",
            ));
        }
        if self.style_layer_weights.is_some() {
            // Without explicit style layers the count is known once the weights file says
            // which layers it has: `Plan::new` counts them then.
            if self.style_layers.is_some() {
                self.check_style_layer_weights()?;
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
            for l in self.content_layers().iter().chain(self.style_layers()) {
                arch.check_layer(*l)?;
            }
        }
        Ok(())
    }
}

/// A [`TransferConfig`] whose values were checked by [`TransferConfig::check`], for a run
/// with a given number of style images.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedConfig {
    config: TransferConfig,
    styles: usize,
}

impl CheckedConfig {
    /// The settings.
    pub fn get(&self) -> &TransferConfig {
        &self.config
    }

    /// The number of style images it was checked for.
    pub fn styles(&self) -> usize {
        self.styles
    }
}

/// Whether a run evaluates its objective by tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TileMode {
    /// Whole images unless a front end finds they do not fit in memory
    /// ([`crate::run::memory::tile_that_fits`]) and asks for tiles ([`crate::Plan::with_tiling`]).
    #[default]
    Auto,
    /// Never by tiles.
    Off,
    /// Cores of about this many pixels a side at every stage larger than one.
    Size(u32),
}

/// How the loss terms are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LossForm {
    /// Scale-free: each term of the mean form divided by its target's energy, content by
    /// mean(P²) and each style layer by mean(A²), and TV taken as the mean absolute step
    /// between neighbouring pixels in 0..1 units. Multiplying a network's activations (or
    /// changing its input convention or the image size) leaves the weights' meaning intact.
    #[default]
    Normalized,
    /// jcjohnson/neural-style: content = mean((F-P)²); G = FFᵀ/(C·H·W); style = mean((G-A)²).
    Mean,
    /// The paper: content = ½Σ(F-P)²; G = FFᵀ; style E_l = Σ(G-A)²/(4N²M²).
    Paper,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_settings_read_under_both_names_and_identify_under_the_old_ones() {
        let c = TransferConfig {
            coarse_to_fine: false,
            stage_sides: Some(vec![200]),
            ..TransferConfig::default()
        };
        let old = c.identity_json();
        assert!(old.contains(r#""multiscale":false,"#), "{old}");
        assert!(old.contains(r#""scales":[200]"#), "{old}");
        assert!(!old.contains("coarse_to_fine") && !old.contains("stage_sides"));
        let new = serde_json::to_string(&c).unwrap();
        for json in [old, new] {
            assert_eq!(serde_json::from_str::<TransferConfig>(&json).unwrap(), c);
        }
    }

    #[test]
    fn schedule_flags_are_checked() {
        let c = TransferConfig {
            stage_sides: Some(vec![300, 200]),
            ..TransferConfig::default()
        };
        assert!(matches!(
            c.check(1),
            Err(Error::InvalidConfig {
                field: "stage_sides",
                ..
            })
        ));
        let c = TransferConfig {
            min_size: 4,
            ..TransferConfig::default()
        };
        assert!(matches!(
            c.check(1),
            Err(Error::InvalidConfig {
                field: "min_size",
                ..
            })
        ));
    }

    #[test]
    fn default_style_weight_is_stronger_when_content_is_read_before_block_4() {
        let convention = InputConvention::TorchRgb01;
        let config = TransferConfig::default();
        let weights = |content: &[Layer]| config.loss_weights(&convention, content);
        assert_eq!(weights(&[Layer::Relu4_2]).style, NORMALIZED_STYLE);
        assert_eq!(
            weights(&[Layer::Relu3_1]).style,
            NORMALIZED_STYLE_SHALLOW_CONTENT
        );
        // Shallow and deep together: between the two.
        assert_eq!(
            weights(&[Layer::Relu2_2, Layer::Relu4_2]).style,
            NORMALIZED_STYLE_MIXED_CONTENT
        );
        assert_eq!(weights(DEFAULT_CONTENT_LAYERS).style, 25.0);
        // A weight given is kept, and the other forms keep their own defaults.
        let given = TransferConfig {
            style_weight: Some(3.0),
            ..TransferConfig::default()
        };
        assert_eq!(
            given.loss_weights(&convention, &[Layer::Relu3_1]).style,
            3.0
        );
        let paper = TransferConfig {
            loss_form: LossForm::Paper,
            ..TransferConfig::default()
        };
        assert_eq!(
            paper.loss_weights(&convention, &[Layer::Relu3_1]).style,
            1e3
        );
    }
}
