//! The `neural-style` command: flags -> checked job -> library run, with a progress bar,
//! logs, intermediate images, and a clean exit on errors and signals.

mod batch;
mod bench;
mod cli;
mod config;
mod progress;
mod serve;
mod sheet;
mod video;
mod weights_cmd;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Parser;
use neural_style::mask::MaskProblem;
use neural_style::{Checkpoint, Image, Inputs, Mask, Network};

use crate::cli::{Cli, Command};
use crate::config::{RunJob, WeightsSource};
use crate::progress::Reporter;

/// mimalloc keeps freed memory for reuse: the engine allocates and frees tensors of tens of
/// megabytes at every step, which the system allocator hands back to the kernel and faults
/// in again, page by page.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    Ok(())
}

/// Refuses a run whose estimated peak memory exceeds what is free, or shortens its L-BFGS
/// history so that it fits.
fn check_memory(job: &mut RunJob, net: &Network, inputs: &Inputs) -> Result<()> {
    use neural_style::memory::{available_memory, estimate, history_that_fits};
    // Leave a tenth of the free memory for the rest of the system.
    let (available, budget) = match (available_memory(), job.max_memory) {
        (None, None) => return Ok(()),
        (Some(free), None) => (free, free / 10 * 9),
        (None, Some(max)) => (max, max),
        (Some(free), Some(max)) => (free.min(max), (free / 10 * 9).min(max)),
    };
    let config = job.config.with_layers_for(net.info.arch, &net.info.convs);
    let (w, h) = neural_style::transfer::output_size(config.size, inputs.content.as_ref());
    let need = estimate(&config, net.info.arch, w, h).total();
    if need <= budget {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    if config.optimizer == neural_style::OptimizerKind::Lbfgs
        && let Some(history) = history_that_fits(&config, net.info.arch, w, h, budget, 5)
    {
        eprintln!(
            "note: a {w}x{h} run with L-BFGS history {} needs about {:.1} GiB and {:.1} GiB is available; using history {history}",
            config.lbfgs_history,
            gib(need),
            gib(available)
        );
        job.config.lbfgs_history = history;
        return Ok(());
    }
    anyhow::bail!(
        "a {w}x{h} run needs about {:.1} GiB of memory but {:.1} GiB is available; use a smaller --size, --optimizer adam, or --no-memory-check to try anyway",
        gib(need),
        gib(available)
    )
}

/// Loads a mask image and checks that it has the content's aspect ratio.
fn load_mask(path: &std::path::Path, job: &RunJob, content: Option<&Image>) -> Result<Mask> {
    let mask = Mask::from_image(&Image::load(path, job.max_input_pixels)?);
    if let Some(problem) = mask.problem(content.map(|c| (c.width, c.height))) {
        // A shape mismatch also names the photo it was compared with.
        let photo = match (problem, &job.content) {
            (MaskProblem::Shape { .. }, Some(p)) => format!(" ({})", p.display()),
            _ => String::new(),
        };
        anyhow::bail!("{}: the mask {problem}{photo}", path.display());
    }
    Ok(mask)
}

/// The content, style, init and mask images of a job.
fn load_inputs(job: &RunJob) -> Result<Inputs> {
    let load = |p: &std::path::Path| Image::load(p, job.max_input_pixels);
    let content = job.content.as_deref().map(load).transpose()?;
    Ok(Inputs {
        styles: job
            .styles
            .iter()
            .map(|p| load(p))
            .collect::<Result<_, _>>()?,
        init: job.init_image.as_deref().map(load).transpose()?,
        style_masks: job
            .style_masks
            .iter()
            .map(|p| load_mask(p, job, content.as_ref()))
            .collect::<Result<_>>()?,
        content_mask: job
            .content_mask
            .as_deref()
            .map(|p| load_mask(p, job, content.as_ref()))
            .transpose()?,
        content,
        temporal: None,
    })
}

/// The job's network (downloading its model on first use) and the weights file it came
/// from.
fn load_network(job: &RunJob) -> Result<(Network, std::path::PathBuf)> {
    load_network_from(&job.weights, job.device, &job.config, job.quiet)
}

/// The network of `weights` (downloading a model on first use) on `device`, and the file
/// it came from.
fn load_network_from(
    weights: &WeightsSource,
    device: neural_style::DeviceChoice,
    config: &neural_style::TransferConfig,
    quiet: bool,
) -> Result<(Network, std::path::PathBuf)> {
    let weights = match weights {
        WeightsSource::File(path) => path.clone(),
        WeightsSource::Model { model, cache } => weights_cmd::model_weights(model, cache, quiet)?,
    };
    let (device, _) = neural_style::device::device(device).map_err(config::flag_error)?;
    let net = Network::load(&weights, config, &device)?;
    Ok((net, weights))
}

/// One line saying which network, convention and loss form a run uses.
fn describe(net: &Network, job: &RunJob, weights: &std::path::Path) -> String {
    describe_network(net, job.config.loss_form, weights)
}

/// One line saying which network, convention and loss form runs use.
fn describe_network(
    net: &Network,
    loss_form: neural_style::LossForm,
    weights: &std::path::Path,
) -> String {
    format!(
        "{} ({}, {}), weights {}",
        net.info.arch,
        net.convention,
        match loss_form {
            neural_style::LossForm::Normalized => "normalised loss form",
            neural_style::LossForm::Mean => "mean loss form",
            neural_style::LossForm::Paper => "paper loss form",
        },
        weights.display()
    )
}

/// Flags set by SIGINT/SIGTERM: Ctrl-C (SIGINT) or SIGTERM stop the run at the next
/// evaluation so it can save its best image; a second Ctrl-C exits at once.
struct Signals {
    interrupted: Arc<AtomicBool>,
    terminated: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let interrupted = Arc::new(AtomicBool::new(false));
        let terminated = Arc::new(AtomicBool::new(false));
        flag::register_conditional_shutdown(SIGINT, 130, interrupted.clone())
            .and_then(|_| flag::register(SIGINT, interrupted.clone()))
            .and_then(|_| flag::register(SIGTERM, terminated.clone()))
            .and_then(|_| flag::register(SIGTERM, interrupted.clone()))
            .context("installing the signal handlers")?;
        // Past a file-size limit a write fails (and is reported) instead of the signal
        // killing the process mid-write.
        #[cfg(unix)]
        flag::register(
            signal_hook::consts::SIGXFSZ,
            Arc::new(AtomicBool::new(false)),
        )
        .context("installing the signal handlers")?;
        Ok(Self {
            interrupted,
            terminated,
        })
    }

    /// The shell's convention: 128 + the signal's number.
    fn exit_code(terminated: &AtomicBool) -> ExitCode {
        ExitCode::from(if terminated.load(Ordering::SeqCst) {
            143
        } else {
            130
        })
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench(args)) => {
            set_threads(args.threads)?;
            bench::run(&args)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Weights(args)) => {
            weights_cmd::run(&args, cli.run.quiet)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Sheet(args)) => return sheet::run(*args),
        Some(Command::Batch(args)) => return batch::run(*args),
        Some(Command::Video(args)) => return video::run(*args),
        Some(Command::Serve(args)) => return serve::run(*args),
        None => {}
    }
    let job = RunJob::from_args(cli.run)?;
    set_threads(job.threads)?;
    let inputs = load_inputs(&job)?;
    let (net, weights) = load_network(&job)?;
    // Style layer weights are counted once the weights say which style layers there are.
    job.config
        .with_layers_for(net.info.arch, &net.info.convs)
        .check_style_layer_weights()
        .map_err(config::flag_error)?;
    let mut job = job;
    if !job.no_memory_check {
        check_memory(&mut job, &net, &inputs)?;
    }
    // A resumed run appends to its log.
    let log = job
        .log
        .as_ref()
        .map(|p| {
            std::fs::File::options()
                .create(true)
                .write(true)
                .append(job.resume.is_some())
                .truncate(job.resume.is_none())
                .open(p)
                .with_context(|| format!("{}: cannot create the log file", p.display()))
        })
        .transpose()?;
    let Signals {
        interrupted,
        terminated,
    } = Signals::install()?;

    let mut reporter = Reporter::new(
        job.quiet,
        job.print_every,
        log,
        job.output.clone(),
        interrupted.clone(),
    );
    reporter.println(&describe(&net, &job, &weights));
    let resume = job
        .resume
        .as_ref()
        .map(|p| Checkpoint::load(p).map(|c| (c, p.as_path())))
        .transpose()?;
    if let Some((c, p)) = &resume {
        reporter.println(&format!(
            "Resuming from {} at evaluation {}",
            p.display(),
            c.done + c.lbfgs.evaluations
        ));
    }
    reporter.checkpoint = job.checkpoint.as_ref().map(|(p, _)| p.clone());
    let every = job.checkpoint.as_ref().map_or(0, |(_, n)| *n);
    let output =
        neural_style::run_resumable(&net, &job.config, &inputs, &mut reporter, resume, every);
    reporter.finish();
    let output = output?;
    if let Some(e) = reporter.error.take() {
        eprintln!("warning: {e:#}");
    }
    if output.stopped && interrupted.load(Ordering::SeqCst) {
        let partial = config::partial_path(&job.output);
        output.image.save(&partial)?;
        eprintln!(
            "interrupted after {} evaluations; best image so far (loss {:.6e}) saved to {}",
            output.evaluations,
            output.best_loss.total,
            partial.display()
        );
        if let Some((p, _)) = &job.checkpoint {
            eprintln!(
                "continue with the same flags and --resume {} (from its last checkpoint)",
                p.display()
            );
        }
        return Ok(Signals::exit_code(&terminated));
    }
    if output.recoveries > 0 {
        eprintln!(
            "note: the loss diverged {} time(s); the optimiser went back to its best image and took smaller steps",
            output.recoveries
        );
    }
    if let (Some(at), 0) = (output.non_finite_at, output.recoveries) {
        eprintln!(
            "warning: the loss became non-finite at evaluation {at}; the run stopped and kept its best image"
        );
    }
    output.image.save(&job.output)?;
    eprintln!(
        "wrote {} after {} evaluations: final loss {:.6e} (content {:.6e}, style {:.6e}, tv {:.6e}); best {:.6e}",
        job.output.display(),
        output.evaluations,
        output.final_loss.total,
        output.final_loss.content,
        output.final_loss.style,
        output.final_loss.tv,
        output.best_loss.total
    );
    Ok(ExitCode::SUCCESS)
}
