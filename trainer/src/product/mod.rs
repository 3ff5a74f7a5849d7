//! Product classification from a title, an image, or both: items imported from JSONL/CSV
//! ([`data`]), a text tower on the shared tokenizer and the frozen backbone's image features
//! fused in one small model ([`model`]), trained with modality dropout ([`fit`]), scored per
//! modality ([`eval`]), exported to ONNX ([`export`]) and checked against tract
//! ([`pipeline`]).
//!
//! Bundled data: Debian's Open Clip Art drawings with their titles and keywords
//! (`scripts/fetch-assets.sh`; `scripts/openclipart_items.py` says which categories and
//! keywords were dropped and why). `scripts/bench-product.sh` scores the model next to a
//! TF-IDF + linear SVM baseline on the same split.

pub mod data;
pub mod eval;
pub mod export;
pub mod fit;
pub mod model;
pub mod pipeline;

pub use data::{ProductItem, ProductSet, render_svg};
pub use eval::{Modality, Scores, score, score_named};
pub use export::{HAS_IMAGE_NAME, IDS_NAME, MASK_NAME, export_product_head};
pub use fit::{ProductConfig, ProductEpoch, ProductFit, fit};
pub use model::{ProductBatch, ProductModel};
pub use pipeline::{ProductParity, ProductReport, ProductRun, ProductSplits, check_parity, run};
pub use wasm_infer::ProductMetrics;
