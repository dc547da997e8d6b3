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
    /// Bits per channel of the output.
    pub bit_depth: neural_style::BitDepth,
    /// Print resolution of the output, for `--dpi N` (else the photo's).
    pub dpi: Option<neural_style::Dpi>,
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
    /// What decoding an input image accepts.
    pub decoding: neural_style::Decoding,
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
                cache: locate_cache(cache_dir)?,
            },
        })
    }
}

/// The models cache at `--cache-dir` (else the environment's or the platform's).
pub fn locate_cache(dir: Option<&Path>) -> Result<neural_style_models::Cache> {
    neural_style_models::Cache::locate(dir).map_err(|e| match e {
        neural_style_models::Error::NoCacheDir => {
            anyhow::anyhow!("{e}; choose one with --cache-dir")
        }
        other => other.into(),
    })
}

/// Layer names given to `--{flag}` (blank entries ignored, but not a list of blanks).
pub fn layers<S: AsRef<str>>(flag: &str, names: &[S]) -> Result<Vec<Layer>> {
    let layers: Vec<Layer> = names
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.parse::<Layer>().with_context(|| format!("--{flag}")))
        .collect::<Result<_>>()?;
    if layers.is_empty() && !names.is_empty() {
        bail!("--{flag}: no layer named; give at least one layer, e.g. relu1_1");
    }
    Ok(layers)
}

/// Checks that the folder `file` goes in exists and takes new files (`what` names the
/// file in the error), by creating and removing a probe file there.
pub fn writable_folder(file: &Path, what: &str) -> Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "{}: the folder of {what}, {}, does not exist",
            file.display(),
            dir.display()
        );
    }
    neural_style::image::io::probe_writable(&dir).with_context(|| {
        format!(
            "{}: cannot write in the folder of {what}, {}",
            file.display(),
            dir.display()
        )
    })
}

impl RunJob {
    /// Checks the flags and builds the job; every error names the flag or file concerned.
    pub fn from_args(a: RunArgs) -> Result<Self> {
        let output = a
            .output
            .clone()
            .context("--output is required (the image to write, e.g. -o out.png)")?;
        neural_style::image::io::output_format(&output)?;
        let save = neural_style::SaveOptions {
            depth: a.bit_depth,
            ..Default::default()
        };
        save.check(&output).context("--bit-depth")?;
        if output.is_dir() {
            bail!(
                "{}: is a directory; --output needs a file name such as out.png",
                output.display()
            );
        }
        writable_folder(&output, "the output")?;
        // The log and the checkpoint are written during the run: their folders too are
        // checked now, not after an hour of work.
        if let Some(log) = &a.log {
            writable_folder(log, "--log")?;
        }
        // Checkpoints go to --checkpoint, else back to the checkpoint resumed from.
        let checkpoint = a.checkpoint.clone().or_else(|| a.resume.clone());
        if let Some(c) = &checkpoint {
            writable_folder(c, "--checkpoint")?;
        }
        if a.content.is_none() && a.style.is_empty() {
            bail!(
                "give --content, --style, or both (style alone synthesises a texture; content alone reconstructs the photo)"
            );
        }
        let config = settings(&a, neural_style::config::DEFAULT_TEMPORAL_WEIGHT)?;
        let weights = WeightsSource::from_flags(
            a.network.weights,
            &a.network.model,
            a.network.cache_dir.as_deref(),
        )?;
        let (_, init_image) = init(&a.init);
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
        // Every file the run writes, checked against every input before any work: the
        // output and its `.partial` image, the log, the `--save-every` snapshots, and the
        // checkpoint (a resumed run keeps writing to the checkpoint it read, by design).
        let partial = partial_path(&output);
        let mut written: Vec<(&str, &Path)> = vec![("--output", &output), ("--output", &partial)];
        written.extend(a.log.as_deref().map(|p| ("--log", p)));
        // A long snapshot name, for the length check (the pattern check covers the rest).
        let snapshot = snapshot_path(&output, 99_999_999);
        if a.save_every > 0 {
            written.push(("--save-every", &snapshot));
        }
        let with_resume: Vec<&Path> = inputs.iter().copied().chain(a.resume.as_deref()).collect();
        let snapshots = (a.save_every > 0).then_some((output.as_path(), a.save_every));
        refuse_overwriting_inputs(&written, snapshots, &with_resume)?;
        if let Some(c) = &checkpoint {
            refuse_overwriting_inputs(&[("--checkpoint", c)], None, &inputs)?;
        }
        let mut ours: Vec<(&str, &Path)> = vec![("--output", &output)];
        ours.extend(a.log.as_deref().map(|p| ("--log", p)));
        ours.extend(checkpoint.as_deref().map(|p| ("--checkpoint", p)));
        refuse_colliding_outputs(&ours, snapshots)?;
        // A device, pipe or socket where a file will be written is never replaced.
        for (flag, p) in ours.iter().chain([&("--output", partial.as_path())]) {
            neural_style::image::io::check_replaceable(p)
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        }
        let side_used = config.get().input_side_used();
        Ok(Self {
            config,
            content: a.content,
            styles: a.style,
            style_masks: a.mask,
            content_mask: a.content_mask,
            init_image,
            output,
            bit_depth: a.bit_depth,
            dpi: a.dpi,
            weights,
            print_every: a.print_every,
            log: a.log,
            threads: a.network.threads,
            device: a.network.device.parse().map_err(flag_error)?,
            decoding: neural_style::Decoding {
                accept_damaged: a.network.accept_damaged,
                side_used,
                ..neural_style::Decoding::within(a.network.max_input_pixels)
            },
            quiet: a.quiet,
            no_memory_check: a.no_memory_check,
            max_memory: a.max_memory,
            checkpoint: checkpoint.map(|p| (p, a.checkpoint_every)),
            resume: a.resume,
        })
    }
}

