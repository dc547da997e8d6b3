//! The style statistics of a painting: per style layer the Gram matrix `G = F Fᵀ` (Gatys
//! et al. 2015, eq. 3) or the mean and second moment for the W2 loss, and the cache that
//! keeps them per image, size and settings so a batch, a video or a contact sheet computes
//! each once.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use burn::prelude::*;

use crate::config::TransferConfig;
use crate::error::Result;

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
    /// How many statistics were computed (not found in the cache).
    pub(crate) fn computed(&self) -> usize {
        self.computed.load(Ordering::Relaxed)
    }

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
