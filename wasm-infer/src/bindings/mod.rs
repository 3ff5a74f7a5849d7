//! The JavaScript face of the crate (wasm32 only): a thin `#[wasm_bindgen]` layer over
//! [`Session`], [`crate::ProductSession`] and [`crate::preprocess`]. Everything here delegates to the plain Rust API that
//! the native tests exercise; nothing is computed differently in the browser.

use wasm_bindgen::prelude::*;

/// `initThreadPool(n)` (threaded module only): start `n` Web Workers for the kernels' threads.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

mod product;
mod search;

use crate::decode::decode_image;
use crate::preprocess::{PixelFormat, Pixels, image_to_tensor};
use std::sync::Arc;

use crate::{Backbone, ModelManifest, Prediction, Session, TextEncoder, Tokenizer};

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
extern "C" {
    /// `performance.now()` (window, worker and node all have it).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub(crate) fn now_ms() -> f64;
}

#[derive(serde::Serialize)]
struct Classified<'a> {
    predictions: &'a [Prediction],
    ms: f64,
    width: u32,
    height: u32,
}

fn classified(top: &[Prediction], ms: f64, width: u32, height: u32) -> Result<String, JsError> {
    let out = Classified {
        predictions: top,
        ms,
        width,
        height,
    };
    serde_json::to_string(&out).map_err(|e| JsError::new(&e.to_string()))
}

/// The shared frozen backbone, loaded once and given to the sessions of every model on it.
#[wasm_bindgen(js_name = Backbone)]
pub struct WasmBackbone {
    inner: Arc<Backbone>,
}

#[wasm_bindgen(js_class = Backbone)]
impl WasmBackbone {
    /// Load the backbone file a manifest (JSON text) ships (`backbone.q8`: NNEF, 8-bit
    /// weights); throws if the bytes do not match its sha256/size or the graph does not match
    /// its shapes.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], manifest_json: &str) -> Result<WasmBackbone, JsError> {
        let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
        Ok(WasmBackbone {
            inner: Arc::new(Backbone::new(bytes, &manifest).map_err(js_err)?),
        })
    }

    /// `new` for bytes the caller has already checked against the manifest's sha256 (the
    /// inference worker does, with WebCrypto, before it caches or uses a file): the size and
    /// the graph are still checked, the file is not hashed again in wasm.
    pub fn prechecked(bytes: &[u8], manifest_json: &str) -> Result<WasmBackbone, JsError> {
        let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
        Ok(WasmBackbone {
            inner: Arc::new(Backbone::prechecked(bytes, &manifest).map_err(js_err)?),
        })
    }

    /// The sha256 of the backbone's f32 graph (its identity, whichever file it was loaded
    /// from).
    #[wasm_bindgen(getter)]
    pub fn sha256(&self) -> String {
        self.inner.sha256().to_string()
    }
}

/// A model loaded in the browser.
#[wasm_bindgen(js_name = Session)]
pub struct WasmSession {
    inner: Session,
}

#[wasm_bindgen(js_class = Session)]
impl WasmSession {
    /// Load a model's head as NNEF (the file its manifest's `nnef` names) on a loaded
    /// backbone; throws if the backbone is not the one the manifest names, or the head does
    /// not match the manifest.
    pub fn composed(
        backbone: &WasmBackbone,
        head: &[u8],
        manifest_json: &str,
    ) -> Result<WasmSession, JsError> {
        let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
        Ok(WasmSession {
            inner: Session::composed_nnef(backbone.inner.clone(), head, manifest)
                .map_err(js_err)?,
        })
    }

    /// Classify RGBA pixels (canvas `ImageData.data`) of any size. Returns JSON
    /// `{"predictions": [{"label", "score"}, …], "ms", "width", "height"}`: `k` labels, best
    /// first, and the milliseconds spent in preprocessing + inference.
    pub fn classify(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        k: usize,
    ) -> Result<String, JsError> {
        let t0 = now_ms();
        let pixels = Pixels::new(width, height, PixelFormat::Rgba8, rgba).map_err(js_err)?;
        let top = self.inner.classify(&pixels, k).map_err(js_err)?;
        classified(&top, now_ms() - t0, width, height)
    }

