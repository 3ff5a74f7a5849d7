#![doc = include_str!("../README.md")]

mod admin;
mod chart;
mod contribute;
mod net;
mod outbox;
mod predict;
mod search;
mod types;

use contract::worker::{FromWorker, ToWorker};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

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

/// State every page shares.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// The browser's idea of the connection.
    pub online: RwSignal<bool>,
    /// Model loaded in the worker.
    pub model_id: RwSignal<Option<String>>,
    /// What the app is doing, in words.
    pub status: RwSignal<String>,
    /// The inference worker.
    pub worker: StoredValue<Option<web_sys::Worker>, LocalStorage>,
    /// Predict page state (kept while other pages are shown).
    pub predict: predict::State,
    /// Contribution outbox.
    pub outbox: outbox::State,
    /// Search page state.
    pub search: search::State,
}

impl Ctx {
    /// Send a request (and its binary payload, if it has one) to the inference worker.
    pub fn send(&self, msg: ToWorker, payload: Option<JsValue>) {
        self.worker.with_value(|w| {
            if let Some(w) = w {
                post(w, &msg, payload);
            }
        });
    }
}

/// Which page the location's hash asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Predict,
    Search,
    Contribute,
    Admin,
}

fn page_from_hash() -> Page {
    let hash = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default();
    match hash.trim_start_matches('#').trim_start_matches('/') {
        "contribute" => Page::Contribute,
        "search" => Page::Search,
        "admin" => Page::Admin,
        _ => Page::Predict,
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

fn listen(target: &web_sys::EventTarget, event: &str, f: impl Fn() + 'static) {
    let cb = Closure::<dyn Fn()>::new(f);
    let _ = target.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
    cb.forget();
}

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

#[component]
fn App() -> impl IntoView {
    let online = RwSignal::new(web_sys::window().is_some_and(|w| w.navigator().on_line()));
    let model_id = RwSignal::new(None::<String>);
    let status = RwSignal::new("loading the model…".to_string());
    let offline_ready = RwSignal::new(false);
    // A newer champion than the loaded model, offered with a one-click switch.
    let newer = RwSignal::new(None::<String>);
    let page = RwSignal::new(page_from_hash());
    let predict = predict::State::new();

    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    let worker = web_sys::Worker::new_with_options(&worker_url(), &opts).ok();
    let ctx = Ctx {
        online,
        model_id,
        status,
        worker: StoredValue::new_local(worker.clone()),
        predict,
        outbox: outbox::State::new(),
        search: search::State::new(),
    };
    let search = ctx.search;
    provide_context(ctx);

    if let Some(w) = web_sys::window() {
        listen(&w, "online", move || {
            online.set(true);
            // Send what was contributed while offline.
            outbox::flush(ctx);
        });
        listen(&w, "offline", move || online.set(false));
        listen(&w, "hashchange", move || page.set(page_from_hash()));
        let _ = w.navigator().service_worker().register("/sw.js");
    }
    outbox::flush(ctx);

    if let Some(worker) = &worker {
        let on_message =
            Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                let text = js_sys::JSON::stringify(&ev.data())
                    .ok()
                    .and_then(|s| s.as_string())
                    .unwrap_or_default();
                match serde_json::from_str::<FromWorker>(&text) {
                    Ok(FromWorker::Progress { loaded, total }) => {
                        status.set(format!(
                            "downloading the model: {:.0} %",
                            100.0 * loaded / total.max(1.0)
                        ));
                    }
                    Ok(FromWorker::Ready {
                        model_id: id,
                        cached,
                    }) => {
                        newer.set(None);
                        model_id.set(Some(id));
                        offline_ready.set(true);
                        status.set(
                            if cached {
                                "ready (model from cache)"
                            } else {
                                "ready"
                            }
                            .into(),
                        );
                    }
                    Ok(FromWorker::Update { model_id: id }) => newer.set(Some(id)),
                    Ok(FromWorker::Result { predictions, ms }) => predict.done(predictions, ms),
                    Ok(FromWorker::RankReady {
                        model_id,
                        count,
                        local,
                    }) => {
                        search.error.set(None);
                        search.ready.set(Some((model_id, count, local)));
                    }
                    Ok(FromWorker::SearchResult { query, results, ms }) => {
                        search.answers.update(|n| *n += 1);
                        search.result.set(Some((query, results, ms)));
                    }
                    Ok(FromWorker::CaptionsResult { results, ms }) => {
                        search.captions.set(Some((results, ms)));
                    }
                    Ok(FromWorker::RankError { message }) => search.error.set(Some(message)),
                    Ok(FromWorker::Error { message }) => {
                        predict.busy.set(false);
                        status.set(format!("error: {message}"));
                    }
                    Err(e) => status.set(format!("error: unexpected worker message ({e})")),
                }
            });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        post(worker, &ToWorker::Load, None);
    } else {
        status.set("error: this browser cannot start the inference worker".into());
    }
    // Every 15 s: ask the worker whether a newer champion was promoted, and retry the outbox
    // (`online` events are not always fired, e.g. when the server itself was down).
    if let Some(w) = web_sys::window() {
        let check = Closure::<dyn Fn()>::new(move || {
            ctx.send(ToWorker::Check, None);
            if !ctx.outbox.waiting.get_untracked().is_empty() {
                outbox::flush(ctx);
            }
        });
        let _ = w.set_interval_with_callback_and_timeout_and_arguments_0(
            check.as_ref().unchecked_ref(),
            15_000,
        );
        check.forget();
    }
    let switch_model = move |_| {
        status.set("loading the new model…".into());
        ctx.send(ToWorker::Load, None);
    };
    let tab = move |p: Page, href: &'static str, name: &'static str| {
        view! {
            <a href=href class=move || if page.get() == p { "tab active" } else { "tab" }
               data-testid=format!("nav-{}", name.to_lowercase())>{name}</a>
        }
    };

    view! {
        <header class="statusbar">
            <strong class="brand">"edgeml"</strong>
            <nav>
                {tab(Page::Predict, "#/", "Predict")}
                {tab(Page::Search, "#/search", "Search")}
                {tab(Page::Contribute, "#/contribute", "Contribute")}
                {tab(Page::Admin, "#/admin", "Admin")}
            </nav>
            <span data-testid="online" class=move || if online.get() { "pill ok" } else { "pill off" }>
                {move || if online.get() { "online" } else { "offline" }}
            </span>
            <span data-testid="model" class="pill">
                {move || model_id.get().map(|m| format!("model {m}")).unwrap_or_else(|| "no model yet".into())}
            </span>
            <span data-testid="offline-ready" class="pill" hidden=move || !offline_ready.get()>"ready offline"</span>
            <span data-testid="status" class="status">{move || status.get()}</span>
        </header>
        {move || newer.get().map(|id| view! {
            <div class="notice" data-testid="update">
                {format!("A newer model is available: {id}. ")}
                <button data-testid="switch" on:click=switch_model>"Switch to it"</button>
            </div>
        })}
        <main>
            {move || match page.get() {
                Page::Predict => view! { <predict::PredictPage/> }.into_any(),
                Page::Search => view! { <search::SearchPage/> }.into_any(),
                Page::Contribute => view! { <contribute::ContributePage/> }.into_any(),
                Page::Admin => view! { <admin::AdminPage/> }.into_any(),
            }}
        </main>
    }
}
