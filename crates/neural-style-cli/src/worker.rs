//! `neural-style worker`: flags -> the network loaded once and a worker of the queue
//! across machines (`neural-style-web`'s `queue::worker`), printing a line per job, until
//! Ctrl-C or SIGTERM (a job running then goes on to its next checkpoint, saves it and is
//! handed back, for another worker to continue at once; a second signal stops at once).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Result, bail};
use neural_style_web::Limits;
use neural_style_web::queue::worker::{self, WorkerConfig, WorkerNote};
use neural_style_web::queue::{Engine, Store};

use crate::cli::WorkerArgs;
use crate::config::not_allowed;
use crate::runner::load_network_flags;

/// Longest lease accepted (a day).
const MAX_LEASE_S: u64 = 86_400;

/// Runs the worker until Ctrl-C or SIGTERM.
pub fn run(a: WorkerArgs) -> Result<u8> {
    let (Some(queue), Some(store)) = (&a.queue.queue, &a.queue.store) else {
        bail!("worker: --queue and --store are both needed");
    };
    if !(1..=MAX_LEASE_S).contains(&a.lease) {
        let seconds = format!("1..={MAX_LEASE_S} seconds");
        return Err(not_allowed("--lease", a.lease, seconds));
    }
    if a.checkpoint_every == 0 {
        let why = "at least 1 (a job must be able to move)";
        return Err(not_allowed("--checkpoint-every", 0, why));
    }
    let engine = Engine::open(queue)?;
    let store = Store::open(store)?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        bail!("--name: 1 to 200 printable characters");
    }
    let work_dir = a
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("neural-style-worker-{}", std::process::id()));
    let (net, base, description) = load_network_flags(&a.network)?;
    say!("{description}");
    let config = WorkerConfig {
        name: name.clone(),
        lease: Duration::from_secs(a.lease),
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: Duration::from_secs(a.checkpoint_seconds),
        work_dir: work_dir.clone(),
        limits: Limits {
            max_size: a.max_size,
            max_iterations: a.max_iterations,
            max_input_pixels: a.network.max_input_pixels,
            accept_damaged: a.network.accept_damaged,
            ..Limits::default()
        },
    };
    let quit = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // The first signal lets the running job reach its next checkpoint and hands it
        // back; a second one ends the process at once (the job waits out its lease).
        signal_hook::flag::register_conditional_shutdown(signal, 1, quit.clone())?;
        signal_hook::flag::register(signal, quit.clone())?;
    }
    say!(
        "worker {name}: taking jobs from {} (store {}); Ctrl-C hands a running job back at its next checkpoint (twice: stops at once)",
        engine.shown(),
        store.url()
    );
    let mut note = |n: WorkerNote<'_>| match n {
        WorkerNote::Connected => say!("connected to {}", engine.shown()),
        WorkerNote::Unreachable(e) => say!("{e}; retrying"),
        WorkerNote::Took {
            id,
            attempts,
            resumed,
        } => say!(
            "job {id}: started (attempt {attempts}{})",
            if resumed {
                ", from its last checkpoint"
            } else {
                ""
            }
        ),
        WorkerNote::Ended { id, status, error } => match error {
            Some(e) => say!("job {id}: {status:?}: {e}"),
            None => say!("job {id}: {status:?}"),
        },
        WorkerNote::Lost { id } => {
            say!("job {id}: another worker has taken it over; dropped here")
        }
        WorkerNote::HandedBack { id } => {
            say!("job {id}: checkpoint saved and handed back to the queue")
        }
        WorkerNote::CheckpointNotSaved { id, error } => {
            say!("job {id}: a checkpoint could not be saved ({error}); the next one is tried")
        }
    };
    let worked = worker::work(&net, &base, &engine, &store, &config, &quit, &mut note);
    let _ = std::fs::remove_dir_all(&work_dir);
    worked?;
    say!("worker {name}: stopped");
    Ok(0)
}

/// This machine's name, for the default worker name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}
