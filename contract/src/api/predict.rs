//! Server-side prediction (the fallback for browsers that cannot run the model) and the label
//! scores every classifier answers with, on the server and in the browser alike.

use serde::{Deserialize, Serialize};

/// A label with its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prediction {
    /// One of the manifest's labels.
    pub label: String,
    /// Softmax probability in `[0, 1]`.
    pub score: f32,
}

/// A prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictResponse {
    /// Model that answered.
    pub model_id: String,
    /// Top-k labels, best first.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub predictions: Vec<Prediction>,
    /// Preprocessing + inference time in milliseconds (decode excluded).
    pub ms: f64,
}
