//! Review decisions: what an admin does with uploaded images.

use serde::{Deserialize, Serialize};

use crate::api::ImageRow;

/// What a reviewer does with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Use it for training (optionally with a corrected label).
    Approve,
    /// Never train on it.
    Reject,
    /// Change the label, keep the status.
    Relabel,
}

/// One review decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    /// Image id.
    pub id: String,
    /// What to do.
    pub action: Action,
    /// New label (required for `relabel`, optional for `approve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Review request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewRequest {
    /// Decisions, applied together or not at all.
    pub decisions: Vec<Decision>,
}

/// Review result.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewResponse {
    /// Updated images.
    pub images: Vec<ImageRow>,
    /// Retrain queued because enough images are now approved.
    pub auto_retrain: Option<String>,
}
