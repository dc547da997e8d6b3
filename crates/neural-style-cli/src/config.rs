//! Turns parsed flags into one checked job: a library `TransferConfig` plus the files and
//! reporting options of the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use neural_style::{CheckedConfig, Init, InputConvention, Layer, Size, TransferConfig};

use crate::cli::RunArgs;

/// A validated style-transfer job.
#[derive(Debug, Clone)]
pub struct RunJob {
    /// The library settings, checked.
    pub config: CheckedConfig,
    /// Content photo.
    pub content: Option<PathBuf>,
    /// Style images.
    pub styles: Vec<PathBuf>,
    /// One region mask per style image.
    pub style_masks: Vec<PathBuf>,
    /// Per-position content weight mask.
    pub content_mask: Option<PathBuf>,
    /// Initial image file, for `--init PATH`.
    pub init_image: Option<PathBuf>,
    /// Output image.
    pub output: PathBuf,
    /// Where the weights come from.
    pub weights: WeightsSource,
    /// Print losses every N evaluations.
    pub print_every: usize,
    /// JSON-lines log.
    pub log: Option<PathBuf>,
    /// Where to compute.
    pub device: neural_style::DeviceChoice,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Decoder pixel limit.
    pub max_input_pixels: u64,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Skip the memory estimate.
    pub no_memory_check: bool,
    /// The most memory to plan for.
    pub max_memory: Option<u64>,
    /// Where checkpoints go, and how often (iterations).
    pub checkpoint: Option<(PathBuf, usize)>,
    /// The checkpoint to continue from.
    pub resume: Option<PathBuf>,
}

/// A weights file given by path, or a known model from the cache.
#[derive(Debug, Clone)]
pub enum WeightsSource {
    /// `--weights PATH`.
    File(PathBuf),
    /// `--model NAME`, cached in `cache`.
    Model {
        /// The model.
        model: neural_style_models::Model,
        /// The cache it lives in.
        cache: neural_style_models::Cache,
    },
}

impl WeightsSource {
    /// From `--weights`, else `--model` in the cache at `--cache-dir`.
    pub fn from_flags(
        weights: Option<PathBuf>,
        model: &str,
        cache_dir: Option<&Path>,
    ) -> Result<Self> {
        Ok(match weights {
            Some(path) => WeightsSource::File(path),
            None => WeightsSource::Model {
                model: crate::weights_cmd::find(model).context("--model")?,
                cache: neural_style_models::Cache::locate(cache_dir)?,
            },
        })
    }
}

/// Layer names given to `--{flag}` (blank entries ignored).
pub fn layers<S: AsRef<str>>(flag: &str, names: &[S]) -> Result<Vec<Layer>> {
    names
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.parse::<Layer>().with_context(|| format!("--{flag}")))
        .collect()
}

