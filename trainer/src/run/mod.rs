//! The pieces every training task shares, whatever it trains: progress events and the run's
//! identity ([`meta`]), the frozen backbone's feature pass ([`features`]) and its cache ([`cache`]), the one candle ↔
//! tract parity rule ([`parity`]), the manifest of an image model ([`manifest`]) and the
//! atomic model-folder write ([`folder`]).
//!
//! Task pipelines ([`crate::pipeline`] for classification, [`crate::rank`] for ranking) build
//! on these; nothing here knows about a particular task.

pub mod cache;
pub mod features;
pub mod folder;
pub mod manifest;
pub mod meta;
pub mod parity;

pub use cache::{CacheStats, DirStore, FeatureStore, View};
pub use features::{
    FEATURE_BATCH, FeatureCounter, FeaturePass, Picture, features_of, inference_tensor, pixels,
    view_tensor,
};
pub use folder::{ModelFolder, Trained, replace_dir, write_file};
pub use manifest::{
    ExportedHead, ShippedBackbone, batched, digest, image_manifest, load_session, onnx_file,
};
pub use meta::{Identity, Progress, RunMeta, now_rfc3339};
pub use parity::{PARITY_TOLERANCE, Parity, max_abs_diff};
