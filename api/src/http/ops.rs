//! Operations routes: `/health` (liveness: answers without touching anything), `/ready`
//! (database round trip and a storage probe cached for a few seconds), `/metrics`
//! (Prometheus), `/api/limits`, the OpenAPI document of every route and the offline docs page
//! that renders it.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::OpenApi;

use super::extract::Shared;
use super::{datasets, images, models, predict, training};
pub use contract::api::{Check, Health, Limits, Liveness};

use crate::Result;
use crate::error::ErrorBody;
use crate::registry;
use crate::state::AppState;

/// Run one probe with a 5 s deadline and time it.
async fn probe<F: std::future::Future<Output = Result<()>>>(f: F) -> Check {
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), f).await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let error = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out after 5 s".into()),
    };
    Check {
        ok: error.is_none(),
        ms,
        error,
    }
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Liveness, description = "the process answers (no dependency is probed)")))]
pub(super) async fn health() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// How long a storage probe's result is reused.
const STORAGE_PROBE_TTL: Duration = Duration::from_secs(10);

/// The storage probe, run at most once per [`STORAGE_PROBE_TTL`].
async fn storage_check(st: &Shared) -> Check {
    if let Ok(cached) = st.storage_probe.lock()
        && let Some((at, r)) = cached.as_ref()
        && at.elapsed() < STORAGE_PROBE_TTL
    {
        return match r {
            Ok(ms) => Check {
                ok: true,
                ms: *ms,
                error: None,
            },
            Err(e) => Check {
                ok: false,
                ms: 0.0,
                error: Some(e.clone()),
            },
        };
    }
    let c = probe(st.storage.check()).await;
    if let Ok(mut cached) = st.storage_probe.lock() {
        let r = match &c.error {
            None => Ok(c.ms),
            Some(e) => Err(e.clone()),
        };
        *cached = Some((Instant::now(), r));
    }
    c
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health, description = "the database or storage is failing")))]
pub(super) async fn ready(State(st): State<Shared>) -> (StatusCode, Json<Health>) {
    let database = probe(st.db.check()).await;
    let storage = storage_check(&st).await;
    let model = if database.ok {
        registry::current(&st.db, "classify")
            .await
            .ok()
            .flatten()
            .map(|m| m.id)
    } else {
        None
    };
    let ok = database.ok && storage.ok;
    let h = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        database,
        storage,
        model,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(h))
}

#[utoipa::path(get, path = "/api/limits", tag = "operations",
    responses((status = 200, body = Limits, description = "what the server accepts; clients check before sending")))]
pub(super) async fn limits(State(st): State<Shared>) -> Json<Limits> {
    Json(st.public_limits())
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
pub(super) async fn metrics(State(st): State<Shared>) -> Result<Response> {
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        scrape(&st).await?,
    )
        .into_response())
}

/// This process's metrics in the Prometheus text format. The champion and the training queue
/// are read from the database at scrape time (another server or a worker may have changed
/// them), so every server and worker reports the same queue.
pub async fn scrape(st: &AppState) -> Result<String> {
    if let Some(m) = registry::current(&st.db, "classify").await? {
        st.metrics.set_model("classify", &m.id);
    }
    let queue = crate::jobs::queue::stats(&st.db).await?;
    st.metrics.set_queue(queue, crate::util::now_ms());
    st.metrics.render()
}

/// Declares the `bearer` security scheme the admin routes name.
struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("ADMIN_TOKEN"))
                    .build(),
            ),
        );
    }
}

/// States the refusals every route can give (they come from layers, not from the handler): a
/// malformed request (400), the deadline (408), the server at capacity (503); on admin routes a
/// missing (401) or wrong (403) token; on routes with a path id an unknown one (404); on
/// routes with a body one over the limit (413).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |text: &str| {
            ResponseBuilder::new()
                .description(text)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                let admin = op.security.as_ref().is_some_and(|reqs| {
                    reqs.iter()
                        .any(|r| serde_json::to_string(r).is_ok_and(|j| j.contains("\"bearer\"")))
                });
                let mut add = vec![
                    ("400", "malformed request (query, path, headers or body)"),
                    ("408", "the request took longer than its deadline"),
                    (
                        "503",
                        "the server is at a capacity limit (requests in flight, body or decode memory); see Retry-After",
                    ),
                ];
                if admin {
                    add.push(("401", "no admin token, or not a bearer token"));
                    add.push(("403", "wrong admin token"));
                }
                if path.contains('{') {
                    add.push(("404", "no such resource"));
                }
                if op.request_body.is_some() {
                    add.push(("413", "body larger than the limit"));
                }
                for (code, text) in add {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(text).into());
                }
            }
        }
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "edgeml api", description = "Labeled uploads, review, retraining, model registry and predictions. \
        Browsers download the shared backbone once from /api/backbones/{sha256}.q8 (NNEF, 8-bit weights) and the champion's \
        small head from /api/models/{id}/head.nnef, and classify locally."),
    paths(images::upload, images::import_coco, datasets::export_coco, datasets::list_datasets, datasets::create_dataset, datasets::get_dataset, datasets::add_label,
        images::list_images, images::image_statuses, images::get_image, images::image_blob,
        images::review_queue, images::caption_queue, images::review, training::start_training, training::list_runs, training::get_run,
        training::cancel_run, training::run_events,
        models::list_models, models::current_model, models::get_model, models::promote, models::rollback, models::model_file, models::backbone_file,
        predict::predict_handler, health, ready, metrics, limits),
    components(schemas(ErrorBody, images::UploadResponse, crate::images::Uploaded, datasets::NewDataset, datasets::NewLabel,
        images::ReviewRequest, images::ReviewResponse, crate::images::Decision,
        crate::images::Action, crate::images::CaptionDecision, crate::images::CaptionAction, crate::images::Caption,
        crate::images::CaptionPage, Limits, Liveness, training::TrainRequest, crate::jobs::RunInfo, registry::ModelInfo, registry::GateDecision,
        crate::predict::PredictResponse, Health, Check,
        crate::images::DatasetInfo, crate::images::LabelCount, crate::images::ImageStatus, crate::images::ImageRow,
        crate::images::ImagePage)),
    modifiers(&SecurityAddon, &CommonResponses),
    tags((name = "images", description = "datasets, labels and uploads"), (name = "review", description = "admin label review"),
        (name = "training", description = "retrain jobs and live progress"), (name = "models", description = "registry, promotion, downloads"),
        (name = "predict", description = "server-side fallback prediction"), (name = "operations", description = "health, readiness, metrics and limits"))
)]
pub struct ApiDoc;

pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub(super) async fn docs_page() -> Html<&'static str> {
    Html(include_str!("../docs.html"))
}

pub(super) async fn docs_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../docs.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document is part of the contract: a change to it must be deliberate
    /// (`UPDATE_OPENAPI=1 cargo test --release -p api --lib openapi` rewrites the snapshot).
    #[test]
    fn openapi_document_matches_the_snapshot() {
        let now = ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &now).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            now == want,
            "the OpenAPI document changed; if that is intended, rerun with UPDATE_OPENAPI=1 and review the diff of {path}"
        );
    }
}
