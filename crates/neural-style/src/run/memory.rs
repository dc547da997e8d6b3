//! A memory estimate for a run, made before any work starts, so that a size the machine
//! cannot hold is refused (or the L-BFGS history shortened) instead of the run being ended by
//! the out-of-memory killer. The model: the activations the backward pass keeps (every
//! convolution and rectifier output up to the deepest layer used, `C·H·W` floats each),
//! times a factor measured on real runs, plus the optimiser's vectors (L-BFGS keeps
//! `2·history` image-sized correction vectors), the network's weights (and
//! their Winograd transforms), and the style images as resized for the stage, whose own
//! forward pass (no gradients kept) can be the peak when a style is much larger than the
//! output (a narrow output: the style is sized by the output's longest side).

use crate::config::TileMode;
use crate::config::{OptimizerKind, TransferConfig};
use crate::error::{Error, Result};
use crate::image::io::fit_longest;
use crate::model::vgg::{Arch, Convolution, Layer, LayerKind};
use crate::run::plan::{Plan, style_longest};

/// Bytes kept per byte of activations counted by the model: the backward pass's gradients,
/// padding copies and allocator slack. Measured: peak RSS of 1521 MiB for a 512x384 VGG16
/// run to relu5_1 with history 100 and the Winograd convolution (`/usr/bin/time`); the
/// model gives about 1630 MiB. (Before it, with burn's convolution: 1333 MiB measured,
/// 1309 MiB modelled.)
const ACTIVATION_FACTOR: f64 = 1.8;
/// The process without any image: code, runtime, buffers.
const BASE_BYTES: u64 = 40 << 20;
/// Image-sized f32 vectors the run holds besides the L-BFGS history (the image, gradient,
/// direction, previous gradient, best image and gradient, the two-loop work vector, ...).
const WORK_VECTORS: u64 = 10;

/// The estimated peak memory of a run, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The network's convolution weights.
    pub weights: u64,
    /// Activations kept for the backward pass at the largest size.
    pub activations: u64,
    /// The optimiser's vectors (L-BFGS history included).
    pub optimizer: u64,
    /// The style images as resized for the stage (and their copies in the network's
    /// convention).
    pub styles: u64,
}

impl MemoryEstimate {
    /// The whole estimate.
    pub fn total(&self) -> u64 {
        BASE_BYTES + self.weights + self.activations + self.optimizer + self.styles
    }
}

/// The sizes a run's memory depends on, at one stage: the output's, and each style
/// image's as resized for that stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes {
    /// The image optimised: width and height.
    pub output: (u32, u32),
    /// The style images: width and height each.
    pub styles: Vec<(u32, u32)>,
}

impl Sizes {
    /// An output of `width` x `height` with one style image of its shape at the config's
    /// `style_scale`: for an estimate made without the images at hand.
    pub fn assumed(config: &TransferConfig, width: u32, height: u32) -> Self {
        let scaled =
            |n: u32| ((f64::from(n) * f64::from(config.style_scale)).round() as u32).max(1);
        Self {
            output: (width, height),
            styles: vec![(scaled(width), scaled(height))],
        }
    }

    fn output_pixels(&self) -> u64 {
        u64::from(self.output.0) * u64::from(self.output.1)
    }

    /// Pixels of every style image together, and of the largest.
    fn style_pixels(&self) -> (u64, u64) {
        let each = self
            .styles
            .iter()
            .map(|(w, h)| u64::from(*w) * u64::from(*h));
        (each.clone().sum(), each.max().unwrap_or(0))
    }
}

/// The sizes `plan`'s memory depends on at a stage of `width` x `height`: the output's and
/// each style image's as resized for it.
pub fn sizes_at(plan: &Plan, width: u32, height: u32) -> Sizes {
    let longest = style_longest(width, height, plan.config().style_scale);
    Sizes {
        output: (width, height),
        styles: (plan.inputs().styles.iter())
            .map(|s| fit_longest(s.width, s.height, longest))
            .collect(),
    }
}

/// Bytes per style pixel held while a stage runs: the resized image and its copy in the
/// network's convention, three f32 channels each.
const STYLE_BYTES_PER_PIXEL: u64 = 2 * 3 * 4;

/// Channels of the convolutions in VGG block `block` (1-based).
fn channels(block: u8) -> u64 {
    [64, 128, 256, 512, 512][usize::from(block.clamp(1, 5)) - 1]
}

