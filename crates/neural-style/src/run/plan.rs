//! The resolved plan of a run: a checked [`TransferConfig`] resolved once against the
//! loaded network and the run's images (the layers the weights have, the default loss
//! weights for that network, the output size and the coarse-to-fine schedule, the
//! checkpoints). [`crate::run`] takes a [`Plan`]; nothing after it resolves or checks again.

use std::path::Path;

use crate::config::{CheckedConfig, Init, LossWeights, OptimizerKind, Size, TransferConfig};
use crate::error::{Error, Result};
use crate::image::io::{Image, fit_longest};
use crate::model::vgg::Layer;
use crate::run::checkpoint::Checkpoint;
use crate::run::inputs::Inputs;
use crate::run::layers::ResolvedLayers;
use crate::run::network::Network;

/// One stage (size) of a coarse-to-fine schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Loss evaluations (or Adam steps) at this stage.
    pub evaluations: usize,
}

/// The coarse-to-fine schedule of `config` ending at `width` x `height`: the longest side
/// grows from `min_size` (or through `stage_sides`) by factors of √2. The first stage gets
/// `iterations` evaluations; each later one `iterations · (first area / its area)`, but at
/// least a quarter of `iterations`, so every stage costs about the same time and the final
/// one only refines. A single stage (coarse-to-fine off, or a size within √2 of `min_size`)
/// gets `iterations`.
pub fn schedule(config: &TransferConfig, width: u32, height: u32) -> Vec<Stage> {
    let longest = width.max(height);
    let sides: Vec<u32> = match (&config.stage_sides, config.coarse_to_fine) {
        (Some(list), _) => list.iter().copied().filter(|&s| s < longest).collect(),
        (None, false) => Vec::new(),
        (None, true) => {
            let mut sides = Vec::new();
            let mut side = f64::from(config.min_size);
            // Stop when the next size is within about √2 of the final one.
            while side * 1.2 < f64::from(longest) {
                sides.push(side.round() as u32);
                side *= std::f64::consts::SQRT_2;
            }
            sides
        }
    };
    let size_at = |side: u32| {
        let f = f64::from(side) / f64::from(longest);
        let shrink = |v: u32| ((f64::from(v) * f).round() as u32).max(16);
        (shrink(width), shrink(height))
    };
    let mut out: Vec<Stage> = sides
        .into_iter()
        .map(size_at)
        .chain(std::iter::once((width, height)))
        .map(|(width, height)| Stage {
            width,
            height,
            evaluations: 0,
        })
        .collect();
    let first_area = f64::from(out[0].width) * f64::from(out[0].height);
    let n = config.iterations;
    for (i, s) in out.iter_mut().enumerate() {
        s.evaluations = if i == 0 {
            n
        } else {
            let area = f64::from(s.width) * f64::from(s.height);
            ((n as f64 * first_area / area).round() as usize)
                .max(n.div_ceil(4))
                .max(1)
        };
    }
    out
}

/// The longest side of the style images at a stage of `width` x `height`.
pub(crate) fn style_longest(width: u32, height: u32, style_scale: f32) -> u32 {
    ((width.max(height) as f32) * style_scale).round().max(16.0) as u32
}

/// The shortest side an image needs to reach `layer` through the network: each 2x2
/// pooling before it halves the image, rounding down, and the layer needs one pixel
/// (measured: on the tiny VGG19 a 64x16 image reaches relu5_1 with every padding, 64x15
/// does not).
pub(crate) fn shortest_side_for(layer: Layer) -> u32 {
    1 << layer.poolings_before()
}

