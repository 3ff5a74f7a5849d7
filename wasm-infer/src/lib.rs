#![doc = include_str!("../README.md")]

pub mod decode;
pub mod error;
pub mod preprocess;
pub mod search;
pub mod session;

#[cfg(target_arch = "wasm32")]
pub mod bindings;

pub use contract::{manifest, tokenizer};
pub use error::{Error, Result};
pub use manifest::{
    ClassMetrics, Dim, EvalMetrics, Layout, MANIFEST_SCHEMA_VERSION, ModelManifest, OnnxFile,
    Preprocess, RankMetrics, Recall, Task, TensorSpec, TextTower,
};
pub use preprocess::{CropBox, PixelFormat, Pixels};
pub use session::{Prediction, Session, TextEncoder};
pub use tokenizer::{Encoded, Tokenizer, TokenizerSpec};