/// Output floats per input pixel of every layer up to `deepest`, and the weight count.
fn per_pixel(arch: Arch, deepest: Layer) -> (f64, u64) {
    let mut floats = 0.0;
    let mut weights = 0u64;
    let mut in_channels = 3u64;
    for l in arch.layers().into_iter().filter(|l| *l <= deepest) {
        let c = channels(l.block());
        // Each block works at a quarter of the positions of the one before.
        let area = 4f64.powi(i32::from(l.block()) - 1);
        match l.kind() {
            LayerKind::Conv => {
                floats += c as f64 / area;
                weights += c * in_channels * 9 + c;
                in_channels = c;
            }
            LayerKind::Relu => floats += c as f64 / area,
            LayerKind::Pool => floats += c as f64 / (area * 4.0),
        }
    }
    (floats, weights)
}

/// Estimates the peak memory of `config` at `sizes` (the final stage of the schedule,
/// where the peak is) on `arch`.
pub fn estimate(config: &TransferConfig, arch: Arch, sizes: &Sizes) -> MemoryEstimate {
    let pixels = sizes.output_pixels();
    let (all_styles, largest_style) = sizes.style_pixels();
    let deepest = config.layers().into_iter().max().unwrap_or(Layer::Relu5_1);
    let (floats, weights) = per_pixel(arch, deepest);
    // A style image's forward pass (one at a time) keeps no gradients: about half the
    // bytes per pixel of the optimised image's. The larger of the two is the peak.
    let passes = (pixels as f64).max(0.5 * largest_style as f64);
    let activations = (floats * 4.0 * passes * ACTIVATION_FACTOR) as u64;
    let image = 3 * 4 * pixels;
    let vectors = match config.optimizer {
        OptimizerKind::Lbfgs => 2 * config.lbfgs_history as u64 + WORK_VECTORS,
        OptimizerKind::Adam => WORK_VECTORS,
    };
    // The Winograd convolution keeps two transformed copies of the filters (forward and
    // gradient), each 36/9 = 4 times the size.
    let copies = match config.convolution {
        Convolution::Winograd => 9,
        Convolution::Direct => 1,
    };
    MemoryEstimate {
        weights: weights * 4 * copies,
        activations,
        optimizer: vectors * image,
        styles: all_styles * STYLE_BYTES_PER_PIXEL,
    }
}

/// [`estimate`] for an evaluation by tiles with cores of about `core` pixels
/// ([`crate::objective::tiling`]): the activations of one tile's region (its core and halo) instead
/// of the whole image's (the style images' statistics go by the same tiles), plus the whole
/// image's content targets, which are kept.
pub fn estimate_tiled(
    config: &TransferConfig,
    arch: Arch,
    sizes: &Sizes,
    core: u32,
) -> MemoryEstimate {
    let tiling =
        crate::objective::tiling::Tiling::new(core as usize, &arch.layers(), &config.layers());
    let side = |n: u32| (tiling.core + 2 * tiling.halo).min(n as usize) as u32;
    let sides = |(w, h): (u32, u32)| (side(w), side(h));
    let tiles = Sizes {
        output: sides(sizes.output),
        styles: sizes.styles.iter().copied().map(sides).collect(),
    };
    let tile = estimate(config, arch, &tiles);
    let whole = estimate(config, arch, sizes);
    let pixels = sizes.output_pixels();
    let content: u64 = config
        .content_layers()
        .iter()
        .map(|l| (channels(l.block()) * 4 * pixels) >> (2 * u32::from(l.poolings_before())))
        .sum();
    MemoryEstimate {
        weights: whole.weights,
        activations: tile.activations + content,
        optimizer: whole.optimizer,
        styles: whole.styles,
    }
}

/// The largest tile core, from a list of sides down to 128 pixels, whose evaluation keeps
/// the estimate within `available` bytes.
pub fn tile_that_fits(
    config: &TransferConfig,
    arch: Arch,
    sizes: &Sizes,
    available: u64,
) -> Option<u32> {
    let longest = std::iter::once(sizes.output)
        .chain(sizes.styles.iter().copied())
        .map(|(w, h)| w.max(h))
        .max()
        .unwrap_or(0);
    [2048, 1536, 1024, 768, 512, 384, 256, 192, 128]
        .into_iter()
        .filter(|core| *core < longest)
        .find(|core| estimate_tiled(config, arch, sizes, *core).total() <= available)
}

