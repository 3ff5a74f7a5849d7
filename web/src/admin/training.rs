//! Training and models: retrain with live curves, model versions with metrics and confusion
//! matrix, promote and rollback.

use leptos::prelude::*;
use serde_json::json;

use super::gate::{GateView, verdict_word};
use super::{Admin, pct, when};
use crate::chart::{Confusion, LineChart, Series};
use crate::net;
use contract::api::{
    EpochMetrics as Epoch, ModelInfo as Model, Progress, RunInfo as Run, TrainRequest,
};
use contract::{ModalityScores, ProductMetrics, Recall, Stage};

#[component]
pub(super) fn Training(admin: Admin) -> impl IntoView {
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
                        <div class="scroll" tabindex="0" role="region" aria-label="Recent runs">
                            <table class="list" data-testid="runs">
                                <tr><th>"run"</th><th>"status"</th><th>"why"</th><th>"images"</th><th>"model"</th><th>"started"</th></tr>
                                {list.into_iter().map(|r| view! {
                                    <tr><td><code>{r.id.clone()}</code></td><td>{r.status.to_string()}</td><td>{r.reason.clone()}</td>
                                        <td>{r.images.map(|n| n.to_string()).unwrap_or_default()}</td>
                                        <td><code>{r.model_id.clone().unwrap_or_default()}</code></td><td>{when(r.created_at)}</td></tr>
                                }).collect_view()}
                            </table>
                        </div>
                    }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// A `progress` event: the batch-loss curve grows, the run shows the latest stage.
