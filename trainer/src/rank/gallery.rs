//! The gallery: every image of the dataset embedded by the exported image encoder (tract, as
//! deployed), quantised to int8, so a browser can search the whole collection offline. The
//! file format is `contract::gallery`'s; the manifest lists both files' sha256 and size.

use std::path::Path;

use contract::gallery::{self, Gallery, GalleryItem};
use contract::{FileDigest, GalleryFiles, ModelFiles};
use wasm_infer::session::sha256_hex;
use wasm_infer::{ModelManifest, Session};

use crate::dataset::Dataset;
use crate::run::{ModelFolder, inference_tensor};
use crate::{Error, Result};

/// Gallery index file (JSON): model id, dimensions and one entry per image.
pub const GALLERY_JSON: &str = ModelFiles::GALLERY_JSON;
/// Gallery vectors: `count × dim` signed bytes, row-major, `round(x · scale)`.
pub const GALLERY_BIN: &str = ModelFiles::GALLERY_BIN;

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
        vectors.extend(gallery::quantize(&e));
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
        scale: gallery::SCALE,
        items,
    };
    Ok((gallery, vectors))
}

/// Embed the gallery with the encoder a ranking run wrote to `dir` (taken from `files`, the
/// folder as written, not read again), add `gallery.json` + `gallery.bin` to the folder and
/// write the manifest again with their digests (`gallery`), so clients can check the gallery
/// files they download like the encoders.
pub fn write_gallery(dir: &Path, files: &mut ModelFolder, dataset: &Dataset) -> Result<Gallery> {
    let missing = |name: &str| Error::Export(format!("the model folder has no {name}"));
    let manifest = files
        .get(ModelFiles::MANIFEST)
        .ok_or_else(|| missing(ModelFiles::MANIFEST))?;
    let mut manifest = ModelManifest::from_json(
        std::str::from_utf8(manifest).map_err(|e| Error::Export(format!("manifest: {e}")))?,
    )?;
    let onnx = files
        .get(&manifest.onnx.file)
        .ok_or_else(|| missing(&manifest.onnx.file))?;
    let (gallery, vectors) = embed(&manifest, onnx, dataset)?;
    let index = serde_json::to_vec(&gallery)?;
    manifest.gallery = Some(GalleryFiles {
        index: digest(GALLERY_JSON, &index),
        vectors: digest(GALLERY_BIN, &vectors),
    });
    manifest.validate()?;
    files.add(dir, GALLERY_BIN, vectors)?;
    files.add(dir, GALLERY_JSON, index)?;
    files.add(dir, ModelFiles::MANIFEST, manifest.to_json()?.into_bytes())?;
    Ok(gallery)
}

/// The manifest entry of a gallery file: name, sha256, size.
fn digest(file: &str, bytes: &[u8]) -> FileDigest {
    FileDigest {
        file: file.into(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    }
}
