//! Registered models as sessions to run: a model's manifest and graphs read back from
//! storage, its head composed on a backbone shared by every session in the process (loaded
//! once per file, freed with the last session on it), and scoring a session on a test split.

use std::sync::Arc;

use contract::ModelFiles;
use trainer::dataset::{Dataset, Split};
use wasm_infer::manifest::ModelManifest;
use wasm_infer::session::{Backbone, Session};

use crate::storage::{Storage, model_key};
use crate::{Error, Result};

/// A registered model's manifest, read from storage and validated.
pub async fn load_manifest(storage: &Storage, id: &str) -> Result<ModelManifest> {
    let manifest = storage.get(&model_key(id, ModelFiles::MANIFEST)).await?;
    Ok(ModelManifest::from_json(
        std::str::from_utf8(&manifest)
            .map_err(|e| Error::Internal(format!("manifest is not UTF-8: {e}")))?,
    )?)
}

/// Backbones loaded in this process, by the sha256 of their f32 file and the output planned
/// (the pooled features, or the feature map detection heads read): every session on one
/// shares it (one parse, one optimised plan, one copy of the weights in memory); dropped with
/// the last. The server runs the f32 file, the reference the 8-bit one (what browsers download)
/// is measured against: its size costs nothing here, and the server's answers are the model's
/// own, as the gate scored it and as the gallery was embedded.
static BACKBONES: std::sync::Mutex<Vec<(String, std::sync::Weak<Backbone>)>> =
    std::sync::Mutex::new(Vec::new());

/// The backbone `manifest` names, shared with the sessions already on it, or loaded from
/// storage (checked against the manifest) and shared from now on.
async fn backbone_for(storage: &Storage, manifest: &ModelManifest) -> Result<Arc<Backbone>> {
    let spec = manifest
        .backbone
        .as_ref()
        .ok_or_else(|| Error::Internal("the model has no separate backbone".into()))?;
    let full = spec.onnx.clone();
    let key = format!("{}:{}", full.sha256.to_ascii_lowercase(), spec.output.name);
    let loaded = |key: &str| {
        let mut all = BACKBONES.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|(_, w)| w.strong_count() > 0);
        all.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, w)| w.upgrade())
    };
    if let Some(b) = loaded(&key) {
        return Ok(b);
    }
    let onnx = storage
        .get(&ModelFiles::backbone_key(
            &full.file,
            &full.sha256.to_ascii_lowercase(),
        ))
        .await?;
    let m = manifest.clone();
    let backbone = tokio::task::spawn_blocking(move || Backbone::full(&onnx, &m))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let backbone = Arc::new(backbone);
    // Two loads that raced keep the first one registered; both work.
    if let Some(b) = loaded(&key) {
        return Ok(b);
    }
    BACKBONES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key, Arc::downgrade(&backbone)));
    Ok(backbone)
}

/// Load a registered model's graphs + manifest from storage into a verified session: its head
/// on the shared backbone, or the whole graph of versions written before heads were split.
pub async fn load_session(storage: &Storage, id: &str) -> Result<Session> {
    let manifest = load_manifest(storage, id).await?;
    let onnx = storage.get(&model_key(id, &manifest.onnx.file)).await?;
    let backbone = match manifest.backbone {
        Some(_) => Some(backbone_for(storage, &manifest).await?),
        None => None,
    };
    tokio::task::spawn_blocking(move || match backbone {
        Some(b) => Session::composed(b, &onnx, manifest),
        None => Session::new(&onnx, manifest),
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
    .map_err(Error::from)
}

/// Load a registered product model: its ONNX head on the shared backbone.
pub async fn load_product_session(
    storage: &Storage,
    id: &str,
) -> Result<wasm_infer::ProductSession> {
    let manifest = load_manifest(storage, id).await?;
    let onnx = storage.get(&model_key(id, &manifest.onnx.file)).await?;
    let backbone = backbone_for(storage, &manifest).await?;
    tokio::task::spawn_blocking(move || wasm_infer::ProductSession::new(backbone, &onnx, manifest))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(Error::from)
}

/// The label index `session` predicts for each test image of `dataset` (in split order), or
/// `None` when its labels differ from the dataset's (then the images cannot be compared label
/// for label) or the split is empty.
pub fn score_on_test_split(session: &Session, dataset: &Dataset) -> Result<Option<Vec<u32>>> {
    if session.manifest().labels != dataset.labels {
        return Ok(None);
    }
    let mut predicted = Vec::new();
    for s in dataset.split(Split::Test) {
        let img = s.decode()?;
        let top = session.classify(&trainer::run::pixels(&img)?, 1)?;
        let label = top
            .first()
            .and_then(|p| dataset.labels.iter().position(|l| *l == p.label))
            .unwrap_or(usize::MAX);
        predicted.push(u32::try_from(label).unwrap_or(u32::MAX));
    }
    Ok((!predicted.is_empty()).then_some(predicted))
}
