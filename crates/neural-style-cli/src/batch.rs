//! `neural-style batch`: every content image × every style, into one folder, with one bar
//! over the whole batch. Results are written atomically, so a result that exists is
//! finished and skipped when the batch is run again; an interrupted pair leaves only its
//! `.partial` image, which the next run replaces. A bad photo or style is reported and its
//! pairs skipped; the rest of the batch goes on.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar};
use neural_style::{Image, Inputs, Network};

use crate::cli::{BatchArgs, RunArgs};
use crate::config::RunJob;
use crate::progress::{overall_bar, print_above, run_under};
use crate::runner::{
    Signals, describe, interrupted, job_plan, load_image, load_network, save_options, set_threads,
};

/// A photo, a style and the result's path.
pub type Pair = (PathBuf, PathBuf, PathBuf);

/// File extensions taken from a folder.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "tga"];

/// The photos `spec` names: a folder's images (by extension, sorted), a glob's matches
/// (sorted), or one file.
pub fn expand(spec: &Path) -> Result<Vec<PathBuf>> {
    let text = spec.to_string_lossy();
    let mut files: Vec<PathBuf> = if spec.is_dir() {
        std::fs::read_dir(spec)
            .with_context(|| format!("{}: cannot list the folder", spec.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| {
                        IMAGE_EXTENSIONS
                            .contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
                    })
            })
            .collect()
    } else if text.contains(['*', '?', '[']) {
        glob::glob(&text)
            .with_context(|| format!("--content: `{text}` is not a valid pattern"))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect()
    } else if spec.is_file() {
        vec![spec.to_path_buf()]
    } else {
        bail!(
            "{}: no such file or folder (--content takes a folder, a quoted glob or a file)",
            spec.display()
        );
    };
    files.sort();
    if files.is_empty() {
        bail!(
            "{text}: no images found (looked for {})",
            IMAGE_EXTENSIONS.join(", ")
        );
    }
    Ok(files)
}

/// Whether the file `file` lies directly in the folder `folder` (which may not exist yet).
pub fn same_folder(file: &Path, folder: &Path) -> bool {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    matches!((parent.canonicalize(), folder.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `OUTDIR/CONTENT__STYLE.png`.
pub fn output_name(dir: &Path, content: &Path, style: &Path) -> PathBuf {
    dir.join(format!("{}__{}.png", stem(content), stem(style)))
}

/// The checks shared by the commands that make many runs from one set of flags (`batch`,
/// `video`): at least one style, and none of the flags that belong to a single run
/// (checkpoints, which such a command replaces by `resumes`; masks, drawn for one photo).
pub fn refuse_single_run_flags(a: &RunArgs, command: &str, resumes: &str) -> Result<()> {
    if a.style.is_empty() {
        bail!("{command} needs at least one --style");
    }
    if a.checkpoint.is_some() || a.resume.is_some() {
        bail!("--checkpoint and --resume are for single runs; {resumes}");
    }
    if !a.mask.is_empty() || a.content_mask.is_some() {
        bail!(
            "--mask and --content-mask belong to one photo; they are not available in a {command}"
        );
    }
    Ok(())
}

/// Checks that `dir` can take the results of a command of many runs and creates it: not a
/// file, and not the folder of one of `inputs` (results written among the inputs would be
/// taken for inputs by the next run; `inputs_are` names them).
pub fn results_folder(dir: &Path, inputs: &[PathBuf], inputs_are: &str) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{}: --output must be a folder for the results",
            dir.display()
        );
    }
    if let Some(f) = inputs.iter().find(|f| same_folder(f, dir)) {
        bail!(
            "{}: --output is the folder of the {inputs_are} ({}); choose another folder, so that the results are not taken for {inputs_are}",
            dir.display(),
            f.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))
}

/// What a command of many runs (`batch`, `video`) opens once for all of them: the thread
/// pool, the network (described above the bar), the Ctrl-C and SIGTERM handlers, and the
/// overall bar.
pub struct ManyRuns {
    /// The network every run uses.
    pub net: Network,
    /// Set when the user asks to stop.
    pub signals: Signals,
    /// The bars: each run's under the overall one.
    pub multi: MultiProgress,
    /// The overall bar, one step a run.
    pub overall: ProgressBar,
}

