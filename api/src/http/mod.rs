//! The HTTP surface, one module per resource: [`datasets`], [`images`] (uploads, review,
//! blobs), [`training`] (runs and their SSE progress), [`models`] (registry and downloads),
//! [`predict`], [`ops`] (health, metrics, OpenAPI, docs page); [`extract`] holds what handlers
//! take from requests (JSON-error extractors, admin auth, multipart forms); [`guard`] what
//! bounds them (client identity, per-client quotas, requests in flight, body memory,
//! deadlines); `close` marks answers given before their request body was read
//! (`Connection: close`). This module builds the router: routes, body limits and timeouts, quotas,
//! security headers, compression, metrics, CORS and the static web app.

mod close;
pub mod datasets;
pub mod extract;
pub mod guard;
pub mod images;
pub mod models;
pub mod ops;
pub mod predict;
pub mod training;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::time::Duration;

use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{
    DefaultPredicate, NotForContentType, Predicate, SizeAbove,
};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

pub use extract::{Admin, J, MaybeAdmin, P, Q, Shared, check_bearer};
pub use models::{ByteRange, parse_range};
pub use ops::ApiDoc;

use crate::Error;
use crate::error::ErrorBody;
use crate::state::AppState;
use guard::Metered;

/// Content-Security-Policy: same-origin everything, wasm compilation allowed.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
img-src 'self' blob: data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; \
frame-ancestors 'none'; form-action 'self'";

/// Refuse bodies whose declared length exceeds the limit before reading any of them (bodies
/// without a length are cut off by `DefaultBodyLimit` while streaming).
async fn declared_length_limit(
    State(max): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max as u64
    {
        return Error::TooLarge(format!(
            "request body of {len} bytes exceeds the {max}-byte limit"
        ))
        .into_response();
    }
    next.run(req).await
}

async fn api_not_found(uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("no route {}", uri.path()))
}

async fn method_not_allowed() -> Response {
    let body = Json(ErrorBody {
        error: "method_not_allowed".into(),
        detail: "method not allowed on this route".into(),
        request_id: None,
    });
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

/// Whether a static path names its content (`name-<12+ hex>.ext`, as `scripts/build-web.sh`
/// writes every file but the entry points): such a file never changes.
pub fn is_content_named(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    stem.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty() && hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Static files: content-named ones are cached for a year, the rest (index.html, sw.js,
/// manifest) revalidated on every use, so a deployment is picked up at once.
async fn static_cache_control(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let immutable = is_content_named(req.uri().path());
    let mut resp = next.run(req).await;
    if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
        let value = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    resp
}

/// The `/api` routes, in two groups under one cap on requests in flight: uploads and
/// predictions (bodies up to `MAX_UPLOAD_BYTES`, a larger declared length refused before
/// reading; per-client quotas unless the admin token is sent; body memory budget; the upload
/// deadline) and everything else (1 MiB bodies, the ordinary deadline; progress streams are
/// bounded by their own subscriber cap once their head is sent). Every request body that
/// stalls longer than `BODY_IDLE_TIMEOUT_SECS` is cut off.
fn api_routes(st: &Shared) -> Router<Shared> {
    let cfg = &st.cfg;
    let body_limit = DefaultBodyLimit::max(cfg.max_upload_bytes);
    let declared_limit =
        axum::middleware::from_fn_with_state(cfg.max_upload_bytes, declared_length_limit);
    let budget = axum::middleware::from_fn_with_state(st.clone(), guard::body_budget);
    let meter = |m: Metered| axum::middleware::from_fn_with_state((st.clone(), m), guard::meter);
    let admit = |secs: u64| {
        axum::middleware::from_fn_with_state((st.clone(), Duration::from_secs(secs)), guard::admit)
    };
    let bodies = Router::new()
        .route(
            "/datasets/{id}/images",
            post(images::upload)
                .layer::<_, std::convert::Infallible>(budget.clone())
                .layer(body_limit)
                .layer(meter(Metered::Upload))
                .layer(declared_limit.clone()),
        )
        .route(
            "/datasets/{id}/coco",
            post(images::import_coco)
                .layer::<_, std::convert::Infallible>(budget.clone())
                .layer(body_limit)
                .layer(meter(Metered::Upload))
                .layer(declared_limit.clone())
                .get(datasets::export_coco),
        )
        .route(
            "/predict",
            post(predict::predict_handler)
                .layer::<_, std::convert::Infallible>(budget)
                .layer(body_limit)
                .layer(meter(Metered::Predict))
                .layer(declared_limit),
        )
        .layer(admit(cfg.upload_timeout_secs));
    let ordinary = Router::new()
        .route(
            "/datasets",
            get(datasets::list_datasets).post(datasets::create_dataset),
        )
        .route("/datasets/{id}", get(datasets::get_dataset))
        .route("/datasets/{id}/labels", post(datasets::add_label))
        .route("/images", get(images::list_images))
        .route("/images/status", get(images::image_statuses))
        .route("/images/{id}", get(images::get_image))
        .route("/images/{id}/blob", get(images::image_blob))
        .route("/review", get(images::review_queue).post(images::review))
        .route("/review/captions", get(images::caption_queue))
        .route(
            "/train",
            get(training::list_runs).post(training::start_training),
        )
        .route("/train/{id}", get(training::get_run))
        .route("/train/{id}/cancel", post(training::cancel_run))
        .route("/train/{id}/events", get(training::run_events))
        .route("/models", get(models::list_models))
        .route("/models/current", get(models::current_model))
        .route("/models/{id}", get(models::get_model))
        .route("/models/{id}/promote", post(models::promote))
        .route("/models/{id}/rollback", post(models::rollback))
        .route("/models/{id}/{file}", get(models::model_file))
        .route("/backbones/{file}", get(models::backbone_file))
        .route("/limits", get(ops::limits))
        .route("/openapi.json", get(ops::openapi_json))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(admit(cfg.request_timeout_secs));
    bodies
        .merge(ordinary)
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
            cfg.body_idle_timeout_secs,
        )))
}

