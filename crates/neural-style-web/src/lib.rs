//! The neural-style web UI: a local HTTP server (axum) with one page where a photo and
//! style images are dropped, the painting emerges live (server-sent events with the loss
//! curve, ETA and preview images) and can be stopped and downloaded; a job queue with a
//! fixed number of concurrent runs; and the JSON API the page itself uses. It depends on
//! the `neural-style` library only.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use neural_style::{Network, TransferConfig, default_device};
//! use neural_style_web::{Server, ServerConfig};
//!
//! let base = TransferConfig::default();
//! let net = Network::load("vgg19.safetensors".as_ref(), &base, &default_device())?;
//! let server = Server::new(Arc::new(net), base, ServerConfig::default())?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; })?;
//! # Ok(())
//! # }
//! ```

pub mod access;
pub mod api;
pub mod jobs;
mod progress;
#[cfg(feature = "queue")]
pub mod queue;
pub mod settings;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use neural_style::{Network, TransferConfig};

pub use jobs::{JobView, Jobs, Status};
pub use settings::{JobSettings, Limits, SettingsError};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where results are kept (created if missing).
    pub results_dir: PathBuf,
    /// Runs at the same time.
    pub workers: usize,
    /// Most jobs waiting.
    pub max_queue: usize,
    /// Most bytes of results kept; the oldest are removed past it.
    pub max_results_bytes: u64,
    /// Longest time for one request (uploads included; the event stream excepted).
    pub request_timeout: Duration,
    /// Longest time a connection may take to send a request's header (and may stay idle
    /// between requests); past it the connection is closed.
    pub header_timeout: Duration,
    /// Host names answered besides IP addresses and `localhost` (see [`access`]).
    pub allowed_hosts: Vec<String>,
    /// What clients may ask for.
    pub limits: Limits,
    /// The queue across machines: jobs go to its engine and workers elsewhere run them
    /// (`None`: this process runs them, `workers` at a time).
    #[cfg(feature = "queue")]
    pub remote: Option<RemoteQueue>,
    /// The API's access tokens (none: open to every client that passes the host and
    /// origin rules, as on loopback).
    pub access: access::AccessTokens,
    /// Most jobs one client may have waiting: per access token when there are tokens,
    /// else per browser (0: only `max_queue`).
    pub max_per_client: usize,
}

/// The queue across machines a server submits to.
#[cfg(feature = "queue")]
#[derive(Debug, Clone)]
pub struct RemoteQueue {
    /// The engine (Redis).
    pub engine: queue::Engine,
    /// Where uploads and results go.
    pub store: queue::Store,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            results_dir: PathBuf::from("neural-style-results"),
            workers: 1,
            max_queue: 32,
            max_results_bytes: 1 << 30,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            limits: Limits::default(),
            #[cfg(feature = "queue")]
            remote: None,
            access: access::AccessTokens::default(),
            max_per_client: 16,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The results folder.
    // Causes are part of the messages, not `source`s: a chain printed whole would
    // otherwise say them twice.
    #[error("{path}: cannot use it as the results folder: {error}")]
    ResultsDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A server setting out of range.
    #[error("{setting}: {value} is not allowed; use at least 1")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: usize,
    },
    /// The socket or the runtime.
    #[error("server: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for WebError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A server: its queue, workers and router.
pub struct Server {
    jobs: api::Backend,
    state: Arc<api::AppState>,
    config: ServerConfig,
}

