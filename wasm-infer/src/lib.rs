#![doc = include_str!("../README.md")]

pub mod decode;
pub mod depthwise;
mod epilogue;
pub mod error;
pub mod layout;
pub mod nnef;
mod par;
pub mod pointwise;
pub mod preprocess;
pub mod product;
pub mod quant;
pub mod search;
pub mod session;

#[cfg(target_arch = "wasm32")]
pub mod bindings;

pub use contract::{manifest, tokenizer};
pub use error::{Error, Result};
pub use manifest::{
    BackboneRef, ClassMetrics, Dim, EvalMetrics, Fit, Layout, MANIFEST_SCHEMA_VERSION,
    ModalityScores, ModelManifest, OnnxFile, Preprocess, ProductInputs, ProductMetrics,
    RankMetrics, Recall, Task, TensorSpec, TextTower,
};
pub use preprocess::{CropBox, PixelFormat, Pixels};
pub use product::ProductSession;
pub use session::{Backbone, Prediction, Session, TextEncoder};
pub use tokenizer::{Encoded, Tokenizer, TokenizerSpec};
