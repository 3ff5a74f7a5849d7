//! # web
//!
//! The edgeml web app, client-side (Leptos CSR, wasm32). It owns the pages; inference runs in
//! a Web Worker (`public/worker.js`) with the `wasm-infer` module, so the page never freezes,
//! and the model (content-addressed, immutable) is kept in Cache Storage, so predictions work
//! offline. The service worker (`public/sw.js`) keeps the app shell.
//!
//! Today: the Predict page and the status bar (online/offline, model version, ready offline,
//! a newer champion offered with a one-click switch).

use leptos::prelude::*;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// A label with its probability, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Prediction {
    label: String,
    score: f32,
}

/// Messages from the inference worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromWorker {
    Progress {
        loaded: f64,
        total: f64,
    },
    Ready {
        model_id: String,
        cached: bool,
    },
    Update {
        model_id: String,
    },
    Result {
        predictions: Vec<Prediction>,
        ms: f64,
    },
    Error {
        message: String,
    },
}

fn post(worker: &web_sys::Worker, fields: &[(&str, JsValue)]) {
    let msg = js_sys::Object::new();
    for (k, v) in fields {
        let _ = js_sys::Reflect::set(&msg, &JsValue::from_str(k), v);
    }
    if let Err(e) = worker.post_message(&msg) {
        web_sys::console::error_1(&e);
    }
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
    let result = RwSignal::new(None::<(Vec<Prediction>, f64)>);
    let preview = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // Results so far (lets tests and screen readers tell a new result from the previous one).
    let results = RwSignal::new(0u32);
    // A newer champion than the loaded model, offered with a one-click switch.
    let newer = RwSignal::new(None::<String>);

    if let Some(w) = web_sys::window() {
        for (event, value) in [("online", true), ("offline", false)] {
            let cb = Closure::<dyn Fn()>::new(move || online.set(value));
            let _ = w.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
            cb.forget();
        }
        let _ = w.navigator().service_worker().register("/sw.js");
    }

    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    let worker = web_sys::Worker::new_with_options("/worker.js", &opts).ok();
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
                    Ok(FromWorker::Result { predictions, ms }) => {
                        busy.set(false);
                        results.update(|n| *n += 1);
                        result.set(Some((predictions, ms)));
                    }
                    Ok(FromWorker::Error { message }) => {
                        busy.set(false);
                        status.set(format!("error: {message}"));
                    }
                    Err(e) => status.set(format!("error: unexpected worker message ({e})")),
                }
            });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        post(worker, &[("type", "load".into())]);
    } else {
        status.set("error: this browser cannot start the inference worker".into());
    }
    let worker = StoredValue::new_local(worker);
    // Ask the worker every 15 s whether a newer champion was promoted.
    if let Some(w) = web_sys::window() {
        let check = Closure::<dyn Fn()>::new(move || {
            worker.with_value(|w| {
                if let Some(w) = w {
                    post(w, &[("type", "check".into())]);
                }
            });
        });
        let _ = w.set_interval_with_callback_and_timeout_and_arguments_0(
            check.as_ref().unchecked_ref(),
            15_000,
        );
        check.forget();
    }
    let switch_model = move |_| {
        status.set("loading the new model…".into());
        worker.with_value(|w| {
            if let Some(w) = w {
                post(w, &[("type", "load".into())]);
            }
        });
    };

    // Preview the file and send its bytes to the worker.
    let classify_file = move |file: web_sys::File| {
        if let Some(old) = preview.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        preview.set(web_sys::Url::create_object_url_with_blob(&file).ok());
        result.set(None);
        busy.set(true);
        leptos::task::spawn_local(async move {
            let Ok(buf) = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await else {
                busy.set(false);
                status.set("error: could not read the file".into());
                return;
            };
            let bytes = js_sys::Uint8Array::new(&buf);
            worker.with_value(|w| {
                if let Some(w) = w {
                    post(
                        w,
                        &[
                            ("type", "classify".into()),
                            ("bytes", bytes.into()),
                            ("k", 5.into()),
                        ],
                    );
                }
            });
        });
    };
    let on_file = move |ev: web_sys::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        if let Some(file) = input.files().and_then(|files| files.get(0)) {
            classify_file(file);
        }
        // Picking the same file again must classify again.
        input.set_value("");
    };
    // Dropping a file anywhere on the drop zone classifies it (instead of the browser opening it).
    let dragging = RwSignal::new(false);
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|f| f.get(0))
        {
            classify_file(file);
        }
    };

    view! {
        <header class="statusbar">
            <strong class="brand">"edgeml"</strong>
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
            <h1>"Predict"</h1>
            <p class="hint">"Pick or drop an image: it is classified in this browser, not on the server."</p>
            <label
                class=move || if dragging.get() { "drop over" } else { "drop" }
                data-testid="drop"
                on:dragover=move |ev: web_sys::DragEvent| { ev.prevent_default(); dragging.set(true); }
                on:dragleave=move |_| dragging.set(false)
                on:drop=on_drop
            >
                <input type="file" accept="image/*" data-testid="file" on:change=on_file/>
            </label>
            <div class="result">
                {move || preview.get().map(|url| view! { <img class="preview" src=url alt="the image being classified"/> })}
                <div>
                    <p data-testid="busy" hidden=move || !busy.get()>"classifying…"</p>
                    {move || result.get().map(|(preds, ms)| view! {
                        <ol class="predictions" data-testid="predictions" data-ms=ms.to_string() data-run=results.get_untracked().to_string()>
                            {preds.into_iter().map(|p| {
                                let width = format!("width: {:.1}%", p.score * 100.0);
                                view! {
                                    <li data-label=p.label.clone() data-score=p.score.to_string()>
                                        <span class="label">{p.label.clone()}</span>
                                        <span class="bar"><span class="fill" style=width></span></span>
                                        <span class="score">{format!("{:.1} %", p.score * 100.0)}</span>
                                    </li>
                                }
                            }).collect_view()}
                        </ol>
                        <p class="timing" data-testid="timing">{format!("{ms:.0} ms in this browser")}</p>
                    })}
                </div>
            </div>
        </main>
    }
}
