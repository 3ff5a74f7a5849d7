//! Datasets, labels and labeled images, one module per job: [`check`] (upload validation),
//! [`datasets`] (datasets and labels), [`upload`] (content-addressed ingest: blob first, then
//! row, all-or-nothing per request), [`query`] (listing, status checks, captions), [`review`]
//! (approve, reject, relabel, correct boxes), [`boxes`] (the boxes of detection datasets'
//! images) and [`sweep`] (orphan blobs). The plain functions are
//! re-exported here; the HTTP handlers and the tests call them.

pub mod boxes;
pub mod check;
pub mod coco;
pub mod datasets;
pub mod query;
pub mod review;
pub mod sweep;
pub mod upload;

pub use boxes::{ImageBox, MAX_BOXES, approved_boxes, check_boxes, dataset_task};
pub use check::{
    Checked, DecodeBudget, Header, Limits, MAX_CAPTION_CHARS, check_and_decode, check_image,
    inspect, validate_caption, validate_filename, validate_uploader,
};
pub use datasets::{
    DatasetInfo, LabelCount, add_label, create_dataset, get_dataset, labels, list_datasets,
    require_dataset,
};
pub use query::{
    Caption, CaptionPage, CaptionQuery, ImagePage, ImageQuery, ImageRow, ImageStatus,
    MAX_STATUS_IDS, caption, captions_of, get_image, list_captions, list_images, statuses,
};
pub use review::{Action, CaptionAction, CaptionDecision, Decision, Reviewed, review};
pub use sweep::{SweepReport, sweep_orphans};
pub use upload::{
    PENDING_RECOUNT, PendingCaps, PendingGauge, UploadFile, Uploaded, Uploader, ingest,
};
