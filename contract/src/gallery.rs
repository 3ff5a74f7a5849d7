//! The search gallery's file format: every approved image of a ranking model's dataset,
//! embedded once on the server by the exported image encoder and shipped to browsers as
//! `gallery.json` (this index) + `gallery.bin` (`count × dim` int8 vectors, row-major).
//! The trainer writes it with [`quantize`]; `wasm_infer::search` reads it.

use serde::{Deserialize, Serialize};

/// Quantisation scale of the gallery vectors: components of unit vectors are in [-1, 1], stored
/// as `round(x · SCALE)` in one signed byte.
pub const SCALE: f32 = 127.0;

/// One gallery image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GalleryItem {
    /// Image id (the api's image id; thumbnails are served under it).
    pub id: String,
    /// Its label when the gallery was built (shown with results).
    pub label: String,
    /// Its approved captions; the first one is shown with search results.
    pub captions: Vec<String>,
}

/// `gallery.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gallery {
    /// Model whose image encoder computed the vectors.
    pub model_id: String,
    /// Embedding size (bytes per row of `gallery.bin`).
    pub dim: usize,
    /// Number of images (rows of `gallery.bin`).
    pub count: usize,
    /// Vectors are `round(x · scale)` as i8 in `gallery.bin`.
    pub scale: f32,
    /// Images, in `gallery.bin` row order.
    pub items: Vec<GalleryItem>,
}

/// A unit vector as `gallery.bin` stores it (i8 as bytes).
pub fn quantize(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .map(|x| (x * SCALE).round().clamp(-127.0, 127.0) as i8 as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_and_saturates() {
        let q: Vec<i8> = quantize(&[1.0, -1.0, 0.5, 2.0, -0.003])
            .into_iter()
            .map(|b| b as i8)
            .collect();
        assert_eq!(q, [127, -127, 64, 127, 0]);
    }
}
