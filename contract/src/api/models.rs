//! The model registry as the api shows it.

use serde::{Deserialize, Serialize};

use crate::{ModelManifest, Stage, Task};

/// The quality gate's verdict on a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateDecision {
    /// Promote the candidate.
    pub promote: bool,
    /// Metric compared (`accuracy` on the held-out test split).
    pub metric: String,
    /// Candidate's value.
    pub candidate: f64,
    /// Champion's value, if there was one.
    pub champion: Option<f64>,
    /// Champion compared against.
    pub champion_id: Option<String>,
    /// Whether the champion was re-scored on the candidate's test images.
    #[serde(default)]
    pub champion_same_split: Option<bool>,
    /// Majority-class baseline of the candidate's test split.
    pub baseline: f64,
    /// Allowed regression.
    pub margin: f64,
    /// Why, in words.
    pub reason: String,
}

/// A registered model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// Model id (also the manifest's `model_id`).
    pub id: String,
    /// Dataset it was trained on.
    pub dataset_id: String,
    /// What the model does.
    pub task: Task,
    /// Training run that produced it.
    pub run_id: Option<String>,
    /// Where it stands in the registry.
    pub stage: Stage,
    /// sha256 of the model's own graph (the manifest's `onnx`: its head, or the whole graph
    /// of versions written before heads were split).
    pub sha256: String,
    /// Its size: what a browser downloads for this version on top of the shared backbone.
    pub bytes: i64,
    /// The manifest (labels, preprocessing, metrics, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub manifest: ModelManifest,
    /// The gate's verdict at registration.
    pub gate: GateDecision,
    /// When it was registered (Unix ms).
    pub created_at: i64,
    /// Unix ms of the last promotion.
    pub promoted_at: Option<i64>,
}
