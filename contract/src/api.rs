//! The api's JSON: request bodies, query strings and responses, defined once and used by the
//! server (which derives its OpenAPI document from them with the `openapi` feature), the web
//! app and the tests. Field names and serde attributes are the wire format: change them only
//! with the api's version.

mod datasets;
mod health;
mod images;
mod limits;
mod models;
mod predict;
mod review;
mod runs;

pub use datasets::{DatasetInfo, LabelCount, NAME_PATTERN, Name, NewDataset, NewLabel};
pub use health::{Check, Health, Liveness};
pub use images::{
    Caption, CaptionPage, ImageBox, ImagePage, ImageReview, ImageRow, UploadResponse, Uploaded,
};
pub use limits::Limits;
pub use models::{Comparison, GateDecision, ModelInfo};
pub use predict::{PredictResponse, Prediction};
pub use review::{Action, CaptionAction, CaptionDecision, Decision, ReviewRequest, ReviewResponse};
pub use runs::{EpochMetrics, Progress, RunInfo, RunStatusEvent, TrainRequest};