impl ManyRuns {
    /// Opens them for `count` runs of `template`, the bar drawn from `bar`.
    pub fn open(template: &RunJob, bar: &str, count: usize) -> Result<Self> {
        set_threads(template.threads)?;
        let (net, weights) = load_network(template)?;
        let signals = Signals::install()?;
        let (multi, overall) = overall_bar(template.quiet, bar, count);
        print_above(&overall, &describe(&net, template, &weights));
        Ok(Self {
            net,
            signals,
            multi,
            overall,
        })
    }
}

/// Every photo with every style, each pair with its result's path in `dir`; two pairs that
/// would write the same file are refused.
fn pairs_of(contents: &[PathBuf], styles: &[PathBuf], dir: &Path) -> Result<Vec<Pair>> {
    let pairs: Vec<Pair> = contents
        .iter()
        .flat_map(|c| styles.iter().map(move |s| (c.clone(), s.clone())))
        .map(|(c, s)| {
            let out = output_name(dir, &c, &s);
            (c, s, out)
        })
        .collect();
    for (i, (c, s, out)) in pairs.iter().enumerate() {
        if let Some((c2, s2, _)) = pairs[..i].iter().find(|p| &p.2 == out) {
            bail!(
                "{} × {} and {} × {} would both be written to {}; rename one of the files",
                c2.display(),
                s2.display(),
                c.display(),
                s.display(),
                out.display()
            );
        }
    }
    Ok(pairs)
}

/// One pair's run: its plan and the run under the batch's bars; a failure is the pair's
/// (the batch goes on), said in one line that names it.
fn run_pair(
    job: &RunJob,
    net: &Network,
    multi: &MultiProgress,
    signals: &Signals,
    content: Image,
    style: Image,
) -> Result<neural_style::Output, String> {
    let inputs = Inputs {
        content: Some(content),
        styles: vec![style],
        ..Inputs::default()
    };
    let c = job.content.as_deref().unwrap_or(Path::new("")).display();
    let s = job.styles[0].display();
    let plan = job_plan(job, net, inputs).map_err(|e| format!("{c}: {e:#}"))?;
    run_under(multi, net, job, &plan, &signals.interrupted).map_err(|e| format!("{c} × {s}: {e}"))
}

/// A batch's images: each style read once, at the start; each photo once, before its first
/// pair. One that cannot be read is said once (to `bad`) and its pairs are skipped.
struct Images {
    decoding: neural_style::Decoding,
    styles: Vec<(PathBuf, Result<Image, String>)>,
    /// The photo of the pairs being run.
    current: Option<(PathBuf, Result<Image, String>)>,
}

impl Images {
    fn new(
        styles: &[PathBuf],
        decoding: neural_style::Decoding,
        bad: &mut dyn FnMut(&str),
    ) -> Self {
        let styles: Vec<(PathBuf, Result<Image, String>)> = styles
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    load_image(p, decoding).map_err(|e| format!("{e:#}")),
                )
            })
            .collect();
        for (_, r) in &styles {
            if let Err(e) = r {
                bad(e);
            }
        }
        Self {
            decoding,
            styles,
            current: None,
        }
    }

    /// The photo `c` and the style `s` of a pair, or `None` when either cannot be read.
    fn pair(&mut self, c: &Path, s: &Path, bad: &mut dyn FnMut(&str)) -> Option<(Image, Image)> {
        let style = match self.styles.iter().find(|(p, _)| p == s).map(|(_, r)| r) {
            Some(Ok(img)) => img.clone(),
            Some(Err(_)) => return None,
            None => unreachable!("every style was loaded"),
        };
        if self.current.as_ref().is_none_or(|(p, _)| p != c) {
            let loaded = load_image(c, self.decoding).map_err(|e| format!("{e:#}"));
            if let Err(e) = &loaded {
                bad(e);
            }
            self.current = Some((c.to_path_buf(), loaded));
        }
        match self.current.as_ref().map(|(_, r)| r) {
            Some(Ok(content)) => Some((content.clone(), style)),
            _ => None,
        }
    }
}

