//! Review decisions: what an admin does with uploaded images.

use serde::{Deserialize, Serialize};

use crate::api::{Caption, ImageRow};

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
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Image id.
    pub id: String,
    /// What to do.
    pub action: Action,
    /// New label (required for `relabel`, optional for `approve`; not for images of
    /// detection datasets, whose labels are their boxes').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::Name>))]
    pub label: Option<String>,
    /// Images of detection datasets: their corrected boxes, replacing the stored ones (1 to
    /// 100, with any action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub boxes: Option<Vec<crate::api::ImageBox>>,
}

/// What a reviewer does with one caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CaptionAction {
    /// Train on it and show it in galleries.
    Approve,
    /// Never use it.
    Reject,
}

/// One caption decision; a caption is named by its image and its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptionDecision {
    /// Image id.
    pub image_id: String,
    /// The caption's text, exactly as stored.
    pub caption: String,
    /// What to do.
    pub action: CaptionAction,
}

/// Review request: image and caption decisions, applied together or not at all (at least
/// one). Approving or rejecting a pending image decides its pending captions the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// Image decisions.
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// Caption decisions.
    #[serde(default)]
    pub captions: Vec<CaptionDecision>,
}

/// Review result.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewResponse {
    /// Updated images.
    pub images: Vec<ImageRow>,
    /// Captions decided by this request (explicitly or with their image).
    #[serde(default)]
    pub captions: Vec<Caption>,
    /// Retrain queued because enough images are now approved.
    pub auto_retrain: Option<String>,
}
