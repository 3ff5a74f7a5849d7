//! The page's side of the inference worker (`public/worker.js`): start it, post typed requests
//! ([`ToWorker`]) and apply its typed replies ([`FromWorker`]) to the app's state.

use contract::worker::{FromWorker, ToWorker};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::{predict, products, search};

/// Post a request to the worker: its JSON fields, plus the binary payload under the key the
/// message names ([`ToWorker::payload_key`]), so bytes are not copied through JSON.
pub fn post(worker: &web_sys::Worker, msg: &ToWorker, payload: Option<JsValue>) {
    let Ok(text) = serde_json::to_string(msg) else {
        return;
    };
    let Ok(obj) = js_sys::JSON::parse(&text) else {
        return;
    };
    if let (Some(key), Some(payload)) = (msg.payload_key(), payload) {
        let _ = js_sys::Reflect::set(&obj, &JsValue::from_str(key), &payload);
    }
    if let Err(e) = worker.post_message(&obj) {
        web_sys::console::error_1(&e);
    }
}

/// The state the worker's replies update.
#[derive(Clone, Copy)]
pub struct Replies {
    /// What the app is doing, in words (status bar).
    pub status: RwSignal<String>,
    /// The classification model loaded in the worker.
    pub model_id: RwSignal<Option<String>>,
    /// A model is loaded, so predictions work offline.
    pub offline_ready: RwSignal<bool>,
    /// A newer champion than the loaded one, offered with a one-click switch.
    pub newer: RwSignal<Option<String>>,
    /// The Predict page's result.
    pub predict: predict::State,
    /// The Search page's results.
    pub search: search::State,
    /// The Products page's results.
    pub products: products::State,
}

/// Apply one reply of the worker.
fn apply(r: Replies, msg: FromWorker) {
    match msg {
        FromWorker::Progress { loaded, total } => r.status.set(format!(
            "downloading the model: {:.0} %",
            100.0 * loaded / total.max(1.0)
        )),
        FromWorker::Ready { model_id, cached } => {
            r.newer.set(None);
            r.model_id.set(Some(model_id));
            r.offline_ready.set(true);
            r.status.set(
                if cached {
                    "ready (model from cache)"
                } else {
                    "ready"
                }
                .into(),
            );
        }
        FromWorker::Update { model_id } => r.newer.set(Some(model_id)),
        FromWorker::Result { predictions, ms } => r.predict.done(predictions, ms),
        FromWorker::RankReady {
            model_id,
            count,
            local,
        } => {
            r.search.error.set(None);
            r.search.ready.set(Some((model_id, count, local)));
        }
        FromWorker::SearchResult { query, results, ms } => {
            r.search.answers.update(|n| *n += 1);
            r.search.result.set(Some((query, results, ms)));
        }
        FromWorker::CaptionsResult { results, ms } => r.search.captions.set(Some((results, ms))),
        FromWorker::RankError { message } => r.search.error.set(Some(message)),
        FromWorker::ProductReady { model_id, labels } => {
            r.products.error.set(None);
            r.products.ready.set(Some((model_id, labels)));
        }
        FromWorker::ProductResult {
            title,
            with_image,
            predictions,
            ms,
        } => r.products.done((title, with_image, predictions, ms)),
        FromWorker::ProductError { message } => r.products.error.set(Some(message)),
        FromWorker::DetectResult {
            model_id,
            boxes,
            width,
            height,
            ms,
        } => r.predict.detected(predict::Found {
            model_id,
            boxes,
            size: (width, height),
            ms,
        }),
        FromWorker::DetectError { message } => r.predict.detect_failed(message),
        FromWorker::Error { message } => {
            r.predict.busy.set(false);
            r.status.set(format!("error: {message}"));
        }
    }
}

/// The worker script (its name is content-hashed by the build; `boot.js` says which).
fn worker_url() -> String {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
        .and_then(|e| e.get_attribute("data-worker"))
        .unwrap_or_else(|| "/worker.js".into())
}

/// Start the worker, route its replies to `r`, and ask it to load the champion.
pub fn start(r: Replies) -> Option<web_sys::Worker> {
    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    let worker = web_sys::Worker::new_with_options(&worker_url(), &opts).ok()?;
    let on_message =
        Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
            let text = js_sys::JSON::stringify(&ev.data())
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default();
            match serde_json::from_str::<FromWorker>(&text) {
                Ok(msg) => apply(r, msg),
                Err(e) => r
                    .status
                    .set(format!("error: unexpected worker message ({e})")),
            }
        });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&worker, &ToWorker::Load, None);
    Some(worker)
}
