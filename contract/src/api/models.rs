//! The model registry as the api shows it.

use serde::{Deserialize, Serialize};

use crate::evidence::{Check, Interval, McNemar, Verdict};
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
    /// The verdict: `promote`, `inconclusive` (kept as a candidate, promotable by hand) or
    /// `reject`. Absent on models registered before verdicts existed (`promote` says it all).
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// Examples every model was scored on.
    #[serde(default)]
    pub n: Option<u32>,
    /// How those examples were predicted, in words (the test split; k-fold cross-validation
    /// over train + test).
    #[serde(default)]
    pub method: Option<String>,
    /// The statistics that decided, in words (paired bootstrap, resamples, confidence; McNemar
    /// reported for accuracy).
    #[serde(default)]
    pub test: Option<String>,
    /// Confidence level of the intervals.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// The candidate's figure with its interval.
    #[serde(default)]
    pub interval: Option<Interval>,
    /// Every comparison made: the champion and each baseline, on the same examples.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
}

/// One comparison of the gate: the candidate against a champion or a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    /// What it was compared with (`champion m-…`, `kNN (k=5)`, `majority class`, …).
    pub against: String,
    /// `champion` or `baseline`.
    pub role: String,
    /// The other model's figure.
    pub score: f64,
    /// Whether both were scored on the same examples (a champion whose labels changed is
    /// compared with the figure recorded at its own training).
    pub paired: bool,
    /// Candidate minus the other, with its interval (paired: per-example differences;
    /// unpaired: the candidate's own interval, shifted).
    pub difference: Interval,
    /// What the difference had to clear, in words (`> 0`; `> −0.020`).
    pub bar: String,
    /// McNemar's exact test (accuracy, paired).
    pub mcnemar: Option<McNemar>,
    /// What the interval said.
    pub check: Check,
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
