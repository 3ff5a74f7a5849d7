//! The crate's single error type.

/// Everything that can go wrong while checking a manifest, preparing pixels or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest (or another contract document) is invalid: see [`contract::Error`].
    #[error(transparent)]
    Contract(#[from] contract::Error),
    /// The ONNX bytes are not the ones the manifest describes (size or sha256).
    #[error("model file integrity check failed: {0}")]
    Integrity(String),
    /// The ONNX graph's inputs or outputs disagree with the manifest.
    #[error("model graph does not match its manifest: {0}")]
    Graph(String),
    /// The pixels handed in cannot be an image of the stated size and format.
    #[error("invalid image: {0}")]
    Image(String),
    /// tract refused the model or failed while running it.
    #[error("inference engine error: {0}")]
    Engine(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The manifest says something this crate cannot run.
    pub(crate) fn manifest(msg: String) -> Self {
        Error::Contract(contract::Error::Manifest(msg))
    }

    pub(crate) fn engine(err: impl std::fmt::Display) -> Self {
        Error::Engine(format!("{err:#}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Contract(contract::Error::Json(err))
    }
}
