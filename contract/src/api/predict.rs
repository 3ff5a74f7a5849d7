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
    /// Top-k labels, best first (empty for `task=detect`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub predictions: Vec<Prediction>,
    /// `task=detect`: the boxes the detector shows, best first (the browser's own answer for
    /// the same image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<Vec<crate::detection::LabelledBox>>,
    /// Preprocessing + inference time in milliseconds (decode excluded).
    pub ms: f64,
}