impl Server {
    /// A server running jobs on `net`, each with `base` and the job's own settings.
    pub fn new(
        net: Arc<Network>,
        base: TransferConfig,
        config: ServerConfig,
    ) -> Result<Self, WebError> {
        for (setting, value) in [("workers", config.workers), ("max_queue", config.max_queue)] {
            if value == 0 {
                return Err(WebError::Setting { setting, value });
            }
        }
        #[cfg(feature = "queue")]
        let remote = config.remote.as_ref().map(|remote| {
            api::Backend::Remote(Arc::new(queue::RemoteJobs::new(
                remote.engine.clone(),
                remote.store.clone(),
                config.max_queue,
            )))
        });
        #[cfg(not(feature = "queue"))]
        let remote = None;
        let jobs = match remote {
            Some(remote) => remote,
            None => api::Backend::Embedded(Arc::new(
                Jobs::new(
                    net.clone(),
                    &config.results_dir,
                    config.max_queue,
                    config.max_results_bytes,
                )
                .map_err(|error| WebError::ResultsDir {
                    path: config.results_dir.clone(),
                    error,
                })?,
            )),
        };
        // The loss weights of `base` on the network loaded: what style strength 0 means.
        let default_weights = net.loss_weights(&base);
        let state = Arc::new(api::AppState {
            jobs: jobs.clone(),
            net,
            base,
            default_weights,
            limits: config.limits,
            decoding: tokio::sync::Semaphore::new(2),
            hosts: access::HostRule::new(&config.allowed_hosts),
            access: config.access.clone(),
            max_per_client: config.max_per_client,
        });
        Ok(Self {
            jobs,
            state,
            config,
        })
    }

    /// The server's own queue (for callers that watch it); `None` when the jobs go to
    /// the queue across machines.
    pub fn jobs(&self) -> Option<&Arc<Jobs>> {
        match &self.jobs {
            api::Backend::Embedded(jobs) => Some(jobs),
            #[cfg(feature = "queue")]
            api::Backend::Remote(_) => None,
        }
    }

    /// The router with this server's state and limits, to drive without a socket (the
    /// fuzz target of the upload path does); no worker runs its jobs.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone(), self.config.request_timeout)
    }

    /// Serves on `listener` until `shutdown` completes, then stops the running jobs
    /// (keeping their best images as results) and returns once they are saved.
    pub fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        let embedded = self.jobs().cloned();
        let workers: Vec<_> = embedded
            .iter()
            .flat_map(|jobs| (0..self.config.workers).map(move |i| (i, jobs.clone())))
            .map(|(i, jobs)| {
                std::thread::Builder::new()
                    .name(format!("neural-style-worker-{i}"))
                    .spawn(move || jobs.work())
            })
            .collect::<std::io::Result<_>>()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let app = self.router();
        let jobs = embedded.clone();
        #[cfg(feature = "queue")]
        let remote = match &self.jobs {
            api::Backend::Remote(remote) => Some(remote.clone()),
            api::Backend::Embedded(_) => None,
        };
        let header_timeout = self.config.header_timeout;
        let served = runtime.block_on(async move {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            #[cfg(feature = "queue")]
            if let Some(remote) = remote {
                // The workers' progress, for the event streams of the jobs watched here;
                // results past the retention are deleted from the store.
                let sweeping = remote.clone();
                tokio::spawn(async move { sweeping.sweep().await });
                tokio::spawn(async move { remote.listen().await });
            }
            let (closing, closed) = tokio::sync::watch::channel(false);
            let mut connections = tokio::task::JoinSet::new();
            let mut shutdown = std::pin::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            connections.spawn(connection(
                                stream,
                                app.clone(),
                                header_timeout,
                                closed.clone(),
                            ));
                        }
                        // Out of file descriptors, say: wait a little rather than spin.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            // Open event streams end when their jobs do; idle connections close now, busy
            // ones after their answer, and whatever is left after the grace time is dropped.
            if let Some(jobs) = &jobs {
                jobs.shut_down();
            }
            let _ = closing.send(true);
            let drained = async { while connections.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
            connections.abort_all();
            Ok::<(), std::io::Error>(())
        });
        if let Some(jobs) = &embedded {
            jobs.shut_down();
        }
        for worker in workers {
            let _ = worker.join();
        }
        runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(served?)
    }
}

/// How long connections get to finish once the server is stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves one connection (HTTP/1.1) until it closes, the client is too slow to send a
/// header, or the server stops.
async fn connection(
    stream: tokio::net::TcpStream,
    app: axum::Router,
    header_timeout: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM: the usual `shutdown` for [`Server::serve`].
pub async fn termination() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