/// Refuses images the network cannot take at some stage: the image optimised (through
/// every layer) and each style image (through the style layers) must keep at least
/// [`shortest_side_for`] pixels on each side at every stage.
fn check_shapes(config: &TransferConfig, inputs: &Inputs, stages: &[Stage]) -> Result<()> {
    let deepest = |layers: &[Layer]| layers.iter().copied().max();
    let all = config.layers();
    let refuse = |what: String, (w, h): (u32, u32), layer: Layer, need: u32, i: usize| {
        Err(Error::InvalidInputs(format!(
            "{what} is {w}x{h} at stage {} of {}, and {layer} needs at least {need} pixels on each side; use a larger size or a less elongated image",
            i + 1,
            stages.len()
        )))
    };
    for (i, stage) in stages.iter().enumerate() {
        if let Some(layer) = deepest(&all) {
            let need = shortest_side_for(layer);
            if stage.width.min(stage.height) < need {
                return refuse(
                    "the image".into(),
                    (stage.width, stage.height),
                    layer,
                    need,
                    i,
                );
            }
        }
        if let Some(layer) = deepest(config.style_layers()) {
            let need = shortest_side_for(layer);
            let longest = style_longest(stage.width, stage.height, config.style_scale);
            for (k, style) in inputs.styles.iter().enumerate() {
                let (w, h) = fit_longest(style.width, style.height, longest);
                if w.min(h) < need {
                    return refuse(format!("style image {}", k + 1), (w, h), layer, need, i);
                }
            }
        }
    }
    Ok(())
}

/// The output width and height for `size` and the content image, if any.
pub fn output_size(size: Size, content: Option<&Image>) -> (u32, u32) {
    match (size, content) {
        (Size::Exact(w, h), _) => (w, h),
        (Size::Longest(n), Some(c)) => fit_longest(c.width, c.height, n),
        (Size::Longest(n), None) => (n, n),
    }
}

/// Checkpoints of a run: how often, and the one it continues from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checkpoints {
    /// L-BFGS iterations between checkpoints (0: none).
    pub(crate) every: usize,
    /// The checkpoint to continue from.
    pub(crate) resume: Option<Checkpoint>,
    /// The run's fingerprint (empty without checkpoints).
    pub(crate) fingerprint: String,
}

/// A run resolved against its network and images, ready for [`crate::run`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The settings as given (checkpoints are fingerprinted with them).
    given: TransferConfig,
    /// The settings with the layer lists resolved for the network.
    config: TransferConfig,
    weights: LossWeights,
    /// Each style image's share of the style target (`style_blend` normalised to sum to 1;
    /// equal shares when unset).
    style_shares: Vec<f32>,
    inputs: Inputs,
    size: (u32, u32),
    stages: Vec<Stage>,
    /// The identity of the network's weights ([`Network::identity`]), for checkpoints.
    pub(crate) network: String,
    /// The network's architecture (its layer sequence sets the tiles' halo).
    arch: crate::model::vgg::Arch,
    /// Tile cores of about this many pixels (`None`: whole images).
    tile: Option<u32>,
    /// Stages of at most this many pixels are evaluated whole even with tiles (they fit).
    whole_up_to: Option<u64>,
    pub(crate) checkpoints: Checkpoints,
}

impl Plan {
    /// Resolves `config` for `net` and `inputs`: the layers the network has, the default
    /// loss weights for it, the output size and the schedule. Refuses what the network or
    /// the images cannot do: layers out of reach, a style-layer weight per layer missing,
    /// masks that do not fit, no image at all, a missing init image.
    pub fn new(config: &CheckedConfig, net: &Network, inputs: Inputs) -> Result<Self> {
        let given = config.get().clone();
        if inputs.styles.len() != config.styles() {
            return Err(Error::InvalidInputs(format!(
                "{} style images given to a config checked for {}",
                inputs.styles.len(),
                config.styles()
            )));
        }
        if inputs.content.is_none() && inputs.styles.is_empty() {
            return Err(Error::InvalidInputs(
                "a content image, a style image, or both are needed".into(),
            ));
        }
        crate::objective::mask::check(
            &inputs.style_masks,
            inputs.styles.len(),
            inputs.content_mask.as_ref(),
            inputs.content.as_ref().map(|c| (c.width, c.height)),
        )?;
        if given.init == Init::Image && inputs.init.is_none() {
            return Err(Error::config(
                "init",
                "init is `image` but no init image was given",
            ));
        }
        let layers = ResolvedLayers::new(&given, net.info.arch, &net.info.convs);
        let weights = given.loss_weights(&net.convention, &layers.content);
        let config = layers.applied_to(&given);
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
        config.check_style_layer_weights()?;
        let size = output_size(config.size, inputs.content.as_ref());
        let stages = schedule(&config, size.0, size.1);
        check_shapes(&config, &inputs, &stages)?;
        let tile = match config.tile {
            crate::config::TileMode::Size(n) => Some(n),
            crate::config::TileMode::Auto | crate::config::TileMode::Off => None,
        };
        let style_shares = match &config.style_blend {
            Some(b) => {
                let s: f32 = b.iter().sum();
                b.iter().map(|x| x / s).collect()
            }
            None => vec![1.0 / inputs.styles.len().max(1) as f32; inputs.styles.len()],
        };
        Ok(Self {
            given,
            config,
            weights,
            style_shares,
            inputs,
            size,
            stages,
            network: net.identity.clone(),
            arch: net.info.arch,
            tile,
            whole_up_to: None,
            checkpoints: Checkpoints::default(),
        })
    }

