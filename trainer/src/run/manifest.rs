//! The manifest of an image model, built the same way for every task: identity, the shared
//! backbone's file (`image [batch, 3, size, size]` in, `features [batch, 1280]` out, or
//! `feature_map [batch, 1280, 7, 7]` for detection), the
//! head's hash and size, one `[batch, n]` output. Task pipelines fill in their own fields
//! (metrics, the text tower) on top.

use std::sync::Arc;
use wasm_infer::session::sha256_hex;

use contract::FileDigest;
use contract::ModelFiles;
use wasm_infer::{
    BackboneRef, Dim, MANIFEST_SCHEMA_VERSION, ModelManifest, OnnxFile, Preprocess, Session, Task,
    TensorSpec,
};

use super::meta::Identity;
use crate::backbone::{Backbone, FEATURE_DIM, MAP_SIDE};
use crate::export::{
    BATCH_SYMBOL, FEATURE_MAP_NAME, FEATURES_NAME, INPUT_NAME, OPSET, export_backbone,
};

/// The frozen backbone as shipped: its ONNX bytes (the same for every model on these
/// weights), the same graph as NNEF with 8-bit weights (what browsers run), the manifest entry
/// that names both, and the weights' sha256.
#[derive(Debug, Clone)]
pub struct ShippedBackbone {
    /// `backbone.onnx` (`f32` weights).
    pub bytes: Vec<u8>,
    /// `backbone.q8` ([`wasm_infer::quant`]: NNEF, 8-bit weights).
    pub int8: Vec<u8>,
    /// The manifest's `backbone`.
    pub spec: BackboneRef,
    /// sha256 of the weights file (the manifest's `backbone_sha256`, the feature cache's key).
    pub weights_sha256: String,
}

impl ShippedBackbone {
    /// Export `backbone` in both forms and describe the files.
    pub fn of(backbone: &Backbone) -> crate::Result<Self> {
        let bytes = export_backbone(backbone);
        let int8 = wasm_infer::quant::encode(&bytes, crate::backbone::INPUT_SIZE)?;
        let spec = BackboneRef {
            onnx: onnx_file(ModelFiles::BACKBONE_ONNX, &bytes),
            output: batched(FEATURES_NAME, &[FEATURE_DIM]),
            int8: Some(FileDigest {
                file: ModelFiles::BACKBONE_INT8.into(),
                sha256: sha256_hex(&int8),
                bytes: int8.len() as u64,
            }),
        };
        Ok(ShippedBackbone {
            bytes,
            int8,
            spec,
            weights_sha256: backbone.weights_sha256.clone(),
        })
    }

    /// The manifest's `backbone` for a model of `task`: the output its head reads (the
    /// feature map for detection, the pooled features otherwise) of the one shared file.
    pub fn spec_for(&self, task: Task) -> BackboneRef {
        let mut spec = self.spec.clone();
        if task == Task::Detect {
            spec.output = batched(FEATURE_MAP_NAME, &[FEATURE_DIM, MAP_SIDE, MAP_SIDE]);
        }
        spec
    }

    /// The tract session of a model on the `f32` backbone: what candle's parity is checked
    /// against (the backbone's bytes, then `head`, the manifest's `onnx`, both checked).
    pub fn session(&self, head: &[u8], manifest: &ModelManifest) -> crate::Result<Session> {
        let backbone = wasm_infer::Backbone::full(&self.bytes, manifest)?;
        compose(backbone, head, manifest)
    }

    /// The tract session as browsers compose it: the 8-bit NNEF backbone, then the NNEF
    /// `head` (the manifest's `nnef`).
    pub fn shipped_session(&self, head: &[u8], manifest: &ModelManifest) -> crate::Result<Session> {
        let backbone = wasm_infer::Backbone::new(&self.int8, manifest)?;
        Ok(Session::composed_nnef(
            Arc::new(backbone),
            head,
            manifest.clone(),
        )?)
    }
}

/// A model's head as exported: the ONNX graph (what the api runs and candle's parity is
/// checked on) and the same graph decluttered by tract as NNEF (what browsers load).
#[derive(Debug, Clone)]
pub struct ExportedHead {
    /// The ONNX graph (the manifest's `onnx`).
    pub onnx: Vec<u8>,
    /// The NNEF tar (the manifest's `nnef`).
    pub nnef: Vec<u8>,
}

