//! The api's single error type and its HTTP mapping (`{error, detail}` JSON bodies).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the api, each mapped to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request (bad JSON, bad field, bad file name, empty body).
    #[error("{0}")]
    BadRequest(String),
    /// No admin token where one is needed.
    #[error("{0}")]
    Unauthorized(String),
    /// An admin token that does not match.
    #[error("{0}")]
    Forbidden(String),
    /// No such dataset, image, run or model.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. cancelling a finished run).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A file whose content is not an accepted image format.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// A file that claims to be an image but does not decode.
    #[error("{0}")]
    InvalidImage(String),
    /// An image whose dimensions exceed the limits (decompression bombs).
    #[error("{0}")]
    ImageTooLarge(String),
    /// A label the dataset does not have.
    #[error("{0}")]
    UnknownLabel(String),
    /// Well-formed but semantically invalid parameters.
    #[error("{0}")]
    Invalid(String),
    /// Too many requests (or too much waiting for review) from one client; retry after this
    /// many seconds.
    #[error("{1}")]
    RateLimited(u64, String),
    /// A dependency (model, database, storage) is not available right now.
    #[error("{0}")]
    Unavailable(String),
    /// The server is at a capacity limit; retry after this many seconds.
    #[error("{1}")]
    Busy(u64, String),
    /// A worker no longer owns the run it was working on (reaped or finished elsewhere).
    #[error("{0}")]
    Lost(String),
    /// The request took longer than its deadline.
    #[error("{0}")]
    Timeout(String),
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migration failure.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Object storage failure.
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    /// Training pipeline failure.
    #[error(transparent)]
    Trainer(#[from] trainer::Error),
    /// Inference failure.
    #[error(transparent)]
    Infer(#[from] wasm_infer::Error),
    /// JSON (de)serialisation of stored documents.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Local file system.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Invalid configuration at start-up.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else that is the server's fault.
    #[error("{0}")]
    Internal(String),
}

/// Result with the api's error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// HTTP status and stable machine-readable code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        use Error::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Lost(_) => (StatusCode::CONFLICT, "run_lost"),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UnsupportedFormat(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
            InvalidImage(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image"),
            ImageTooLarge(_) => (StatusCode::UNPROCESSABLE_ENTITY, "image_too_large"),
            UnknownLabel(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_label"),
            Invalid(_) | Trainer(trainer::Error::Param(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter")
            }
            RateLimited(..) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Busy(..) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            Db(_) | Migrate(_) | Storage(_) | Trainer(_) | Infer(_) | Json(_) | Io(_)
            | Config(_) | Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The stable code of an error response, left in the response's extensions for the metrics
/// (`refusals_total{route, reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The JSON body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `invalid_image`, `unknown_label`, `unauthorized`.
    pub error: String,
    /// Human-readable explanation.
    pub detail: String,
    /// For server faults (500): the id under which the fault is logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        // A server fault's text (SQL, storage, paths) goes to the log, not to the client: the
        // client gets an id to quote.
        let (detail, request_id) = if status == StatusCode::INTERNAL_SERVER_ERROR {
            let id = crate::util::random_hex(8);
            tracing::error!(request_id = %id, error = %self, "request failed");
            (
                format!(
                    "internal server error (request id {id}; the details are in the server log)"
                ),
                Some(id),
            )
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %self, "request refused");
            }
            (self.to_string(), None)
        };
        let body = ErrorBody {
            error: code.to_string(),
            detail,
            request_id,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode(code));
        match &self {
            Error::RateLimited(secs, _) | Error::Busy(secs, _) => {
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Error::Unauthorized(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"edgeml-admin\""),
                );
            }
            _ => {}
        }
        resp
    }
}

impl From<axum::extract::rejection::JsonRejection> for Error {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(r.body_text())
        } else {
            Error::BadRequest(r.body_text())
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for Error {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Error::BadRequest(r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for Error {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Error::BadRequest(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for Error {
    fn from(r: axum::extract::multipart::MultipartRejection) -> Self {
        Error::BadRequest(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartError> for Error {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(format!("request body too large: {}", e.body_text()))
        } else {
            Error::BadRequest(format!("malformed multipart body: {}", e.body_text()))
        }
    }
}

impl From<contract::Error> for Error {
    fn from(err: contract::Error) -> Self {
        Error::Infer(err.into())
    }
}