/// The longest L-BFGS history that keeps the estimate (by tiles of `tile` pixels, if
/// given) within `available` bytes, if any history of at least `minimum` does.
pub fn history_that_fits(
    config: &TransferConfig,
    arch: Arch,
    sizes: &Sizes,
    tile: Option<u32>,
    available: u64,
    minimum: usize,
) -> Option<usize> {
    let none = TransferConfig {
        lbfgs_history: 0,
        ..config.clone()
    };
    let without = match tile {
        Some(core) => estimate_tiled(&none, arch, sizes, core),
        None => estimate(&none, arch, sizes),
    };
    let per_pair = 2 * 3 * 4 * sizes.output_pixels();
    let room = available.checked_sub(without.total())?;
    let history = usize::try_from(room / per_pair).unwrap_or(usize::MAX);
    (history >= minimum).then_some(history.min(config.lbfgs_history))
}

/// The memory a run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes free, or the limit given if lower (what messages report).
    pub available: u64,
    /// Bytes the estimate must stay within: nine tenths of what is free (the rest is left
    /// to the system), or the limit given if lower.
    pub limit: u64,
}

impl Budget {
    /// The budget from the memory that is `free` ([`available_memory`]) and a limit `max`
    /// the user gave; `None` when neither is known.
    pub fn new(free: Option<u64>, max: Option<u64>) -> Option<Self> {
        let (available, limit) = match (free, max) {
            (None, None) => return None,
            (Some(free), None) => (free, free / 10 * 9),
            (None, Some(max)) => (max, max),
            (Some(free), Some(max)) => (free.min(max), (free / 10 * 9).min(max)),
        };
        Some(Self { available, limit })
    }
}

/// What [`fit`] changed in a plan to fit it into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fitting {
    /// Evaluations by tiles of `core` pixels, the whole image needing `whole` bytes.
    Tiles {
        /// The tile core's side.
        core: u32,
        /// Bytes a whole-image evaluation would need.
        whole: u64,
    },
    /// The L-BFGS history shortened from `from` pairs, which need `needs` bytes, to `to`.
    History {
        /// The history asked for.
        from: usize,
        /// The history used.
        to: usize,
        /// Bytes the run needs with `from` (by the tiles chosen, if any).
        needs: u64,
    },
}

/// Fits `plan` into `budget`: as it is when its estimated peak fits; else with a shorter
/// L-BFGS history (costs the least); else by tiles, when the plan's tiling is automatic
/// (costs time: each tile reads a halo); else by tiles with a shorter history. Says what
/// it changed; a run that fits in none of these ways is [`Error::OutOfMemory`].
pub fn fit(plan: Plan, budget: Budget) -> Result<(Plan, Vec<Fitting>)> {
    let config = plan.config().clone();
    let arch = plan.arch();
    let (w, h) = plan.output_size();
    let sizes = sizes_at(&plan, w, h);
    let tile = match config.tile {
        TileMode::Size(core) => Some(core),
        TileMode::Auto | TileMode::Off => None,
    };
    let need = |tile: Option<u32>| match tile {
        Some(core) => estimate_tiled(&config, arch, &sizes, core).total(),
        None => estimate(&config, arch, &sizes).total(),
    };
    let whole = need(tile);
    if whole <= budget.limit {
        return Ok((plan, Vec::new()));
    }
    let lbfgs = config.optimizer == OptimizerKind::Lbfgs;
    let shorter = |tile: Option<u32>| {
        let to = lbfgs
            .then(|| history_that_fits(&config, arch, &sizes, tile, budget.limit, 5))
            .flatten()?;
        let from = config.lbfgs_history;
        Some((
            to,
            Fitting::History {
                from,
                to,
                needs: need(tile),
            },
        ))
    };
    if let Some((history, note)) = shorter(tile) {
        return Ok((plan.with_lbfgs_history(history), vec![note]));
    }
    // The earlier, smaller stages of a coarse-to-fine run that fit whole stay whole.
    let whole_stages = |plan: Plan| {
        let fits = |s: &&crate::run::plan::Stage| {
            let sizes = sizes_at(&plan, s.width, s.height);
            estimate(plan.config(), arch, &sizes).total() <= budget.limit
        };
        let pixels = |s: &crate::run::plan::Stage| u64::from(s.width) * u64::from(s.height);
        let up_to = plan.stages().iter().filter(fits).map(pixels).max();
        plan.with_whole_stages_up_to(up_to)
    };
    if config.tile == TileMode::Auto {
        if let Some(core) = tile_that_fits(&config, arch, &sizes, budget.limit) {
            let note = Fitting::Tiles { core, whole };
            return Ok((whole_stages(plan.with_tiling(Some(core))), vec![note]));
        }
        for core in [512, 256, 128] {
            if let Some((history, note)) = shorter(Some(core)) {
                let plan = plan.with_tiling(Some(core)).with_lbfgs_history(history);
                return Ok((
                    whole_stages(plan),
                    vec![Fitting::Tiles { core, whole }, note],
                ));
            }
        }
    }
    Err(Error::OutOfMemory {
        width: w,
        height: h,
        needs: whole,
        available: budget.available,
    })
}

