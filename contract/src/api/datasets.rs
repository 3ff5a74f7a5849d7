//! Datasets and labels: the dataset view with per-status counts, creation requests.

use serde::{Deserialize, Serialize};

use crate::Task;

/// A dataset with its labels and image counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetInfo {
    /// Id used in URLs.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `classify` or `rank`.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub task: Task,
    /// Labels with per-status counts, sorted by name.
    pub labels: Vec<LabelCount>,
    /// Unix ms.
    pub created_at: i64,
}

/// Image counts of one label.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabelCount {
    /// Label.
    pub name: String,
    /// Approved images.
    pub approved: i64,
    /// Images waiting for review.
    pub pending: i64,
    /// Rejected images.
    pub rejected: i64,
}

/// Dataset creation request.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewDataset {
    /// Unique name.
    pub name: String,
    /// Initial labels.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Label creation request.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewLabel {
    /// Label.
    pub name: String,
}
