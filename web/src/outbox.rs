//! The contribution outbox: every contribution is first written to IndexedDB (`js/glue.js`),
//! then sent; what cannot be sent (offline, server down) stays there and is sent when the
//! connection returns or the app starts again. The server dedupes by content hash, so sending
//! twice (a reply lost on the way) stores nothing twice. Each kept item is one request within
//! the server's limits (`limits`): a selection is split when it is kept, and an item kept under
//! larger limits than the server's now is split again before it is sent. What the server
//! refuses is shown with its reason, never dropped silently.

use leptos::prelude::*;
use wasm_bindgen::prelude::*;

use serde::{Deserialize, Serialize};

use contract::worker::ToWorker;

use crate::limits::{self, Picked};
use crate::{Ctx, net};
use contract::api::{ImageReview, Limits, UploadResponse};

const SENT_KEY: &str = "edgeml-sent";
/// How many outcomes local storage keeps (the newest).
const SENT_KEPT: usize = 100;

#[wasm_bindgen(module = "/js/glue.js")]
extern "C" {
    #[wasm_bindgen(js_name = outboxAdd, catch)]
    async fn outbox_add(
        dataset: &str,
        label: &str,
        uploader: &str,
        groups: &js_sys::Array,
        caption: &str,
        boxes: &str,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = outboxSplit, catch)]
    async fn outbox_split(item: &JsValue, groups: JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = outboxAll, catch)]
    async fn outbox_all() -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = outboxDelete, catch)]
    async fn outbox_delete(id: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = uploadItem)]
    async fn upload_item(url: &str, item: &JsValue, on_progress: &js_sys::Function) -> JsValue;
}

/// A contribution waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// IndexedDB key (auto-increment, so oldest first).
    pub id: f64,
    /// The label every file of the contribution is sent with.
    pub label: String,
    /// The files' names as picked (the blobs stay in IndexedDB).
    pub files: Vec<String>,
}

/// What became of one sent file (kept in local storage, so a contributor can come back and
/// see whether their images were accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Image id on the server (empty when refused).
    #[serde(default)]
    pub id: String,
    /// The name the file had when picked (how the contributor recognises it).
    pub filename: String,
    /// The label it was sent with (a reviewer may change it later).
    pub label: String,
    /// `pending`, `approved`, `duplicate` or `error`.
    pub status: String,
    /// Why it was refused, by the server or before sending (`error` only).
    pub detail: String,
}

/// Outbox state shown by the Contribute page.
#[derive(Clone, Copy)]
pub struct State {
    /// Contributions not sent yet.
    pub waiting: RwSignal<Vec<Waiting>>,
    /// Bytes sent of the request in flight.
    pub sending: RwSignal<Option<(f64, f64)>>,
    /// Files sent in this visit, newest first.
    pub sent: RwSignal<Vec<Outcome>>,
    /// Why sending stopped or what the server refused in the last round, in words.
    pub error: RwSignal<Option<String>>,
    /// What one upload request may carry (the server's limits).
    pub limits: RwSignal<Limits>,
    busy: StoredValue<(bool, bool)>,
}

impl State {
    /// Empty; `flush` fills it from IndexedDB.
    pub fn new() -> Self {
        Self {
            waiting: RwSignal::new(Vec::new()),
            sending: RwSignal::new(None),
            sent: RwSignal::new(
                net::storage()
                    .and_then(|s| s.get_item(SENT_KEY).ok().flatten())
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default(),
            ),
            error: RwSignal::new(None),
            limits: RwSignal::new(limits::remembered()),
            busy: StoredValue::new((false, false)),
        }
    }
}

