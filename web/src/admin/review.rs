//! Review: the queue of pending images (with their captions; a detection image with its boxes,
//! which the admin can correct) and the queue of captions sent for images already approved.

use leptos::prelude::*;

use std::collections::HashMap;

use super::{Admin, CAPTION_PAGE, when};
use crate::boxes::BoxEditor;
use crate::net;
use contract::api::{
    Action, Caption, CaptionAction, CaptionDecision, CaptionPage, DatasetInfo as Dataset, Decision,
    ImageBox, ImagePage, ImageRow as Image, ReviewRequest,
};
use contract::{ImageStatus, Task};

#[component]
pub(super) fn Review(admin: Admin) -> impl IntoView {
    let queue = LocalResource::new(move || {
        admin.version.track();
        let token = admin.token.get();
        async move { net::get::<ImagePage>("/api/review?limit=48", Some(&token)).await }
    });
    // Each dataset's labels, and whether its images carry boxes.
    let labels = LocalResource::new(move || async move {
        net::get::<Vec<Dataset>>("/api/datasets", None)
            .await
            .ok()
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let names = d.labels.into_iter().map(|l| l.name).collect::<Vec<_>>();
                (d.id, (names, d.task == Task::Detect))
            })
            .collect::<HashMap<_, _>>()
    });
    // Boxes the admin edited but has not sent, by image: the queue is redrawn whenever it is
    // fetched again (a decision, a finished run), and the edits must outlive its cards.
    let edits: Edits = StoredValue::new(HashMap::new());
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
                                {page.images.into_iter().map(|img| {
                                    let (names, detect) = labels.get(&img.dataset_id).cloned().unwrap_or_default();
                                    if detect {
                                        view! { <BoxedCard img=img labels=names token=admin.token() decide=decide edits/> }.into_any()
                                    } else {
                                        view! { <ReviewCard img=img labels=names token=admin.token() decide=decide/> }.into_any()
                                    }
                                }).collect_view()}
                            </div>
                        }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Unsent box edits by image id (see [`Review`]).
type Edits = StoredValue<HashMap<String, Vec<ImageBox>>>;

#[component]
pub(super) fn ReviewCard(
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
            <select data-testid="card-label" aria-label=format!("Label of {}", img.filename) prop:value=move || label.get() on:change=move |ev| label.set(event_target_value(&ev))>
                {labels.into_iter().map(|l| view! { <option value=l.clone()>{l.clone()}</option> }).collect_view()}
            </select>
            <div class="buttons">
                <button data-testid="approve" aria-label=format!("Approve {}", img.filename) on:click=approve>"Approve"</button>
                <button data-testid="reject" aria-label=format!("Reject {}", img.filename) on:click=reject>"Reject"</button>
                <button data-testid="relabel" aria-label=format!("Save the label of {}", img.filename) hidden=move || !changed() on:click=relabel>"Save label"</button>
            </div>
        </div>
    }
}

/// A pending image of a detection dataset: its boxes drawn over it, correctable (drawn again,
/// relabelled, deleted) before it is approved; the corrected boxes replace the sent ones.
#[component]
pub(super) fn BoxedCard(
    img: Image,
    labels: Vec<String>,
    token: String,
    decide: impl Fn(Vec<Decision>) + Copy + 'static,
    edits: Edits,
) -> impl IntoView {
    let kept = edits.with_value(|m| m.get(&img.id).cloned());
    let boxes = RwSignal::new(kept.unwrap_or_else(|| img.boxes.clone()));
    let sent = img.boxes.clone();
    let (id, unsent) = (img.id.clone(), sent.clone());
    Effect::new(move |_| {
        let now = boxes.get();
        edits.update_value(|m| {
            if now == unsent {
                m.remove(&id);
            } else {
                m.insert(id.clone(), now);
            }
        });
    });
    let changed = move || boxes.get() != sent;
    let (a, r, s) = (img.id.clone(), img.id.clone(), img.id.clone());
    let with_boxes = move |id: &str, action: Action| {
        let drawn: Vec<ImageBox> = boxes.get_untracked();
        Decision {
            boxes: Some(drawn),
            ..decision(id, action, None)
        }
    };
    let approve = move |_| decide(vec![with_boxes(&a, Action::Approve)]);
    let reject = move |_| decide(vec![decision(&r, Action::Reject, None)]);
    let save = move |_| decide(vec![with_boxes(&s, Action::Relabel)]);
    let src = protected(&img.id, token);
    let size = (
        u32::try_from(img.width).unwrap_or(1),
        u32::try_from(img.height).unwrap_or(1),
    );
    view! {
        <div class="card wide" data-testid="review-card" data-file=img.filename.clone() data-id=img.id.clone()>
            {move || src.get().map(|u| view! {
                <BoxEditor src=u size labels=labels.clone() boxes name="review"/>
            })}
            <div class="meta">{img.filename.clone()} <br/> {format!("{}×{} · by {}", img.width, img.height, img.uploader)}</div>
            <div class="buttons">
                <button data-testid="approve" aria-label=format!("Approve {} with its boxes", img.filename) disabled=move || boxes.get().is_empty() on:click=approve>"Approve"</button>
                <button data-testid="reject" aria-label=format!("Reject {}", img.filename) on:click=reject>"Reject"</button>
                <button data-testid="save-boxes" aria-label=format!("Save the boxes of {}", img.filename) hidden=move || !changed() on:click=save>"Save boxes"</button>
            </div>
        </div>
    }
}

/// A protected image, fetched with the token into a blob URL (the token never goes into a URL);
/// the URL is revoked when the component that asked leaves the page.
fn protected(image_id: &str, token: String) -> RwSignal<Option<String>> {
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
    src
}

/// A protected image's thumbnail.
#[component]
pub(super) fn Thumb(image_id: String, token: String, alt: String) -> impl IntoView {
    let src = protected(&image_id, token);
    move || {
        src.get()
            .map(|s| view! { <img class="thumb" src=s alt=alt.clone()/> })
    }
}

/// Captions sent for images that are already approved, waiting for review (oldest first).
/// Captions of images still pending are decided with their image in the review queue.
#[component]
pub(super) fn CaptionQueue(admin: Admin) -> impl IntoView {
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
pub(super) fn CaptionRow(
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
pub(super) fn caption_summary(captions: &[Caption]) -> Option<String> {
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

/// One review decision for image `id`.
fn decision(id: &str, action: Action, label: Option<String>) -> Decision {
    Decision {
        id: id.to_string(),
        action,
        label,
        boxes: None,
    }
}
