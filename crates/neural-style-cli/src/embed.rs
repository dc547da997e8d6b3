//! The default command's job run by another program (the Python package): the same flags,
//! defaults, checks, loading and messages as `neural-style -c ... -s ... -o ...`, with images
//! handed over in memory, events to a callback instead of a progress bar, the result
//! returned in memory, and no signal handlers of its own (the caller stops the run through
//! a flag, e.g. on a notebook's interrupt).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::cli::Cli;
use crate::config::{RunJob, flag_error, partial_path};
use crate::progress::Reporter;
use crate::runner::{describe, save_options};
use crate::transfer::{Prepared, notes, prepare};

pub use crate::progress::EventHook;
pub use crate::runner::Given;

/// One run asked for by an embedding program.
pub struct Request {
    /// The command line's flags, without the program name; `--output` may be left out, and
    /// then nothing but the log and checkpoints (when asked for) is written.
    pub args: Vec<OsString>,
    /// Images in memory, each under the name a flag gives it (`--content NAME`).
    pub given: Given,
    /// A preview image every N evaluations (0: none), as [`neural_style::Event::Snapshot`]
    /// events; `--save-every` sets the pace instead when given (and writes its files).
    pub preview_every: usize,
}

/// What a run gave back.
pub struct Finished {
    /// The result: the best image, its losses and the structure figure.
    pub output: neural_style::Output,
    /// The file the image was written to: the output, or its `.partial` image when the run
    /// was interrupted; `None` without `--output`.
    pub written: Option<PathBuf>,
    /// Whether the caller's flag stopped the run.
    pub interrupted: bool,
    /// The command's notes and warnings about the run (divergences recovered from).
    pub notes: Vec<String>,
    /// The command's line describing the network, convention and loss form.
    pub description: String,
}

/// Parses `args` as the default command's flags; a subcommand or a flag clap refuses is an
/// error whose message is clap's first line and tip, without the usage text.
fn parse(args: Vec<OsString>) -> Result<crate::cli::RunArgs> {
    let argv = std::iter::once(OsString::from("neural-style")).chain(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        let text = e.render().to_string();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
            .collect();
        anyhow::anyhow!("{}", lines.join("; ").trim_start_matches("error: "))
    })?;
    if cli.command.is_some() {
        bail!("only the style-transfer flags can be embedded, not a subcommand");
    }
    Ok(cli.run)
}

/// Runs `request` on this thread (its work on `threads` workers when the flags say, else on
/// the caller's rayon pool); `interrupted` stops it at the next evaluation with its best
/// image, and `hook` receives every event (returning `Break` stops it too).
pub fn run(request: Request, interrupted: Arc<AtomicBool>, hook: EventHook) -> Result<Finished> {
    let mut args = parse(request.args)?;
    let to_file = args.output.is_some();
    if !to_file {
        if args.save_every > 0 {
            bail!("--save-every needs --output: its snapshots are named after the output file");
        }
        // The job's checks need a name; nothing is ever written under it.
        args.output = Some(std::env::temp_dir().join("neural-style-in-memory.png"));
    }
    let mut job = RunJob::from_args(args)?;
    let write_snapshots = job.config.get().snapshot_every > 0;
    if !write_snapshots && request.preview_every > 0 {
        let mut config = job.config.get().clone();
        config.snapshot_every = request.preview_every;
        job.config = config.check(job.config.styles()).map_err(flag_error)?;
    }
    let threads = job.threads;
    let given = request.given;
    let work = move || run_job(&job, &given, to_file, write_snapshots, interrupted, hook);
    match threads {
        None => work(),
        Some(n) => {
            crate::runner::check_threads(n)?;
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .context("starting the worker threads")?
                .install(work)
        }
    }
}

/// [`run`] once the job is checked.
fn run_job(
    job: &RunJob,
    given: &Given,
    to_file: bool,
    write_snapshots: bool,
    interrupted: Arc<AtomicBool>,
    hook: EventHook,
) -> Result<Finished> {
    let Prepared {
        net,
        weights,
        plan,
        log,
        ..
    } = prepare(job, given)?;
    let mut reporter = Reporter::new(true, 0, log, job.output.clone(), interrupted.clone());
    reporter.silent = true;
    reporter.write_snapshots = write_snapshots;
    reporter.forward = Some(hook);
    reporter.checkpoint = job.checkpoint.as_ref().map(|(p, _)| p.clone());
    let output = neural_style::run(&net, &plan, &mut reporter)?;
    reporter.log_result(&output);
    let mut notes = notes(&output);
    if let Some(e) = reporter.error.take() {
        notes.insert(0, format!("warning: {e:#}"));
    }
    let stopped_by_flag = output.stopped && interrupted.load(Ordering::SeqCst);
    let written = match (to_file, stopped_by_flag) {
        (false, _) => None,
        (true, true) => Some(partial_path(&job.output)),
        (true, false) => Some(job.output.clone()),
    };
    if let Some(path) = &written {
        output
            .image
            .save_with(path, &save_options(job, job.content.as_deref()))?;
    }
    Ok(Finished {
        description: describe(&net, job, &weights),
        output,
        written,
        interrupted: stopped_by_flag,
        notes,
    })
}
