//! The plumbing every command that runs style transfer shares: the thread count, the
//! signals that stop a run and keep its best image, loading the images and the network,
//! resolving the plan (library errors in the command line's terms) and the memory check.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use neural_style::objective::mask::MaskProblem;
use neural_style::{CheckedConfig, Decoding, Image, Inputs, Mask, Network, Plan};

use crate::config::{RunJob, WeightsSource, flag_error};
use crate::weights_cmd;

/// The most worker threads per core `--threads` may ask for (at least [`MIN_MAX_THREADS`]
/// in all): more only slow a run down (1000 threads on 2 cores: 0.1 s became 19 s).
const THREADS_PER_CORE: usize = 4;
/// The `--threads` ceiling on a machine with few cores.
const MIN_MAX_THREADS: usize = 16;

/// The most `--threads` this machine allows.
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * THREADS_PER_CORE).max(MIN_MAX_THREADS)
}

/// Sizes rayon's global pool (all cores when `threads` is unset); refuses 0 and more than
/// [`max_threads`].
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        check_threads(n)?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    Ok(())
}

/// Runs `work`, one style transfer at a time, on one of rayon's threads. From any other
/// thread each of the engine's parallel loops hands all its work to the pool, wakes a
/// thread for it and sleeps until it is done; from inside, the loops share their work with
/// the pool's other threads directly (at 512 px, 2 threads: ~700 fewer thread switches an
/// evaluation; 1 thread: 10% less CPU time). Not for runs side by side (the web server's
/// `--jobs`): a thread of the pool waiting inside one run could take up a whole other run.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Images handed to a run in memory by a program that embeds the command ([`crate::embed`]),
/// each under the name that stands for it in the flags and in errors.
pub type Given = std::collections::HashMap<PathBuf, Image>;

/// The image a flag names: the one given in memory under that name, else the file.
fn given_or_load(path: &Path, given: &Given, decoding: Decoding) -> Result<Image> {
    match given.get(path) {
        Some(image) => Ok(image.clone()),
        None => load_image(path, decoding),
    }
}

/// Refuses a `--threads` of 0 or more than [`max_threads`].
pub fn check_threads(n: usize) -> Result<()> {
    let max = max_threads();
    if !(1..=max).contains(&n) {
        let allowed =
            format!("1..={max} ({THREADS_PER_CORE} per core here, at least {MIN_MAX_THREADS})");
        return Err(crate::config::not_allowed("--threads", n, allowed));
    }
    Ok(())
}

/// Loads a mask image and checks that it has the content's aspect ratio.
pub fn load_mask(
    path: &Path,
    job: &RunJob,
    content: Option<&Image>,
    given: &Given,
) -> Result<Mask> {
    let mask = Mask::from_image(&given_or_load(path, given, job.decoding)?);
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

/// The content, style, init and mask images of a job: from `given` where it holds the
/// name a flag gives, else from the files.
pub fn load_inputs(job: &RunJob, given: &Given) -> Result<Inputs> {
    let load = |p: &Path| given_or_load(p, given, job.decoding);
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
            .map(|p| load_mask(p, job, content.as_ref(), given))
            .collect::<Result<_>>()?,
        content_mask: job
            .content_mask
            .as_deref()
            .map(|p| load_mask(p, job, content.as_ref(), given))
            .transpose()?,
        content,
        temporal: None,
    })
}

/// The job's network (downloading its model on first use) and the weights file it came
/// from.
pub fn load_network(job: &RunJob) -> Result<(Network, PathBuf)> {
    load_network_from(&job.weights, job.device, job.config.get(), job.quiet)
}

/// The network of `weights` (downloading a model on first use) on `device`, and the file
/// it came from.
pub fn load_network_from(
    weights: &WeightsSource,
    device: neural_style::DeviceChoice,
    config: &neural_style::TransferConfig,
    quiet: bool,
) -> Result<(Network, PathBuf)> {
    let weights = match weights {
        WeightsSource::File(path) => path.clone(),
        WeightsSource::Model { model, cache } => weights_cmd::model_weights(model, cache, quiet)?,
    };
    let (device, _) = neural_style::model::device::device(device).map_err(flag_error)?;
    let net = Network::load(&weights, config, &device)?;
    Ok((net, weights))
}

/// The network a long-lived command (`serve`, `worker`) runs every job on, from its network
/// flags: the threads set, the base settings (architecture and input convention), the
/// network loaded, and the line that describes it.
#[cfg(feature = "serve")]
pub fn load_network_flags(
    n: &crate::cli::NetworkArgs,
) -> Result<(Network, neural_style::TransferConfig, String)> {
    set_threads(n.threads)?;
    let weights = WeightsSource::from_flags(n.weights.clone(), &n.model, n.cache_dir.as_deref())?;
    let device = n.device.parse().map_err(flag_error)?;
    let base = neural_style::TransferConfig {
        arch: n.arch,
        convention: n.preprocess.map(neural_style::InputConvention::from),
        ..neural_style::TransferConfig::default()
    };
    let (net, path) = load_network_from(&weights, device, &base, false)?;
    let description = describe_network(&net, base.loss_form, &path);
    Ok((net, base, description))
}

/// One line saying which network, convention and loss form a run uses.
pub fn describe(net: &Network, job: &RunJob, weights: &Path) -> String {
    describe_network(net, job.config.get().loss_form, weights)
}

