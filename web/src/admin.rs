//! Admin page (needs the admin token): review queue (images with their captions), the queue of
//! captions sent for already approved images, retrain with live curves, model versions with
//! metrics and confusion matrix, promote and rollback.

use leptos::prelude::*;
use serde_json::json;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::chart::{Confusion, LineChart, Series};
use crate::net;
use contract::api::{
    Action, Caption, CaptionAction, CaptionDecision, CaptionPage, Decision, EpochMetrics as Epoch,
    ModelInfo as Model, Progress, ReviewRequest, ReviewResponse, RunInfo as Run, RunStatusEvent,
    TrainRequest,
};
use contract::{ImageStatus, Recall, Stage};

use contract::api::{DatasetInfo as Dataset, ImagePage, ImageRow as Image};

const TOKEN_KEY: &str = "edgeml-admin-token";
/// Captions listed at once in the caption queue (oldest first).
const CAPTION_PAGE: usize = 48;

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

fn when(ms: i64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    let s: String = d.to_iso_string().into();
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// Admin state shared by the sections.
#[derive(Clone, Copy)]
struct Admin {
    token: RwSignal<String>,
    /// Bumped when something changed on the server (lists are fetched again).
    version: RwSignal<u32>,
    /// The run being watched.
    run: RwSignal<Option<Run>>,
    /// Batch losses of the watched run (step, loss).
    batches: RwSignal<Vec<(f64, f64)>>,
    events: StoredValue<Option<web_sys::EventSource>, LocalStorage>,
    message: RwSignal<Option<String>>,
}

impl Admin {
    fn token(&self) -> String {
        self.token.get_untracked()
    }
    fn changed(&self) {
        self.version.update(|v| *v += 1);
    }

    /// Send review decisions (images, captions or both), say what changed or why not, and
    /// fetch the lists again.
    async fn review(self, body: ReviewRequest) {
        match net::post::<ReviewResponse>("/api/review", Some(&self.token()), &body).await {
            Ok(r) => {
                let mut parts = Vec::new();
                if !r.images.is_empty() || body.captions.is_empty() {
                    parts.push(format!("{} image(s) updated", r.images.len()));
                }
                if let Some(c) = caption_summary(&r.captions) {
                    parts.push(c);
                }
                let mut msg = parts.join("; ");
                if let Some(run) = r.auto_retrain {
                    msg.push_str(&format!("; enough new images: retrain {run} started"));
                    self.watch(&run);
                }
                self.message.set(Some(msg));
            }
            Err(e) => self.message.set(Some(format!("review failed: {e}"))),
        }
        self.changed();
    }

    /// Follow a run's Server-Sent Events.
    fn watch(self, run_id: &str) {
        self.events.update_value(|e| {
            if let Some(e) = e.take() {
                e.close();
            }
        });
        self.batches.set(Vec::new());
        let Ok(es) = web_sys::EventSource::new(&format!("/api/train/{run_id}/events")) else {
            self.message
                .set(Some("this browser cannot follow the run".into()));
            return;
        };
        let on = |name: &str, f: Box<dyn Fn(String)>| {
            let cb =
                Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                    f(ev.data().as_string().unwrap_or_default());
                });
            let _ = es.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
            cb.forget();
        };
        let run = self.run;
        let batches = self.batches;
        on(
            "snapshot",
            Box::new(move |d| {
                if let Ok(r) = serde_json::from_str::<Run>(&d) {
                    run.set(Some(r));
                }
            }),
        );
        on(
            "progress",
            Box::new(move |d| {
                if let Ok(p) = serde_json::from_str::<Progress>(&d) {
                    apply_progress(run, batches, p);
                }
            }),
        );
        on(
            "epoch",
            Box::new(move |d| {
                if let Ok(e) = serde_json::from_str::<Epoch>(&d) {
                    run.update(|r| {
                        if let Some(r) = r
                            && r.epochs.iter().all(|x| x.epoch != e.epoch)
                        {
                            r.epochs.push(e);
                        }
                    });
                }
            }),
        );
        on(
            "status",
            Box::new(move |d| {
                if let Ok(s) = serde_json::from_str::<RunStatusEvent>(&d) {
                    run.update(|r| {
                        if let Some(r) = r {
                            r.status = s.status;
                            r.error = s.error;
                        }
                    });
                }
            }),
        );
        let this = self;
        on(
            "done",
            Box::new(move |d| {
                if let Ok(r) = serde_json::from_str::<Run>(&d) {
                    run.set(Some(r));
                }
                this.events.update_value(|e| {
                    if let Some(e) = e.take() {
                        e.close();
                    }
                });
                this.changed();
            }),
        );
        self.events.set_value(Some(es));
    }
}

