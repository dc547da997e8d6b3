//! The job queue across machines: jobs wait in Redis (a stream read by a consumer group,
//! one entry a job), any number of workers anywhere take them, and their uploads, results
//! and checkpoints live in an object store every worker reaches (a shared folder, or S3).
//!
//! - **Claims expire.** A worker renews its claim on a job every few seconds (`XCLAIM`);
//!   one that dies (SIGKILL, machine gone) stops renewing, and after the lease another
//!   worker takes the job over (`XAUTOCLAIM`) and continues it from its last checkpoint,
//!   exactly (the library's resume). A worker told to stop saves its next checkpoint and
//!   hands the job back at once, without counting an attempt.
//! - **Nothing done twice.** Every write a worker makes to a job (progress, the final
//!   state) checks in the same Redis script that the worker still holds the claim; a result
//!   is written to the store once (create-if-absent) before the job is marked done, so a
//!   job is never done without its result.
//! - **Nothing lost.** The server keeps no state of its own: it can restart at any moment.
//!   Redis keeps the jobs (with its append-only file it survives its own restart), and
//!   workers and servers reconnect (the redis crate's connection manager).
//! - **Live progress.** Workers publish each change on a channel per job; the server
//!   subscribes once and wakes the job's event streams, so the page works the same as with
//!   the embedded queue.

pub mod engine;
pub mod remote;
pub mod store;
pub mod worker;

use serde::{Deserialize, Serialize};

use crate::settings::JobSettings;

pub use engine::{Engine, WorkerConnection};
pub use remote::{RemoteJobs, Upload};
pub use store::Store;
pub use worker::{WorkerConfig, WorkerNote};

/// Why the queue or its store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The engine's URL.
    #[error("--queue {url}: {reason}")]
    QueueUrl {
        /// The URL, without its password.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The store's URL or folder.
    #[error("--store {url}: {reason}")]
    StoreUrl {
        /// The URL or folder.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The engine answered with an error or could not be reached.
    #[error("queue engine at {url}: {source}")]
    Engine {
        /// The URL, without its password.
        url: String,
        /// What went wrong.
        #[source]
        source: redis::RedisError,
    },
    /// Reading or writing an object in the store.
    #[error("store {url}: {key}: {source}")]
    Store {
        /// The store.
        url: String,
        /// The object.
        key: String,
        /// What went wrong.
        #[source]
        source: object_store::Error,
    },
    /// The worker's own folder, where checkpoints and results are written on their way to
    /// the store.
    #[error("work folder {path}: {error}")]
    WorkFolder {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What went wrong.
        error: String,
    },
}

impl QueueError {
    /// Whether trying again later may succeed: the engine or the store was unreachable,
    /// dropped the connection, timed out or is loading (an outage), as opposed to an
    /// answer that will not change (a refused script, a missing permission).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Engine { source, .. } => {
                !matches!(source.retry_method(), redis::RetryMethod::NoRetry)
                    || source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_timeout()
            }
            // The object store's requests are retried inside it already; what it gives
            // up on, or a local file system's I/O error, comes as `Generic`.
            Self::Store { source, .. } => matches!(source, object_store::Error::Generic { .. }),
            Self::QueueUrl { .. } | Self::StoreUrl { .. } | Self::WorkFolder { .. } => false,
        }
    }
}

/// What a worker needs to run a job: its settings and where its uploads are in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// The client's settings (a web job's), shown in its view.
    pub settings: JobSettings,
    /// The whole run configuration, for a job from `batch --queue` (which has every flag of
    /// a run); `None`: the settings on the worker's base configuration.
    #[serde(default)]
    pub config: Option<neural_style::TransferConfig>,
    /// The photo's object key.
    pub content: String,
    /// The paintings' object keys.
    pub styles: Vec<String>,
}

/// Object keys of a job's files in the store.
pub(crate) mod keys {
    /// An upload: `inputs/{id}/content` or `inputs/{id}/style-{k}`.
    pub(crate) fn input(id: &str, name: &str) -> String {
        format!("inputs/{id}/{name}")
    }

    /// The result image.
    pub(crate) fn result(id: &str) -> String {
        format!("results/{id}.png")
    }

    /// A checkpoint of a running job, written by the start `nonce` of a worker: each start
    /// writes under a name of its own, and the job's hash names the one to resume from
    /// (set by a script that checks the claim), so a worker that lost its claim late
    /// never replaces the holder's checkpoint.
    pub(crate) fn checkpoint(id: &str, nonce: &str) -> String {
        format!("checkpoints/{id}/{nonce}.ckpt")
    }

    /// The folders of everything of a job's but its result: the uploads and the
    /// checkpoints, listed and deleted once the job has ended.
    pub(crate) fn working_prefixes(id: &str) -> [String; 2] {
        [format!("inputs/{id}/"), format!("checkpoints/{id}/")]
    }
}
