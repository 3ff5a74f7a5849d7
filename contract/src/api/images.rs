//! Images: stored rows as the admin sees them, uploads' per-file answers, and what a
//! contributor may know about their own uploads.

use serde::{Deserialize, Serialize};

use crate::ImageStatus;

/// One stored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageRow {
    /// Id.
    pub id: String,
    /// Dataset.
    pub dataset_id: String,
    /// Content hash; the blob lives at `images/<sha256>`.
    pub sha256: String,
    /// Label.
    pub label: String,
    /// `pending`, `approved` or `rejected`.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub status: ImageStatus,
    /// Sniffed format (`png`, `jpeg`, `webp`, `gif`, `bmp`).
    pub format: String,
    /// Size in bytes.
    pub bytes: i64,
    /// Width in pixels.
    pub width: i64,
    /// Height in pixels.
    pub height: i64,
    /// Original file name (informational; never used as a key).
    pub filename: String,
    /// Who uploaded it.
    pub uploader: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last review decision.
    pub reviewed_at: Option<i64>,
    /// Who reviewed it.
    pub reviewed_by: Option<String>,
    /// Its captions with their review status (in admin listings; empty elsewhere).
    #[serde(default)]
    #[cfg_attr(feature = "sql", sqlx(skip))]
    pub captions: Vec<Caption>,
    /// Detection datasets: its boxes, in the order they were drawn (empty elsewhere).
    #[serde(default)]
    #[cfg_attr(feature = "sql", sqlx(skip))]
    pub boxes: Vec<ImageBox>,
}

/// A labelled box on an image of a detection dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImageBox {
    /// One of the dataset's labels.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::Name))]
    pub label: String,
    /// Left, top, width, height in the image's pixels (COCO's `bbox`): finite, a positive
    /// area, inside the image.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f32>, min_items = 4, max_items = 4))]
    #[serde(deserialize_with = "any_number")]
    pub bbox: crate::detection::Xywh,
}

/// Four JSON numbers of any size as `f32`: one beyond `f32`'s range becomes infinite, which the
/// box check then refuses as not finite (a 422 naming the box, not a parse error).
fn any_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<crate::detection::Xywh, D::Error> {
    let v = <[f64; 4]>::deserialize(d)?;
    Ok(v.map(|x| x as f32))
}

/// One caption of an image, reviewed like images: only approved captions reach training and
/// the public galleries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Caption {
    /// The image it describes.
    pub image_id: String,
    /// The image's dataset.
    pub dataset_id: String,
    /// The image's label.
    pub label: String,
    /// The text.
    pub caption: String,
    /// Who sent it.
    pub uploader: String,
    /// `pending`, `approved` or `rejected`.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub status: ImageStatus,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the review decision.
    pub reviewed_at: Option<i64>,
    /// Who reviewed it.
    pub reviewed_by: Option<String>,
}

/// A page of captions (the caption review queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptionPage {
    /// Matching captions in total.
    pub total: i64,
    /// This page, oldest first.
    pub captions: Vec<Caption>,
}

/// A page of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImagePage {
    /// Rows matching the filter.
    pub total: i64,
    /// This page, newest first.
    pub images: Vec<ImageRow>,
}

/// Where an upload stands (what a contributor may know about their own images).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ImageStatus))]
pub struct ImageReview {
    /// Image id (as the upload answered it).
    pub id: String,
    /// `pending`, `approved` or `rejected`.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub status: ImageStatus,
    /// Label now stored (a reviewer may have corrected it).
    pub label: String,
}

/// Per-file result of an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Uploaded {
    /// Client-side name.
    pub filename: String,
    /// Image id (the existing one for duplicates).
    pub id: String,
    /// Content hash.
    pub sha256: String,
    /// Label now stored for the image.
    pub label: String,
    /// Review status now stored for the image.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub status: ImageStatus,
    /// True when the same content was already in the dataset (nothing new stored).
    pub duplicate: bool,
}

/// Upload result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadResponse {
    /// Dataset.
    pub dataset_id: String,
    /// Label applied.
    pub label: String,
    /// Per-file results.
    pub images: Vec<Uploaded>,
    /// A retrain queued because enough images are now approved.
    pub auto_retrain: Option<String>,
}