impl ExportedHead {
    /// Write the NNEF form of a head on the backbone's features.
    pub fn new(onnx: Vec<u8>) -> crate::Result<Self> {
        let nnef = wasm_infer::nnef::export_head(&onnx, FEATURE_DIM)?;
        Ok(ExportedHead { onnx, nnef })
    }
}

/// The manifest entry of a file: name, sha256 and size.
pub fn digest(file: &str, bytes: &[u8]) -> FileDigest {
    FileDigest {
        file: file.into(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    }
}

fn compose(
    backbone: wasm_infer::Backbone,
    head: &[u8],
    manifest: &ModelManifest,
) -> crate::Result<Session> {
    Ok(Session::composed(
        Arc::new(backbone),
        head,
        manifest.clone(),
    )?)
}

/// The manifest entry of an exported ONNX file: name, sha256, size and opset.
pub fn onnx_file(file: &str, bytes: &[u8]) -> OnnxFile {
    OnnxFile {
        file: file.into(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        opset: OPSET,
    }
}

/// A tensor `name` of shape `[batch, dims…]` (dynamic batch).
pub fn batched(name: &str, dims: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        shape: std::iter::once(Dim::Symbol(BATCH_SYMBOL.into()))
            .chain(dims.iter().map(|&d| Dim::Fixed(d)))
            .collect(),
    }
}

/// The manifest of a model of `task` whose `head` runs on `backbone`'s features and gives
/// `output`; task-specific fields (`metrics`, `text`, `rank_metrics`, `gallery`) are left
/// empty.
pub fn image_manifest(
    id: Identity,
    backbone: &ShippedBackbone,
    task: Task,
    head: &ExportedHead,
    prep: &Preprocess,
    output: TensorSpec,
    labels: Vec<String>,
) -> ModelManifest {
    let size = prep.size as usize;
    ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        model_id: id.model_id,
        task,
        onnx: onnx_file(ModelFiles::image_graph(task), &head.onnx),
        nnef: Some(digest(ModelFiles::image_graph_nnef(task), &head.nnef)),
        input: batched(INPUT_NAME, &[3, size, size]),
        output,
        preprocess: prep.clone(),
        labels,
        metrics: None,
        dataset_snapshot: id.snapshot,
        parent_model_id: id.parent_model_id,
        created_at: id.created_at,
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        text: None,
        rank_metrics: None,
        product: None,
        product_metrics: None,
        detection: None,
        detection_metrics: None,
        gallery: None,
        backbone_sha256: Some(backbone.weights_sha256.clone()),
        backbone: Some(backbone.spec_for(task)),
    }
}

/// The tract session of a model folder as a run wrote it and browsers run it
/// (`manifest.json`, the NNEF head and the shipped backbone, `backbone.q8`; or the `f32`
/// backbone and ONNX head of folders written before NNEF files, or the one whole graph of
/// folders written before heads were split).
pub fn load_session(dir: &std::path::Path) -> crate::Result<Session> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(crate::error::io(path))
    };
    let json = read(ModelFiles::MANIFEST)?;
    let manifest = ModelManifest::from_json(&String::from_utf8_lossy(&json))?;
    let graph = read(&manifest.onnx.file)?;
    Ok(match &manifest.backbone {
        Some(b) => {
            // Browsers' files (the 8-bit NNEF backbone, the NNEF head); folders written
            // before those existed run on the `f32` backbone, as the api runs them.
            match &manifest.nnef {
                Some(n) => {
                    let backbone = wasm_infer::Backbone::new(&read(&b.shipped().file)?, &manifest)?;
                    Session::composed_nnef(Arc::new(backbone), &read(&n.file)?, manifest)?
                }
                None => {
                    let backbone = wasm_infer::Backbone::full(&read(&b.onnx.file)?, &manifest)?;
                    Session::composed(Arc::new(backbone), &graph, manifest)?
                }
            }
        }
        None => Session::new(&graph, manifest)?,
    })
}
