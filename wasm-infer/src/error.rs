//! The crate's single error type.

/// Everything that can go wrong while checking a manifest, preparing pixels or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is well-formed JSON but says something impossible or unsupported.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The manifest is not valid JSON for the schema.
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
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
    pub(crate) fn engine(err: impl std::fmt::Display) -> Self {
        Error::Engine(format!("{err:#}"))
    }
}

impl From<contract::Error> for Error {
    fn from(err: contract::Error) -> Self {
        match err {
            contract::Error::Json(e) => Error::Json(e),
            contract::Error::Manifest(msg) => Error::Manifest(msg),
            other => Error::Manifest(other.to_string()),
        }
    }
}
