//! Product models in the browser: a thin layer over [`ProductSession`]. The image's features
//! are computed once (`features`, `featuresImage`) and the head re-run as a title is typed
//! (`classify`, `scores`), so typing costs a head run, not a backbone pass.

use wasm_bindgen::prelude::*;

use super::{WasmBackbone, js_err, now_ms};
use crate::decode::decode_image;
use crate::preprocess::{PixelFormat, Pixels};
use crate::{ModelManifest, Prediction, ProductSession};

/// A product model (title and/or image → categories) on a loaded backbone.
#[wasm_bindgen(js_name = ProductSession)]
pub struct WasmProductSession {
    inner: ProductSession,
}

#[derive(serde::Serialize)]
struct Ranked<'a> {
    predictions: &'a [Prediction],
    ms: f64,
}

#[wasm_bindgen(js_class = ProductSession)]
impl WasmProductSession {
    /// Load a product model's head as NNEF (the file its manifest's `nnef` names) on a loaded
    /// backbone; throws if the backbone is not the one the manifest names, or the head does
    /// not match the manifest.
    pub fn composed(
        backbone: &WasmBackbone,
        head: &[u8],
        manifest_json: &str,
    ) -> Result<WasmProductSession, JsError> {
        let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
        Ok(WasmProductSession {
            inner: ProductSession::from_nnef(backbone.inner.clone(), head, manifest)
                .map_err(js_err)?,
        })
    }

    /// The backbone's features of RGBA pixels (canvas `ImageData.data`) of any size.
    pub fn features(&self, rgba: &[u8], width: u32, height: u32) -> Result<Vec<f32>, JsError> {
        let pixels = Pixels::new(width, height, PixelFormat::Rgba8, rgba).map_err(js_err)?;
        self.inner.features(&pixels).map_err(js_err)
    }

    /// The backbone's features of an encoded image file (PNG, JPEG), decoded in wasm.
    #[wasm_bindgen(js_name = featuresImage)]
    pub fn features_image(&self, bytes: &[u8]) -> Result<Vec<f32>, JsError> {
        let img = decode_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
        let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw())
            .map_err(js_err)?;
        self.inner.features(&pixels).map_err(js_err)
    }

    /// Probabilities over the labels for a title (may be empty) and an image's features (or
    /// `undefined`); throws when there is neither a word nor an image.
    pub fn scores(&self, features: Option<Vec<f32>>, text: &str) -> Result<Vec<f32>, JsError> {
        self.inner.scores(features.as_deref(), text).map_err(js_err)
    }

    /// The `k` most probable categories, as JSON `{"predictions": [{"label", "score"}, …],
    /// "ms"}` (`ms`: the head's run).
    pub fn classify(
        &self,
        features: Option<Vec<f32>>,
        text: &str,
        k: usize,
    ) -> Result<String, JsError> {
        let t0 = now_ms();
        let scores = self
            .inner
            .scores(features.as_deref(), text)
            .map_err(js_err)?;
        let top = crate::session::top_k(&scores, &self.inner.manifest().labels, k);
        serde_json::to_string(&Ranked {
            predictions: &top,
            ms: now_ms() - t0,
        })
        .map_err(js_err)
    }

    /// The model's manifest as JSON.
    #[wasm_bindgen(js_name = manifestJson)]
    pub fn manifest_json(&self) -> Result<String, JsError> {
        self.inner.manifest().to_json().map_err(js_err)
    }
}
