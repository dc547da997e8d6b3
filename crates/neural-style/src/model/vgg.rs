//! VGG16 / VGG19 feature extractors with named layers (Simonyan & Zisserman 2014), as used
//! by Gatys, Ecker & Bethge 2015: the convolutional part only, stopping at the deepest layer
//! a run needs.
//!
//! One file of ~610 lines of code (plus its tests): the layer names, the architecture tables
//! and the forward pass share the one [`Layer`] enum.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::PadMode;
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::fastconv::ConvFilters;
use neural_style_kernels::Border;

/// The kind of a VGG layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// A 3x3 convolution.
    Conv,
    /// The rectifier after a convolution.
    Relu,
    /// The 2x2 pooling that closes a block.
    Pool,
}

macro_rules! layers {
    ($( $variant:ident = $name:literal, $kind:ident, $block:literal, $index:literal; )*) => {
        /// A named layer of VGG19 (VGG16 has all of them but `conv3_4`, `conv4_4`, `conv5_4`
        /// and their rectifiers), in network order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        #[allow(missing_docs)]
        pub enum Layer { $( $variant, )* }

        impl Layer {
            /// Every layer of VGG19, in network order.
            pub const ALL: &'static [Layer] = &[ $( Layer::$variant, )* ];

            /// The conventional name, such as `relu4_2`.
            pub fn name(self) -> &'static str {
                match self { $( Layer::$variant => $name, )* }
            }

            /// Convolution, rectifier or pooling.
            pub fn kind(self) -> LayerKind {
                match self { $( Layer::$variant => LayerKind::$kind, )* }
            }

            /// The block (1..=5) the layer belongs to.
            pub fn block(self) -> u8 {
                match self { $( Layer::$variant => $block, )* }
            }

            /// The position in its block (1-based; 0 for pooling).
            pub fn index_in_block(self) -> u8 {
                match self { $( Layer::$variant => $index, )* }
            }
        }
    };
}

layers! {
    Conv1_1 = "conv1_1", Conv, 1, 1; Relu1_1 = "relu1_1", Relu, 1, 1;
    Conv1_2 = "conv1_2", Conv, 1, 2; Relu1_2 = "relu1_2", Relu, 1, 2;
    Pool1 = "pool1", Pool, 1, 0;
    Conv2_1 = "conv2_1", Conv, 2, 1; Relu2_1 = "relu2_1", Relu, 2, 1;
    Conv2_2 = "conv2_2", Conv, 2, 2; Relu2_2 = "relu2_2", Relu, 2, 2;
    Pool2 = "pool2", Pool, 2, 0;
    Conv3_1 = "conv3_1", Conv, 3, 1; Relu3_1 = "relu3_1", Relu, 3, 1;
    Conv3_2 = "conv3_2", Conv, 3, 2; Relu3_2 = "relu3_2", Relu, 3, 2;
    Conv3_3 = "conv3_3", Conv, 3, 3; Relu3_3 = "relu3_3", Relu, 3, 3;
    Conv3_4 = "conv3_4", Conv, 3, 4; Relu3_4 = "relu3_4", Relu, 3, 4;
    Pool3 = "pool3", Pool, 3, 0;
    Conv4_1 = "conv4_1", Conv, 4, 1; Relu4_1 = "relu4_1", Relu, 4, 1;
    Conv4_2 = "conv4_2", Conv, 4, 2; Relu4_2 = "relu4_2", Relu, 4, 2;
    Conv4_3 = "conv4_3", Conv, 4, 3; Relu4_3 = "relu4_3", Relu, 4, 3;
    Conv4_4 = "conv4_4", Conv, 4, 4; Relu4_4 = "relu4_4", Relu, 4, 4;
    Pool4 = "pool4", Pool, 4, 0;
    Conv5_1 = "conv5_1", Conv, 5, 1; Relu5_1 = "relu5_1", Relu, 5, 1;
    Conv5_2 = "conv5_2", Conv, 5, 2; Relu5_2 = "relu5_2", Relu, 5, 2;
    Conv5_3 = "conv5_3", Conv, 5, 3; Relu5_3 = "relu5_3", Relu, 5, 3;
    Conv5_4 = "conv5_4", Conv, 5, 4; Relu5_4 = "relu5_4", Relu, 5, 4;
    Pool5 = "pool5", Pool, 5, 0;
}

