//! The crate's single error type.

/// What can be wrong with a contract document or name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest (or its tokenizer) is well-formed JSON but says something impossible or
    /// unsupported.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The document is not valid JSON for its schema.
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A detection head's output that cannot be decoded into boxes: the wrong number of
    /// values for its shape, or an image without area.
    #[error("cannot decode detections: {0}")]
    Detections(String),
    /// A name that is not one of an enum's values (e.g. a task or status read from a row).
    #[error("unknown {kind} {value:?} (expected one of: {expected})")]
    UnknownName {
        /// Which enum (`task`, `run status`, …).
        kind: &'static str,
        /// The text given.
        value: String,
        /// The accepted names, comma-separated.
        expected: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
