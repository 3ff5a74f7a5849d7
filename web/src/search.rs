//! Search page: type a query, the gallery is ranked in this browser (the ranking champion's
//! text encoder and the int8 gallery vectors, both cached: works offline), live as you type.

use contract::worker::{Hit, ToWorker};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::Ctx;

/// Search state (kept while other pages are shown).
#[derive(Clone, Copy)]
pub struct State {
    /// Ranking model loaded, its gallery size, and images added from this browser.
    pub ready: RwSignal<Option<(String, usize, usize)>>,
    /// Last answer: query, hits, milliseconds.
    pub result: RwSignal<Option<(String, Vec<Hit>, f64)>>,
    /// Why search is not available, or what failed beside the loaded version (a newer version
    /// refused, the image encoder not loaded).
    pub error: RwSignal<Option<String>>,
    /// Answers so far.
    pub answers: RwSignal<u32>,
    /// Image → text: the captions nearest to a dropped image, and milliseconds.
    pub captions: RwSignal<Option<(Vec<Hit>, f64)>>,
    timer: StoredValue<Option<i32>>,
}

impl State {
    /// Before the worker reports a ranking model.
    pub fn new() -> Self {
        Self {
            ready: RwSignal::new(None),
            result: RwSignal::new(None),
            error: RwSignal::new(None),
            answers: RwSignal::new(0),
            captions: RwSignal::new(None),
            timer: StoredValue::new(None),
        }
    }
}

/// The Search page.
#[component]
pub fn SearchPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let st = ctx.search;
    if st.ready.get_untracked().is_none() {
        ctx.send(ToWorker::LoadRank, None);
    }
    let query = RwSignal::new(String::new());
    // Debounced: search 150 ms after the last keystroke.
    let on_input = move |ev: web_sys::Event| {
        let q = event_target_value(&ev);
        query.set(q.clone());
        if q.trim().is_empty() {
            crate::cancel_pending(st.timer);
            return;
        }
        crate::debounce(st.timer, 150, move || {
            ctx.send(ToWorker::Search { query: q, k: 12 }, None);
        });
    };
    // Image → text: the captions of the gallery nearest to a picked image.
    let on_image = move |ev: web_sys::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        input.set_value("");
        st.captions.set(None);
        leptos::task::spawn_local(async move {
            if let Ok(buf) = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await {
                let bytes = js_sys::Uint8Array::new(&buf);
                ctx.send(ToWorker::Captions { k: 8 }, Some(bytes.into()));
            }
        });
    };
    view! {
        <h1>"Search"</h1>
        <p class="hint">"Describe what you are looking for: the gallery is ranked in this browser, also offline."</p>
        <p data-testid="search-status" data-ready=move || st.ready.get().is_some().to_string()>
            {move || match (st.ready.get(), st.error.get()) {
                (None, Some(e)) => format!("search is not available: {e}"),
                (None, None) => "loading the search index…".to_string(),
                // Loaded, and perhaps a newer version refused (the loaded one keeps answering).
                (Some((id, n, mine)), e) => {
                    let mine = if mine == 0 { String::new() } else { format!(" + {mine} from this browser") };
                    let e = e.map(|e| format!(" ({e})")).unwrap_or_default();
                    format!("{n} images{mine}, ranking model {id}{e}")
                }
            }}
        </p>
        <label class="field">"Describe the image you want"
            <input class="query" type="search" data-testid="query" placeholder="a red car, a koala, …"
                disabled=move || st.ready.get().is_none() prop:value=move || query.get() on:input=on_input/>
        </label>
        <label class="hint">"Or pick an image to find the captions that describe it: "
            <input type="file" accept="image/*" data-testid="caption-image" disabled=move || st.ready.get().is_none() on:change=on_image/>
        </label>
        // Live regions present from the start: the counts are announced, not every result.
        <p class="sr-only" aria-live="polite" data-testid="search-announce">
            {move || st.result.get().map(|(q, hits, _)| format!("{} results for {q}", hits.len())).unwrap_or_default()}
            {move || st.captions.get().map(|(hits, _)| format!(" {} captions for the picked image", hits.len())).unwrap_or_default()}
        </p>
        {move || st.captions.get().map(|(hits, ms)| view! {
            <ol class="captions" data-testid="captions" data-ms=ms.to_string()>
                {hits.into_iter().map(|h| view! {
                    <li data-caption=h.caption.clone() data-label=h.label.clone() data-score=h.score.to_string()>
                        {format!("{} ({}, {:.2})", h.caption, h.label, h.score)}
                    </li>
                }).collect_view()}
            </ol>
        })}
        {move || st.result.get().map(|(q, hits, ms)| view! {
            <p class="timing" data-testid="search-timing">{format!("{} results for {q:?} in {ms:.1} ms", hits.len())}</p>
            <ol class="hits" data-testid="hits" data-query=q.clone() data-answer=st.answers.get_untracked().to_string()>
                {hits.into_iter().map(|h| view! {
                    <li data-id=h.id.clone() data-caption=h.caption.clone() data-label=h.label.clone() data-score=h.score.to_string() data-local=h.local.to_string()>
                        <img class="thumb" loading="lazy" src=h.thumb.clone().unwrap_or_else(|| format!("/api/images/{}/blob", h.id)) alt=h.caption.clone()/>
                        {h.local.then(|| view! { <span class="pill mine">"yours, not reviewed yet"</span> })}
                        <span class="caption">{h.caption.clone()}</span>
                        <span class="meta">{format!("{} · {:.2}", h.label, h.score)}</span>
                        <button class="more" data-testid="more-like-this" on:click={
                            let id = h.id.clone();
                            move |_| ctx.send(ToWorker::Similar { id: id.clone(), k: 12 }, None)
                        }>"More like this"</button>
                    </li>
                }).collect_view()}
            </ol>
        })}
    }
}