impl Layer {
    /// How many 2x2 poolings an input goes through before reaching this layer.
    pub fn poolings_before(self) -> u8 {
        match self.kind() {
            LayerKind::Pool => self.block(),
            _ => self.block() - 1,
        }
    }

    /// The convolution whose output this layer sees (itself for a convolution; the last
    /// convolution of the block for a pooling layer, which depends on `arch`).
    pub fn source_conv(self, arch: Arch) -> Layer {
        match self.kind() {
            LayerKind::Conv => self,
            LayerKind::Relu => {
                Layer::ALL[Layer::ALL.iter().position(|l| *l == self).unwrap_or(1) - 1]
            }
            LayerKind::Pool => *arch
                .layers()
                .iter()
                .rev()
                .find(|l| l.kind() == LayerKind::Conv && l.block() == self.block())
                .unwrap_or(&Layer::Conv1_1),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        Layer::ALL
            .iter()
            .copied()
            .find(|l| l.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownLayer {
                name: s.to_string(),
                arch: "VGG".to_string(),
                known: Layer::ALL
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl TryFrom<String> for Layer {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Layer> for String {
    fn from(l: Layer) -> String {
        l.name().to_string()
    }
}

/// The network architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Arch {
    /// 13 convolutions (2, 2, 3, 3, 3 per block).
    Vgg16,
    /// 16 convolutions (2, 2, 4, 4, 4 per block); the paper's network.
    #[default]
    Vgg19,
}

impl Arch {
    /// The layers of this network in order, as in torchvision's `features` sequence.
    pub fn layers(self) -> Vec<Layer> {
        Layer::ALL
            .iter()
            .copied()
            .filter(|l| self == Arch::Vgg19 || l.index_in_block() < 4 || l.block() < 3)
            .collect()
    }

    /// The index of `layer` in torchvision's `features` sequence, if this network has it.
    pub fn feature_index(self, layer: Layer) -> Option<usize> {
        self.layers().iter().position(|l| *l == layer)
    }

    /// Checks that this network has `layer`.
    pub fn check_layer(self, layer: Layer) -> Result<()> {
        if self.feature_index(layer).is_some() {
            Ok(())
        } else {
            Err(Error::UnknownLayer {
                name: layer.name().to_string(),
                arch: self.to_string(),
                known: self
                    .layers()
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Vgg16 => "vgg16",
            Arch::Vgg19 => "vgg19",
        })
    }
}

impl FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "vgg16" => Ok(Arch::Vgg16),
            "vgg19" => Ok(Arch::Vgg19),
            _ => Err(Error::config(
                "arch",
                format!("`{s}` is not one of vgg16, vgg19"),
            )),
        }
    }
}

/// The pooling that closes each block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Pooling {
    /// 2x2 max pooling, as the network was trained.
    #[default]
    Max,
    /// 2x2 average pooling; the paper finds it gives slightly smoother results.
    Avg,
}

/// How a convolution treats the image border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Padding {
    /// Zeros, as the network was trained.
    Zero,
    /// Mirror the image at the border (without repeating the edge pixel): the default, with
    /// fewer border artefacts than zeros.
    #[default]
    Reflect,
    /// Repeat the edge pixel.
    Replicate,
}

impl Padding {
    /// The same rule in the kernels' terms.
    pub(crate) fn border(self) -> Border {
        match self {
            Self::Zero => Border::Zero,
            Self::Reflect => Border::Reflect,
            Self::Replicate => Border::Replicate,
        }
    }
}

/// How the CPU computes the 3×3 convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Convolution {
    /// Winograd F(4×4, 3×3) (Lavin & Gray 2016): a quarter of the multiplications, with
    /// rounding differences of about 1e-6 relative to the direct form. GPUs use their own
    /// convolution.
    #[default]
    Winograd,
    /// burn's own convolution (im2col and matrix products).
    Direct,
}

