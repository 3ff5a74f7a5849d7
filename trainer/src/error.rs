//! The trainer's single error type.

use std::path::PathBuf;

/// Everything that can stop an import, a training run, an export or a parity check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The dataset cannot be used (empty class, too few images, unknown label, ...).
    #[error("dataset: {0}")]
    Dataset(String),
    /// Backbone weights are missing or do not have the expected tensors.
    #[error("backbone weights: {0}")]
    Weights(String),
    /// A tensor operation failed in candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The shared inference crate refused something (manifest, pixels, tract).
    #[error(transparent)]
    Infer(#[from] wasm_infer::Error),
    /// Building the ONNX graph failed.
    #[error("onnx export: {0}")]
    Export(String),
    /// candle and tract disagree on the exported model.
    #[error("parity check failed: {0}")]
    Parity(String),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Training parameters are invalid.
    #[error("invalid parameter: {0}")]
    Param(String),
    /// The feature cache's store failed (the run goes on without it).
    #[error("feature cache: {0}")]
    Cache(String),
    /// The run was cancelled through its progress callback.
    #[error("training cancelled")]
    Cancelled,
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Attach the path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

impl From<contract::Error> for Error {
    fn from(err: contract::Error) -> Self {
        Error::Infer(err.into())
    }
}