/// The run's settings from its flags, checked once (ranges by the library, then what the
/// flags must agree on), before any file is read. `temporal_weight` is the video
/// command's; a single picture has no temporal term.
pub fn settings(a: &RunArgs, temporal_weight: f32) -> Result<CheckedConfig> {
    let (init, _) = init(&a.init);
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
        style_layer_weights: a.style_layer_weights.clone(),
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
        precision: a.precision,
        tile: match (a.tile, a.no_tile) {
            (Some(n), _) => neural_style::TileMode::Size(n),
            (None, true) => neural_style::TileMode::Off,
            (None, false) => neural_style::TileMode::Auto,
        },
        size,
        style_scale: a.style_scale,
        style_blend: a.style_blend.clone(),
        snapshot_every: a.save_every,
        coarse_to_fine: !a.no_coarse_to_fine,
        min_size: a.min_size,
        stage_sides: a.stage_sides.clone(),
        style_loss: a.style_loss,
        preserve_colors: a.preserve_colors,
        temporal_weight,
    };
    let config = config.check(a.style.len()).map_err(flag_error)?;
    neural_style::objective::mask::check_counts(
        a.mask.len(),
        a.style.len(),
        a.content_mask.is_some(),
        a.content.is_some(),
    )
    .map_err(flag_error)?;
    if a.preserve_colors.is_some() && a.content.is_none() {
        bail!("--preserve-colors needs a --content image: its colours are the photo's");
    }
    if a.checkpoint_every == 0 {
        return Err(not_allowed("--checkpoint-every", 0, "at least 1"));
    }
    Ok(config)
}

/// What `--init` names: the content photo, noise, or an image file.
fn init(flag: &str) -> (Init, Option<PathBuf>) {
    match flag {
        "content" => (Init::Content, None),
        "noise" => (Init::Noise, None),
        path => (Init::Image, Some(PathBuf::from(path))),
    }
}

/// A flag's value outside its range: "`flag`: `value` is not allowed; use `allowed`", the
/// wording the library's ranges have.
pub fn not_allowed(
    flag: &str,
    value: impl std::fmt::Display,
    allowed: impl std::fmt::Display,
) -> anyhow::Error {
    anyhow::anyhow!("{flag}: {value} is not allowed; use {allowed}")
}

/// The flag that sets a library setting, where one does.
fn flag_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "arch" => "--arch",
        "content_mask" => "--content-mask",
        "content_weight" => "--content-weight",
        "device" => "--device",
        "init" => "--init",
        "iterations" => "--iterations",
        "lbfgs_history" => "--lbfgs-history",
        "learning_rate" => "--learning-rate",
        "min_size" => "--min-size",
        "optimizer" => "--optimizer",
        "precision" => "--precision",
        "size" => "--size",
        "stage_sides" => "--stage-sides",
        "style_masks" => "--mask",
        "style_blend" => "--style-blend",
        "style_layer_weights" => "--style-layer-weights",
        "style_scale" => "--style-scale",
        "style_weight" => "--style-weight",
        "temporal_weight" => "--temporal-weight",
        "tile" => "--tile",
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