    /// This plan emitting a checkpoint every `every` L-BFGS iterations (0: never) and, given
    /// `resume` (a checkpoint and the file it came from), continuing from it. The checkpoint
    /// must come from a run with the same weights, settings and images, at a stage of this
    /// schedule.
    pub fn with_checkpoints(
        mut self,
        every: usize,
        resume: Option<(Checkpoint, &Path)>,
    ) -> Result<Self> {
        if every == 0 && resume.is_none() {
            self.checkpoints = Checkpoints::default();
            return Ok(self);
        }
        if self.config.optimizer != OptimizerKind::Lbfgs {
            return Err(Error::config(
                "optimizer",
                "checkpoints and resuming need L-BFGS (the default optimiser)",
            ));
        }
        // Hashing every input pixel is only worth it when checkpoints are in play.
        let fingerprint = crate::run::checkpoint::fingerprint(&self.given, &self.inputs);
        if let Some((c, path)) = &resume {
            let refuse = |message: &str| Error::Checkpoint {
                path: path.to_path_buf(),
                message: message.into(),
            };
            if c.weights != self.network {
                return Err(refuse(&format!(
                    "it was made with other weights (SHA-256 {}…, these are {}…); give the weights file it was made with",
                    &c.weights[..c.weights.len().min(12)],
                    &self.network[..self.network.len().min(12)]
                )));
            }
            if c.fingerprint != fingerprint {
                return Err(refuse(
                    "it was made with other settings or images; give the same flags and files",
                ));
            }
            let Some(stage) = self.stages.get(c.stage) else {
                return Err(refuse("its stage is not in this run's schedule"));
            };
            if c.lbfgs.x.len() != 3 * (stage.width * stage.height) as usize {
                return Err(refuse("its image size does not match this run's"));
            }
        }
        self.checkpoints = Checkpoints {
            every,
            resume: resume.map(|(c, _)| c),
            fingerprint,
        };
        Ok(self)
    }

    /// This plan evaluating its objective in tiles with cores of about `core` pixels a side
    /// (`None`: whole images), at every stage larger than one core.
    pub fn with_tiling(mut self, core: Option<u32>) -> Self {
        self.tile = core;
        self
    }

    /// The tiles of this plan's network and layers, if it evaluates by tiles.
    pub fn tiles(&self) -> Option<crate::objective::tiling::Tiling> {
        let core = self.tile? as usize;
        Some(crate::objective::tiling::Tiling::new(
            core,
            &self.arch.layers(),
            &self.config.layers(),
        ))
    }

    /// This plan evaluating stages of at most `pixels` pixels whole even when it has tiles
    /// (tiles cost time, and the smaller stages of a coarse-to-fine run fit in memory).
    pub fn with_whole_stages_up_to(mut self, pixels: Option<u64>) -> Self {
        self.whole_up_to = pixels;
        self
    }

