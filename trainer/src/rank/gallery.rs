//! The gallery: every image of the dataset embedded by the image tower, quantised to int8, so a
//! browser can search the whole collection offline. The embeddings come from the backbone's
//! features (the feature cache's, for images a run has seen) through the tower in candle: the
//! composition the run's parity check compares with tract on the exported encoder. The file
//! format is `contract::gallery`'s; the manifest lists both files' sha256 and size.

use contract::gallery::{self, Gallery, GalleryItem};
use contract::{FileDigest, GalleryFiles, ModelFiles};
use wasm_infer::session::sha256_hex;

use crate::dataset::Dataset;
use crate::{Error, Result};

/// Gallery index file (JSON): model id, dimensions and one entry per image.
pub const GALLERY_JSON: &str = ModelFiles::GALLERY_JSON;
/// Gallery vectors: `count × dim` signed bytes, row-major, `round(x · scale)`.
pub const GALLERY_BIN: &str = ModelFiles::GALLERY_BIN;

/// The gallery of `dataset`: `embeddings[i]` is the image embedding of `dataset.samples[i]`;
/// returns the index (`gallery.json`), the quantised vectors (`gallery.bin`) and the
/// manifest's entry listing both files' digests.
pub fn build(
    model_id: &str,
    dataset: &Dataset,
    embeddings: &[Vec<f32>],
) -> Result<(Gallery, Vec<u8>, GalleryFiles)> {
    if embeddings.len() != dataset.samples.len() {
        return Err(Error::Export(format!(
            "{} embeddings for {} gallery images",
            embeddings.len(),
            dataset.samples.len()
        )));
    }
    let dim = embeddings.first().map_or(0, Vec::len);
    let mut vectors: Vec<u8> = Vec::with_capacity(embeddings.len() * dim);
    for e in embeddings {
        vectors.extend(gallery::quantize(e));
    }
    let items = dataset
        .samples
        .iter()
        .map(|s| GalleryItem {
            id: s.source.clone(),
            label: dataset.labels[s.label].clone(),
            captions: s.captions.clone(),
        })
        .collect::<Vec<_>>();
    let gallery = Gallery {
        model_id: model_id.to_string(),
        dim,
        count: items.len(),
        scale: gallery::SCALE,
        items,
    };
    let files = GalleryFiles {
        index: digest(GALLERY_JSON, &serde_json::to_vec(&gallery)?),
        vectors: digest(GALLERY_BIN, &vectors),
    };
    Ok((gallery, vectors, files))
}

/// The manifest entry of a gallery file: name, sha256, size.
fn digest(file: &str, bytes: &[u8]) -> FileDigest {
    FileDigest {
        file: file.into(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    }
}
