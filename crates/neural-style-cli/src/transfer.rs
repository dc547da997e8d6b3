//! The default command: one style transfer from flags to a saved image, with a progress
//! bar, a log, checkpoints, and the best image kept when a signal stops it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use neural_style::Checkpoint;

use crate::cli::RunArgs;
use crate::config::{RunJob, flag_error};
use crate::progress::Reporter;
use crate::runner::{
    Given, Signals, describe, interrupted, job_plan, load_inputs, load_network, save_options,
    set_threads,
};

/// What a run needs once its job is checked: the network, the plan, the log file and,
/// for a resumed run, where and at which evaluation it resumes.
pub struct Prepared {
    /// The network.
    pub net: neural_style::Network,
    /// The weights file the network came from.
    pub weights: PathBuf,
    /// The resolved plan.
    pub plan: neural_style::Plan,
    /// The JSON-lines log, opened for this run.
    pub log: Option<std::fs::File>,
    /// The checkpoint resumed from and the evaluation it was taken at.
    pub resumed_at: Option<(String, usize)>,
}

/// Loads the job's images (from `given` where it holds a flag's name) and network and
/// resolves its plan, with checkpoints, and opens its log.
pub fn prepare(job: &RunJob, given: &Given) -> Result<Prepared> {
    let inputs = load_inputs(job, given)?;
    let (net, weights) = load_network(job)?;
    let resume = job
        .resume
        .as_ref()
        .map(|p| Checkpoint::load(p).map(|c| (c, p.as_path())))
        .transpose()?;
    let resumed_at = resume
        .as_ref()
        .map(|(c, p)| (p.display().to_string(), c.done + c.lbfgs.evaluations));
    let every = job.checkpoint.as_ref().map_or(0, |(_, n)| *n);
    let plan = job_plan(job, &net, inputs)?
        .with_checkpoints(every, resume)
        .map_err(flag_error)?;
    let log = job
        .log
        .as_ref()
        .map(|p| open_log(p, job.resume.is_some()))
        .transpose()?;
    Ok(Prepared {
        net,
        weights,
        plan,
        log,
        resumed_at,
    })
}

/// Runs the job the flags describe.
pub fn run(args: RunArgs) -> Result<u8> {
    let job = RunJob::from_args(args)?;
    set_threads(job.threads)?;
    let Prepared {
        net,
        weights,
        plan,
        log,
        resumed_at,
    } = prepare(&job, &Given::new())?;
    let signals = Signals::install()?;
    let mut reporter = Reporter::new(
        job.quiet,
        job.print_every,
        log,
        job.output.clone(),
        signals.interrupted.clone(),
    );
    reporter.println(&describe(&net, &job, &weights));
    if let Some((path, evaluation)) = resumed_at {
        reporter.println(&format!("Resuming from {path} at evaluation {evaluation}"));
    }
    reporter.checkpoint = job.checkpoint.as_ref().map(|(p, _)| p.clone());
    let save = save_options(&job, job.content.as_deref());
    let output = crate::runner::on_pool(|| neural_style::run(&net, &plan, &mut reporter));
    reporter.finish();
    let output = output?;
    reporter.log_result(&output);
    if let Some(e) = reporter.error.take() {
        say!("warning: {e:#}");
    }
    if interrupted(&output, &signals) {
        let partial = crate::config::partial_path(&job.output);
        output.image.save_with(&partial, &save)?;
        // Not known when it stopped between the tiles of a size's first evaluation.
        let loss = match output.best_loss.total {
            l if l.is_finite() => format!(" (loss {l:.6e})"),
            _ => String::new(),
        };
        say!(
            "interrupted after {} evaluations; best image so far{loss} saved to {}",
            output.evaluations,
            partial.display()
        );
        // Only a checkpoint this run wrote, or the one it resumed from, can be resumed.
        match &job.checkpoint {
            Some((p, _))
                if reporter.checkpoints_written > 0 || job.resume.as_deref() == Some(p) =>
            {
                say!(
                    "continue with the same flags and --resume {} (from its last checkpoint)",
                    p.display()
                );
            }
            Some((p, every)) => say!(
                "no checkpoint was written before the stop (the first comes after {every} L-BFGS iterations), so {} cannot be resumed; run the same command to start again",
                p.display()
            ),
            None => {}
        }
        return Ok(signals.exit_code());
    }
    for line in notes(&output) {
        say!("{line}");
    }
    output.image.save_with(&job.output, &save)?;
    // How much of the photo's layout is left, which the losses do not tell.
    let structure = output
        .structure
        .map(|s| format!("; structure {s:.3} (coarse SSIM with the photo, 1 = all kept)"))
        .unwrap_or_default();
    say!(
        "wrote {} after {} evaluations: final loss {:.6e} (content {:.6e}, style {:.6e}, tv {:.6e}); best {:.6e}{structure}",
        job.output.display(),
        output.evaluations,
        output.final_loss.total,
        output.final_loss.content,
        output.final_loss.style,
        output.final_loss.tv,
        output.best_loss.total
    );
    Ok(0)
}

/// What a finished run has to say beyond its result: the divergences it recovered from, or
/// where its loss became non-finite.
pub fn notes(output: &neural_style::Output) -> Vec<String> {
    let mut notes = Vec::new();
    if output.recoveries > 0 {
        notes.push(format!(
            "note: the loss diverged {} time(s); the optimiser went back to its best image and took smaller steps",
            output.recoveries
        ));
    }
    if let (Some(at), 0) = (output.non_finite_at, output.recoveries) {
        notes.push(format!(
            "warning: the loss became non-finite at evaluation {at}; the run stopped and kept its best image"
        ));
    }
    notes
}

/// Opens the JSON-lines log for this run alone: locked, so that a second run given the same
/// file is refused instead of interleaving its lines (or truncating the first run's), and
/// emptied only once the lock is held. A resumed run appends.
pub fn open_log(path: &Path, resumed: bool) -> Result<std::fs::File> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot create the log file", path.display()))?;
    if file.try_lock().is_err() {
        anyhow::bail!(
            "{}: another run is writing this log; give each run its own --log",
            path.display()
        );
    }
    if !resumed {
        file.set_len(0)
            .with_context(|| format!("{}: cannot empty the log file", path.display()))?;
    }
    Ok(file)
}