fn field(v: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(v, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn text(e: &JsValue) -> String {
    field(e, "message")
        .as_string()
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

async fn load_all() -> Result<Vec<JsValue>, String> {
    let all = outbox_all().await.map_err(|e| text(&e))?;
    Ok(js_sys::Array::from(&all).iter().collect())
}

/// The files of a kept item with their sizes.
fn picked(item: &JsValue) -> Vec<Picked> {
    js_sys::Array::from(&field(item, "files"))
        .iter()
        .map(|f| Picked {
            name: field(&f, "name").as_string().unwrap_or_default(),
            bytes: field(&field(&f, "blob"), "size")
                .as_f64()
                .unwrap_or_default() as u64,
        })
        .collect()
}

fn describe(item: &JsValue) -> Waiting {
    Waiting {
        id: field(item, "id").as_f64().unwrap_or_default(),
        label: field(item, "label").as_string().unwrap_or_default(),
        files: js_sys::Array::from(&field(item, "files"))
            .iter()
            .map(|f| field(&f, "name").as_string().unwrap_or_default())
            .collect(),
    }
}

/// Keep a contribution, one item per request (`groups`: arrays of files, split by
/// [`limits::plan`]), and try to send it. `boxes`: for a detection dataset, the one image's
/// boxes as JSON (sent instead of the label, which is then only shown); empty otherwise.
pub async fn add(
    ctx: Ctx,
    dataset: &str,
    label: &str,
    uploader: &str,
    groups: &js_sys::Array,
    caption: &str,
    boxes: &str,
) -> Result<(), String> {
    outbox_add(dataset, label, uploader, groups, caption, boxes)
        .await
        .map_err(|e| format!("could not keep the images in this browser: {}", text(&e)))?;
    flush(ctx);
    Ok(())
}

/// Send what waits in the outbox, oldest first (one flush at a time; a call during a flush
/// makes it go round again).
pub fn flush(ctx: Ctx) {
    let st = ctx.outbox;
    let (running, _) = st.busy.get_value();
    if running {
        st.busy.set_value((true, true));
        return;
    }
    st.busy.set_value((true, false));
    leptos::task::spawn_local(async move {
        loop {
            if let Err(e) = send_all(ctx).await {
                st.error.set(Some(e));
            }
            let (_, again) = st.busy.get_value();
            if !again {
                break;
            }
            st.busy.set_value((true, false));
        }
        st.busy.set_value((false, false));
    });
}

async fn send_all(ctx: Ctx) -> Result<(), String> {
    let st = ctx.outbox;
    let mut items = load_all().await?;
    st.waiting.set(items.iter().map(describe).collect());
    let online = web_sys::window().is_some_and(|w| w.navigator().on_line());
    if !online || items.is_empty() {
        return Ok(());
    }
    let limits = limits::refresh().await;
    st.limits.set(limits.clone());
    // What was refused in this round, in words (shown until a round refuses nothing).
    let mut refusals = Vec::new();
    if fit(&st, &items, &limits, &mut refusals).await? {
        items = load_all().await?;
        st.waiting.set(items.iter().map(describe).collect());
    }
    for item in items {
        let w = describe(&item);
        let dataset = field(&item, "dataset").as_string().unwrap_or_default();
        let url = format!("/api/datasets/{dataset}/images");
        let progress = Closure::<dyn Fn(f64, f64)>::new(move |loaded: f64, total: f64| {
            st.sending.set(Some((loaded, total)));
        });
        st.sending.set(Some((0.0, 1.0)));
        let answer = upload_item(&url, &item, progress.as_ref().unchecked_ref()).await;
        drop(progress);
        st.sending.set(None);
        let status = field(&answer, "status").as_f64().unwrap_or_default() as u16;
        let body = field(&answer, "body").as_string().unwrap_or_default();
        let outcomes: Vec<Outcome> = match status {
            // Not sent: keep it for later.
            0 => {
                st.error.set(Some(
                    "no connection: the images wait in this browser".into(),
                ));
                return Ok(());
            }
            429 | 500.. => {
                let e = crate::net::error_message(status, &body);
                st.error.set(Some(format!("{e}; will try again later")));
                return Ok(());
            }
            200..=299 => match serde_json::from_str::<UploadResponse>(&body) {
                Ok(r) => {
                    // New images join this browser's search index at once (embedded here by
                    // the ranking model's image encoder), before any retrain.
                    let blobs = js_sys::Array::from(&field(&item, "files"));
                    let caption = field(&item, "caption").as_string().unwrap_or_default();
                    // (Images with boxes belong to a detection dataset, not to the gallery.)
                    let boxed = field(&item, "boxes")
                        .as_string()
                        .is_some_and(|b| !b.is_empty());
                    for (i, u) in r.images.iter().enumerate() {
                        if !u.duplicate && !boxed {
                            let msg = ToWorker::AddLocal {
                                id: u.id.clone(),
                                label: r.label.clone(),
                                caption: caption.clone(),
                            };
                            ctx.send(msg, Some(field(&blobs.get(i as u32), "blob")));
                        }
                    }
                    r.images
                        .into_iter()
                        .map(|u| Outcome {
                            id: u.id,
                            filename: u.filename,
                            label: r.label.clone(),
                            status: if u.duplicate {
                                "duplicate".into()
                            } else {
                                u.status.to_string()
                            },
                            detail: String::new(),
                        })
                        .collect()
                }
                Err(e) => failed(&w, &format!("unexpected answer: {e}")),
            },
            // Refused (not an image, unknown label, too large, …): sending again would not
            // help. Each file is listed as refused, with the server's reason.
            _ => {
                let why = crate::net::error_message(status, &body).to_string();
                refusals.push(format!(
                    "refused by the server ({}): {why}",
                    w.files.join(", ")
                ));
                failed(&w, &why)
            }
        };
        done(&st, w.id, outcomes).await?;
    }
    st.error
        .set((!refusals.is_empty()).then(|| refusals.join("; ")));
    Ok(())
}

/// Make every kept item one request within `limits`: an item kept under larger limits
/// (offline, or by an earlier version of this page) is split into items that fit; one that
/// cannot be sent at all (a file too large, a caption too long) is refused here, with the
/// reason added to `refusals`. Whether the outbox changed.
async fn fit(
    st: &State,
    items: &[JsValue],
    limits: &Limits,
    refusals: &mut Vec<String>,
) -> Result<bool, String> {
    let mut changed = false;
    for item in items {
        let w = describe(item);
        let caption = field(item, "caption").as_string().unwrap_or_default();
        match limits::plan(limits, &picked(item), &w.label, &caption) {
            Ok(groups) if groups.len() <= 1 => {}
            Ok(groups) => {
                let groups: js_sys::Array = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .map(|&i| JsValue::from(i as u32))
                            .collect::<js_sys::Array>()
                    })
                    .collect();
                outbox_split(item, groups.into())
                    .await
                    .map_err(|e| text(&e))?;
                changed = true;
            }
            Err(why) => {
                refusals.push(format!("not sent ({}): {why}", w.files.join(", ")));
                done(st, w.id, failed(&w, &why)).await?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// An item is finished (sent or refused): out of the outbox, its files' outcomes shown first
/// and kept.
async fn done(st: &State, id: f64, outcomes: Vec<Outcome>) -> Result<(), String> {
    outbox_delete(id).await.map_err(|e| text(&e))?;
    st.waiting.update(|ws| ws.retain(|x| x.id != id));
    st.sent.update(|s| {
        for o in outcomes.into_iter().rev() {
            s.insert(0, o);
        }
        s.truncate(SENT_KEPT);
    });
    save_sent(st);
    Ok(())
}

fn save_sent(st: &State) {
    if let (Some(store), Ok(text)) = (
        net::storage(),
        serde_json::to_string(&st.sent.get_untracked()),
    ) {
        let _ = store.set_item(SENT_KEY, &text);
    }
}

/// Ask the server what became of the sent images still waiting for review.
pub async fn refresh_statuses(st: State) -> Result<(), String> {
    let ids: Vec<String> = st
        .sent
        .get_untracked()
        .iter()
        .filter(|o| o.status == "pending" && !o.id.is_empty())
        .map(|o| o.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let now: Vec<ImageReview> =
        net::get(&format!("/api/images/status?ids={}", ids.join(",")), None)
            .await
            .map_err(|e| e.to_string())?;
    st.sent.update(|sent| {
        for o in sent.iter_mut() {
            if let Some(n) = now.iter().find(|n| n.id == o.id) {
                o.status = n.status.to_string();
                o.label = n.label.clone();
            }
        }
    });
    save_sent(&st);
    Ok(())
}

/// Every file of a refused item, with the reason.
fn failed(w: &Waiting, detail: &str) -> Vec<Outcome> {
    w.files
        .iter()
        .map(|f| Outcome {
            id: String::new(),
            filename: f.clone(),
            label: w.label.clone(),
            status: "error".into(),
            detail: detail.into(),
        })
        .collect()
}