/// Memory the process can still use, in bytes: `MemAvailable` from `/proc/meminfo`, lowered
/// by a cgroup (v2) limit when one applies. `None` where neither can be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut available = meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })?;
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    if let (Some(max), Some(current)) = (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        available = available.min(max.saturating_sub(current));
    }
    Some(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_grows_with_size_history_and_depth() {
        let c = TransferConfig::default();
        // What scales with the image (activations, optimiser) grows about 4 times.
        let scaled = |e: MemoryEstimate| e.activations + e.optimizer;
        let small = scaled(estimate(&c, Arch::Vgg19, &Sizes::assumed(&c, 256, 256)));
        let big = scaled(estimate(&c, Arch::Vgg19, &Sizes::assumed(&c, 512, 512)));
        assert!(big > 3 * small && big < 5 * small, "{small} {big}");
        // Weights to conv5_1: VGG19 12.9 M, VGG16 10.0 M, and the Winograd convolution's
        // two transformed copies (4 times the size each).
        let e = estimate(&c, Arch::Vgg19, &Sizes::assumed(&c, 512, 384));
        assert_eq!(e.weights / 4, 9 * 12_944_960);
        let direct = TransferConfig {
            convolution: Convolution::Direct,
            ..c.clone()
        };
        assert_eq!(
            estimate(&direct, Arch::Vgg19, &Sizes::assumed(&c, 512, 384)).weights / 4,
            12_944_960
        );
        let e = estimate(&c, Arch::Vgg16, &Sizes::assumed(&c, 512, 384));
        assert_eq!(e.weights / 4, 9 * 9_995_072);
        // Within 10% of the peak RSS measured for a 512x384 VGG16 run with history 100
        // (1521 MiB: `-w vgg16-hed.safetensors --size 512 --no-multiscale -n 110`).
        let mib = e.total() as f64 / f64::from(1 << 20);
        assert!((1370.0..1680.0).contains(&mib), "{mib}");
        let short = TransferConfig {
            lbfgs_history: 5,
            ..c.clone()
        };
        assert!(estimate(&short, Arch::Vgg19, &Sizes::assumed(&c, 512, 384)).total() < e.total());
        let shallow = TransferConfig {
            content_layers: Some(vec![Layer::Relu2_2]),
            style_layers: Some(vec![Layer::Relu1_1, Layer::Relu2_1]),
            ..c.clone()
        };
        assert!(estimate(&shallow, Arch::Vgg19, &Sizes::assumed(&c, 512, 384)).total() < e.total());
    }

    #[test]
    fn history_is_shortened_to_fit() {
        let c = TransferConfig::default();
        let sizes = Sizes::assumed(&c, 1024, 1024);
        let full = estimate(&c, Arch::Vgg19, &sizes).total();
        assert_eq!(
            history_that_fits(&c, Arch::Vgg19, &sizes, None, full, 5),
            Some(100)
        );
        let h = history_that_fits(&c, Arch::Vgg19, &sizes, None, full / 4 * 3, 5).unwrap();
        assert!((5..100).contains(&h), "{h}");
        assert_eq!(
            history_that_fits(&c, Arch::Vgg19, &sizes, None, 1 << 20, 5),
            None
        );
    }

    #[test]
    fn tiles_bound_the_activations_by_the_tile() {
        let c = TransferConfig::default();
        // 4K: the whole evaluation needs tens of GiB; tiles of 512 px a fraction of it,
        // smaller tiles less, and the image-sized vectors stay.
        let sizes = Sizes::assumed(&c, 3840, 2160);
        let whole = estimate(&c, Arch::Vgg19, &sizes);
        let tiled = estimate_tiled(&c, Arch::Vgg19, &sizes, 512);
        let small = estimate_tiled(&c, Arch::Vgg19, &sizes, 256);
        assert!(
            tiled.activations * 8 < whole.activations,
            "{tiled:?} {whole:?}"
        );
        assert!(small.activations < tiled.activations);
        assert_eq!(tiled.optimizer, whole.optimizer);
        let budget = tiled.total() + (1 << 20);
        assert_eq!(tile_that_fits(&c, Arch::Vgg19, &sizes, budget), Some(512));
        assert_eq!(tile_that_fits(&c, Arch::Vgg19, &sizes, 1 << 30), None);
    }
}
