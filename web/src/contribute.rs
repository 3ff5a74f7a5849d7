//! Contribute page: labelled images for the next training, through the outbox. A selection is
//! checked against the server's limits first: split into requests that fit, or refused at once
//! with the reason (nothing queued). For a detection dataset, one image at a time with the boxes
//! drawn on it ([`crate::boxes::BoxEditor`]).

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::boxes::BoxEditor;
use crate::limits::{self, Picked};
use crate::{Ctx, net, outbox};
use contract::Task;
use contract::api::{DatasetInfo as Dataset, ImageBox, LabelCount};
use wasm_bindgen_futures::JsFuture;

const DATASETS_KEY: &str = "edgeml-datasets";
const UPLOADER_KEY: &str = "edgeml-uploader";

/// The datasets and their labels: from the server, else the copy kept from the last visit.
async fn datasets() -> Result<Vec<Dataset>, String> {
    match net::call_text("GET", "/api/datasets", None, None).await {
        Ok(text) => {
            if let Some(s) = net::storage() {
                let _ = s.set_item(DATASETS_KEY, &text);
            }
            serde_json::from_str(&text).map_err(|e| e.to_string())
        }
        Err(e) => net::storage()
            .and_then(|s| s.get_item(DATASETS_KEY).ok().flatten())
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| e.to_string()),
    }
}

