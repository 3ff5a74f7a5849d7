//! The messages between the page (the Leptos app) and the inference worker (`public/worker.js`
//! over `wasm-infer`), in both directions. A request is a JSON object tagged by `type`
//! (`{"type": "classify", "k": 5}`); a reply is an object whose one key names it
//! (`{"result": {"predictions": […], "ms": 12.5}}`), so the page reads it in one pass (a
//! `type` field would make serde buffer each reply first: 5.4 KB more gzip in the app). Binary
//! payloads (image bytes, camera pixels, a contributed file) travel next to the JSON fields,
//! under the key [`ToWorker::payload_key`] names, so they are transferred rather than copied
//! through JSON.

use serde::{Deserialize, Serialize};

use crate::api::Prediction;

/// What the page asks the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Load (or reload) the classification champion: manifest network-first, model from cache.
    Load,
    /// Ask the server quietly whether a newer classification champion exists.
    Check,
    /// Classify an encoded image file (payload `bytes`).
    Classify {
        /// How many labels to return.
        k: usize,
    },
    /// Classify a camera frame (payload `rgba`: canvas `ImageData.data`).
    ClassifyRgba {
        /// Frame width in pixels.
        width: u32,
        /// Frame height in pixels.
        height: u32,
        /// How many labels to return.
        k: usize,
    },
    /// Load the ranking champion (text encoder + gallery) for Search.
    LoadRank,
    /// Rank the gallery for a text query.
    Search {
        /// What was typed.
        query: String,
        /// How many images to return.
        k: usize,
    },
    /// Rank the gallery by one of its images ("more like this").
    Similar {
        /// Gallery (or local) image id.
        id: String,
        /// How many images to return.
        k: usize,
    },
    /// The gallery captions nearest to an encoded image (payload `bytes`).
    Captions {
        /// How many captions to return.
        k: usize,
    },
    /// Load the product champion for the Products page.
    LoadProduct,
    /// Classify a product by its title and, when `with_image`, the image last given with
    /// [`ToWorker::ProductImage`].
    ProductClassify {
        /// The title as typed (may be empty when there is an image).
        title: String,
        /// Whether to use the image.
        with_image: bool,
        /// How many categories to return.
        k: usize,
    },
    /// Take an encoded image file (payload `bytes`) as the product's image (its backbone
    /// features are computed once), then classify it with `title`.
    ProductImage {
        /// The title as typed (may be empty).
        title: String,
        /// How many categories to return.
        k: usize,
    },
    /// Find objects in an encoded image file (payload `bytes`) with the detection champion.
    Detect,
    /// Find objects in a camera frame (payload `rgba`: canvas `ImageData.data`).
    DetectRgba {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// Embed an image contributed from this browser (payload `blob`) so Search finds it before
    /// the next retrain.
    AddLocal {
        /// The id the server gave it.
        id: String,
        /// The label it was sent with.
        label: String,
        /// Its caption (may be empty).
        caption: String,
    },
}

impl ToWorker {
    /// The key of the binary payload this message carries next to its JSON fields, if any.
    pub fn payload_key(&self) -> Option<&'static str> {
        match self {
            ToWorker::Classify { .. }
            | ToWorker::Captions { .. }
            | ToWorker::ProductImage { .. }
            | ToWorker::Detect => Some("bytes"),
            ToWorker::ClassifyRgba { .. } | ToWorker::DetectRgba { .. } => Some("rgba"),
            ToWorker::AddLocal { .. } => Some("blob"),
            _ => None,
        }
    }
}

/// One search answer: a gallery image, or a caption for image → text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Image id (its thumbnail is `/api/images/{id}/blob`).
    pub id: String,
    /// Its label in the gallery.
    pub label: String,
    /// Its first caption (image → text: the caption found).
    pub caption: String,
    /// Cosine similarity with the query.
    pub score: f32,
    /// Contributed from this browser and embedded here (not in the server's gallery yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// Object URL of a local image's thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb: Option<String>,
}