    /// How a `width` x `height` stage is cut, if it is evaluated by tiles (more than one).
    pub fn tiling(&self, width: u32, height: u32) -> Option<crate::objective::tiling::Tiling> {
        let pixels = u64::from(width) * u64::from(height);
        if self.whole_up_to.is_some_and(|p| pixels <= p) {
            return None;
        }
        self.tiles()
            .filter(|t| t.core < width as usize || t.core < height as usize)
    }

    /// This plan with an L-BFGS history of `history` pairs (at least 1), e.g. the longest
    /// that fits in memory ([`crate::run::memory::history_that_fits`]).
    pub fn with_lbfgs_history(mut self, history: usize) -> Self {
        let history = history.max(1);
        self.given.lbfgs_history = history;
        self.config.lbfgs_history = history;
        self
    }

    /// The network architecture this plan was resolved against.
    pub fn arch(&self) -> crate::model::vgg::Arch {
        self.arch
    }

    /// The settings, with the layer lists resolved for the network.
    pub fn config(&self) -> &TransferConfig {
        &self.config
    }

    /// The loss weights, defaults applied for the network.
    pub fn loss_weights(&self) -> LossWeights {
        self.weights
    }

    /// Each style image's share of the style target, summing to 1.
    pub fn style_shares(&self) -> &[f32] {
        &self.style_shares
    }

    /// The run's images.
    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    /// The output width and height.
    pub fn output_size(&self) -> (u32, u32) {
        self.size
    }

    /// The coarse-to-fine schedule, ending at the output size.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Loss evaluations planned, all stages together.
    pub fn evaluations(&self) -> usize {
        self.stages.iter().map(|s| s.evaluations).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        LossForm, NORMALIZED_STYLE_MIXED_CONTENT, NORMALIZED_STYLE_SHALLOW_CONTENT,
    };
    use crate::model::vgg::{Arch, InputConvention};

    /// The convolutions of a VGG19 that stops at conv3_1.
    const TO_CONV3_1: [Layer; 5] = [
        Layer::Conv1_1,
        Layer::Conv1_2,
        Layer::Conv2_1,
        Layer::Conv2_2,
        Layer::Conv3_1,
    ];

    fn sides(s: &[Stage]) -> Vec<(u32, u32, usize)> {
        s.iter()
            .map(|s| (s.width, s.height, s.evaluations))
            .collect()
    }

    /// `config` with its layers resolved for a VGG19 that has `convs`.
    fn resolved(config: TransferConfig, convs: &[Layer]) -> TransferConfig {
        ResolvedLayers::new(&config, Arch::Vgg19, convs).applied_to(&config)
    }

    #[test]
    fn schedule_grows_by_sqrt2_and_spends_about_equal_time_per_stage() {
        let c = TransferConfig {
            iterations: 400,
            ..TransferConfig::default()
        };
        // 256, 362 then the final 512x384; 400 at the first, 400/2 and the floor 100.
        assert_eq!(
            sides(&schedule(&c, 512, 384)),
            vec![(256, 192, 400), (362, 272, 200), (512, 384, 100)]
        );
        let big = schedule(&c, 2048, 2048);
        let longest: Vec<u32> = big.iter().map(|s| s.width).collect();
        assert_eq!(longest, vec![256, 362, 512, 724, 1024, 1448, 2048]);
        assert!(big.iter().all(|s| s.evaluations >= 100));
    }

    #[test]
    fn default_schedule_at_512_is_the_one_the_docs_state() {
        // README and docs/defaults.md: 250 at 256 px, 125 at 362, 63 at 512.
        assert_eq!(
            sides(&schedule(&TransferConfig::default(), 512, 384)),
            vec![(256, 192, 250), (362, 272, 125), (512, 384, 63)]
        );
    }

    #[test]
    fn schedule_is_single_when_off_or_when_small() {
        let mut c = TransferConfig {
            iterations: 50,
            ..TransferConfig::default()
        };
        assert_eq!(sides(&schedule(&c, 300, 200)), vec![(300, 200, 50)]);
        c.coarse_to_fine = false;
        assert_eq!(sides(&schedule(&c, 1024, 768)), vec![(1024, 768, 50)]);
        c.stage_sides = Some(vec![100, 200, 2000]);
        // Explicit sizes win over the switch; sizes not below the final one are dropped.
        assert_eq!(
            sides(&schedule(&c, 400, 400)),
            vec![(100, 100, 50), (200, 200, 13), (400, 400, 13)]
        );
        c.stage_sides = Some(vec![]);
        assert_eq!(sides(&schedule(&c, 400, 400)), vec![(400, 400, 50)]);
    }

