//! Products page: type a title and/or pick an image, the product champion ranks the categories
//! in this browser (its head on the shared backbone, cached: works offline), live as you type.
//! The image's features are computed once; each keystroke re-runs only the small head.

use contract::api::Prediction;
use contract::worker::ToWorker;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::Ctx;

/// One answer: the title, whether the image was used, the categories, milliseconds.
pub type Answer = (String, bool, Vec<Prediction>, f64);

/// Products state (kept while other pages are shown).
#[derive(Clone, Copy)]
pub struct State {
    /// The product model loaded, and its categories.
    pub ready: RwSignal<Option<(String, Vec<String>)>>,
    /// Last answer.
    pub result: RwSignal<Option<Answer>>,
    /// Why the page cannot answer (no product model yet, a file refused, …).
    pub error: RwSignal<Option<String>>,
    /// Answers so far.
    pub answers: RwSignal<u32>,
    /// An image was given and is used with the title.
    pub has_image: RwSignal<bool>,
    timer: StoredValue<Option<i32>>,
}

impl State {
    /// Before the worker reports a product model.
    pub fn new() -> Self {
        Self {
            ready: RwSignal::new(None),
            result: RwSignal::new(None),
            error: RwSignal::new(None),
            answers: RwSignal::new(0),
            has_image: RwSignal::new(false),
            timer: StoredValue::new(None),
        }
    }

    /// A reply arrived.
    pub fn done(&self, answer: Answer) {
        self.error.set(None);
        self.answers.update(|n| *n += 1);
        self.result.set(Some(answer));
    }
}

/// The Products page.
#[component]
pub fn ProductsPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let st = ctx.products;
    if st.ready.get_untracked().is_none() {
        ctx.send(ToWorker::LoadProduct, None);
    }
    let title = RwSignal::new(String::new());
    let classify = move |t: String| {
        if t.trim().is_empty() && !st.has_image.get_untracked() {
            st.result.set(None);
            return;
        }
        ctx.send(
            ToWorker::ProductClassify {
                title: t,
                with_image: st.has_image.get_untracked(),
                k: 5,
            },
            None,
        );
    };
    // Debounced: classify 120 ms after the last keystroke.
    let on_input = move |ev: web_sys::Event| {
        let t = event_target_value(&ev);
        title.set(t.clone());
        crate::debounce(st.timer, 120, move || classify(t));
    };
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
        leptos::task::spawn_local(async move {
            if let Ok(buf) = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await {
                let bytes = js_sys::Uint8Array::new(&buf);
                st.has_image.set(true);
                ctx.send(
                    ToWorker::ProductImage {
                        title: title.get_untracked(),
                        k: 5,
                    },
                    Some(bytes.into()),
                );
            }
        });
    };
    let clear_image = move |_| {
        st.has_image.set(false);
        classify(title.get_untracked());
    };
    view! {
        <h1>"Products"</h1>
        <p class="hint">"Type a product title, pick its photo, or both: the categories are ranked in this browser, also offline."</p>
        <p data-testid="product-status" data-ready=move || st.ready.get().is_some().to_string()>
            {move || match (st.ready.get(), st.error.get()) {
                (None, Some(e)) => format!("product classification is not available: {e}"),
                (None, None) => "loading the product model…".to_string(),
                (Some((id, labels)), e) => {
                    let e = e.map(|e| format!(" ({e})")).unwrap_or_default();
                    format!("{} categories, product model {id}{e}", labels.len())
                }
            }}
        </p>
        <label class="field">"Title"
            <input class="query" type="search" data-testid="product-title" placeholder="red apple, road bike, …"
                disabled=move || st.ready.get().is_none() prop:value=move || title.get() on:input=on_input/>
        </label>
        <label class="hint">"Photo (optional): "
            <input type="file" accept="image/*" data-testid="product-image" disabled=move || st.ready.get().is_none() on:change=on_image/>
        </label>
        {move || st.has_image.get().then(|| view! {
            <button data-testid="product-clear-image" on:click=clear_image>"Remove the photo"</button>
        })}
        <p class="sr-only" aria-live="polite">
            {move || st.result.get().and_then(|(_, _, p, _)| p.first().map(|b| format!("best category: {}", b.label))).unwrap_or_default()}
        </p>
        {move || st.result.get().map(|(t, with_image, predictions, ms)| view! {
            <p class="timing" data-testid="product-timing">
                {format!("{} in {ms:.1} ms", if with_image { "title + photo" } else { "title only" })}
            </p>
            <ol class="predictions" aria-label="Categories, most likely first" data-testid="product-predictions" data-title=t
                data-with-image=with_image.to_string() data-answer=st.answers.get_untracked().to_string()>
                {predictions.into_iter().map(|p| {
                    let width = format!("width: {:.1}%", p.score * 100.0);
                    view! {
                        <li data-label=p.label.clone() data-score=p.score.to_string()>
                            <span class="label">{p.label.clone()}</span>
                            <span class="bar"><span class="fill" style=width></span></span>
                            <span class="score">{format!("{:.1} %", 100.0 * p.score)}</span>
                        </li>
                    }
                }).collect_view()}
            </ol>
        })}
    }
}
