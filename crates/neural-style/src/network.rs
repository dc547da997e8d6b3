//! A loaded VGG network (Simonyan & Zisserman 2015) with the input convention of its
//! weights, and the cache of the style statistics (Gatys et al. 2015, eq. 3-5) it has
//! computed, shared by every run on it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use burn::prelude::*;

use crate::config::{LossWeights, TransferConfig};
use crate::error::Result;
use crate::objective::StyleInput;
use crate::plan::ResolvedLayers;
use crate::vgg::{Arch, InputConvention, Layer, Vgg};
use crate::weights::{WeightFile, WeightsInfo};

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
        self.style_cache.computed.load(Ordering::Relaxed)
    }
}

/// SHA-256 of the parameters' little-endian bytes (each layer's name, weight and bias).
fn identity(params: &[crate::vgg::ConvParams]) -> String {
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

/// A style layer's statistics before blending.
#[derive(Clone)]
pub(crate) enum StyleStats {
    /// The Gram matrix.
    Gram(Tensor<2>),
    /// The mean and second moment E[ffᵀ] (for the W2 loss).
    Moments(Vec<f64>, nalgebra::DMatrix<f64>),
}

/// Style statistics (per style layer: a Gram matrix, or mean and second moment) of the style
/// images a network has seen, by image, size and settings: a batch, a video or a contact
/// sheet runs many times with the same styles and computes each one once per size.
#[derive(Default)]
pub(crate) struct StyleCache {
    stats: Mutex<HashMap<u64, Vec<StyleStats>>>,
    computed: AtomicUsize,
}

impl StyleCache {
    /// At most this many (style, size) entries are kept; past it the cache starts afresh.
    const ENTRIES: usize = 64;

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Vec<StyleStats>>> {
        // A panic elsewhere cannot leave an entry half-written: use the map as it is.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The statistics of `style` under `config` (layers resolved), computed by `compute`
    /// unless known.
    pub(crate) fn get(
        &self,
        config: &TransferConfig,
        style: &StyleInput,
        compute: impl FnOnce() -> Result<Vec<StyleStats>>,
    ) -> Result<Vec<StyleStats>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (style.width, style.height).hash(&mut h);
        style.data.iter().for_each(|v| v.to_bits().hash(&mut h));
        config.style_layers().hash(&mut h);
        (config.loss_form, config.style_loss).hash(&mut h);
        let key = h.finish();
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let stats = compute()?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        if map.len() >= Self::ENTRIES {
            map.clear();
        }
        map.insert(key, stats.clone());
        Ok(stats)
    }
}
