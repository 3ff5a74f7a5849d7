//! The api's JSON, as far as the pages read it. The formats are defined once on the server side
//! (`wasm_infer::manifest` for the manifest, the api for the rest); these are read-only views of
//! the fields shown here, so a field added there never breaks the page.

use serde::Deserialize;

/// `GET /api/datasets`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dataset {
    pub id: String,
    pub name: String,
    pub labels: Vec<LabelCount>,
}

/// Images per label.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LabelCount {
    pub name: String,
    pub approved: i64,
    pub pending: i64,
}

/// One stored image (`GET /api/review`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Image {
    pub id: String,
    pub dataset_id: String,
    pub label: String,
    pub status: String,
    pub width: i64,
    pub height: i64,
    pub filename: String,
    pub uploader: String,
}

/// A page of images.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImagePage {
    pub total: i64,
    pub images: Vec<Image>,
}

/// Per-file outcome of an upload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Uploaded {
    pub id: String,
    pub filename: String,
    pub status: String,
    pub duplicate: bool,
}

/// `GET /api/images/status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageStatus {
    pub id: String,
    pub status: String,
    pub label: String,
}

/// `POST /api/datasets/{id}/images`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UploadResponse {
    pub label: String,
    pub images: Vec<Uploaded>,
}

/// One epoch of a training run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
}

/// Live progress of a run (`stage` tells which fields are set).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Progress {
    pub stage: String,
    pub done: Option<usize>,
    pub total: Option<usize>,
    pub epoch: Option<usize>,
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub batches: Option<usize>,
    pub loss: Option<f64>,
}

/// A training run (`GET /api/train/{id}`, SSE `snapshot` and `done`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub reason: String,
    pub progress: Option<Progress>,
    #[serde(default)]
    pub epochs: Vec<Epoch>,
    pub error: Option<String>,
    pub images: Option<i64>,
    pub model_id: Option<String>,
    pub created_at: i64,
}

impl Run {
    /// Finished one way or another.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// SSE `status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatusEvent {
    pub status: String,
    pub error: Option<String>,
}

/// Evaluation on the held-out test split.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metrics {
    pub n_test: u32,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub majority_baseline: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Vec<Vec<u32>>,
}

/// Per-class figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub support: u32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Recall@K of one retrieval direction.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Recall {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
    pub median_rank: f64,
}

/// Ranking models' test figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RankMetrics {
    pub n_images: u32,
    pub n_texts: u32,
    pub text_to_image: Recall,
    pub image_to_text: Recall,
    pub random_text_to_image: Recall,
    pub bow_text_to_image: Recall,
}

/// The parts of the manifest the pages show.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Manifest {
    pub task: String,
    pub labels: Vec<String>,
    pub metrics: Option<Metrics>,
    #[serde(default)]
    pub rank_metrics: Option<RankMetrics>,
    pub parent_model_id: Option<String>,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Gate {
    pub promote: bool,
    pub reason: String,
}

/// `GET /api/models`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Model {
    pub id: String,
    pub stage: String,
    pub run_id: Option<String>,
    pub bytes: i64,
    pub manifest: Manifest,
    pub gate: Gate,
    pub created_at: i64,
    pub promoted_at: Option<i64>,
}
