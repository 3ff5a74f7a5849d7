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
