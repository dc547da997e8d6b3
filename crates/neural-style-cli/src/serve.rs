//! `neural-style serve`: flags -> a checked server configuration, the network loaded once,
//! and the web UI of the `neural-style-web` crate until Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use neural_style::config::SIDES;
#[cfg(feature = "queue")]
use neural_style_web::RemoteQueue;
use neural_style_web::access::AccessTokens;
#[cfg(feature = "queue")]
use neural_style_web::queue::{Engine, Store};
use neural_style_web::{Limits, Server, ServerConfig};

use crate::cli::ServeArgs;
use crate::config::not_allowed;
use crate::runner::load_network_flags;

/// The most jobs `serve` runs at once (each on every thread of the pool).
const MAX_JOBS: usize = 64;
/// The longest queue `serve` keeps (each queued job holds its uploads, shrunk).
const MAX_QUEUE: usize = 10_000;

/// The server's settings from its flags; every error names the flag.
fn server_config(a: &ServeArgs) -> Result<ServerConfig> {
    let positive = |flag: &str, n: u64| match n {
        0 => Err(not_allowed(&format!("--{flag}"), n, "at least 1")),
        _ => Ok(()),
    };
    // Each job is a thread running on all --threads, and each queued job holds its images.
    let at_most = |flag: &str, n: usize, max: usize| {
        if n > max {
            return Err(not_allowed(&format!("--{flag}"), n, format!("1..={max}")));
        }
        Ok(())
    };
    positive("jobs", a.jobs as u64)?;
    positive("max-queue", a.max_queue as u64)?;
    at_most("jobs", a.jobs, MAX_JOBS)?;
    at_most("max-queue", a.max_queue, MAX_QUEUE)?;
    positive("max-iterations", a.max_iterations as u64)?;
    positive("request-timeout", a.request_timeout)?;
    if let Some(bad) = a.allow_hosts.iter().find(|h| !valid_host_name(h)) {
        bail!("--allow-host {bad}: not a host name (letters, digits, `-` and `.`, no port)")
    }
    if !SIDES.contains(&a.max_size) {
        let pixels = format!("{}..={} pixels", SIDES.start(), SIDES.end());
        return Err(not_allowed("--max-size", a.max_size, pixels));
    }
    #[cfg(feature = "queue")]
    let remote = match (&a.queue.queue, &a.queue.store) {
        (None, _) => None,
        (Some(_), None) => bail!("--queue needs --store: where the workers find the uploads"),
        (Some(queue), Some(store)) => Some(RemoteQueue {
            engine: Engine::open(queue)?
                .with_retention((!a.retention.is_zero()).then_some(a.retention)),
            store: Store::open(store)?,
        }),
    };
    let access = match &a.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            AccessTokens::parse(&text)
                .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?
        }
        None if !a.bind.ip().is_loopback() => bail!(
            "--bind {}: serving beyond this machine needs --token-file (API access tokens, lines of `NAME TOKEN`)",
            a.bind
        ),
        None => AccessTokens::default(),
    };
    Ok(ServerConfig {
        #[cfg(feature = "queue")]
        remote,
        access,
        max_per_client: a.max_per_client,
        results_dir: a.results.clone(),
        workers: a.jobs,
        max_queue: a.max_queue,
        max_results_bytes: a.max_results,
        request_timeout: Duration::from_secs(a.request_timeout),
        allowed_hosts: a.allow_hosts.clone(),
        limits: Limits {
            max_size: a.max_size,
            max_iterations: a.max_iterations,
            max_upload_bytes: usize::try_from(a.max_upload).unwrap_or(usize::MAX),
            max_input_pixels: a.network.max_input_pixels,
            accept_damaged: a.network.accept_damaged,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
}

/// Whether `name` is a DNS host name (what `--allow-host` takes).
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(a: ServeArgs) -> Result<u8> {
    let config = server_config(&a)?;
    let (net, base, description) = load_network_flags(&a.network)?;
    let listener = std::net::TcpListener::bind(a.bind)
        .with_context(|| format!("--bind {}: cannot listen there", a.bind))?;
    let addr = listener.local_addr().context("--bind")?;
    let server = Server::new(Arc::new(net), base, config)?;
    if !addr.ip().is_loopback() {
        say!(
            "listening on {addr}: the API needs one of the access tokens of {}",
            a.token_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    say!("{description}");
    #[cfg(feature = "queue")]
    let queue = a.queue.queue.as_ref();
    #[cfg(not(feature = "queue"))]
    let queue: Option<&String> = None;
    match queue {
        #[cfg(feature = "queue")]
        Some(queue) => say!(
            "serving the web UI on http://{addr}/; jobs go to the queue at {} (store {}), run by `neural-style worker`s; Ctrl-C stops the server, not the jobs",
            neural_style_web::queue::engine::redacted(queue),
            a.queue.store.as_deref().unwrap_or_default()
        ),
        _ => say!(
            "serving the web UI on http://{addr}/ (results in {}); Ctrl-C stops it, keeping the best image of a running job",
            a.results.display()
        ),
    }
    server.serve(listener, neural_style_web::termination())?;
    say!("stopped");
    Ok(0)
}