/// The Admin page.
#[component]
pub fn AdminPage() -> impl IntoView {
    let admin = Admin {
        token: RwSignal::new(
            session_storage()
                .and_then(|s| s.get_item(TOKEN_KEY).ok().flatten())
                .unwrap_or_default(),
        ),
        version: RwSignal::new(0),
        run: RwSignal::new(None),
        batches: RwSignal::new(Vec::new()),
        events: StoredValue::new_local(None),
        message: RwSignal::new(None),
    };
    on_cleanup(move || {
        admin.events.update_value(|e| {
            if let Some(e) = e.take() {
                e.close();
            }
        });
    });
    let typed = RwSignal::new(String::new());
    let signed_in = RwSignal::new(false);
    let sign_error = RwSignal::new(None::<String>);
    let check = move |token: String| {
        leptos::task::spawn_local(async move {
            match net::get::<ImagePage>("/api/review?limit=1", Some(&token)).await {
                Ok(_) => {
                    if let Some(s) = session_storage() {
                        let _ = s.set_item(TOKEN_KEY, &token);
                    }
                    admin.token.set(token);
                    sign_error.set(None);
                    signed_in.set(true);
                }
                Err(e) => sign_error.set(Some(e.to_string())),
            }
        });
    };
    if !admin.token.get_untracked().is_empty() {
        check(admin.token.get_untracked());
    }
    let sign_in = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        check(typed.get_untracked());
    };
    let sign_out = move |_| {
        if let Some(s) = session_storage() {
            let _ = s.remove_item(TOKEN_KEY);
        }
        admin.token.set(String::new());
        signed_in.set(false);
    };

    view! {
        <h1>"Admin"</h1>
        <Show when=move || signed_in.get() fallback=move || view! {
            <form class="signin" on:submit=sign_in>
                <label>"Admin token " <input type="password" data-testid="token" autocomplete="current-password"
                    prop:value=move || typed.get() on:input=move |ev| typed.set(event_target_value(&ev))/></label>
                <button type="submit" data-testid="sign-in">"Sign in"</button>
                <p class="error" data-testid="sign-in-error" hidden=move || sign_error.get().is_none()>{move || sign_error.get().unwrap_or_default()}</p>
            </form>
        }>
            <p class="hint">"Signed in for this tab. " <button on:click=sign_out>"Sign out"</button></p>
            <p class="notice-inline" data-testid="admin-message" hidden=move || admin.message.get().is_none()>{move || admin.message.get().unwrap_or_default()}</p>
            <Review admin=admin/>
            <CaptionQueue admin=admin/>
            <Training admin=admin/>
            <Models admin=admin/>
        </Show>
    }
}

