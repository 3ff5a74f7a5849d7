#![doc = include_str!("../README.md")]

pub mod api;
pub mod detection;
pub mod error;
pub mod evidence;
pub mod files;
pub mod gallery;
pub mod kinds;
pub mod manifest;
pub mod tokenizer;
pub mod worker;

pub use error::{Error, Result};
pub use files::ModelFiles;
pub use kinds::{ImageStatus, RunStatus, Stage, Task};
pub use manifest::{
    BackboneRef, ClassMetrics, Dim, Estimate, EvalMetrics, FileDigest, Fit, GalleryFiles, Layout,
    MANIFEST_SCHEMA_VERSION, ModalityScores, ModelManifest, OnnxFile, Preprocess, ProductInputs,
    ProductMetrics, RankMetrics, Recall, TensorSpec, TextTower,
};
pub use tokenizer::{Encoded, Tokenizer, TokenizerSpec};
