//! The manifest of an image model, built the same way for every task: identity, the ONNX
//! file's hash and size, `image [batch, 3, size, size]` in, one `[batch, n]` output. Task
//! pipelines fill in their own fields (metrics, the text tower) on top.

use wasm_infer::session::sha256_hex;
use wasm_infer::{
    Dim, MANIFEST_SCHEMA_VERSION, ModelManifest, OnnxFile, Preprocess, Task, TensorSpec,
};

use super::meta::Identity;
use crate::export::{BATCH_SYMBOL, INPUT_NAME, OPSET};

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

/// The manifest of a model of `task` on the backbone whose weights hash to `backbone_sha256`,
/// whose ONNX file `onnx` takes preprocessed images and gives `output`; task-specific fields
/// (`metrics`, `text`, `rank_metrics`, `gallery`) are left empty.
pub fn image_manifest(
    id: Identity,
    backbone_sha256: &str,
    task: Task,
    onnx: OnnxFile,
    prep: &Preprocess,
    output: TensorSpec,
    labels: Vec<String>,
) -> ModelManifest {
    let size = prep.size as usize;
    ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        model_id: id.model_id,
        task,
        onnx,
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
        gallery: None,
        backbone_sha256: Some(backbone_sha256.to_string()),
    }
}