/// The built web app at `/` when `STATIC_DIR` has an `index.html` (unknown paths get the
/// index, for client-side routes); otherwise `/` leads to the docs page.
fn with_static_files(app: Router<Shared>, st: &AppState) -> Router<Shared> {
    let dir = &st.cfg.static_dir;
    if !dir.join("index.html").is_file() {
        return app
            .route(
                "/",
                get(|| async { axum::response::Redirect::temporary("/docs") }),
            )
            .fallback(api_not_found);
    }
    let index = ServeFile::new(dir.join("index.html"));
    let files = Router::new()
        .fallback_service(
            ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .fallback(index),
        )
        .layer(axum::middleware::from_fn(static_cache_control));
    app.merge(files)
}

/// Layers every response passes: client identification, metrics, compression (not of opaque
/// binaries), security headers, tracing, and CORS when `CORS_ORIGINS` lists origins.
fn with_layers(app: Router<Shared>, st: &Shared) -> Router<Shared> {
    let compress = DefaultPredicate::new()
        .and(NotForContentType::const_new("application/octet-stream"))
        .and(SizeAbove::new(1024));
    let headers = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    let mut app = app
        .layer(axum::middleware::from_fn_with_state(
            st.metrics.clone(),
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            guard::identify,
        ))
        .layer(CompressionLayer::new().compress_when(compress));
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    let app = app
        .layer(axum::middleware::from_fn(close::close_if_unread))
        .layer(TraceLayer::new_for_http());
    if st.cfg.cors_origins.is_empty() {
        return app;
    }
    let origins: Vec<HeaderValue> = st
        .cfg
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// The standalone training worker's HTTP surface (`api worker --metrics-listen`): `GET /metrics`
/// (its training runs and durations, feature cache, storage and database calls, process, and
/// the shared queue) and `GET /health`; nothing else.
pub fn worker_router(st: Shared) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/health", get(ops::health))
        .with_state(st)
}

/// Build the full router for a state.
pub fn router(st: Shared) -> Router {
    let app = Router::new()
        .nest("/api", api_routes(&st))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/docs", get(ops::docs_page))
        .route("/docs/docs.js", get(ops::docs_js));
    let app = with_static_files(app, &st);
    with_layers(app, &st).with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_named_files() {
        assert!(is_content_named("/app/web_bg-764b39e9ec82.wasm"));
        assert!(is_content_named(
            "/app/snippets/web-67aca56aae793faf/js/glue-9663dc0fd55e.js"
        ));
        assert!(!is_content_named("/index.html"));
        assert!(!is_content_named("/sw.js"));
        assert!(!is_content_named("/app/web-1234.js"));
        assert!(!is_content_named("/app/my-beautiful-page.js"));
        assert!(!is_content_named("/-764b39e9ec82.wasm"));
    }
}