/// Whether two paths name the same existing file: the same path, through a symbolic link,
/// or a hard link of it.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) if x == y => true,
        #[cfg(unix)]
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt;
            match (std::fs::metadata(x), std::fs::metadata(y)) {
                (Ok(m), Ok(n)) => (m.dev(), m.ino()) == (n.dev(), n.ino()),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The longest file name the file systems we run on take (`NAME_MAX` on Linux and macOS).
const NAME_MAX: usize = 255;
/// What an atomic write's temporary name adds to a file name: `.NAME.PID-N.tmp` with the
/// longest PID (10 digits) and counter (20 digits).
const TEMPORARY_EXTRA: usize = ".".len() + ".".len() + 10 + "-".len() + 20 + ".tmp".len();

/// Refuses a run that would write over one of its `inputs`: `written` are the files it
/// writes, each with the flag that names it; `snapshots`, the output and N of
/// `--save-every N`, whose `OUT_NNNN.EXT` names are matched by pattern. Also refuses a name
/// that is too long once the temporary name of its atomic write is made from it.
pub fn refuse_overwriting_inputs(
    written: &[(&str, &Path)],
    snapshots: Option<(&Path, usize)>,
    inputs: &[&Path],
) -> Result<()> {
    for (flag, path) in written {
        for input in inputs {
            if same_file(input, path) {
                bail!(
                    "{}: {flag} is also an input file ({}); choose another name so the input is not overwritten",
                    path.display(),
                    input.display()
                );
            }
        }
        let name = path.file_name().map_or(0, |n| n.len());
        if name + TEMPORARY_EXTRA > NAME_MAX {
            bail!(
                "{}: {flag}: the file name is too long ({name} bytes; at most {} here, where its temporary copy is written first)",
                path.display(),
                NAME_MAX - TEMPORARY_EXTRA
            );
        }
    }
    if let Some((output, every)) = snapshots {
        for input in inputs {
            if is_snapshot_name(input, output, every) {
                bail!(
                    "{}: --save-every {every} would overwrite this input with a snapshot of {}; choose another output name",
                    input.display(),
                    output.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether `path` is (or links to) a name `--save-every every` writes for `output`:
/// `OUT_NNNN.EXT` in the output's folder, NNNN a multiple of `every`.
/// Refuses two of a run's files that are one (`--log x --checkpoint x`, `--log o.png -o
/// o.png`), and a file that a `--save-every` snapshot would replace: the later write
/// would lose the earlier.
pub fn refuse_colliding_outputs(
    written: &[(&str, &Path)],
    snapshots: Option<(&Path, usize)>,
) -> Result<()> {
    for (i, (flag, path)) in written.iter().enumerate() {
        if let Some((other, _)) = written[..i].iter().find(|(_, p)| same_place(p, path)) {
            bail!(
                "{}: {flag} and {other} name the same file; give each its own",
                path.display()
            );
        }
        if let Some((output, every)) = snapshots
            && *flag != "--output"
            && is_snapshot_name(path, output, every)
        {
            bail!(
                "{}: {flag} would be replaced by a --save-every {every} snapshot of {}; choose another name",
                path.display(),
                output.display()
            );
        }
    }
    Ok(())
}

/// Whether two paths name one file, existing or not: the same file, or the same name in
/// the same folder.
fn same_place(a: &Path, b: &Path) -> bool {
    same_file(a, b)
        || (a.file_name() == b.file_name()
            && folder_of(a).is_some()
            && folder_of(a) == folder_of(b))
}

/// The folder `path` is in, resolved (the current one for a bare name).
fn folder_of(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.canonicalize().ok(),
        _ => Path::new(".").canonicalize().ok(),
    }
}

fn is_snapshot_name(path: &Path, output: &Path, every: usize) -> bool {
    let (stem, ext) = stem_and_extension(output);
    // The name itself, and where a symbolic link points.
    let names = [Some(path.to_path_buf()), path.canonicalize().ok()];
    names.into_iter().flatten().any(|p| {
        let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return false;
        };
        let number = name
            .strip_prefix(&format!("{stem}_"))
            .and_then(|r| r.strip_suffix(&format!(".{ext}")))
            .filter(|n| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()));
        let multiple = number
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0 && n % every as u64 == 0);
        multiple && folder_of(&p).is_some() && folder_of(&p) == folder_of(output)
    })
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
    let (stem, ext) = stem_and_extension(output);
    output.with_file_name(format!("{stem}{tag}.{ext}"))
}

/// The output's file stem and extension (`png` when it has none).
fn stem_and_extension(output: &Path) -> (String, String) {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map_or_else(|| "png".into(), |e| e.to_string_lossy().into_owned());
    (stem, ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_matched_by_pattern_in_the_output_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.png");
        let at = |name: &str| dir.path().join(name);
        assert!(is_snapshot_name(&at("out_0004.png"), &out, 2));
        assert!(is_snapshot_name(&at("out_12000.png"), &out, 4000));
        assert!(
            !is_snapshot_name(&at("out_0003.png"), &out, 2),
            "not a multiple"
        );
        assert!(
            !is_snapshot_name(&at("out_004.png"), &out, 2),
            "three digits"
        );
        assert!(
            !is_snapshot_name(&at("out_0004.jpg"), &out, 2),
            "another extension"
        );
        assert!(!is_snapshot_name(&at("other_0004.png"), &out, 2));
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(!is_snapshot_name(
            &elsewhere.path().join("out_0004.png"),
            &out,
            2
        ));
    }
}