    #[test]
    fn style_layer_weights_are_counted_against_the_layers_the_weights_have() {
        // A VGG19 that stops at conv3_1 has three of the five default style layers.
        let three = TransferConfig {
            style_layer_weights: Some(vec![1.0, 2.0, 3.0]),
            ..TransferConfig::default()
        };
        three.clone().check(1).unwrap();
        let three = resolved(three, &TO_CONV3_1);
        three.check_style_layer_weights().unwrap();
        assert_eq!(three.layer_weights(), vec![1.0, 2.0, 3.0]);
        let five = TransferConfig {
            style_layer_weights: Some(vec![1.0; 5]),
            ..TransferConfig::default()
        };
        let err = resolved(five.clone(), &TO_CONV3_1)
            .check_style_layer_weights()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("5 weights given for 3 style layers (relu1_1, relu2_1, relu3_1)"),
            "{err}"
        );
        // Explicit layers are counted at once.
        let explicit = TransferConfig {
            style_layers: Some(vec![Layer::Relu1_1]),
            ..five
        };
        assert!(explicit.check(1).is_err());
    }

    #[test]
    fn each_pooling_before_a_layer_doubles_the_shortest_side_it_needs() {
        assert_eq!(shortest_side_for(Layer::Relu1_1), 1);
        assert_eq!(shortest_side_for(Layer::Pool1), 2);
        assert_eq!(shortest_side_for(Layer::Relu4_2), 8);
        assert_eq!(shortest_side_for(Layer::Relu5_1), 16);
        // 64x15 at relu5_1: every stage and every style image is checked.
        let config = resolved(TransferConfig::default(), Layer::ALL);
        let stage = |w, h| Stage {
            width: w,
            height: h,
            evaluations: 1,
        };
        let none = Inputs::default();
        let err = check_shapes(&config, &none, &[stage(32, 8), stage(64, 16)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the image is 32x8 at stage 1 of 2, and relu5_1 needs at least 16 pixels on each side; use a larger size or a less elongated image"
        );
        assert!(check_shapes(&config, &none, &[stage(64, 16)]).is_ok());
        let thin = Inputs {
            styles: vec![Image::new(500, 2, vec![0.0; 3000])],
            ..Inputs::default()
        };
        let err = check_shapes(&config, &thin, &[stage(64, 16)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("style image 1 is 64x1 at stage 1 of 1"),
            "{err}"
        );
    }

    #[test]
    fn weights_that_stop_at_conv3_1_read_content_at_relu3_1_with_the_stronger_default() {
        let layers = ResolvedLayers::new(&TransferConfig::default(), Arch::Vgg19, &TO_CONV3_1);
        assert_eq!(layers.content, vec![Layer::Relu3_1]);
        assert_eq!(
            layers.style,
            vec![Layer::Relu1_1, Layer::Relu2_1, Layer::Relu3_1]
        );
        let convention = InputConvention::TorchRgb01;
        let config = TransferConfig::default();
        assert_eq!(
            config.loss_weights(&convention, &layers.content).style,
            NORMALIZED_STYLE_SHALLOW_CONTENT
        );
        let paper = TransferConfig {
            loss_form: LossForm::Paper,
            ..config.clone()
        };
        assert_eq!(paper.loss_weights(&convention, &layers.content).style, 1e3);
        let full = ResolvedLayers::new(&config, Arch::Vgg19, Layer::ALL);
        assert_eq!(full.content, vec![Layer::Relu2_2, Layer::Relu4_2]);
        assert_eq!(
            config.loss_weights(&convention, &full.content).style,
            NORMALIZED_STYLE_MIXED_CONTENT
        );
    }
}