/// The number format of the Winograd convolution's matrix products on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Precision {
    /// bf16 where the CPU has AVX512-BF16, f32 elsewhere: chosen once, when the network is
    /// built ([`Precision::resolve`]).
    #[default]
    Auto,
    /// f32 operands and sums, on every CPU.
    F32,
    /// bf16 operands (8 significant bits) with f32 sums, on CPUs with AVX512-BF16 (refused
    /// elsewhere): twice the products per instruction, at a cost in accuracy that
    /// Winograd's transforms amplify: with real weights the features are about 1% off and the
    /// input gradient 4% off at relu2_1 and 15-17% from relu3_1 on, while a whole run ends
    /// within 1% of the f32 one's loss (docs/speed.md).
    Bf16,
}

impl Precision {
    /// Whether the products run in bf16 on this CPU; an error for `Bf16` where they cannot.
    pub fn resolve(self) -> Result<bool> {
        match self {
            Self::Auto => Ok(neural_style_kernels::bf16::available()),
            Self::F32 => Ok(false),
            Self::Bf16 if neural_style_kernels::bf16::available() => Ok(true),
            Self::Bf16 => Err(Error::config(
                "precision",
                "bf16 needs a CPU with AVX512-BF16, and this one has none (use f32 or auto)",
            )),
        }
    }
}

/// How pixels are turned into the network's input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputConvention {
    /// torchvision: RGB in 0..1, minus the ImageNet mean, divided by its standard deviation.
    TorchRgb01,
    /// Caffe: BGR in 0..255, minus a per-channel mean (given in BGR order).
    CaffeBgr255 {
        /// The mean pixel, blue first.
        mean_bgr: [f32; 3],
    },
}

/// ImageNet mean and standard deviation (RGB, 0..1) used by torchvision models.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The mean pixel of the original Caffe VGG models (BGR, 0..255).
pub const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

impl InputConvention {
    /// The Caffe convention with the original VGG mean pixel.
    pub const CAFFE: InputConvention = InputConvention::CaffeBgr255 {
        mean_bgr: CAFFE_MEAN_BGR,
    };

    /// For network-input channel `c`, the `(source RGB channel, scale, offset)` such that
    /// `input = pixel * scale + offset` with `pixel` in 0..1.
    pub fn channel_map(&self, c: usize) -> (usize, f32, f32) {
        match self {
            InputConvention::TorchRgb01 => (
                c,
                1.0 / IMAGENET_STD[c],
                -IMAGENET_MEAN[c] / IMAGENET_STD[c],
            ),
            InputConvention::CaffeBgr255 { mean_bgr } => (2 - c, 255.0, -mean_bgr[c]),
        }
    }

    /// Planar RGB pixels (0..1) to the network's planar input.
    pub fn to_network(&self, rgb: &[f32]) -> Vec<f32> {
        let plane = rgb.len() / 3;
        let mut out = vec![0.0; rgb.len()];
        for c in 0..3 {
            let (src, scale, offset) = self.channel_map(c);
            let (dst, from) = (
                &mut out[c * plane..(c + 1) * plane],
                &rgb[src * plane..(src + 1) * plane],
            );
            for (d, s) in dst.iter_mut().zip(from) {
                *d = s * scale + offset;
            }
        }
        out
    }

    /// The network's planar input back to planar RGB pixels (0..1, not clamped).
    pub fn from_network(&self, input: &[f32]) -> Vec<f32> {
        let plane = input.len() / 3;
        let mut out = vec![0.0; input.len()];
        for c in 0..3 {
            let (src, scale, offset) = self.channel_map(c);
            let (dst, from) = (
                &mut out[src * plane..(src + 1) * plane],
                &input[c * plane..(c + 1) * plane],
            );
            for (d, s) in dst.iter_mut().zip(from) {
                *d = (s - offset) / scale;
            }
        }
        out
    }

    /// How many network-input units one 0..1 pixel step spans, averaged over channels (255
    /// for Caffe's convention, about 4.4 for torchvision's).
    pub fn pixel_range(&self) -> f32 {
        (0..3).map(|c| self.channel_map(c).1).sum::<f32>() / 3.0
    }
}

