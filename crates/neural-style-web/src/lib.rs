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

pub mod api;
pub mod jobs;
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
    /// What clients may ask for.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            results_dir: PathBuf::from("neural-style-results"),
            workers: 1,
            max_queue: 32,
            max_results_bytes: 1 << 30,
            request_timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The results folder.
    #[error("{path}: cannot use it as the results folder: {source}")]
    ResultsDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
    Io(#[from] std::io::Error),
}

/// A server: its queue, workers and router.
pub struct Server {
    jobs: Arc<Jobs>,
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
        let jobs = Arc::new(
            Jobs::new(
                net.clone(),
                &config.results_dir,
                config.max_queue,
                config.max_results_bytes,
            )
            .map_err(|source| WebError::ResultsDir {
                path: config.results_dir.clone(),
                source,
            })?,
        );
        // The loss weights of `base` on the network loaded: what style strength 0 means.
        let default_weights = net.loss_weights(&base);
        let state = Arc::new(api::AppState {
            jobs: jobs.clone(),
            net,
            base,
            default_weights,
            limits: config.limits,
            decoding: tokio::sync::Semaphore::new(2),
        });
        Ok(Self {
            jobs,
            state,
            config,
        })
    }

    /// The queue (for callers that watch it).
    pub fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    /// Serves on `listener` until `shutdown` completes, then stops the running jobs
    /// (keeping their best images as results) and returns once they are saved.
    pub fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        let workers: Vec<_> = (0..self.config.workers)
            .map(|i| {
                let jobs = self.jobs.clone();
                std::thread::Builder::new()
                    .name(format!("neural-style-worker-{i}"))
                    .spawn(move || jobs.work())
            })
            .collect::<std::io::Result<_>>()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let app = api::router(self.state.clone(), self.config.request_timeout);
        let jobs = self.jobs.clone();
        let served = runtime.block_on(async move {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    shutdown.await;
                    // Open event streams end when their jobs do.
                    jobs.shut_down();
                })
                .await
        });
        self.jobs.shut_down();
        for worker in workers {
            let _ = worker.join();
        }
        runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(served?)
    }
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
