//! A loaded VGG network (Simonyan & Zisserman 2015) with the input convention of its
//! weights, and the cache of the style statistics (Gatys et al. 2015, eq. 3-5) it has
//! computed, shared by every run on it.

use std::path::Path;

use burn::prelude::*;

use crate::config::{LossWeights, TransferConfig};
use crate::error::Result;
use crate::model::vgg::{Arch, InputConvention, Layer, Vgg};
use crate::model::weights::{WeightFile, WeightsInfo};
use crate::objective::statistics::StyleCache;
use crate::run::layers::ResolvedLayers;

/// A loaded network with the convention its inputs follow.
pub struct Network {
    /// The feature extractor.
    pub vgg: Vgg,
    /// How pixels become its input.
    pub convention: InputConvention,
    /// What the weights file provides.
    pub info: WeightsInfo,
    /// SHA-256 (hex) of the convolution parameters loaded, in network order: which
    /// weights a checkpoint was made with, whatever the file was called.
    pub identity: String,
    /// Style statistics already computed on this network.
    pub(crate) style_cache: StyleCache,
}

impl Network {
    /// Loads the convolutions `config` needs from a weights file onto `device`.
    pub fn load(path: &Path, config: &TransferConfig, device: &Device) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let info = file.info(config.arch)?;
        let arch: Arch = info.arch;
        let wanted = ResolvedLayers::new(config, arch, &info.convs)
            .applied_to(config)
            .layers();
        let params = file.conv_params(arch, &wanted)?;
        let identity = identity(&params);
        let deepest = wanted.iter().copied().max().unwrap_or(Layer::Relu1_1);
        let vgg = Vgg::new(
            arch,
            params,
            deepest,
            config.pooling,
            config.padding,
            device,
        )?
        .with_convolution(config.convolution)?
        .with_precision(config.precision)?;
        let convention = config
            .convention
            .or(info.convention)
            .unwrap_or(InputConvention::TorchRgb01);
        Ok(Self {
            vgg,
            convention,
            info,
            identity,
            style_cache: StyleCache::default(),
        })
    }

    /// The loss weights a run of `config` gets on this network: those `config` sets, else
    /// the defaults for its loss form, this network's convention and the layers it has
    /// (what a front end shows as "the default").
    pub fn loss_weights(&self, config: &TransferConfig) -> LossWeights {
        let layers = ResolvedLayers::new(config, self.info.arch, &self.info.convs);
        config.loss_weights(&self.convention, &layers.content)
    }

    /// How many times this network has computed the statistics of a style image (once per
    /// style, size and style settings, however many runs use them).
    pub fn style_targets_computed(&self) -> usize {
        self.style_cache.computed()
    }
}

/// SHA-256 of the parameters' little-endian bytes (each layer's name, weight and bias).
fn identity(params: &[crate::model::vgg::ConvParams]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in params {
        h.update(p.layer.name().as_bytes());
        for values in [&p.weight, &p.bias] {
            h.update((values.len() as u64).to_le_bytes());
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            h.update(&bytes);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