/// Runs the batch and prints a summary; exit 0 when every pair is done, 1 when some failed,
/// 130/143 when interrupted.
pub fn run(args: BatchArgs) -> Result<u8> {
    let a: RunArgs = args.run;
    let spec = a
        .content
        .clone()
        .context("--content is required: a folder, a quoted glob like 'photos/*.jpg', or a file")?;
    let dir = a
        .output
        .clone()
        .context("--output is required: the folder for the results")?;
    refuse_single_run_flags(&a, "batch", "a batch resumes by skipping finished results")?;
    let contents = expand(&spec)?;
    results_folder(&dir, &contents, "photos")?;
    let pairs = pairs_of(&contents, &a.style, &dir)?;
    // One check of every flag, as for a single run of the first pair.
    let template = RunJob::from_args(RunArgs {
        content: Some(contents[0].clone()),
        output: Some(pairs[0].2.clone()),
        style: vec![a.style[0].clone()],
        ..a.clone()
    })?;
    #[cfg(feature = "queue")]
    if let Some(queue) = &args.queue.queue {
        let store = args
            .queue
            .store
            .as_deref()
            .context("--queue needs --store: where the workers find the images")?;
        return crate::batch_queue::run(&template, &pairs, queue, store, args.detach);
    }
    let bar = "batch {pos}/{len} [{elapsed_precise}] {wide_bar} ETA {eta} {msg}";
    let ManyRuns {
        net,
        signals,
        multi,
        overall,
    } = ManyRuns::open(&template, bar, pairs.len())?;
    let say = |line: &str| print_above(&overall, line);
    let mut failed: Vec<String> = Vec::new();
    let mut images = Images::new(&a.style, template.decoding, &mut |e: &str| {
        say(&format!(
            "error: {} (skipping its pairs)",
            crate::printable(e)
        ));
        failed.push(e.to_string());
    });
    let started = Instant::now();
    let (mut done, mut skipped, mut failed_pairs) = (0usize, 0usize, 0usize);
    for (c, s, out) in &pairs {
        overall.set_message(crate::printable(&format!("{} × {}", stem(c), stem(s))));
        if out.exists() {
            skipped += 1;
            overall.inc(1);
            continue;
        }
        let partial = crate::config::partial_path(out);
        let _ = std::fs::remove_file(&partial);
        let bad = &mut |e: &str| {
            say(&format!(
                "error: {} (skipping its pairs)",
                crate::printable(e)
            ));
            failed.push(e.to_string());
        };
        let Some((content, style)) = images.pair(c, s, bad) else {
            failed_pairs += 1;
            overall.inc(1);
            continue;
        };
        let job = RunJob {
            output: out.clone(),
            content: Some(c.clone()),
            styles: vec![s.clone()],
            ..template.clone()
        };
        let output = match run_pair(&job, &net, &multi, &signals, content, style) {
            Ok(o) => o,
            Err(e) => {
                say(&format!("error: {}", crate::printable(&e)));
                failed.push(e);
                failed_pairs += 1;
                overall.inc(1);
                continue;
            }
        };
        if interrupted(&output, &signals) {
            output
                .image
                .save_with(&partial, &save_options(&job, Some(c)))?;
            overall.finish_and_clear();
            say!(
                "interrupted in {} × {}: its best image so far is in {}; run the same command again to finish the batch ({done} done now, {skipped} done before, {} to go)",
                c.display(),
                s.display(),
                partial.display(),
                pairs.len() - done - skipped - failed_pairs
            );
            return Ok(signals.exit_code());
        }
        output.image.save_with(out, &save_options(&job, Some(c)))?;
        done += 1;
        say(&format!(
            "wrote {} (loss {:.4e})",
            out.display(),
            output.best_loss.total
        ));
        overall.inc(1);
    }
    overall.finish_and_clear();
    say!(
        "batch: {} pairs in {:.1} s: {done} done, {skipped} already done (skipped), {failed_pairs} failed",
        pairs.len(),
        started.elapsed().as_secs_f64(),
    );
    for f in &failed {
        say!("  failed: {}", crate::printable(f));
    }
    Ok(if failed_pairs == 0 { 0 } else { 1 })
}
