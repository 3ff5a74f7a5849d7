//! Training runs: what a run reports while it works and how the api shows it.

use serde::{Deserialize, Serialize};

use crate::{RunStatus, Task};

/// Losses and accuracies of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training cross-entropy.
    pub train_loss: f64,
    /// Training accuracy (on augmented views, with dropout).
    pub train_accuracy: f64,
    /// Validation cross-entropy.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
}

/// Progress of a run, for progress bars and live updates (the api stores the latest one as
/// JSON, tagged by `stage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Progress {
    /// Backbone passes over images (clean and augmented views).
    Features {
        /// Images embedded so far.
        done: usize,
        /// Images the pass will embed.
        total: usize,
        /// Throughput since the pass started.
        images_per_sec: f64,
    },
    /// One training batch (ranking reports one per epoch).
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Maximum epochs.
        epochs: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// Batch loss.
        loss: f64,
    },
    /// A classification epoch finished, with its train/validation metrics.
    Epoch(EpochMetrics),
    /// The gate's evidence: cross-validation fold `fold` of `folds` (a head, the kNN baseline
    /// and the champion's recipe fitted on the other folds).
    Evaluate {
        /// 1-based fold.
        fold: usize,
        /// Folds.
        folds: usize,
    },
    /// Export and parity started.
    Export,
}

/// A training run as the api reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunInfo {
    /// Run id (`run-…`).
    pub id: String,
    /// Dataset trained on.
    pub dataset_id: String,
    /// What the run trains.
    pub task: Task,
    /// Where the run is.
    pub status: RunStatus,
    /// Why it was started (`manual`, `auto: …`, `startup`).
    pub reason: String,
    /// Hyper-parameters.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: serde_json::Value,
    /// Latest progress event (`stage`: features, batch, epoch, export).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub progress: Option<Progress>,
    /// Per-epoch metrics so far.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub epochs: Vec<EpochMetrics>,
    /// Why it failed.
    pub error: Option<String>,
    /// Content id of the approved images it trained on.
    pub snapshot_id: Option<String>,
    /// Number of approved images in the snapshot.
    pub images: Option<i64>,
    /// Candidate it registered.
    pub model_id: Option<String>,
    /// Worker that holds or held it.
    pub worker: Option<String>,
    /// Claims so far (a run whose worker died is re-queued once).
    pub attempts: i64,
    /// Cancel was requested.
    pub cancel_requested: bool,
    /// When it was queued (Unix ms).
    pub created_at: i64,
    /// When a worker last claimed it (Unix ms).
    pub started_at: Option<i64>,
    /// Unix ms of the last heartbeat.
    pub heartbeat_at: Option<i64>,
    /// When it ended (Unix ms).
    pub finished_at: Option<i64>,
}

impl RunInfo {
    /// Whether the run will not change any more.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// The `status` event of a run's progress stream (`GET /api/train/{id}/events`): sent when the
/// status, error, registered model or attempt count changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatusEvent {
    /// The run's new status.
    pub status: RunStatus,
    /// Why it failed, once it has.
    pub error: Option<String>,
    /// The candidate it registered, once it has.
    pub model_id: Option<String>,
    /// Claims so far.
    pub attempts: i64,
}

/// Retrain request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Dataset (default: the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    /// `classify` (default), `rank` (image-text ranking on the images' captions) or
    /// `product` (categories from a title, the images' captions, and the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::Task>))]
    pub task: Option<String>,
    /// Hyper-parameters over the defaults (epochs, batch_size, lr, weight_decay, warmup_epochs,
    /// patience, dropout, views, min_crop_area, class_balanced, seed).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}