/// The Contribute page.
#[component]
pub fn ContributePage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let ob = ctx.outbox;
    // Counts change as uploads land: fetched again after each one.
    let sets = LocalResource::new(move || {
        ob.sent.track();
        datasets()
    });
    let label = RwSignal::new(String::new());
    // Which dataset (by position in the list): the first unless another is chosen.
    let which = RwSignal::new(0usize);
    // A detection image being boxed: its object URL and size; the file itself; its boxes.
    let drawing = RwSignal::new(None::<(String, (u32, u32))>);
    let drawn_file = StoredValue::new_local(None::<web_sys::File>);
    let boxes = RwSignal::new(Vec::<ImageBox>::new());
    let uploader = RwSignal::new(remembered_uploader());
    let chosen = RwSignal::new(0usize);
    let caption = RwSignal::new(String::new());
    let file_ref = NodeRef::<leptos::html::Input>::new();
    let message = RwSignal::new(None::<String>);
    // The server's limits, read again on each visit (remembered for offline use).
    if ctx.online.get_untracked() {
        leptos::task::spawn_local(async move { ob.limits.set(limits::refresh().await) });
    }
    let on_files = move |ev: web_sys::Event| {
        let n = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|i| i.files())
            .map_or(0, |f| f.length());
        chosen.set(n as usize);
    };
    // A detection image: shown to draw on once its size is known.
    let on_image = move |ev: web_sys::Event| {
        let Some(file) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|i| i.files())
            .and_then(|f| f.get(0))
        else {
            return;
        };
        boxes.set(Vec::new());
        leptos::task::spawn_local(async move {
            match picture(&file).await {
                Ok((url, size)) => {
                    if let Some((old, _)) = drawing.get_untracked() {
                        let _ = web_sys::Url::revoke_object_url(&old);
                    }
                    drawn_file.set_value(Some(file));
                    drawing.set(Some((url, size)));
                    chosen.set(1);
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };
    let submit = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let Some(set) = sets
            .get_untracked()
            .and_then(|r| r.ok())
            .and_then(|s| s.into_iter().nth(which.get_untracked()))
        else {
            message.set(Some("no dataset to contribute to yet".into()));
            return;
        };
        if set.task == Task::Detect {
            send_boxed(
                ctx,
                &set,
                uploader.get_untracked(),
                drawn_file,
                boxes,
                message,
                drawing,
                chosen,
            );
            return;
        }
        let Some(input) = file_ref.get_untracked() else {
            return;
        };
        let files = chosen_files(&input);
        let lab = label.get_untracked();
        if lab.is_empty() || files.is_empty() {
            message.set(Some("choose a label and at least one image".into()));
            return;
        }
        let who = uploader.get_untracked();
        if let Some(problem) = limits::uploader_problem(&who) {
            message.set(Some(format!("not sent: {problem}")));
            return;
        }
        remember_uploader(&who);
        let n = files.len();
        let cap = caption.get_untracked().trim().to_string();
        let picked: Vec<Picked> = files
            .iter()
            .map(|f| Picked {
                name: f.name(),
                bytes: f.size() as u64,
            })
            .collect();
        let groups = match limits::plan(&ob.limits.get_untracked(), &picked, &lab, &cap) {
            Ok(groups) => groups,
            Err(why) => {
                message.set(Some(format!("not sent, nothing was queued: {why}")));
                return;
            }
        };
        let requests = groups.len();
        let groups: js_sys::Array = groups
            .iter()
            .map(|g| g.iter().map(|&i| &files[i]).collect::<js_sys::Array>())
            .collect();
        leptos::task::spawn_local(async move {
            match outbox::add(ctx, &set.id, &lab, &who, &groups, &cap, "").await {
                Ok(()) => {
                    let online = ctx.online.get_untracked();
                    message.set(Some(queued(online, n, &lab, requests)));
                    input.set_value("");
                    chosen.set(0);
                    caption.set(String::new());
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };

    view! {
        <h1>"Contribute"</h1>
        <p class="hint">"Labelled images make the next model better. They are reviewed before training. Offline? They wait in this browser and are sent when you are back online."</p>
        <Suspense fallback=|| view! { <p>"loading the labels…"</p> }>
            {move || sets.get().map(|r| match r {
                Err(e) => view! { <p class="error">{format!("labels not available: {e}")}</p> }.into_any(),
                Ok(sets) => {
                    let names: Vec<(usize, String)> = sets.iter().map(|s| s.name.clone()).enumerate().collect();
                    let several = names.len() > 1;
                    let set = sets.into_iter().nth(which.get());
                    let detect = set.as_ref().is_some_and(|s| s.task == Task::Detect);
                    let labels = set.as_ref().map(|s| s.labels.clone()).unwrap_or_default();
                    let counts = labels.clone();
                    let names_for_boxes: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
                    view! {
                        <form class="contribute" on:submit=submit>
                            {several.then(|| view! {
                                <label>"Dataset "
                                    <select data-testid="dataset" prop:value=move || which.get().to_string()
                                        on:change=move |ev| {
                                            which.set(event_target_value(&ev).parse().unwrap_or(0));
                                            label.set(String::new());
                                            boxes.set(Vec::new());
                                            drawing.set(None);
                                            chosen.set(0);
                                        }>
                                        {names.into_iter().map(|(i, n)| view! { <option value=i.to_string()>{n}</option> }).collect_view()}
                                    </select>
                                </label>
                            })}
                            {(!detect).then(|| view! {
                            <label>"Label "
                                <select data-testid="label" prop:value=move || label.get()
                                    on:change=move |ev| label.set(event_target_value(&ev))>
                                    <option value="">"— choose —"</option>
                                    {labels.into_iter().map(|l| view! { <option value=l.name.clone()>{l.name.clone()}</option> }).collect_view()}
                                </select>
                            </label>
                            })}
                            <label>"Your name (optional) "
                                <input data-testid="uploader" maxlength="64" prop:value=move || uploader.get()
                                    on:input=move |ev| uploader.set(event_target_value(&ev))/>
                            </label>
                            {if detect { view! {
                                <label>"Image "
                                    <input type="file" accept="image/*" data-testid="box-image" on:change=on_image/>
                                </label>
                                {move || drawing.get().map(|(url, size)| view! {
                                    <BoxEditor src=url size labels=names_for_boxes.clone() boxes name="contribute"/>
                                })}
                                <button type="submit" data-testid="send" disabled=move || drawing.get().is_none() || boxes.get().is_empty()>
                                    {move || format!("Send the image with {} box(es)", boxes.get().len())}
                                </button>
                            }.into_any() } else { view! {
                            <label>"Caption or product title (optional) "
                                <input data-testid="caption" maxlength=move || ob.limits.get().max_caption_chars placeholder="A koala in a tree." prop:value=move || caption.get()
                                    on:input=move |ev| caption.set(event_target_value(&ev))/>
                            </label>
                            <label>"Images "
                                <input type="file" accept="image/*" multiple=true data-testid="files" node_ref=file_ref on:change=on_files/>
                            </label>
                            <button type="submit" data-testid="send" disabled=move || chosen.get() == 0>
                                {move || format!("Send {} image(s)", chosen.get())}
                            </button>
                            }.into_any() }}
                        </form>
                        <LabelCounts counts/>
                    }.into_any()
                }
            })}
        </Suspense>
        <p data-testid="message" role="status" hidden=move || message.get().is_none()>{move || message.get().unwrap_or_default()}</p>
        <OutboxPanel message/>
    }
}

/// The outbox as people see it: upload progress, what waits to be sent, and what this browser
/// sent with its review outcome (checked on arrival when online, and on demand).
#[component]
fn OutboxPanel(message: RwSignal<Option<String>>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let ob = ctx.outbox;
    // What became of earlier contributions (reviewed since?).
    let check = move || {
        leptos::task::spawn_local(async move {
            if let Err(e) = outbox::refresh_statuses(ob).await {
                message.set(Some(format!("could not check earlier contributions: {e}")));
            }
        });
    };
    if ctx.online.get_untracked() {
        check();
    }
    view! {
        {move || ob.sending.get().map(|(loaded, total)| view! {
            <p>"sending " <progress data-testid="upload-progress" max=total value=loaded></progress></p>
        })}
        <p class="error" data-testid="outbox-error" hidden=move || ob.error.get().is_none()>{move || ob.error.get().unwrap_or_default()}</p>
        <section hidden=move || ob.waiting.get().is_empty()>
            <h2>"Waiting to be sent"</h2>
            <ul data-testid="waiting" data-count=move || ob.waiting.get().len().to_string()>
                {move || ob.waiting.get().into_iter().map(|w| view! {
                    <li>{format!("{}: {}", w.label, w.files.join(", "))}</li>
                }).collect_view()}
            </ul>
        </section>
        <section hidden=move || ob.sent.get().is_empty()>
            <h2>"Sent from this browser" " " <button data-testid="check" on:click=move |_| check()>"Check for reviews"</button></h2>
            <ul data-testid="sent" data-count=move || ob.sent.get().len().to_string()>
                {move || ob.sent.get().into_iter().map(|o| {
                    let words = match o.status.as_str() {
                        "pending" => "waiting for review".to_string(),
                        "approved" => "accepted".to_string(),
                        "duplicate" => "already in the dataset".to_string(),
                        "rejected" => "rejected".to_string(),
                        _ => format!("refused: {}", o.detail),
                    };
                    view! {
                        <li data-file=o.filename.clone() data-status=o.status.clone()>
                            {format!("{} ({}): {words}", o.filename, o.label)}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}

/// The files picked in a file input.
fn chosen_files(input: &web_sys::HtmlInputElement) -> Vec<web_sys::File> {
    input
        .files()
        .map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect())
        .unwrap_or_default()
}

/// What the page says once a contribution is in the outbox (in `requests` uploads).
fn queued(online: bool, n: usize, label: &str, requests: usize) -> String {
    let parts = if requests > 1 {
        format!(" (in {requests} uploads, the server's limit per upload)")
    } else {
        String::new()
    };
    if online {
        format!("{n} image(s) for {label:?}: sending…{parts}")
    } else {
        format!(
            "offline: {n} image(s) for {label:?} kept in this browser, sent when the connection returns{parts}"
        )
    }
}

/// Accepted and pending images per label.
#[component]
fn LabelCounts(counts: Vec<LabelCount>) -> impl IntoView {
    view! {
        <div class="scroll" tabindex="0" role="region" aria-label="Images per label">
            <table class="counts" data-testid="counts">
                <tr><th>"label"</th><th>"accepted"</th><th>"pending review"</th></tr>
                {counts.into_iter().map(|c| view! {
                    <tr data-label=c.name.clone()><td>{c.name.clone()}</td><td>{c.approved}</td><td>{c.pending}</td></tr>
                }).collect_view()}
            </table>
        </div>
    }
}

/// The name this browser contributed under last time.
fn remembered_uploader() -> String {
    net::storage()
        .and_then(|s| s.get_item(UPLOADER_KEY).ok().flatten())
        .unwrap_or_default()
}

/// Offer `who` again next time.
fn remember_uploader(who: &str) {
    if let Some(s) = net::storage() {
        let _ = s.set_item(UPLOADER_KEY, who);
    }
}

/// An image file's object URL and size in pixels (decoded by the browser to measure it).
async fn picture(file: &web_sys::File) -> Result<(String, (u32, u32)), String> {
    let url = web_sys::Url::create_object_url_with_blob(file)
        .map_err(|_| "could not read the image".to_string())?;
    let img = web_sys::HtmlImageElement::new().map_err(|_| "no image element".to_string())?;
    img.set_src(&url);
    if JsFuture::from(img.decode()).await.is_err() {
        let _ = web_sys::Url::revoke_object_url(&url);
        return Err("this file is not an image the browser can show".into());
    }
    Ok((url, (img.natural_width(), img.natural_height())))
}

/// The label a detection image is listed under: its largest box's (as the server lists it).
fn main_label(boxes: &[ImageBox]) -> String {
    boxes
        .iter()
        .rev()
        .max_by(|a, b| (a.bbox[2] * a.bbox[3]).total_cmp(&(b.bbox[2] * b.bbox[3])))
        .map(|b| b.label.clone())
        .unwrap_or_default()
}

/// Keep a detection image with its boxes in the outbox (one request: one image), then clear the
/// drawing.
#[allow(clippy::too_many_arguments)]
fn send_boxed(
    ctx: Ctx,
    set: &Dataset,
    who: String,
    file: StoredValue<Option<web_sys::File>, LocalStorage>,
    boxes: RwSignal<Vec<ImageBox>>,
    message: RwSignal<Option<String>>,
    drawing: RwSignal<Option<(String, (u32, u32))>>,
    chosen: RwSignal<usize>,
) {
    let drawn = boxes.get_untracked();
    let Some(file) = file.get_value() else {
        message.set(Some("choose an image and draw its boxes".into()));
        return;
    };
    if drawn.is_empty() {
        message.set(Some("draw at least one box around an object".into()));
        return;
    }
    if let Some(problem) = limits::uploader_problem(&who) {
        message.set(Some(format!("not sent: {problem}")));
        return;
    }
    remember_uploader(&who);
    let Ok(json) = serde_json::to_string(&drawn) else {
        return;
    };
    let lab = main_label(&drawn);
    let group: js_sys::Array = std::iter::once(js_sys::Array::of1(&file)).collect();
    let dataset = set.id.clone();
    let n = drawn.len();
    leptos::task::spawn_local(async move {
        match outbox::add(ctx, &dataset, &lab, &who, &group, "", &json).await {
            Ok(()) => {
                let online = ctx.online.get_untracked();
                message.set(Some(if online {
                    format!("1 image with {n} box(es): sending…")
                } else {
                    format!("offline: 1 image with {n} box(es) kept in this browser, sent when the connection returns")
                }));
                boxes.set(Vec::new());
                drawing.set(None);
                chosen.set(0);
            }
            Err(e) => message.set(Some(e)),
        }
    });
}