    /// Classify an encoded image file (PNG, JPEG, WebP, GIF, BMP bytes), decoded in wasm by the
    /// same code as the server, so the browser sees exactly the server's pixels. Same JSON as
    /// `classify`; `ms` includes decoding.
    #[wasm_bindgen(js_name = classifyImage)]
    pub fn classify_image(&self, bytes: &[u8], k: usize) -> Result<String, JsError> {
        let t0 = now_ms();
        let img = decode_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
        let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw())
            .map_err(js_err)?;
        let top = self.inner.classify(&pixels, k).map_err(js_err)?;
        classified(&top, now_ms() - t0, img.width(), img.height())
    }

    /// The boxes a detection model shows on RGBA pixels (canvas `ImageData.data`) of any
    /// size. Returns JSON `{"boxes": [{"label", "score", "bbox": [x, y, w, h]}, …], "ms",
    /// "width", "height"}`: best first, in the image's pixels; `ms` is preprocessing,
    /// inference and decoding.
    pub fn detect(&self, rgba: &[u8], width: u32, height: u32) -> Result<String, JsError> {
        detected(&self.inner, now_ms(), rgba, width, height)
    }

    /// The boxes a detection model shows on an encoded image file, decoded in wasm like
    /// `classifyImage`. Same JSON as `detect`; `ms` includes decoding.
    #[wasm_bindgen(js_name = detectImage)]
    pub fn detect_image(&self, bytes: &[u8]) -> Result<String, JsError> {
        let t0 = now_ms();
        let img = decode_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
        detected(&self.inner, t0, img.as_raw(), img.width(), img.height())
    }

    /// Unit embedding of an encoded image file (ranking models; decoded in wasm like
    /// `classifyImage`).
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(&self, bytes: &[u8]) -> Result<Vec<f32>, JsError> {
        let img = decode_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
        let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw())
            .map_err(js_err)?;
        self.inner.embed(&pixels).map_err(js_err)
    }

    /// Unit embedding of RGBA pixels (ranking models).
    #[wasm_bindgen(js_name = embedPixels)]
    pub fn embed_pixels(&self, rgba: &[u8], width: u32, height: u32) -> Result<Vec<f32>, JsError> {
        let pixels = Pixels::new(width, height, PixelFormat::Rgba8, rgba).map_err(js_err)?;
        self.inner.embed(&pixels).map_err(js_err)
    }

    /// Run already-preprocessed input (`n × 3 × size × size` values); returns the flattened
    /// output rows.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, JsError> {
        Ok(self.inner.run(input).map_err(js_err)?.concat())
    }

    /// The model's manifest as JSON.
    #[wasm_bindgen(js_name = manifestJson)]
    pub fn manifest_json(&self) -> Result<String, JsError> {
        self.inner.manifest().to_json().map_err(js_err)
    }
}

/// The boxes `session` shows on RGBA pixels, as `Session.detect`'s JSON (`ms` since `t0`).
fn detected(
    session: &Session,
    t0: f64,
    rgba: &[u8],
    width: u32,
    height: u32,
) -> Result<String, JsError> {
    let pixels = Pixels::new(width, height, PixelFormat::Rgba8, rgba).map_err(js_err)?;
    let boxes = session.detect(&pixels).map_err(js_err)?;
    let out = serde_json::json!({
        "boxes": boxes,
        "ms": now_ms() - t0,
        "width": width,
        "height": height,
    });
    serde_json::to_string(&out).map_err(|e| JsError::new(&e.to_string()))
}

/// The model input tensor for RGBA pixels under a manifest's preprocessing (for checks and
/// benchmarks; `Session.classify` does this itself).
#[wasm_bindgen]
pub fn preprocess(
    rgba: &[u8],
    width: u32,
    height: u32,
    manifest_json: &str,
) -> Result<Vec<f32>, JsError> {
    let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
    let pixels = Pixels::new(width, height, PixelFormat::Rgba8, rgba).map_err(js_err)?;
    image_to_tensor(&pixels, &manifest.preprocess).map_err(js_err)
}

/// The model input tensor for an encoded image file (decoded in wasm), for checks and for
/// feeding other engines the exact same input in benchmarks.
#[wasm_bindgen(js_name = preprocessImage)]
pub fn preprocess_image(bytes: &[u8], manifest_json: &str) -> Result<Vec<f32>, JsError> {
    let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
    let img = decode_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
    let pixels =
        Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).map_err(js_err)?;
    image_to_tensor(&pixels, &manifest.preprocess).map_err(js_err)
}

/// The text side of a ranking model in the browser (`TextEncoder` is taken by the Web API).
#[wasm_bindgen(js_name = TextSession)]
pub struct WasmTextSession {
    inner: TextEncoder,
}

#[wasm_bindgen(js_class = TextSession)]
impl WasmTextSession {
    /// Load the text encoder of a ranking manifest (JSON text) as NNEF (`text.nnef`); throws
    /// if the bytes do not match its sha256/size or inputs.
    #[wasm_bindgen(constructor)]
    pub fn new(nnef: &[u8], manifest_json: &str) -> Result<WasmTextSession, JsError> {
        let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
        Ok(WasmTextSession {
            inner: TextEncoder::from_nnef(nnef, &manifest).map_err(js_err)?,
        })
    }

    /// Unit embedding of a text (tokenized by the manifest's tokenizer).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, JsError> {
        self.inner.embed(text).map_err(js_err)
    }
}

#[derive(serde::Serialize)]
struct Tokens {
    ids: Vec<i64>,
    mask: Vec<f32>,
}

/// Token ids and mask of a text under a ranking or product manifest's tokenizer, as JSON
/// `{"ids": […], "mask": […]}` (for checks and for feeding other engines in benchmarks:
/// `TextSession.embed` and `ProductSession.scores` do this themselves). A product model reads
/// a text without words as no text (an all-zero mask).
#[wasm_bindgen]
pub fn tokenize(text: &str, manifest_json: &str) -> Result<String, JsError> {
    let manifest = ModelManifest::from_json(manifest_json).map_err(js_err)?;
    let e = match (manifest.text, manifest.product) {
        (Some(t), _) => Tokenizer::new(t.tokenizer).map_err(js_err)?.encode(text),
        (None, Some(p)) => Tokenizer::new(p.tokenizer)
            .map_err(js_err)?
            .encode_optional(text),
        (None, None) => {
            return Err(JsError::new(
                "no tokenizer: neither a ranking nor a product model",
            ));
        }
    };
    serde_json::to_string(&Tokens {
        ids: e.ids,
        mask: e.mask,
    })
    .map_err(|e| JsError::new(&e.to_string()))
}
