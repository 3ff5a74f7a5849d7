#![doc = include_str!("../README.md")]

mod admin;
mod boxes;
mod bridge;
mod chart;
mod contribute;
mod limits;
mod net;
mod outbox;
mod predict;
mod products;
mod search;

use contract::worker::ToWorker;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

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
    /// Contributions waiting to be sent and the outcome of those sent.
    pub outbox: outbox::State,
    /// Search page state.
    pub search: search::State,
    /// Products page state.
    pub products: products::State,
}

impl Ctx {
    /// Send a request (and its binary payload, if it has one) to the inference worker.
    pub fn send(&self, msg: ToWorker, payload: Option<JsValue>) {
        self.worker.with_value(|w| {
            if let Some(w) = w {
                bridge::post(w, &msg, payload);
            }
        });
    }
}

/// Which page the location's hash asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Predict,
    Search,
    Products,
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
        "products" => Page::Products,
        "admin" => Page::Admin,
        _ => Page::Predict,
    }
}

fn listen(target: &web_sys::EventTarget, event: &str, f: impl Fn() + 'static) {
    let cb = Closure::<dyn Fn()>::new(f);
    let _ = target.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
    cb.forget();
}

/// Run `f` in `ms` milliseconds, replacing the call `timer` holds if it has not run yet (live
/// answers as you type: one per pause, not one per keystroke).
pub(crate) fn debounce(timer: StoredValue<Option<i32>>, ms: i32, f: impl FnOnce() + 'static) {
    cancel_pending(timer);
    let Some(w) = web_sys::window() else { return };
    let cb = Closure::once_into_js(f);
    let id = w
        .set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms)
        .ok();
    timer.set_value(id);
}

/// Drop the call `timer` holds, if it has not run yet.
pub(crate) fn cancel_pending(timer: StoredValue<Option<i32>>) {
    if let (Some(w), Some(t)) = (web_sys::window(), timer.get_value()) {
        w.clear_timeout_with_handle(t);
    }
}

/// Every 15 s: ask the worker whether a newer champion was promoted, and retry the outbox
/// (`online` events are not always fired, e.g. when the server itself was down).
fn every_15_s(ctx: Ctx) {
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
}

fn main() {
    console_error_panic_hook::set_once();
}

/// Mount the app. `boot.js` calls it in a task after the one that compiled and instantiated
/// this module (two shorter tasks instead of one long one). The static first view of
/// index.html (painted before this wasm arrived) gives way to the app in this same task, so no
/// frame shows both or neither.
#[wasm_bindgen]
pub fn mount() {
    if let Some(shell) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("shell"))
    {
        shell.remove();
    }
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

    let ctx = Ctx {
        online,
        model_id,
        status,
        worker: StoredValue::new_local(None),
        predict,
        outbox: outbox::State::new(),
        search: search::State::new(),
        products: products::State::new(),
    };
    let search = ctx.search;
    let products = ctx.products;
    provide_context(ctx);

    if let Some(w) = web_sys::window() {
        listen(&w, "online", move || {
            online.set(true);
            // Send what was contributed while offline.
            outbox::flush(ctx);
        });
        listen(&w, "offline", move || online.set(false));
        listen(&w, "hashchange", move || page.set(page_from_hash()));
    }
    // Work the first view does not need waits for the next task, so the task that mounts the
    // app stays short (a long one delays the first interaction on slow phones).
    set_timeout(
        move || {
            if let Some(w) = web_sys::window() {
                let _ = w.navigator().service_worker().register("/sw.js");
            }
            outbox::flush(ctx);
            every_15_s(ctx);
        },
        std::time::Duration::ZERO,
    );

    let replies = bridge::Replies {
        status,
        model_id,
        offline_ready,
        newer,
        predict,
        search,
        products,
    };
    match bridge::start(replies) {
        Some(worker) => ctx.worker.set_value(Some(worker)),
        None => status.set("error: this browser cannot start the inference worker".into()),
    }
    let switch_model = move |_| {
        status.set("loading the new model…".into());
        ctx.send(ToWorker::Load, None);
    };
    let tab = move |p: Page, href: &'static str, name: &'static str| {
        view! {
            <a href=href class=move || if page.get() == p { "tab active" } else { "tab" }
               aria-current=move || (page.get() == p).then_some("page")
               data-testid=format!("nav-{}", name.to_lowercase())>{name}</a>
        }
    };

    view! {
        <header class="statusbar">
            <strong class="brand">"edgeml"</strong>
            <nav aria-label="Pages">
                {tab(Page::Predict, "#/", "Predict")}
                {tab(Page::Search, "#/search", "Search")}
                {tab(Page::Products, "#/products", "Products")}
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
            <span data-testid="status" class="status" role="status">{move || status.get()}</span>
        </header>
        <main>
            {move || newer.get().map(|id| view! {
                <div class="notice" data-testid="update" role="status">
                    {format!("A newer model is available: {id}. ")}
                    <button data-testid="switch" on:click=switch_model>"Switch to it"</button>
                </div>
            })}
            {move || match page.get() {
                Page::Predict => view! { <predict::PredictPage/> }.into_any(),
                Page::Search => view! { <search::SearchPage/> }.into_any(),
                Page::Products => view! { <products::ProductsPage/> }.into_any(),
                Page::Contribute => view! { <contribute::ContributePage/> }.into_any(),
                Page::Admin => view! { <admin::AdminPage/> }.into_any(),
            }}
        </main>
    }
}
