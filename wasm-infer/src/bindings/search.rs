//! `SearchIndex` for the inference worker: the ranking champion's gallery and the images this
//! browser contributed, searched by [`crate::search`]. Every method answers with the worker's
//! reply message ([`contract::worker::FromWorker`]) as JSON, so `worker.js` only posts it.

use contract::gallery::Gallery;
use contract::worker::{FromWorker, Hit};
use wasm_bindgen::prelude::*;

use super::{WasmSession, WasmTextSession, js_err, now_ms};
use crate::search::{LocalImage, SearchIndex};

fn reply(msg: &FromWorker) -> Result<String, JsError> {
    serde_json::to_string(msg).map_err(|e| JsError::new(&e.to_string()))
}

fn search_result(query: String, results: Vec<Hit>, t0: f64) -> Result<String, JsError> {
    reply(&FromWorker::SearchResult {
        query,
        results,
        ms: now_ms() - t0,
    })
}

/// A ranking model's gallery in the browser.
#[wasm_bindgen(js_name = SearchIndex)]
pub struct WasmSearchIndex {
    inner: SearchIndex,
}

#[wasm_bindgen(js_class = SearchIndex)]
impl WasmSearchIndex {
    /// `gallery.json` (text) and `gallery.bin` (bytes); throws if they disagree.
    #[wasm_bindgen(constructor)]
    pub fn new(gallery_json: &str, bin: &[u8]) -> Result<WasmSearchIndex, JsError> {
        let gallery: Gallery = serde_json::from_str(gallery_json)
            .map_err(|e| JsError::new(&format!("gallery.json: {e}")))?;
        Ok(WasmSearchIndex {
            inner: SearchIndex::new(gallery, bin).map_err(js_err)?,
        })
    }

    /// The ranking model the gallery belongs to.
    #[wasm_bindgen(js_name = modelId)]
    pub fn model_id(&self) -> String {
        self.inner.model_id().to_string()
    }

    /// Whether the server's gallery has image `id` already.
    #[wasm_bindgen(js_name = inGallery)]
    pub fn in_gallery(&self, id: &str) -> bool {
        self.inner.in_gallery(id)
    }

    /// Add an image contributed from this browser, with its embedding and thumbnail URL.
    #[wasm_bindgen(js_name = addLocal)]
    pub fn add_local(
        &mut self,
        id: String,
        label: String,
        caption: String,
        vector: Vec<f32>,
        thumb: Option<String>,
    ) -> Result<(), JsError> {
        let image = LocalImage {
            id,
            label,
            caption,
            vector,
            thumb,
        };
        self.inner.add_local(image).map_err(js_err)
    }

    /// The `rank_ready` reply: model id, gallery size, local images.
    #[wasm_bindgen(js_name = readyMessage)]
    pub fn ready_message(&self) -> Result<String, JsError> {
        reply(&FromWorker::RankReady {
            model_id: self.model_id(),
            count: self.inner.count(),
            local: self.inner.local_count(),
        })
    }

    /// Text → images: the `search_result` reply for `query` embedded by `encoder`.
    pub fn search(
        &self,
        encoder: &WasmTextSession,
        query: String,
        k: usize,
    ) -> Result<String, JsError> {
        let t0 = now_ms();
        let q = encoder.embed(&query)?;
        let hits = self.inner.top_k(&q, k).map_err(js_err)?;
        search_result(query, hits, t0)
    }

    /// "More like this": the `search_result` reply ranked by image `id`'s own vector.
    pub fn similar(&self, id: &str, k: usize) -> Result<String, JsError> {
        let t0 = now_ms();
        let (q, caption) = self.inner.query_of(id).map_err(js_err)?;
        let hits = self.inner.top_k(&q, k).map_err(js_err)?;
        search_result(format!("like: {caption}"), hits, t0)
    }

    /// Image → text: the `captions_result` reply for an encoded image, embedded by `images`;
    /// the gallery's captions are embedded by `encoder` on first use.
    pub fn captions(
        &mut self,
        images: &WasmSession,
        encoder: &WasmTextSession,
        bytes: &[u8],
        k: usize,
    ) -> Result<String, JsError> {
        if !self.inner.has_caption_vectors() {
            let mut vectors = Vec::new();
            for c in self.inner.captions() {
                vectors.extend(encoder.embed(c)?);
            }
            self.inner.set_caption_vectors(vectors).map_err(js_err)?;
        }
        let t0 = now_ms();
        let q = images.embed_image(bytes)?;
        let results = self.inner.top_captions(&q, k).map_err(js_err)?;
        reply(&FromWorker::CaptionsResult {
            results,
            ms: now_ms() - t0,
        })
    }
}
