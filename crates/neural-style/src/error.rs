//! The library's error type: one enum whose messages name the file, tensor or value involved.

use std::path::PathBuf;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },

    /// An image decodes only in part: its data ends early or is corrupt.
    #[error("{path}: the image is damaged: {message}")]
    DamagedImage {
        /// The file.
        path: PathBuf,
        /// What is wrong, and how much of it decodes.
        message: String,
    },

    /// An image has more pixels than the decoder is allowed to allocate.
    #[error(
        "{path}: image is {width}x{height}: more than the {limit} pixels allowed (the input pixel limit)"
    )]
    TooManyPixels {
        /// The file.
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The limit.
        limit: u64,
    },

    /// Decoding an image would take more memory than allowed.
    #[error(
        "{path}: image is {width}x{height}: decoding it takes about {} MB, more than the {} MB allowed (the input pixel limit's share of memory)",
        bytes >> 20,
        limit >> 20
    )]
    TooLargeToDecode {
        /// The file.
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes the decode would take.
        bytes: u64,
        /// The limit.
        limit: u64,
    },

    /// An image has a size the engine cannot use.
    #[error("{path}: image is {width}x{height}: {message}")]
    ImageSize {
        /// The file.
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// What is wrong with it.
        message: String,
    },

    /// An image could not be encoded or written.
    #[error("{path}: cannot write image: {message}")]
    ImageEncode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A weights file is not in a format we read.
    #[error("{path}: not a usable weights file: {message}")]
    WeightsFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The weights do not cover every layer the run needs.
    #[error(
        "{path}: the weights cannot compute layer(s) {}: missing {} (the file has {})",
        requested.join(", "), missing.join(", "), available.join(", ")
    )]
    MissingLayers {
        /// The file.
        path: PathBuf,
        /// The requested layers that cannot be computed.
        requested: Vec<String>,
        /// The convolutions that are absent.
        missing: Vec<String>,
        /// The convolutions the file has.
        available: Vec<String>,
    },

    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        tensor: String,
        /// What the network needs.
        expected: String,
        /// What the file holds.
        found: Vec<usize>,
    },

    /// A tensor holds NaN or infinite values.
    #[error("{path}: tensor `{tensor}` contains non-finite values (NaN or inf)")]
    NonFiniteWeights {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        tensor: String,
    },

    /// A layer name is not one of the network's layers.
    #[error("unknown layer `{name}` for {arch}; known layers: {known}")]
    UnknownLayer {
        /// The name given.
        name: String,
        /// The network.
        arch: String,
        /// Every name the network has.
        known: String,
    },

    /// A configuration value is out of range or contradicts another.
    #[error("invalid setting `{field}`: {message}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is allowed.
        message: String,
    },

    /// The images of a run do not fit together (masks, counts, missing images).
    #[error("{0}")]
    InvalidInputs(String),

    /// No device of the kind asked for can be used.
    #[error("{0}")]
    Device(String),

    /// A tensor could not be read back from its device.
    #[error("cannot read {what} back from the device: {message}")]
    TensorData {
        /// What the tensor holds.
        what: &'static str,
        /// What the backend said.
        message: String,
    },

    /// The optimisation produced a non-finite loss and could not recover.
    #[error("the loss became non-finite at evaluation {evaluation} and could not be recovered")]
    Diverged {
        /// The loss evaluation at which it happened.
        evaluation: usize,
    },

    /// A run's estimated memory exceeds what it may use, even by tiles with a shorter
    /// L-BFGS history ([`crate::run::memory::fit`]).
    #[error(
        "a {width}x{height} run needs about {:.1} GiB of memory but {:.1} GiB is available",
        *needs as f64 / f64::from(1u32 << 30),
        *available as f64 / f64::from(1u32 << 30)
    )]
    OutOfMemory {
        /// Output width.
        width: u32,
        /// Output height.
        height: u32,
        /// Bytes the run's estimate needs (as planned, before fitting).
        needs: u64,
        /// Bytes free (or the limit given).
        available: u64,
    },

    /// A checkpoint cannot be read or does not belong to this run.
    #[error("{}: cannot resume from this checkpoint: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            message: message.into(),
        }
    }

    /// A setting's value outside its range: "`value` is not allowed; use `allowed`", the
    /// one wording of every range a setting has.
    pub(crate) fn not_allowed(
        field: &'static str,
        value: impl std::fmt::Display,
        allowed: impl std::fmt::Display,
    ) -> Self {
        Self::config(field, format!("{value} is not allowed; use {allowed}"))
    }
}