impl RunJob {
    /// Checks the flags and builds the job; every error names the flag or file concerned.
    pub fn from_args(a: RunArgs) -> Result<Self> {
        let output = a
            .output
            .context("--output is required (the image to write, e.g. -o out.png)")?;
        neural_style::image_io::output_format(&output)?;
        if output.is_dir() {
            bail!(
                "{}: is a directory; --output needs a file name such as out.png",
                output.display()
            );
        }
        let dir = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "{}: the output directory {} does not exist",
                output.display(),
                dir.display()
            );
        }
        // Find out now, not after an hour of work, whether the result can be written there.
        let probe = dir.join(format!(".neural-style-probe-{}", std::process::id()));
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => bail!(
                "{}: cannot write in the output directory {}: {e}",
                output.display(),
                dir.display()
            ),
        }
        let weights = WeightsSource::from_flags(
            a.network.weights,
            &a.network.model,
            a.network.cache_dir.as_deref(),
        )?;
        if a.content.is_none() && a.style.is_empty() {
            bail!(
                "give --content, --style, or both (style alone synthesises a texture; content alone reconstructs the photo)"
            );
        }
        let (init, init_image) = match a.init.as_str() {
            "content" => (Init::Content, None),
            "noise" => (Init::Noise, None),
            path => (Init::Image, Some(PathBuf::from(path))),
        };
        let inputs: Vec<&Path> = a
            .content
            .iter()
            .chain(&a.style)
            .chain(&init_image)
            .chain(&a.mask)
            .chain(&a.content_mask)
            .map(|p| p.as_path())
            .chain(match &weights {
                WeightsSource::File(p) => Some(p.as_path()),
                WeightsSource::Model { .. } => None,
            })
            .collect();
        for input in &inputs {
            if same_file(input, &output) {
                bail!(
                    "{}: --output is also an input file; choose another output name so the input is not overwritten",
                    output.display()
                );
            }
        }
        let size: Size = a.size.parse().map_err(flag_error)?;
        // Parsed even when unused, so that a typo is reported either way.
        let content_layers = a
            .content_layers
            .as_deref()
            .map(|n| layers("content-layers", n))
            .transpose()?;
        let style_layers = a
            .style_layers
            .as_deref()
            .map(|n| layers("style-layers", n))
            .transpose()?;
        let config = TransferConfig {
            arch: a.network.arch,
            convention: a.network.preprocess.map(InputConvention::from),
            // Unset lists follow the weights; without a content (style) image there is no
            // content (style) layer.
            content_layers: if a.content.is_some() {
                content_layers
            } else {
                Some(vec![])
            },
            style_layers: if a.style.is_empty() {
                Some(vec![])
            } else {
                style_layers
            },
            style_layer_weights: a.style_layer_weights,
            content_weight: a.content_weight,
            style_weight: a.style_weight,
            tv_weight: a.tv_weight,
            loss_form: a.loss_form,
            optimizer: a.optimizer,
            iterations: a.iterations,
            lbfgs_history: a.lbfgs_history,
            line_search: a.line_search,
            safeguard: !a.no_safeguard,
            learning_rate: a.learning_rate,
            init,
            seed: a.seed,
            pooling: a.pooling,
            padding: a.padding,
            convolution: a.convolution,
            size,
            style_scale: a.style_scale,
            style_blend: a.style_blend,
            snapshot_every: a.save_every,
            multiscale: !a.no_multiscale,
            min_size: a.min_size,
            stage_sides: a.scales,
            style_loss: a.style_loss,
            preserve_colors: a.preserve_colors,
            temporal_weight: neural_style::config::DEFAULT_TEMPORAL_WEIGHT,
        };
        let config = config.check(a.style.len()).map_err(flag_error)?;
        if !a.mask.is_empty() && a.mask.len() != a.style.len() {
            bail!(
                "--mask: {} masks for {} style images; give one --mask per --style, in the same order",
                a.mask.len(),
                a.style.len()
            );
        }
        if a.content_mask.is_some() && a.content.is_none() {
            bail!("--content-mask needs a --content image");
        }
        if a.checkpoint_every == 0 {
            bail!("--checkpoint-every 0 is not allowed; use at least 1");
        }
        if a.network.threads == Some(0) {
            bail!("--threads 0 is not allowed; use at least 1");
        }
        Ok(Self {
            config,
            content: a.content,
            styles: a.style,
            style_masks: a.mask,
            content_mask: a.content_mask,
            init_image,
            output,
            weights,
            print_every: a.print_every,
            log: a.log,
            threads: a.network.threads,
            device: a.network.device.parse().map_err(flag_error)?,
            max_input_pixels: a.network.max_input_pixels,
            quiet: a.quiet,
            no_memory_check: a.no_memory_check,
            max_memory: a.max_memory,
            checkpoint: a
                .checkpoint
                .or_else(|| a.resume.clone())
                .map(|p| (p, a.checkpoint_every)),
            resume: a.resume,
        })
    }
}

/// The flag that sets a library setting, where one does.
fn flag_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "arch" => "--arch",
        "content_weight" => "--content-weight",
        "device" => "--device",
        "init" => "--init",
        "iterations" => "--iterations",
        "lbfgs_history" => "--lbfgs-history",
        "learning_rate" => "--learning-rate",
        "min_size" => "--min-size",
        "optimizer" => "--optimizer",
        "size" => "--size",
        "stage_sides" => "--scales",
        "style_blend" => "--style-blend",
        "style_layer_weights" => "--style-layer-weights",
        "style_scale" => "--style-scale",
        "style_weight" => "--style-weight",
        "temporal_weight" => "--temporal-weight",
        "tv_weight" => "--tv-weight",
        _ => return None,
    })
}

/// A library error in the command line's terms: a setting becomes the flag that sets it,
/// and the flag that lifts a limit is named.
pub fn flag_error(e: neural_style::Error) -> anyhow::Error {
    use neural_style::Error;
    match e {
        Error::InvalidConfig { field, message } => match flag_for(field) {
            Some(flag) => anyhow::anyhow!("{flag}: {message}"),
            None => Error::InvalidConfig { field, message }.into(),
        },
        Error::Device(message) => anyhow::anyhow!("--device: {message}; use --device cpu"),
        e @ Error::TooManyPixels { .. } => anyhow::anyhow!("{e} (see --max-input-pixels)"),
        other => other.into(),
    }
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// `out.png` + 50 -> `out_0050.png`.
pub fn snapshot_path(output: &Path, evaluation: usize) -> PathBuf {
    beside(output, &format!("_{evaluation:04}"))
}

/// `out.png` -> `out.partial.png`: where an interrupted run leaves its best image.
pub fn partial_path(output: &Path) -> PathBuf {
    beside(output, ".partial")
}

/// `out.png` + `tag` -> `out{tag}.png`, in the same directory.
fn beside(output: &Path, tag: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    output.with_file_name(format!("{stem}{tag}.{ext}"))
}