/// One line saying which network, convention and loss form runs use, and whether the
/// convolutions' products run in bf16 (`--precision`).
pub fn describe_network(
    net: &Network,
    loss_form: neural_style::LossForm,
    weights: &Path,
) -> String {
    format!(
        "{} ({}, {}{}), weights {}",
        net.info.arch,
        net.convention,
        match loss_form {
            neural_style::LossForm::Normalized => "normalised loss form",
            neural_style::LossForm::Mean => "mean loss form",
            neural_style::LossForm::Paper => "paper loss form",
        },
        if net.vgg.bf16() {
            ", bf16 products"
        } else {
            ""
        },
        weights.display()
    )
}

/// How the result of `job` is written: its bit depth, and the colour profile and resolution
/// of its photo `content`, where the photo has them (`--dpi` overrides the resolution).
pub fn save_options(job: &RunJob, content: Option<&Path>) -> neural_style::SaveOptions {
    let mut print = content.map(neural_style::PrintInfo::of).unwrap_or_default();
    print.dpi = job.dpi.or(print.dpi);
    neural_style::SaveOptions {
        depth: job.bit_depth,
        print,
    }
}

/// An image file, decoded as `decoding` allows.
pub fn load_image(path: &Path, decoding: Decoding) -> Result<Image> {
    Image::load_with(path, decoding).map_err(|e| match e {
        neural_style::Error::DamagedImage { .. } => {
            anyhow::anyhow!("{e}; --accept-damaged uses the part that decodes")
        }
        other => flag_error(other),
    })
}

/// The plan of a run of `config` on `net` with `inputs`, its errors in flag terms.
pub fn plan(config: &CheckedConfig, net: &Network, inputs: Inputs) -> Result<Plan> {
    Plan::new(config, net, inputs).map_err(flag_error)
}

/// The plan of one run of `job` (memory checked unless the job says not to).
pub fn job_plan(job: &RunJob, net: &Network, inputs: Inputs) -> Result<Plan> {
    let plan = plan(&job.config, net, inputs)?;
    if job.no_memory_check {
        Ok(plan)
    } else {
        check_memory(job, plan)
    }
}

/// Whether a run's observer stopped it because of a signal.
pub fn interrupted(output: &neural_style::Output, signals: &Signals) -> bool {
    output.stopped && signals.interrupted.load(Ordering::SeqCst)
}

/// Fits a run into the memory that is free or `--max-memory` ([`neural_style::run::memory::fit`]:
/// a shorter L-BFGS history, tiles unless `--no-tile`, or both); refuses it when nothing
/// fits. Says what it changed and why.
pub fn check_memory(job: &RunJob, plan: Plan) -> Result<Plan> {
    use neural_style::run::memory::{Budget, Fitting, available_memory, fit};
    let Some(budget) = Budget::new(available_memory(), job.max_memory) else {
        return Ok(plan);
    };
    let (w, h) = plan.output_size();
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let available = gib(budget.available);
    let (plan, fitted) = fit(plan, budget).map_err(|e| {
        anyhow::anyhow!(
            "{e}; use a smaller --size, --optimizer adam, or --no-memory-check to try anyway"
        )
    })?;
    for f in fitted {
        match f {
            Fitting::Tiles { core, whole } => say!(
                "note: a {w}x{h} evaluation of the whole image needs about {:.1} GiB and {available:.1} GiB is available; evaluating it in tiles of {core} px (--no-tile forbids it)",
                gib(whole)
            ),
            Fitting::History { from, to, needs } => say!(
                "note: a {w}x{h} run with L-BFGS history {from} needs about {:.1} GiB and {available:.1} GiB is available; using history {to}",
                gib(needs)
            ),
        }
    }
    Ok(plan)
}

/// Flags set by SIGINT, SIGTERM and SIGHUP: Ctrl-C (SIGINT), SIGTERM or a closed terminal
/// (SIGHUP) stop the run at the next evaluation so it can save its best image; a second
/// Ctrl-C exits at once.
pub struct Signals {
    /// Set by any of them: stop at the next evaluation.
    pub interrupted: Arc<AtomicBool>,
    /// Set by SIGTERM.
    pub terminated: Arc<AtomicBool>,
    /// Set by SIGHUP.
    pub hung_up: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        use signal_hook::flag;
        let interrupted = Arc::new(AtomicBool::new(false));
        let terminated = Arc::new(AtomicBool::new(false));
        let hung_up = Arc::new(AtomicBool::new(false));
        flag::register_conditional_shutdown(SIGINT, 130, interrupted.clone())
            .and_then(|_| flag::register(SIGINT, interrupted.clone()))
            .and_then(|_| flag::register(SIGTERM, terminated.clone()))
            .and_then(|_| flag::register(SIGTERM, interrupted.clone()))
            .and_then(|_| flag::register(SIGHUP, hung_up.clone()))
            .and_then(|_| flag::register(SIGHUP, interrupted.clone()))
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
            hung_up,
        })
    }

    /// The shell's convention: 128 + the number of the signal that stopped the run.
    pub fn exit_code(&self) -> u8 {
        if self.terminated.load(Ordering::SeqCst) {
            143
        } else if self.hung_up.load(Ordering::SeqCst) {
            129
        } else {
            130
        }
    }
}