impl fmt::Display for InputConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputConvention::TorchRgb01 => f.write_str("torch-rgb-01"),
            InputConvention::CaffeBgr255 { mean_bgr } => write!(
                f,
                "caffe-bgr-255 (mean BGR {:.3}, {:.3}, {:.3})",
                mean_bgr[0], mean_bgr[1], mean_bgr[2]
            ),
        }
    }
}

/// One convolution's parameters, in PyTorch's OIHW layout.
#[derive(Debug, Clone)]
pub struct ConvParams {
    /// The convolution.
    pub layer: Layer,
    /// Weight, `[out, in, 3, 3]`.
    pub weight: Vec<f32>,
    /// Bias, `[out]`.
    pub bias: Vec<f32>,
    /// Output channels.
    pub out_channels: usize,
    /// Input channels.
    pub in_channels: usize,
}

struct Conv {
    layer: Layer,
    weight: Tensor<4>,
    bias: Tensor<1>,
}

/// A VGG feature extractor truncated after the deepest layer it was built for.
///
/// Its weights are constants: gradients flow to the input image only.
pub struct Vgg {
    arch: Arch,
    layers: Vec<Layer>,
    convs: HashMap<Layer, Conv>,
    pooling: Pooling,
    padding: Padding,
    convolution: Convolution,
    /// Whether the Winograd products run in bf16 ([`Precision::resolve`]).
    bf16: bool,
    /// The fast CPU convolutions' filters (Winograd's, or direct for the first).
    fast: HashMap<Layer, ConvFilters>,
    device: Device,
}

/// The smallest input channel count that the Winograd convolution pays for (below, the
/// transforms cost more than the products they save, and the convolution is computed
/// directly by [`neural_style_kernels::direct`]).
const WINOGRAD_MIN_CHANNELS: usize = 16;

impl Vgg {
    /// Builds the network up to `deepest` from convolution parameters (one per convolution up
    /// to `deepest`, in order).
    pub fn new(
        arch: Arch,
        params: Vec<ConvParams>,
        deepest: Layer,
        pooling: Pooling,
        padding: Padding,
        device: &Device,
    ) -> Result<Self> {
        arch.check_layer(deepest)?;
        let layers: Vec<Layer> = arch
            .layers()
            .into_iter()
            .take_while(|l| *l <= deepest)
            .collect();
        let mut convs = HashMap::new();
        for p in params {
            let weight = Tensor::<4>::from_data(
                TensorData::new(p.weight, [p.out_channels, p.in_channels, 3, 3]),
                device,
            )
            .autodiff();
            let bias = Tensor::<1>::from_data(TensorData::new(p.bias, [p.out_channels]), device)
                .autodiff();
            convs.insert(
                p.layer,
                Conv {
                    layer: p.layer,
                    weight,
                    bias,
                },
            );
        }
        if let Some(missing) = layers
            .iter()
            .find(|l| l.kind() == LayerKind::Conv && !convs.contains_key(l))
        {
            return Err(Error::config(
                "weights",
                format!("no parameters for {missing} (internal error: loader did not check)"),
            ));
        }
        let vgg = Self {
            arch,
            layers,
            convs,
            pooling,
            padding,
            convolution: Convolution::Direct,
            bf16: false,
            fast: HashMap::new(),
            device: device.clone(),
        };
        vgg.with_convolution(Convolution::default())
    }

    /// The network with its CPU convolutions computed by `convolution` (on a GPU, always
    /// the backend's own).
    pub fn with_convolution(mut self, convolution: Convolution) -> Result<Self> {
        // `new` already built the default; transforming the filters again would only repeat
        // the start-up's most expensive step.
        if convolution == self.convolution {
            return Ok(self);
        }
        self.convolution = convolution;
        self.transform_filters()?;
        Ok(self)
    }

