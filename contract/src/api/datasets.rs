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
    /// `classify` (labelled images) or `detect` (images with labelled boxes).
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

/// What a label or dataset name may be: 1 to 64 ASCII letters, digits, spaces, `_`, `-` or
/// `.`, not starting with `.` (labels are folder names and manifest entries). The server's
/// check (`trainer::dataset::validate_label`) implements exactly this pattern.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_ -][A-Za-z0-9_. -]{0,63}$";

/// A label or dataset name ([`NAME_PATTERN`]), for the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(pattern = "^[A-Za-z0-9_ -][A-Za-z0-9_. -]{0,63}$")
)]
#[serde(transparent)]
pub struct Name(pub String);

/// Dataset creation request.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDataset {
    /// Unique name.
    #[cfg_attr(feature = "openapi", schema(value_type = Name))]
    pub name: String,
    /// Initial labels.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Name>, max_items = 1000))]
    pub labels: Vec<String>,
    /// What its images carry: `classify` (default: a label per image; ranking and product
    /// runs read the same images with their captions) or `detect` (labelled boxes per image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub task: Option<crate::Task>,
}

/// Label creation request.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    /// Label.
    #[cfg_attr(feature = "openapi", schema(value_type = Name))]
    pub name: String,
}
