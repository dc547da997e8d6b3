//! What can go wrong while finding, downloading, checking or converting a model.

use std::path::PathBuf;

/// An error of this crate; messages carry the model, URL and paths involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not one of the known models.
    #[error("unknown model `{name}` (known: {})", known.join(", "))]
    UnknownModel {
        /// The name given.
        name: String,
        /// The known names.
        known: Vec<String>,
    },
    /// A file operation failed.
    // The cause is part of the message, not a `source`: an error chain printed whole
    // would otherwise say it twice.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// No cache directory could be chosen.
    #[error(
        "no cache directory: the platform has none, none was given and {var} is not set",
        var = crate::cache::CACHE_ENV
    )]
    NoCacheDir,
    /// Every URL of a model failed.
    #[error(
        "could not download {model} to {}: {}",
        path.display(),
        attempts.join("; ")
    )]
    Download {
        /// The model.
        model: String,
        /// Where the file belongs in the cache.
        path: PathBuf,
        /// What happened at each URL.
        attempts: Vec<String>,
    },
    /// A file's SHA-256 does not match the model's.
    #[error("{}: SHA-256 is {found}, but {model} has {expected}", path.display())]
    Checksum {
        /// The model.
        model: String,
        /// The file checked.
        path: PathBuf,
        /// What the model's digest is (or starts with).
        expected: String,
        /// The file's digest.
        found: String,
    },
    /// A file's size does not match the model's.
    #[error("{}: {found} bytes, but {model} is {expected} bytes", path.display())]
    Size {
        /// The model.
        model: String,
        /// The file checked.
        path: PathBuf,
        /// The model's size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// The model is not in the cache.
    #[error("{model} is not in the cache ({} is absent)", path.display())]
    NotCached {
        /// The model.
        model: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// Reading or converting the weights failed.
    #[error(transparent)]
    Weights(#[from] neural_style::Error),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }
}