#[component]
fn Review(admin: Admin) -> impl IntoView {
    let queue = LocalResource::new(move || {
        admin.version.track();
        let token = admin.token.get();
        async move { net::get::<ImagePage>("/api/review?limit=48", Some(&token)).await }
    });
    let labels = LocalResource::new(move || async move {
        net::get::<Vec<Dataset>>("/api/datasets", None)
            .await
            .ok()
            .and_then(|d| d.into_iter().next())
            .map(|d| d.labels.into_iter().map(|l| l.name).collect::<Vec<_>>())
            .unwrap_or_default()
    });
    let decide = move |decisions: Vec<Decision>| {
        leptos::task::spawn_local(admin.review(ReviewRequest {
            decisions,
            ..Default::default()
        }));
    };
    let approve_all = move |_| {
        if let Some(Ok(page)) = queue.get_untracked() {
            decide(
                page.images
                    .iter()
                    .map(|i| decision(&i.id, Action::Approve, None))
                    .collect(),
            );
        }
    };
    view! {
        <section class="panel">
            <h2>"Review queue"</h2>
            <Suspense fallback=|| view! { <p>"loading…"</p> }>
                {move || queue.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(page) if page.images.is_empty() => view! { <p data-testid="queue-empty">"Nothing waits for review."</p> }.into_any(),
                    Ok(page) => {
                        let labels = labels.get().unwrap_or_default();
                        view! {
                            <p data-testid="queue-total">{format!("{} image(s) wait for review", page.total)}
                                " " <button data-testid="approve-all" on:click=approve_all>"Approve all shown"</button></p>
                            <div class="cards">
                                {page.images.into_iter().map(|img| view! {
                                    <ReviewCard img=img labels=labels.clone() token=admin.token() decide=decide/>
                                }).collect_view()}
                            </div>
                        }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn ReviewCard(
    img: Image,
    labels: Vec<String>,
    token: String,
    decide: impl Fn(Vec<Decision>) + Copy + 'static,
) -> impl IntoView {
    let label = RwSignal::new(img.label.clone());
    let original = img.label.clone();
    let (a, r, l) = (img.id.clone(), img.id.clone(), img.id.clone());
    let approve = move |_| {
        decide(vec![decision(
            &a,
            Action::Approve,
            Some(label.get_untracked()),
        )])
    };
    let reject = move |_| decide(vec![decision(&r, Action::Reject, None)]);
    let relabel = move |_| {
        decide(vec![decision(
            &l,
            Action::Relabel,
            Some(label.get_untracked()),
        )])
    };
    let changed = move || label.get() != original;
    let captions = (!img.captions.is_empty()).then(|| {
        view! {
            <div class="card-captions" data-testid="card-captions">
                <p class="hint">"Captions, approved or rejected with the image:"</p>
                <ul>
                    {img.captions.into_iter().map(|c| view! {
                        <li data-testid="card-caption" data-caption=c.caption.clone() data-status=c.status.to_string()>
                            <q>{c.caption.clone()}</q> " "
                            <span class=format!("pill caption-{}", c.status)>{c.status.to_string()}</span>
                            <span class="by">{format!(" by {}", c.uploader)}</span>
                        </li>
                    }).collect_view()}
                </ul>
            </div>
        }
    });
    view! {
        <div class="card" data-testid="review-card" data-file=img.filename.clone() data-id=img.id.clone()>
            <Thumb image_id=img.id.clone() token=token alt=img.filename.clone()/>
            <div class="meta">{img.filename.clone()} <br/> {format!("{}×{} · by {}", img.width, img.height, img.uploader)}</div>
            {captions}
            <select data-testid="card-label" prop:value=move || label.get() on:change=move |ev| label.set(event_target_value(&ev))>
                {labels.into_iter().map(|l| view! { <option value=l.clone()>{l.clone()}</option> }).collect_view()}
            </select>
            <div class="buttons">
                <button data-testid="approve" on:click=approve>"Approve"</button>
                <button data-testid="reject" on:click=reject>"Reject"</button>
                <button data-testid="relabel" hidden=move || !changed() on:click=relabel>"Save label"</button>
            </div>
        </div>
    }
}

/// A protected image, fetched with the token into a blob URL (the token never goes into a URL);
/// the URL is revoked when the image leaves the page.
#[component]
fn Thumb(image_id: String, token: String, alt: String) -> impl IntoView {
    let src = RwSignal::new(None::<String>);
    let url = format!("/api/images/{image_id}/blob");
    leptos::task::spawn_local(async move {
        if let Ok(u) = net::blob_url(&url, &token).await
            && let Some(u) = src.try_set(Some(u)).flatten()
        {
            // Gone before the image arrived.
            let _ = web_sys::Url::revoke_object_url(&u);
        }
    });
    on_cleanup(move || {
        if let Some(u) = src.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&u);
        }
    });
    move || {
        src.get()
            .map(|s| view! { <img class="thumb" src=s alt=alt.clone()/> })
    }
}

/// Captions sent for images that are already approved, waiting for review (oldest first).
/// Captions of images still pending are decided with their image in the review queue.
#[component]
fn CaptionQueue(admin: Admin) -> impl IntoView {
    let queue = LocalResource::new(move || {
        admin.version.track();
        let token = admin.token.get();
        async move {
            let url = format!("/api/review/captions?status=pending&limit={CAPTION_PAGE}");
            net::get::<CaptionPage>(&url, Some(&token)).await
        }
    });
    // One review request at a time (a second click would decide a caption already decided).
    let busy = RwSignal::new(false);
    let decide = move |captions: Vec<CaptionDecision>| {
        if captions.is_empty() || busy.get_untracked() {
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            admin
                .review(ReviewRequest {
                    captions,
                    ..Default::default()
                })
                .await;
            let _ = busy.try_set(false);
        });
    };
    let approve_all = move |_| {
        if let Some(Ok(page)) = queue.get_untracked() {
            decide(
                page.captions
                    .iter()
                    .map(|c| caption_decision(c, CaptionAction::Approve))
                    .collect(),
            );
        }
    };
    view! {
        <section class="panel" aria-labelledby="caption-queue-title">
            <h2 id="caption-queue-title">"Captions waiting for review"</h2>
            <p class="hint">"Captions sent for images that are already approved. Only approved captions
                are trained on and shown in Search; captions of images still waiting are decided with
                their image above."</p>
            <Suspense fallback=|| view! { <p>"loading…"</p> }>
                {move || queue.get().map(|r| match r {
                    Err(e) => view! { <p class="error" data-testid="caption-queue-error">{e.to_string()}</p> }.into_any(),
                    Ok(page) if page.captions.is_empty() => view! {
                        <p data-testid="caption-queue-empty">"No caption waits for review."</p>
                    }.into_any(),
                    Ok(page) => {
                        let shown = page.captions.len();
                        let more = (page.total > shown as i64).then(|| format!(" (the oldest {shown} shown)"));
                        view! {
                            <p data-testid="caption-queue-total" data-total=page.total.to_string()>
                                {format!("{} caption(s) wait for review", page.total)}{more}
                                " " <button data-testid="caption-approve-all" disabled=move || busy.get() on:click=approve_all>"Approve all shown"</button>
                            </p>
                            <ul class="caption-queue" data-testid="caption-queue">
                                {page.captions.into_iter().map(|c| view! {
                                    <CaptionRow caption=c token=admin.token() busy=busy decide=decide/>
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn CaptionRow(
    caption: Caption,
    token: String,
    busy: RwSignal<bool>,
    decide: impl Fn(Vec<CaptionDecision>) + Copy + 'static,
) -> impl IntoView {
    let approve = {
        let d = caption_decision(&caption, CaptionAction::Approve);
        move |_| decide(vec![d.clone()])
    };
    let reject = {
        let d = caption_decision(&caption, CaptionAction::Reject);
        move |_| decide(vec![d.clone()])
    };
    let alt = format!("the {} image this caption describes", caption.label);
    let quoted = format!("\u{201c}{}\u{201d}", caption.caption);
    view! {
        <li class="caption-row" data-testid="caption-row" data-image=caption.image_id.clone() data-caption=caption.caption.clone()>
            <div class="thumb-box"><Thumb image_id=caption.image_id.clone() token=token alt=alt/></div>
            <div class="caption-body">
                <q data-testid="caption-text">{caption.caption.clone()}</q>
                <div class="meta">
                    <span data-testid="caption-label">{caption.label.clone()}</span>
                    {format!(" · by {} · {}", caption.uploader, when(caption.created_at))}
                </div>
            </div>
            <div class="buttons">
                <button data-testid="caption-approve" aria-label=format!("Approve caption {quoted}")
                    disabled=move || busy.get() on:click=approve>"Approve"</button>
                <button data-testid="caption-reject" aria-label=format!("Reject caption {quoted}")
                    disabled=move || busy.get() on:click=reject>"Reject"</button>
            </div>
        </li>
    }
}

/// "captions: 2 approved, 1 rejected" (None when no caption was decided).
fn caption_summary(captions: &[Caption]) -> Option<String> {
    let count = |s: ImageStatus| captions.iter().filter(|c| c.status == s).count();
    let parts: Vec<String> = [ImageStatus::Approved, ImageStatus::Rejected]
        .into_iter()
        .map(|s| (count(s), s))
        .filter(|(n, _)| *n > 0)
        .map(|(n, s)| format!("{n} {s}"))
        .collect();
    (!parts.is_empty()).then(|| format!("caption(s): {}", parts.join(", ")))
}

/// The decision `action` on `caption` (named by its image and its exact text).
fn caption_decision(caption: &Caption, action: CaptionAction) -> CaptionDecision {
    CaptionDecision {
        image_id: caption.image_id.clone(),
        caption: caption.caption.clone(),
        action,
    }
}

#[component]
fn Training(admin: Admin) -> impl IntoView {
    let runs = LocalResource::new(move || {
        admin.version.track();
        async move { net::get::<Vec<Run>>("/api/train?limit=8", None).await }
    });
    // Follow a run that is already going (a retrain started elsewhere or automatically).
    Effect::new(move |_| {
        if admin.run.get_untracked().is_none()
            && let Some(Ok(list)) = runs.get()
            && let Some(r) = list.iter().find(|r| !r.is_terminal())
        {
            admin.run.set(Some(r.clone()));
            admin.watch(&r.id);
        }
    });
    let epochs = RwSignal::new(String::new());
    let start = move |_| {
        let e = epochs.get_untracked();
        let body = TrainRequest {
            params: e.trim().parse::<u32>().ok().map(|n| json!({ "epochs": n })),
            ..TrainRequest::default()
        };
        leptos::task::spawn_local(async move {
            match net::post::<Run>("/api/train", Some(&admin.token()), &body).await {
                Ok(run) => {
                    admin
                        .message
                        .set(Some(format!("retrain {} queued", run.id)));
                    let id = run.id.clone();
                    admin.run.set(Some(run));
                    admin.watch(&id);
                    admin.changed();
                }
                Err(e) => admin.message.set(Some(format!("retrain refused: {e}"))),
            }
        });
    };
    let busy = move || admin.run.get().is_some_and(|r| !r.is_terminal());
    view! {
        <section class="panel">
            <h2>"Training"</h2>
            <p>
                <label>"Epochs (empty: defaults) " <input data-testid="epochs" size="4" inputmode="numeric"
                    prop:value=move || epochs.get() on:input=move |ev| epochs.set(event_target_value(&ev))/></label>
                " " <button data-testid="retrain" on:click=start disabled=busy>"Retrain now"</button>
            </p>
            {move || admin.run.get().map(|r| {
                let progress = r.progress.as_ref().map(describe_progress).unwrap_or_default();
                let frac = r.progress.as_ref().map(progress_fraction);
                let curves = epoch_series(&r.epochs);
                let batches = admin.batches.get();
                view! {
                    <div class="run" data-testid="run" data-run-id=r.id.clone() data-status=r.status.to_string()>
                        <p>
                            <strong>{format!("run {}", r.id)}</strong>
                            " " <span class=format!("pill run-{}", r.status) data-testid="run-status">{r.status.to_string()}</span>
                            {r.model_id.clone().map(|m| view! { " → model " <code data-testid="run-model">{m}</code> })}
                        </p>
                        {(!r.is_terminal()).then(|| view! {
                            <p data-testid="run-progress">{progress}" "
                                {frac.map(|f| view! { <progress max="1" value=f></progress> })}</p>
                        })}
                        {r.error.clone().map(|e| view! { <p class="error">{e}</p> })}
                        <div class="charts">
                            <LineChart series=curves.0 x_label="epoch" testid="loss-chart"/>
                            <LineChart series=curves.1 x_label="epoch" y_range=(0.0, 1.0) testid="accuracy-chart"/>
                            {(!batches.is_empty()).then(|| view! {
                                <LineChart series=vec![Series { name: "batch loss", color: "#868e96", points: batches }] x_label="epoch" testid="batch-chart"/>
                            })}
                        </div>
                    </div>
                }
            })}
            <h3>"Recent runs"</h3>
            <Suspense fallback=|| ()>
                {move || runs.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="list" data-testid="runs">
                            <tr><th>"run"</th><th>"status"</th><th>"why"</th><th>"images"</th><th>"model"</th><th>"started"</th></tr>
                            {list.into_iter().map(|r| view! {
                                <tr><td><code>{r.id.clone()}</code></td><td>{r.status.to_string()}</td><td>{r.reason.clone()}</td>
                                    <td>{r.images.map(|n| n.to_string()).unwrap_or_default()}</td>
                                    <td><code>{r.model_id.clone().unwrap_or_default()}</code></td><td>{when(r.created_at)}</td></tr>
                            }).collect_view()}
                        </table>
                    }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// A `progress` event: the batch-loss curve grows, the run shows the latest stage.
fn apply_progress(run: RwSignal<Option<Run>>, batches: RwSignal<Vec<(f64, f64)>>, p: Progress) {
    if let Progress::Batch {
        epoch: e,
        batch: b,
        batches: n,
        loss,
        ..
    } = p
    {
        let step = (e - 1) as f64 + b as f64 / n.max(1) as f64;
        batches.update(|v| {
            if v.last().is_none_or(|l| l.0 < step) {
                v.push((step, loss));
            }
        });
    }
    run.update(|r| {
        if let Some(r) = r {
            r.progress = Some(p);
        }
    });
}

fn describe_progress(p: &Progress) -> String {
    match p {
        Progress::Features { done, total, .. } => {
            format!("computing features: {done} / {total} images")
        }
        Progress::Batch {
            epoch,
            epochs,
            batch,
            batches,
            loss,
        } => format!("epoch {epoch} / {epochs}, batch {batch} / {batches}, loss {loss:.3}"),
        Progress::Epoch(e) => format!("epoch {} done", e.epoch),
        Progress::Export => "exporting ONNX and checking it against candle".into(),
    }
}

fn progress_fraction(p: &Progress) -> f64 {
    match p {
        Progress::Features { done, total, .. } => *done as f64 / (*total).max(1) as f64,
        Progress::Batch {
            epoch,
            epochs,
            batch,
            batches,
            ..
        } => {
            let b = *batch as f64 / (*batches).max(1) as f64;
            (((*epoch).max(1) - 1) as f64 + b) / (*epochs).max(1) as f64
        }
        _ => 1.0,
    }
}

fn epoch_series(epochs: &[Epoch]) -> (Vec<Series>, Vec<Series>) {
    let pts = |f: fn(&Epoch) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|e| (e.epoch as f64, f(e))).collect()
    };
    (
        vec![
            Series {
                name: "train loss",
                color: "#2b7bb9",
                points: pts(|e| e.train_loss),
            },
            Series {
                name: "validation loss",
                color: "#e8590c",
                points: pts(|e| e.val_loss),
            },
        ],
        vec![
            Series {
                name: "train accuracy",
                color: "#2b7bb9",
                points: pts(|e| e.train_accuracy),
            },
            Series {
                name: "validation accuracy",
                color: "#e8590c",
                points: pts(|e| e.val_accuracy),
            },
        ],
    )
}

#[component]
fn Models(admin: Admin) -> impl IntoView {
    let models = LocalResource::new(move || {
        admin.version.track();
        async move { net::get::<Vec<Model>>("/api/models?limit=20", None).await }
    });
    let selected = RwSignal::new(None::<String>);
    let act = move |id: String, what: &'static str| {
        leptos::task::spawn_local(async move {
            let url = format!("/api/models/{id}/{what}");
            match net::post::<Model>(&url, Some(&admin.token()), &json!({})).await {
                Ok(m) => admin
                    .message
                    .set(Some(format!("{what}: model {} is now the champion", m.id))),
                Err(e) => admin.message.set(Some(format!("{what} refused: {e}"))),
            }
            admin.changed();
        });
    };
    view! {
        <section class="panel">
            <h2>"Model versions"</h2>
            <Suspense fallback=|| view! { <p>"loading…"</p> }>
                {move || models.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(list) => {
                        let shown = selected.get()
                            .and_then(|id| list.iter().find(|m| m.id == id).cloned())
                            .or_else(|| list.iter().find(|m| m.stage == Stage::Champion).cloned())
                            .or_else(|| list.first().cloned());
                        view! {
                            <table class="list" data-testid="models">
                                <tr><th>"model"</th><th>"task"</th><th>"stage"</th><th>"accuracy / R@10"</th><th>"macro F1"</th><th>"baseline"</th><th>"test images"</th><th>"created"</th><th>"gate"</th><th></th></tr>
                                {list.into_iter().map(|m| {
                                    let metrics = m.manifest.metrics.clone();
                                    let rank = m.manifest.rank_metrics.clone();
                                    let task = m.manifest.task.as_str();
                                    let (id1, id2, id3) = (m.id.clone(), m.id.clone(), m.id.clone());
                                    let champion = m.stage == Stage::Champion;
                                    view! {
                                        <tr data-testid="model-row" data-id=m.id.clone() data-stage=m.stage.to_string()>
                                            <td><a href="#/admin" on:click=move |ev| { ev.prevent_default(); selected.set(Some(id1.clone())); }><code>{m.id.clone()}</code></a></td>
                                            <td>{task}</td>
                                            <td><span class=format!("pill stage-{}", m.stage)>{m.stage.to_string()}</span></td>
                                            <td>{metrics.as_ref().map(|x| pct(x.accuracy)).or_else(|| rank.as_ref().map(|r| pct(r.text_to_image.r10))).unwrap_or_default()}</td>
                                            <td>{metrics.as_ref().map(|x| format!("{:.3}", x.macro_f1)).unwrap_or_default()}</td>
                                            <td>{metrics.as_ref().map(|x| pct(x.majority_baseline)).or_else(|| rank.as_ref().map(|r| pct(r.bow_text_to_image.r10.max(r.random_text_to_image.r10)))).unwrap_or_default()}</td>
                                            <td>{metrics.as_ref().map(|x| x.n_test.to_string()).or_else(|| rank.as_ref().map(|r| r.n_images.to_string())).unwrap_or_default()}</td>
                                            <td>{when(m.created_at)}</td>
                                            <td class="reason" title=m.gate.reason.clone()>{if m.gate.promote { "passed" } else { "held back" }}</td>
                                            <td>
                                                {(!champion).then(|| view! { <button data-testid="promote" on:click=move |_| act(id2.clone(), "promote")>"Promote"</button> })}
                                                {champion.then(|| view! { <button data-testid="rollback" on:click=move |_| act(id3.clone(), "rollback")>"Roll back"</button> })}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </table>
                            {shown.map(|m| view! { <ModelDetail model=m/> })}
                        }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn ModelDetail(model: Model) -> impl IntoView {
    let history = LocalResource::new({
        let run = model.run_id.clone();
        move || {
            let run = run.clone();
            async move {
                match run {
                    Some(id) => net::get::<Run>(&format!("/api/train/{id}"), None)
                        .await
                        .map(|r| r.epochs)
                        .unwrap_or_default(),
                    None => Vec::new(),
                }
            }
        }
    });
    let labels = model.manifest.labels.clone();
    view! {
        <div class="detail" data-testid="model-detail" data-id=model.id.clone()>
            <h3>{format!("Model {}", model.id)}</h3>
            <p class="hint">{format!("gate: {}", model.gate.reason)}</p>
            {model.manifest.parent_model_id.clone().map(|p| view! { <p class="hint">{format!("trained after {p}")}</p> })}
            {model.manifest.metrics.clone().map(|m| view! {
                <div class="charts">
                    <div>
                        <h4>"Confusion matrix (test split)"</h4>
                        <Confusion labels=labels.clone() matrix=m.confusion.clone()/>
                    </div>
                    <div>
                        <h4>"Per class"</h4>
                        <table class="list" data-testid="per-class">
                            <tr><th>"label"</th><th>"images"</th><th>"precision"</th><th>"recall"</th><th>"F1"</th></tr>
                            {m.per_class.into_iter().map(|c| view! {
                                <tr><td>{c.label}</td><td>{c.support}</td><td>{format!("{:.2}", c.precision)}</td>
                                    <td>{format!("{:.2}", c.recall)}</td><td>{format!("{:.2}", c.f1)}</td></tr>
                            }).collect_view()}
                        </table>
                    </div>
                </div>
            })}
            {model.manifest.rank_metrics.clone().map(|r| {
                let row = |name: &'static str, x: Recall| view! {
                    <tr><td>{name}</td><td>{format!("{:.3}", x.r1)}</td><td>{format!("{:.3}", x.r5)}</td>
                        <td>{format!("{:.3}", x.r10)}</td><td>{format!("{:.1}", x.median_rank)}</td></tr>
                };
                view! {
                    <h4>{format!("Retrieval on the test split ({} images, {} captions)", r.n_images, r.n_texts)}</h4>
                    <table class="list" data-testid="rank-metrics">
                        <tr><th></th><th>"R@1"</th><th>"R@5"</th><th>"R@10"</th><th>"median rank"</th></tr>
                        {row("caption → image", r.text_to_image)}
                        {row("image → caption", r.image_to_text)}
                        {row("bag of words (caption → image)", r.bow_text_to_image)}
                        {row("chance (caption → image)", r.random_text_to_image)}
                    </table>
                }
            })}
            <Suspense fallback=|| ()>
                {move || history.get().filter(|h| !h.is_empty()).map(|h| {
                    let (loss, acc) = epoch_series(&h);
                    view! {
                        <h4>"Training curves"</h4>
                        <div class="charts">
                            <LineChart series=loss x_label="epoch" testid="model-loss-chart"/>
                            <LineChart series=acc x_label="epoch" y_range=(0.0, 1.0) testid="model-accuracy-chart"/>
                        </div>
                    }
                })}
            </Suspense>
        </div>
    }
}

/// One review decision for image `id`.
fn decision(id: &str, action: Action, label: Option<String>) -> Decision {
    Decision {
        id: id.to_string(),
        action,
        label,
    }
}
