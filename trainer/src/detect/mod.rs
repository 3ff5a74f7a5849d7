//! Object detection: images with labelled boxes, and a detector trained on them as a head on
//! the frozen backbone's feature map.
//!
//! - [`data`]: the set ([`DetectSet`]: labels, images, boxes, a split by the image's sha256
//!   like every other set), imported from COCO JSON or from per-image sidecars, validated as a
//!   whole (a box outside its image or without area, an unknown category or image, a repeated
//!   id, a missing or undecodable file: a clear error naming the entry, and no set), and
//!   written back as COCO JSON.
//! - [`compose`]: the bundled training data. Tux Paint's cut-out photos (an alpha channel
//!   around the object) pasted 1–4 at a time, at random scales and places, onto real
//!   photographs (Debian's `mate-backgrounds`, nature folder): every box is the exact extent
//!   of a stamp's visible pixels. Deterministic by seed (the contract's fully specified
//!   generator), so a seed gives the same images and boxes on every machine; held-out
//!   composites use only the stamps of the test split, so no object is seen in training.
//! - [`baseline`]: the trivial detector to beat: one full-image box of an image classifier's
//!   top class.
//! - [`model`], [`fit`], [`export`], [`pipeline`]: the detector — a CenterNet-style head with
//!   FCOS-style boxes on the backbone's `[1280, 7, 7]` feature map, its targets and losses,
//!   its ONNX graph, and the whole run to a model folder. Its output is decoded into boxes by
//!   `contract::detection::decode`, shared with the api and the browser.
//! - [`evidence`]: what the registry's gate decides on (mAP@0.5 on the test images, against
//!   a whole-image baseline and the champion, resampled image by image).

pub mod baseline;
pub mod compose;
pub mod data;
pub mod evidence;
pub mod export;
pub mod fit;
pub mod model;
pub mod pipeline;

pub use compose::{ComposeConfig, Stamp, compose_set, compose_split, load_backgrounds};
pub use data::{BoxLabel, CocoEntry, DetectItem, DetectSet, Rect, coco_document};