    /// The network with its Winograd products in `precision` (f32 until this is called).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        let bf16 = precision.resolve()?;
        if bf16 != self.bf16 {
            self.bf16 = bf16;
            self.transform_filters()?;
        }
        Ok(self)
    }

    /// Whether the Winograd products run in bf16 (on the CPU, with the fast layers).
    pub fn bf16(&self) -> bool {
        self.bf16 && self.fast_cpu()
    }

    /// Transforms the filters of the convolutions that run as Winograd's.
    fn transform_filters(&mut self) -> Result<()> {
        self.fast.clear();
        if self.fast_cpu() {
            for (layer, conv) in &self.convs {
                let [cout, cin, _, _] = conv.weight.dims();
                let weight =
                    crate::model::tensor::values(conv.weight.clone(), "a convolution's filters")?;
                let bias = crate::model::tensor::values(conv.bias.clone(), "a convolution's bias")?;
                if weight.len() != cout * cin * 9 || bias.len() != cout {
                    continue;
                }
                let sides = (cout, cin);
                let filters = if cin < WINOGRAD_MIN_CHANNELS {
                    ConvFilters::direct(&weight, &bias, sides, &self.device)
                } else {
                    ConvFilters::winograd(&weight, &bias, sides, self.bf16, &self.device)
                };
                self.fast.insert(*layer, filters);
            }
        }
        Ok(())
    }

    /// Whether the network runs on the CPU with the fast layers ([`crate::model::fastconv`]).
    fn fast_cpu(&self) -> bool {
        self.convolution == Convolution::Winograd && self.device == crate::model::device::cpu()
    }

    /// How the CPU computes the convolutions.
    pub fn convolution(&self) -> Convolution {
        self.convolution
    }

    /// How many convolutions run as Winograd's.
    pub fn winograd_layers(&self) -> usize {
        self.fast.values().filter(|f| f.is_winograd()).count()
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Whether the network was built deep enough to compute `layer`.
    pub fn has_layer(&self, layer: Layer) -> bool {
        self.layers.contains(&layer)
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs `input` (`[1, 3, H, W]`, in the network's input convention) through the network
    /// and returns the activations of `wanted`, in the order given.
    pub fn features(&self, input: Tensor<4>, wanted: &[Layer]) -> Vec<Tensor<4>> {
        let Some(deepest) = wanted.iter().copied().max() else {
            return Vec::new();
        };
        let mut found: HashMap<Layer, Tensor<4>> = HashMap::new();
        let mut x = input;
        let fast = self.fast_cpu();
        // Whether the last convolution was computed with its rectifier.
        let mut rectified = false;
        for &layer in &self.layers {
            if layer > deepest {
                break;
            }
            x = match layer.kind() {
                LayerKind::Conv => {
                    // Its rectifier comes next; fuse it unless the unrectified output is wanted.
                    let fuse = !wanted.contains(&layer) && layer < deepest;
                    let (y, fused) = self.conv(&self.convs[&layer], x, fuse);
                    rectified = fused;
                    y
                }
                LayerKind::Relu if rectified => x,
                LayerKind::Relu => burn::tensor::activation::relu(x),
                LayerKind::Pool => match self.pooling {
                    Pooling::Max if fast => crate::model::fastconv::max_pool2x2(x),
                    Pooling::Max => max_pool2d(x, MaxPoolOptions::new([2, 2])),
                    Pooling::Avg => avg_pool2d(x, AvgPoolOptions::new([2, 2])),
                },
            };
            if wanted.contains(&layer) {
                found.insert(layer, x.clone());
            }
        }
        wanted.iter().map(|l| found[l].clone()).collect()
    }

    /// The convolution, and its rectifier too when `relu` and the convolution can fuse it
    /// (the second value says whether it did).
    fn conv(&self, conv: &Conv, x: Tensor<4>, relu: bool) -> (Tensor<4>, bool) {
        debug_assert_eq!(conv.layer.kind(), LayerKind::Conv);
        let [_, _, h, w] = x.dims();
        // Reflection needs two pixels; a 1-pixel-wide activation is replicated instead.
        let padding = if self.padding == Padding::Reflect && h.min(w) < 2 {
            Padding::Replicate
        } else {
            self.padding
        };
        if let Some(filters) = self.fast.get(&conv.layer) {
            return (filters.conv(x, padding.border(), relu), relu);
        }
        let (x, pad) = match padding {
            Padding::Zero => (x, 1),
            Padding::Reflect => (x.pad([(0, 0), (0, 0), (1, 1), (1, 1)], PadMode::Reflect), 0),
            Padding::Replicate => (x.pad([(0, 0), (0, 0), (1, 1), (1, 1)], PadMode::Edge), 0),
        };
        let y = conv2d(
            x,
            conv.weight.clone(),
            Some(conv.bias.clone()),
            ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
        );
        (y, false)
    }
}

/// Random (He-initialised) parameters for every convolution of `arch` up to `up_to`, with
/// the standard widths (64, 128, 256, 512, 512) divided by `width_divisor`: for benchmarks
/// and tests that need no pretrained file.
pub fn random_conv_params(
    arch: Arch,
    up_to: Layer,
    width_divisor: usize,
    seed: u64,
) -> Vec<ConvParams> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    let widths = [64, 128, 256, 512, 512];
    let mut in_channels = 3;
    let mut out = Vec::new();
    for layer in arch.layers() {
        if layer > up_to.source_conv(arch) {
            break;
        }
        if layer.kind() != LayerKind::Conv {
            continue;
        }
        let out_channels = (widths[usize::from(layer.block()) - 1] / width_divisor.max(1)).max(1);
        let std = (2.0 / (9.0 * in_channels as f32)).sqrt();
        let normal =
            Normal::new(0.0f32, std).unwrap_or_else(|_| unreachable!("std is finite and positive"));
        let weight = (0..out_channels * in_channels * 9)
            .map(|_| normal.sample(&mut rng))
            .collect();
        let bias = (0..out_channels)
            .map(|_| normal.sample(&mut rng) * 0.1)
            .collect();
        out.push(ConvParams {
            layer,
            weight,
            bias,
            out_channels,
            in_channels,
        });
        in_channels = out_channels;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_precision_is_bf16_exactly_where_the_cpu_has_it() {
        let has = neural_style_kernels::bf16::available();
        assert_eq!(Precision::default(), Precision::Auto);
        assert_eq!(Precision::Auto.resolve().unwrap(), has);
        assert!(!Precision::F32.resolve().unwrap());
        assert_eq!(Precision::Bf16.resolve().is_ok(), has);
    }

    #[test]
    fn layer_order_and_torchvision_indices() {
        assert_eq!(Arch::Vgg19.layers().len(), 37);
        assert_eq!(Arch::Vgg16.layers().len(), 31);
        assert_eq!(Arch::Vgg19.feature_index(Layer::Conv5_4), Some(34));
        assert_eq!(Arch::Vgg19.feature_index(Layer::Conv3_1), Some(10));
        assert_eq!(Arch::Vgg16.feature_index(Layer::Conv4_1), Some(17));
        assert_eq!(Arch::Vgg16.feature_index(Layer::Conv5_3), Some(28));
        assert_eq!(Arch::Vgg16.feature_index(Layer::Conv5_4), None);
        assert!(Arch::Vgg16.check_layer(Layer::Relu3_4).is_err());
        assert_eq!(Layer::Relu4_2.source_conv(Arch::Vgg19), Layer::Conv4_2);
        assert_eq!(Layer::Pool3.source_conv(Arch::Vgg16), Layer::Conv3_3);
        assert_eq!(Layer::Pool3.source_conv(Arch::Vgg19), Layer::Conv3_4);
    }

    #[test]
    fn layer_names_parse_and_print() {
        for l in Layer::ALL {
            assert_eq!(l.name().parse::<Layer>().unwrap(), *l);
        }
        assert_eq!("RELU4_2".parse::<Layer>().unwrap(), Layer::Relu4_2);
        let e = "relu6_1".parse::<Layer>().unwrap_err().to_string();
        assert!(e.contains("relu6_1") && e.contains("relu4_2"), "{e}");
    }

    #[test]
    fn conventions_round_trip() {
        let rgb: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        for conv in [InputConvention::TorchRgb01, InputConvention::CAFFE] {
            let back = conv.from_network(&conv.to_network(&rgb));
            for (a, b) in rgb.iter().zip(&back) {
                assert!((a - b).abs() < 1e-5, "{conv}: {a} vs {b}");
            }
        }
        // Caffe: BGR order, 0..255, minus the mean: the first input plane is blue.
        let x = InputConvention::CAFFE.to_network(&rgb);
        assert!((x[0] - (rgb[8] * 255.0 - CAFFE_MEAN_BGR[0])).abs() < 1e-3);
    }
}