/// What the worker answers: `{"<kind>": {fields}}`, the kind in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    /// Model download progress, bytes.
    Progress {
        /// Received so far.
        loaded: f64,
        /// Expected (the manifest's size).
        total: f64,
    },
    /// The classification champion is loaded.
    Ready {
        /// The model version (names its files' URLs).
        model_id: String,
        /// Whether the model came from Cache Storage rather than the network.
        cached: bool,
    },
    /// A newer classification champion than the loaded one exists.
    Update {
        /// The newer champion's id.
        model_id: String,
    },
    /// Classification of one image.
    Result {
        /// `k` labels, most probable first.
        predictions: Vec<Prediction>,
        /// Decoding + preprocessing + inference, milliseconds.
        ms: f64,
    },
    /// The ranking champion is loaded.
    RankReady {
        /// The model version (names its files' URLs).
        model_id: String,
        /// Images in its gallery.
        count: usize,
        /// Images contributed from this browser and embedded here.
        #[serde(default)]
        local: usize,
    },
    /// Ranked gallery images.
    SearchResult {
        /// The query as shown (`like: <caption>` for "more like this").
        query: String,
        /// `k` images, most similar first.
        results: Vec<Hit>,
        /// Embedding + ranking, milliseconds.
        ms: f64,
    },
    /// Captions nearest to an image.
    CaptionsResult {
        /// Best first, each caption once.
        results: Vec<Hit>,
        /// Embedding + ranking, milliseconds.
        ms: f64,
    },
    /// The product champion is loaded.
    ProductReady {
        /// The model version.
        model_id: String,
        /// Its categories.
        labels: Vec<String>,
    },
    /// Categories of a product.
    ProductResult {
        /// The title classified.
        title: String,
        /// Whether its image was used.
        with_image: bool,
        /// `k` categories, most probable first.
        predictions: Vec<Prediction>,
        /// The head's run (plus the backbone's, when an image was just given), milliseconds.
        ms: f64,
    },
    /// The detection champion's boxes on an image, computed in this browser.
    DetectResult {
        /// The detector that answered.
        model_id: String,
        /// The boxes shown, best first, in the image's pixels.
        boxes: Vec<crate::detection::LabelledBox>,
        /// The image's width in pixels.
        width: u32,
        /// The image's height in pixels.
        height: u32,
        /// Preprocessing, inference and decoding, in milliseconds.
        ms: f64,
    },
    /// Detection is unavailable or failed (the other pages keep working).
    DetectError {
        /// Why, in words.
        message: String,
    },
    /// Product classification is unavailable or failed (the other pages keep working).
    ProductError {
        /// Why, in words.
        message: String,
    },
    /// Search is unavailable (classification keeps working).
    RankError {
        /// Why, in words.
        message: String,
    },
    /// A request failed.
    Error {
        /// Why, in words.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_type_and_replies_keyed_by_kind_in_snake_case() {
        let m = ToWorker::ClassifyRgba {
            width: 2,
            height: 3,
            k: 5,
        };
        assert_eq!(
            serde_json::to_string(&m).ok().as_deref(),
            Some(r#"{"type":"classify_rgba","width":2,"height":3,"k":5}"#)
        );
        assert_eq!(m.payload_key(), Some("rgba"));
        let back: Option<FromWorker> =
            serde_json::from_str(r#"{"rank_ready":{"model_id":"m","count":3}}"#).ok();
        assert_eq!(
            back,
            Some(FromWorker::RankReady {
                model_id: "m".into(),
                count: 3,
                local: 0
            })
        );
        let reply = FromWorker::Update {
            model_id: "m2".into(),
        };
        assert_eq!(
            serde_json::to_string(&reply).ok().as_deref(),
            Some(r#"{"update":{"model_id":"m2"}}"#)
        );
        // The old form (a `type` field) is refused, not misread.
        assert!(serde_json::from_str::<FromWorker>(r#"{"type":"update","model_id":"m"}"#).is_err());
    }
}