pub(super) fn apply_progress(
    run: RwSignal<Option<Run>>,
    batches: RwSignal<Vec<(f64, f64)>>,
    p: Progress,
) {
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
        Progress::Evaluate { fold, folds } => {
            format!("cross-validating for the gate: fold {fold} / {folds}")
        }
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
pub(super) fn Models(admin: Admin) -> impl IntoView {
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
                            <div class="scroll" tabindex="0" role="region" aria-label="Model versions">
                                <table class="list" data-testid="models">
                                    <tr><th>"model"</th><th>"task"</th><th>"stage"</th><th>"accuracy / R@10"</th><th>"macro F1"</th><th>"baseline"</th><th>"test items"</th><th>"created"</th><th>"gate"</th><th><span class="sr-only">"actions"</span></th></tr>
                                    {list.into_iter().map(|m| {
                                        let metrics = m.manifest.metrics.clone();
                                        let rank = m.manifest.rank_metrics.clone();
                                        // Products: title + image, the figures the gate reads.
                                        let product = m.manifest.product_metrics.clone();
                                        let both = product.as_ref().map(|p| p.both.clone());
                                        let task = m.manifest.task.as_str();
                                        let (id1, id2, id3) = (m.id.clone(), m.id.clone(), m.id.clone());
                                        let champion = m.stage == Stage::Champion;
                                        view! {
                                            <tr data-testid="model-row" data-id=m.id.clone() data-stage=m.stage.to_string()>
                                                <td><a href="#/admin" on:click=move |ev| { ev.prevent_default(); selected.set(Some(id1.clone())); }><code>{m.id.clone()}</code></a></td>
                                                <td>{task}</td>
                                                <td><span class=format!("pill stage-{}", m.stage)>{m.stage.to_string()}</span></td>
                                                <td>{metrics.as_ref().map(|x| pct(x.accuracy)).or_else(|| rank.as_ref().map(|r| pct(r.text_to_image.r10))).or_else(|| both.as_ref().map(|b| pct(b.accuracy))).unwrap_or_default()}</td>
                                                <td>{metrics.as_ref().map(|x| format!("{:.3}", x.macro_f1)).or_else(|| both.as_ref().map(|b| format!("{:.3}", b.macro_f1))).unwrap_or_default()}</td>
                                                <td>{metrics.as_ref().map(|x| pct(x.majority_baseline)).or_else(|| rank.as_ref().map(|r| pct(r.bow_text_to_image.r10.max(r.random_text_to_image.r10)))).or_else(|| product.as_ref().map(|p| pct(p.majority_baseline))).unwrap_or_default()}</td>
                                                <td>{metrics.as_ref().map(|x| x.n_test.to_string()).or_else(|| rank.as_ref().map(|r| r.n_images.to_string())).or_else(|| both.as_ref().map(|b| b.n.to_string())).unwrap_or_default()}</td>
                                                <td>{when(m.created_at)}</td>
                                                <td class="reason" title=m.gate.reason.clone() data-testid="model-verdict">{verdict_word(&m.gate)}</td>
                                                <td>
                                                    {(!champion).then(|| view! { <button data-testid="promote" on:click=move |_| act(id2.clone(), "promote")>"Promote"</button> })}
                                                    {champion.then(|| view! { <button data-testid="rollback" on:click=move |_| act(id3.clone(), "rollback")>"Roll back"</button> })}
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </table>
                            </div>
                            {shown.map(|m| view! { <ModelDetail model=m/> })}
                        }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
pub(super) fn ModelDetail(model: Model) -> impl IntoView {
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
            <GateView gate=model.gate.clone()/>
            {model.manifest.parent_model_id.clone().map(|p| view! { <p class="hint">{format!("trained after {p}")}</p> })}
            {model.manifest.metrics.clone().map(|m| view! {
                <div class="charts">
                    <div>
                        <h4>"Confusion matrix (test split)"</h4>
                        <Confusion labels=labels.clone() matrix=m.confusion.clone()/>
                    </div>
                    <div>
                        <h4>"Per class"</h4>
                        <div class="scroll" tabindex="0" role="region" aria-label="Per-class metrics">
                            <table class="list" data-testid="per-class">
                                <tr><th>"label"</th><th>"images"</th><th>"precision"</th><th>"recall"</th><th>"F1"</th></tr>
                                {m.per_class.into_iter().map(|c| view! {
                                    <tr><td>{c.label}</td><td>{c.support}</td><td>{format!("{:.2}", c.precision)}</td>
                                        <td>{format!("{:.2}", c.recall)}</td><td>{format!("{:.2}", c.f1)}</td></tr>
                                }).collect_view()}
                            </table>
                        </div>
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
                    <div class="scroll" tabindex="0" role="region" aria-label="Ranking metrics">
                        <table class="list" data-testid="rank-metrics">
                            <tr><th>"direction"</th><th>"R@1"</th><th>"R@5"</th><th>"R@10"</th><th>"median rank"</th></tr>
                            {row("caption → image", r.text_to_image)}
                            {row("image → caption", r.image_to_text)}
                            {row("bag of words (caption → image)", r.bow_text_to_image)}
                            {row("chance (caption → image)", r.random_text_to_image)}
                        </table>
                    </div>
                }
            })}
            {model.manifest.product_metrics.clone().map(|p| view! { <ProductFigures metrics=p/> })}
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

/// A product model's figures on its test items: the three modalities side by side (the gate
/// reads weighted F1 of title + image), then F1 per category in each.
#[component]
fn ProductFigures(metrics: ProductMetrics) -> impl IntoView {
    let modalities = [
        ("title only", metrics.text.clone()),
        ("image only", metrics.image.clone()),
        ("title + image", metrics.both.clone()),
    ];
    let f1 = |s: &ModalityScores, label: &str| {
        s.per_class
            .iter()
            .find(|c| c.label == label)
            .map(|c| format!("{:.2}", c.f1))
            .unwrap_or_default()
    };
    let rows: Vec<_> = metrics
        .both
        .per_class
        .iter()
        .map(|c| {
            (
                c.label.clone(),
                c.support,
                f1(&metrics.text, &c.label),
                f1(&metrics.image, &c.label),
                format!("{:.2}", c.f1),
            )
        })
        .collect();
    view! {
        <h4>{format!("Products on the test split ({} items with a title and an image)", metrics.both.n)}</h4>
        <div class="charts">
            <div class="scroll" tabindex="0" role="region" aria-label="Product metrics">
                <table class="list" data-testid="product-metrics">
                    <tr><th>"input"</th><th>"accuracy"</th><th>"weighted F1"</th><th>"macro F1"</th></tr>
                    {modalities.into_iter().map(|(name, s)| view! {
                        <tr><td>{name}</td><td>{pct(s.accuracy)}</td><td>{format!("{:.3}", s.weighted_f1)}</td><td>{format!("{:.3}", s.macro_f1)}</td></tr>
                    }).collect_view()}
                    <tr><td>"majority class"</td><td>{pct(metrics.majority_baseline)}</td><td></td><td></td></tr>
                </table>
            </div>
            <div class="scroll" tabindex="0" role="region" aria-label="Product F1 per category">
                <table class="list" data-testid="product-per-class">
                    <tr><th>"category"</th><th>"items"</th><th>"F1 title"</th><th>"F1 image"</th><th>"F1 both"</th></tr>
                    {rows.into_iter().map(|(label, n, t, i, b)| view! {
                        <tr><td>{label}</td><td>{n}</td><td>{t}</td><td>{i}</td><td>{b}</td></tr>
                    }).collect_view()}
                </table>
            </div>
        </div>
    }
}
