//! `neural-style weights ...` and the download of `--model` before a run: a byte-counting
//! progress bar, and errors that say how to get the file by other means.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use neural_style::{Arch, InputConvention, WeightFile};
use neural_style_models::{Cache, DownloadEvent, Downloader, Error, Model};

use crate::cli::{PreprocessArg, WeightsAction, WeightsArgs};

/// Draws download events on stderr (a bar with bytes and rate on a terminal, a line per
/// attempt otherwise).
pub struct DownloadReporter {
    bar: ProgressBar,
    quiet: bool,
}

impl DownloadReporter {
    /// A reporter; `quiet` hides the bar and the retry lines.
    pub fn new(quiet: bool) -> Self {
        let bar = crate::progress::stderr_bar(
            quiet,
            "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        );
        Self { bar, quiet }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            say!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// Handles one event.
    pub fn on_event(&mut self, event: &DownloadEvent<'_>) {
        match event {
            DownloadEvent::Started {
                url,
                total,
                resumed_from,
            } => {
                let resumed = if *resumed_from > 0 {
                    format!(", resuming at {}", indicatif::HumanBytes(*resumed_from))
                } else {
                    String::new()
                };
                self.line(&format!("Downloading {url}{resumed}"));
                if let Some(t) = total {
                    self.bar.set_length(*t);
                }
                self.bar.set_position(*resumed_from);
                self.bar.reset_eta();
            }
            DownloadEvent::Progress { done } => self.bar.set_position(*done),
            DownloadEvent::Retrying {
                url,
                attempt,
                wait,
                reason,
            } => self.line(&format!(
                "{url}: {reason}; retry {attempt} in {:.0} s",
                wait.as_secs_f64()
            )),
            DownloadEvent::Verifying { path } => {
                self.bar.set_message("checking SHA-256");
                self.line(&format!("Checking the SHA-256 of {}", path.display()));
            }
            _ => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The weights file for `model`: the cached conv-only `.safetensors`, downloading and
/// converting on first use. A failed download says how to import the file by hand.
pub fn model_weights(model: &Model, cache: &Cache, quiet: bool) -> Result<PathBuf> {
    let converted = cache.converted_path(model);
    if !converted.is_file() && !quiet {
        say!(
            "Model {} is not cached yet: fetching it to {}",
            model.name,
            cache.dir().display()
        );
    }
    let mut reporter = DownloadReporter::new(quiet);
    let result = cache.weights(model, &Downloader::default(), &mut |e| reporter.on_event(e));
    reporter.finish();
    result.map_err(|e| explain(e, model, cache))
}

/// Adds what to do by hand to a download failure.
fn explain(e: Error, model: &Model, cache: &Cache) -> anyhow::Error {
    match e {
        Error::Download { .. } | Error::Checksum { .. } | Error::Size { .. } => {
            anyhow::anyhow!(
                "{e}. To install it by hand, download {} (any of: {}) with a browser or another \
                 machine, then run: neural-style weights import FILE --model {}{}",
                model.file_name,
                model.urls.join(", "),
                model.name,
                cache_flag(cache)
            )
        }
        other => other.into(),
    }
}

/// ` --cache-dir DIR` when the cache is not the default one.
fn cache_flag(cache: &Cache) -> String {
    match Cache::locate(None) {
        Ok(default) if default == *cache => String::new(),
        _ => format!(" --cache-dir {}", cache.dir().display()),
    }
}

/// The known model `name`, from `$NEURAL_STYLE_MIRROR` when that is set.
pub fn find(name: &str) -> Result<Model> {
    let model = Model::find(name)?;
    Ok(match std::env::var(neural_style_models::MIRROR_ENV) {
        Ok(base) if !base.is_empty() => model.with_mirror(&base),
        _ => model,
    })
}

/// Runs `neural-style weights ...`.
pub fn run(args: &WeightsArgs, quiet: bool) -> Result<u8> {
    let cache = || crate::config::locate_cache(args.cache_dir.as_deref());
    match &args.action {
        WeightsAction::List => {
            let cache = cache()?;
            tell!("cache: {}", cache.dir().display());
            for entry in cache.entries() {
                let m = &entry.model;
                let default = if m.name == neural_style_models::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                tell!("{}{default}: {}", m.name, m.summary);
                let size = m
                    .size
                    .map(|s| indicatif::HumanBytes(s).to_string())
                    .unwrap_or_else(|| "size unknown".into());
                tell!("  {} ({size}), SHA-256 {}", m.file_name, m.sha256);
                for url in &m.urls {
                    tell!("  from {url}");
                }
                match &entry.file {
                    Some((p, n)) => {
                        tell!("  cached: {} ({})", p.display(), indicatif::HumanBytes(*n))
                    }
                    None => tell!("  not cached"),
                }
                if let Some((p, n)) = &entry.converted {
                    tell!(
                        "  conv-only: {} ({})",
                        p.display(),
                        indicatif::HumanBytes(*n)
                    );
                }
                if let Some(n) = entry.partial {
                    tell!(
                        "  interrupted download: {} so far (resumed by `weights fetch {}`)",
                        indicatif::HumanBytes(n),
                        m.name
                    );
                }
            }
        }
        WeightsAction::Fetch { models } => {
            let cache = cache()?;
            for name in models {
                let m = find(name)?;
                let path = model_weights(&m, &cache, quiet)?;
                tell!("{}: {}", m.name, path.display());
            }
        }
        WeightsAction::Verify { models } => {
            let cache = cache()?;
            let models: Vec<Model> = if models.is_empty() {
                cache
                    .entries()
                    .into_iter()
                    .filter(|e| e.file.is_some())
                    .map(|e| e.model)
                    .collect()
            } else {
                models.iter().map(|n| find(n)).collect::<Result<_>>()?
            };
            if models.is_empty() {
                tell!("nothing cached in {}", cache.dir().display());
            }
            let mut failed = 0;
            for m in &models {
                match cache.verify(m) {
                    Ok(p) => tell!("{}: OK ({})", m.name, p.display()),
                    Err(e) => {
                        failed += 1;
                        tell!(
                            "{}: FAILED: {e} (removed; it will be downloaded again)",
                            m.name
                        );
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} model(s) failed verification", models.len());
            }
        }
        WeightsAction::Import { file, model } => {
            let cache = cache()?;
            let m = find(model)?;
            if !file.is_file() {
                bail!("{}: no such file", file.display());
            }
            let path = cache
                .import(&m, file)
                .with_context(|| format!("importing {} as {}", file.display(), m.name))?;
            tell!("{}: imported to {}", m.name, path.display());
            let mut reporter = DownloadReporter::new(quiet);
            let converted = cache
                .weights(&m, &Downloader::default(), &mut |e| reporter.on_event(e))
                .map_err(|e| explain(e, &m, &cache))?;
            tell!("{}: conv-only weights at {}", m.name, converted.display());
        }
        WeightsAction::Convert {
            input,
            output,
            arch,
            preprocess,
        } => convert_file(input, output, *arch, *preprocess)?,
    }
    Ok(0)
}

fn convert_file(
    input: &Path,
    output: &Path,
    arch: Option<Arch>,
    preprocess: Option<PreprocessArg>,
) -> Result<()> {
    if output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("{}: the output must end in .safetensors", output.display());
    }
    if crate::config::same_file(input, output) {
        bail!("{}: the output is the input file", output.display());
    }
    let convention = preprocess.map(InputConvention::from);
    let started = std::time::Instant::now();
    let info = WeightFile::open(input)?.write_conv_safetensors(arch, convention, output)?;
    tell!(
        "wrote {} ({}, {} convolutions, {}) in {:.1} s",
        output.display(),
        info.arch,
        info.convs.len(),
        info.convention
            .map(|c| c.to_string())
            .unwrap_or_else(|| "no input convention recorded".into()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
