//! The gallery: every image of the dataset embedded by the exported image encoder (tract, as
//! deployed), quantised to int8, so a browser can search the whole collection offline.

use std::path::Path;

use contract::ModelFiles;
use serde::{Deserialize, Serialize};
use wasm_infer::{ModelManifest, Session};

use crate::dataset::Dataset;
use crate::run::{ModelFolder, inference_tensor};
use crate::{Error, Result};

/// Gallery index file (JSON): model id, dimensions and one entry per image.
pub const GALLERY_JSON: &str = ModelFiles::GALLERY_JSON;
/// Gallery vectors: `count × dim` signed bytes, row-major, `round(x · scale)`.
pub const GALLERY_BIN: &str = ModelFiles::GALLERY_BIN;
/// Quantisation scale of the gallery vectors (components of unit vectors are in [-1, 1]).
pub const GALLERY_SCALE: f32 = 127.0;

/// One gallery image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GalleryItem {
    /// Image id (the sample's `source`: the api's image id).
    pub id: String,
    /// Its label (class folder).
    pub label: String,
    /// Its captions, as imported.
    pub captions: Vec<String>,
}

/// `gallery.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gallery {
    /// Model whose image encoder computed the vectors.
    pub model_id: String,
    /// Embedding size (bytes per row of `gallery.bin`).
    pub dim: usize,
    /// Rows of `gallery.bin`.
    pub count: usize,
    /// Vectors are `round(x · scale)` as i8 in `gallery.bin`.
    pub scale: f32,
    /// Images, in `gallery.bin` row order.
    pub items: Vec<GalleryItem>,
}

/// Embed every image of `dataset` with the image encoder of `manifest` (its ONNX bytes
/// `onnx`); returns the index and the quantised vectors (`gallery.bin`).
pub fn embed(
    manifest: &ModelManifest,
    onnx: &[u8],
    dataset: &Dataset,
) -> Result<(Gallery, Vec<u8>)> {
    let session = Session::new(onnx, manifest.clone())?;
    let mut items = Vec::with_capacity(dataset.samples.len());
    let mut vectors: Vec<u8> = Vec::new();
    let mut dim = 0;
    for s in &dataset.samples {
        let e = session
            .run(&inference_tensor(s, &manifest.preprocess)?)?
            .remove(0);
        dim = e.len();
        vectors.extend(
            e.iter()
                .map(|x| (x * GALLERY_SCALE).round().clamp(-127.0, 127.0) as i8 as u8),
        );
        items.push(GalleryItem {
            id: s.source.clone(),
            label: dataset.labels[s.label].clone(),
            captions: s.captions.clone(),
        });
    }
    let gallery = Gallery {
        model_id: manifest.model_id.clone(),
        dim,
        count: items.len(),
        scale: GALLERY_SCALE,
        items,
    };
    Ok((gallery, vectors))
}

/// Embed the gallery with the encoder a ranking run wrote to `dir` (taken from `files`, the
/// folder as written, not read again) and add `gallery.json` + `gallery.bin` to the folder.
pub fn write_gallery(dir: &Path, files: &mut ModelFolder, dataset: &Dataset) -> Result<Gallery> {
    let missing = |name: &str| Error::Export(format!("the model folder has no {name}"));
    let manifest = files
        .get(ModelFiles::MANIFEST)
        .ok_or_else(|| missing(ModelFiles::MANIFEST))?;
    let manifest = ModelManifest::from_json(
        std::str::from_utf8(manifest).map_err(|e| Error::Export(format!("manifest: {e}")))?,
    )?;
    let onnx = files
        .get(&manifest.onnx.file)
        .ok_or_else(|| missing(&manifest.onnx.file))?;
    let (gallery, vectors) = embed(&manifest, onnx, dataset)?;
    files.add(dir, GALLERY_BIN, vectors)?;
    files.add(dir, GALLERY_JSON, serde_json::to_vec(&gallery)?)?;
    Ok(gallery)
}
