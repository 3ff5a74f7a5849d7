//! The HTTP surface: router, thin handlers over the plain functions in the other modules,
//! admin auth, upload rate limit, model downloads with ETag/Range/304, SSE progress,
//! OpenAPI + docs page, metrics, health, security headers, compression, static web app.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, Multipart, Path, Query, State,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{
    DefaultPredicate, NotForContentType, Predicate, SizeAbove,
};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::error::ErrorBody;
use crate::images::{
    self, Decision, ImagePage, ImageQuery, ImageRow, UploadFile, Uploaded, Uploader,
};
use crate::jobs::{self, RunInfo};
use crate::predict::{self, PredictResponse};
use crate::registry::{self, ModelInfo};
use crate::storage::{image_key, is_safe_id, model_key};
use crate::{Error, Result};

type Shared = Arc<AppState>;

/// Content-Security-Policy: same-origin everything, wasm compilation allowed.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
img-src 'self' blob: data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; \
frame-ancestors 'none'; form-action 'self'";

// ---------------------------------------------------------------------------------------------
// extractors whose rejections are `{error, detail}` JSON like every other error

/// `Query` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Query), rejection(Error))]
pub struct Q<T>(pub T);

/// `Path` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Path), rejection(Error))]
pub struct P<T>(pub T);

/// `Json` with JSON errors.
#[derive(axum::extract::FromRequest)]
#[from_request(via(Json), rejection(Error))]
pub struct J<T>(pub T);

// ---------------------------------------------------------------------------------------------
// auth

/// An authenticated admin (valid `Authorization: Bearer <ADMIN_TOKEN>`).
#[derive(Debug, Clone)]
pub struct Admin;

/// Check an `Authorization` header against the admin token: `Ok(false)` when absent.
pub fn check_bearer(headers: &HeaderMap, token: &str) -> Result<bool> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(false);
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("Authorization must be 'Bearer <admin token>'".into())
        })?;
    if crate::util::ct_eq(given.trim(), token) {
        Ok(true)
    } else {
        Err(Error::Forbidden("wrong admin token".into()))
    }
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        if check_bearer(&parts.headers, &state.admin_token)? {
            Ok(Admin)
        } else {
            Err(Error::Unauthorized(
                "this route needs the admin token (Authorization: Bearer …)".into(),
            ))
        }
    }
}

/// Optional admin: no header → not admin; a wrong token is still refused.
#[derive(Debug, Clone, Copy)]
pub struct MaybeAdmin(pub bool);

impl FromRequestParts<Shared> for MaybeAdmin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        Ok(MaybeAdmin(check_bearer(
            &parts.headers,
            &state.admin_token,
        )?))
    }
}

// ---------------------------------------------------------------------------------------------
// rate limit

/// Per-IP token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_min` requests per minute, bursts of `burst`.
    pub fn new(per_min: u32, burst: u32) -> Self {
        RateLimiter {
            per_sec: f64::from(per_min) / 60.0,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `ip`, or say how many seconds until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<()> {
        let now = Instant::now();
        let mut b = self
            .buckets
            .lock()
            .map_err(|_| Error::Internal("rate limiter poisoned".into()))?;
        if b.len() > 100_000 {
            let burst = self.burst;
            let per_sec = self.per_sec;
            b.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * per_sec < burst);
        }
        let (tokens, at) = b.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Error::RateLimited(
                ((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64,
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// multipart

struct Form {
    fields: HashMap<String, String>,
    files: Vec<UploadFile>,
}

async fn read_form(mut mp: Multipart, max_files: usize) -> Result<Form> {
    let mut form = Form {
        fields: HashMap::new(),
        files: Vec::new(),
    };
    while let Some(field) = mp.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            Some(filename) => {
                if form.files.len() >= max_files {
                    return Err(Error::TooLarge(format!(
                        "at most {max_files} files per request"
                    )));
                }
                images::validate_filename(&filename)?;
                let bytes = field.bytes().await?;
                let filename = if filename.is_empty() {
                    "upload".to_string()
                } else {
                    filename
                };
                form.files.push(UploadFile { filename, bytes });
            }
            None => {
                let text = field.text().await?;
                if text.len() > 1024 {
                    return Err(Error::BadRequest(format!("field {name:?} is too long")));
                }
                form.fields.insert(name, text);
            }
        }
    }
    Ok(form)
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// Label for every file in the request.
    label: String,
    /// Optional caption for every file in the request (for image-text ranking), ≤ 500 chars.
    caption: Option<String>,
    /// One or more image files (PNG, JPEG, WebP, GIF, BMP).
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PredictForm {
    /// The image.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// handlers: datasets and images

/// Upload result.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadResponse {
    /// Dataset.
    pub dataset_id: String,
    /// Label applied.
    pub label: String,
    /// Per-file results.
    pub images: Vec<Uploaded>,
    /// A retrain queued because enough images are now approved.
    pub auto_retrain: Option<String>,
}

#[utoipa::path(post, path = "/api/datasets/{id}/images", tag = "images",
    params(("id" = String, Path, description = "dataset id"), ("X-Uploader" = Option<String>, Header, description = "uploader name")),
    request_body(content = inline(UploadForm), content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse, description = "stored (pending unless the admin token was sent)"), (status = 200, body = UploadResponse, description = "every file was already in the dataset: nothing stored"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security((), ("bearer" = [])))]
async fn upload(
    State(st): State<Shared>,
    MaybeAdmin(admin): MaybeAdmin,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    P(dataset_id): P<String>,
    headers: HeaderMap,
    mp: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>)> {
    st.limiter.check(peer.ip())?;
    let result = async {
        let form = read_form(mp?, st.cfg.max_files).await?;
        let name = match headers.get("x-uploader").map(|v| v.to_str()) {
            Some(Ok(n)) => {
                images::validate_uploader(n)?;
                n.to_string()
            }
            Some(Err(_)) => return Err(Error::BadRequest("X-Uploader must be ASCII".into())),
            None if admin => "admin".into(),
            None => "anonymous".into(),
        };
        let uploader = Uploader { name, admin };
        upload_files(&st, &dataset_id, form, &uploader).await
    }
    .await;
    if result.is_err() {
        st.metrics.uploads.with_label_values(&["rejected"]).inc();
    }
    result
}

/// Validate and store the files of an upload form (the plain logic behind the handler).
async fn upload_files(
    st: &AppState,
    dataset_id: &str,
    form: Form,
    uploader: &Uploader,
) -> Result<(StatusCode, Json<UploadResponse>)> {
    images::require_dataset(&st.db, dataset_id).await?;
    let label = form
        .fields
        .get("label")
        .cloned()
        .ok_or_else(|| Error::BadRequest("missing 'label' field".into()))?;
    if form.files.is_empty() {
        return Err(Error::BadRequest(
            "no files in the request (send one or more file fields)".into(),
        ));
    }
    let limits = st.limits();
    let caption = form.fields.get("caption").cloned();
    if let Some(c) = &caption {
        images::validate_caption(c)?;
    }
    let checked = tokio::task::spawn_blocking(move || {
        form.files
            .into_iter()
            .map(|f| {
                let mut c = images::check_image(&f.filename, f.bytes, limits)?;
                c.captions.extend(caption.clone());
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let stored = images::ingest(&st.db, &st.storage, dataset_id, &label, checked, uploader).await?;
    let fresh = stored.iter().filter(|u| !u.duplicate).count();
    st.metrics
        .uploads
        .with_label_values(&["stored"])
        .inc_by(fresh as u64);
    st.metrics
        .uploads
        .with_label_values(&["duplicate"])
        .inc_by((stored.len() - fresh) as u64);
    let auto = if uploader.admin {
        st.auto_retrain(dataset_id).await
    } else {
        None
    };
    let status = if fresh > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(UploadResponse {
            dataset_id: dataset_id.to_string(),
            label,
            images: stored,
            auto_retrain: auto,
        }),
    ))
}

/// Dataset creation request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewDataset {
    /// Unique name.
    pub name: String,
    /// Initial labels.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Label creation request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewLabel {
    /// Label.
    pub name: String,
}

#[utoipa::path(get, path = "/api/datasets", tag = "images", responses((status = 200, body = Vec<images::DatasetInfo>)))]
async fn list_datasets(State(st): State<Shared>) -> Result<Json<Vec<images::DatasetInfo>>> {
    Ok(Json(images::list_datasets(&st.db).await?))
}

#[utoipa::path(post, path = "/api/datasets", tag = "images", request_body = NewDataset,
    responses((status = 201, body = images::DatasetInfo), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn create_dataset(
    State(st): State<Shared>,
    _: Admin,
    J(b): J<NewDataset>,
) -> Result<(StatusCode, Json<images::DatasetInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(images::create_dataset(&st.db, None, &b.name, &b.labels).await?),
    ))
}

#[utoipa::path(get, path = "/api/datasets/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 200, body = images::DatasetInfo), (status = 404, body = ErrorBody)))]
async fn get_dataset(
    State(st): State<Shared>,
    P(id): P<String>,
) -> Result<Json<images::DatasetInfo>> {
    Ok(Json(images::get_dataset(&st.db, &id).await?))
}

#[utoipa::path(post, path = "/api/datasets/{id}/labels", tag = "images", params(("id" = String, Path)), request_body = NewLabel,
    responses((status = 200, body = images::DatasetInfo)), security(("bearer" = [])))]
async fn add_label(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
    J(b): J<NewLabel>,
) -> Result<Json<images::DatasetInfo>> {
    Ok(Json(images::add_label(&st.db, &id, &b.name).await?))
}

#[utoipa::path(get, path = "/api/images", tag = "images", params(ImageQuery),
    responses((status = 200, body = ImagePage)), security(("bearer" = [])))]
async fn list_images(
    State(st): State<Shared>,
    _: Admin,
    Q(q): Q<ImageQuery>,
) -> Result<Json<ImagePage>> {
    Ok(Json(images::list_images(&st.db, &q).await?))
}

#[utoipa::path(get, path = "/api/images/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 200, body = ImageRow), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_image(State(st): State<Shared>, _: Admin, P(id): P<String>) -> Result<Json<ImageRow>> {
    Ok(Json(images::get_image(&st.db, &id).await?))
}

/// Query of the image status route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StatusQuery {
    /// Comma-separated image ids (at most 200), as uploads answered them.
    pub ids: String,
}

#[utoipa::path(get, path = "/api/images/status", tag = "images", params(StatusQuery),
    responses((status = 200, body = Vec<images::ImageStatus>, description = "review status of the known ids"), (status = 400, body = ErrorBody)))]
async fn image_statuses(
    State(st): State<Shared>,
    Q(q): Q<StatusQuery>,
) -> Result<Json<Vec<images::ImageStatus>>> {
    let ids: Vec<String> = q
        .ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(Json(images::statuses(&st.db, &ids).await?))
}

/// Query of the image blob route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct BlobQuery {
    /// Admin token, for `<img src>` of pending images (browsers cannot set headers there).
    pub token: Option<String>,
}

#[utoipa::path(get, path = "/api/images/{id}/blob", tag = "images", params(("id" = String, Path), BlobQuery),
    responses((status = 200, description = "the image bytes"), (status = 404, body = ErrorBody)))]
async fn image_blob(
    State(st): State<Shared>,
    maybe: MaybeAdmin,
    P(id): P<String>,
    Q(q): Q<BlobQuery>,
) -> Result<Response> {
    let img = images::get_image(&st.db, &id).await?;
    let admin = maybe.0
        || q.token
            .as_deref()
            .is_some_and(|t| crate::util::ct_eq(t, &st.admin_token));
    if img.status != images::status::APPROVED && !admin {
        return Err(Error::Unauthorized(
            "only approved images are public; send the admin token".into(),
        ));
    }
    let bytes = st.storage.get(&image_key(&img.sha256)).await?;
    let ctype = format!("image/{}", img.format);
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "private, max-age=3600".to_string()),
            (header::ETAG, format!("\"{}\"", img.sha256)),
        ],
        bytes,
    )
        .into_response())
}

/// Review request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReviewRequest {
    /// Decisions, applied together or not at all.
    pub decisions: Vec<Decision>,
}

/// Review result.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewResponse {
    /// Updated images.
    pub images: Vec<ImageRow>,
    /// Retrain queued because enough images are now approved.
    pub auto_retrain: Option<String>,
}

#[utoipa::path(get, path = "/api/review", tag = "review", params(ImageQuery),
    responses((status = 200, body = ImagePage, description = "pending images unless another status is asked")), security(("bearer" = [])))]
async fn review_queue(
    State(st): State<Shared>,
    _: Admin,
    Q(mut q): Q<ImageQuery>,
) -> Result<Json<ImagePage>> {
    q.status
        .get_or_insert_with(|| images::status::PENDING.into());
    Ok(Json(images::list_images(&st.db, &q).await?))
}

#[utoipa::path(post, path = "/api/review", tag = "review", request_body = ReviewRequest,
    responses((status = 200, body = ReviewResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn review(
    State(st): State<Shared>,
    _: Admin,
    J(b): J<ReviewRequest>,
) -> Result<Json<ReviewResponse>> {
    let (updated, newly) = images::review(&st.db, &b.decisions, "admin").await?;
    let mut auto = None;
    if newly > 0 {
        let mut datasets: Vec<&str> = updated.iter().map(|i| i.dataset_id.as_str()).collect();
        datasets.dedup();
        for d in datasets {
            if let Some(run) = st.auto_retrain(d).await {
                auto = Some(run);
            }
        }
    }
    Ok(Json(ReviewResponse {
        images: updated,
        auto_retrain: auto,
    }))
}

// ---------------------------------------------------------------------------------------------
// handlers: training

/// Retrain request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TrainRequest {
    /// Dataset (default: the first one).
    pub dataset_id: Option<String>,
    /// `classify` (default) or `rank` (image-text ranking on the images' captions).
    pub task: Option<String>,
    /// Hyper-parameters over the defaults (epochs, batch_size, lr, weight_decay, warmup_epochs,
    /// patience, dropout, views, min_crop_area, class_balanced, seed).
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
}

#[utoipa::path(post, path = "/api/train", tag = "training", request_body = TrainRequest,
    responses((status = 202, body = RunInfo), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn start_training(
    State(st): State<Shared>,
    _: Admin,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RunInfo>)> {
    let req: TrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("train request is not valid JSON: {e}")))?
    };
    let task = req.task.as_deref().unwrap_or("classify");
    let params = match task {
        "classify" => serde_json::to_value(jobs::parse_params(req.params.as_ref())?)?,
        "rank" => serde_json::to_value(jobs::parse_rank_params(req.params.as_ref())?)?,
        other => {
            return Err(Error::Invalid(format!(
                "unknown task {other:?} (known: classify, rank)"
            )));
        }
    };
    let dataset = match req.dataset_id {
        Some(d) => d,
        None => images::list_datasets(&st.db)
            .await?
            .into_iter()
            .next()
            .map(|d| d.id)
            .ok_or_else(|| Error::NotFound("no dataset yet".into()))?,
    };
    let run = jobs::enqueue_task(&st.db, &dataset, task, &params, "manual").await?;
    st.wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// History query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LimitQuery {
    /// Page size (default 50).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/train", tag = "training", params(LimitQuery), responses((status = 200, body = Vec<RunInfo>)))]
async fn list_runs(State(st): State<Shared>, Q(q): Q<LimitQuery>) -> Result<Json<Vec<RunInfo>>> {
    Ok(Json(jobs::list_runs(&st.db, q.limit.unwrap_or(50)).await?))
}

#[utoipa::path(get, path = "/api/train/{id}", tag = "training", params(("id" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = ErrorBody)))]
async fn get_run(State(st): State<Shared>, P(id): P<String>) -> Result<Json<RunInfo>> {
    Ok(Json(jobs::get_run(&st.db, &id).await?))
}

#[utoipa::path(post, path = "/api/train/{id}/cancel", tag = "training", params(("id" = String, Path)),
    responses((status = 202, body = RunInfo), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn cancel_run(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
) -> Result<(StatusCode, Json<RunInfo>)> {
    Ok((StatusCode::ACCEPTED, Json(jobs::cancel(&st.db, &id).await?)))
}

struct EventState {
    st: Shared,
    id: String,
    last: Option<RunInfo>,
    queue: VecDeque<Event>,
    finished: bool,
}

fn json_event(name: &str, v: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

/// Events to send when a run moves from `last` to `now`.
fn diff_events(last: Option<&RunInfo>, now: &RunInfo) -> Vec<Event> {
    let mut out = Vec::new();
    let Some(last) = last else {
        out.push(json_event("snapshot", now));
        return out;
    };
    if last.status != now.status {
        out.push(json_event(
            "status",
            &serde_json::json!({"status": now.status, "error": now.error, "model_id": now.model_id, "attempts": now.attempts}),
        ));
    }
    let seen = if now.epochs.len() >= last.epochs.len() {
        last.epochs.len()
    } else {
        0
    };
    for e in &now.epochs[seen..] {
        out.push(json_event("epoch", e));
    }
    if now.progress != last.progress
        && let Some(p) = &now.progress
    {
        out.push(json_event("progress", p));
    }
    out
}

#[utoipa::path(get, path = "/api/train/{id}/events", tag = "training", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events: `snapshot` (the run), then `progress`, `epoch`, `status` as they happen, and `done` (the final run)")))]
async fn run_events(
    State(st): State<Shared>,
    P(id): P<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    jobs::get_run(&st.db, &id).await?;
    let init = EventState {
        st,
        id,
        last: None,
        queue: VecDeque::new(),
        finished: false,
    };
    let stream = futures::stream::unfold(init, |mut s| async move {
        loop {
            if let Some(ev) = s.queue.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.finished {
                return None;
            }
            if s.last.is_some() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            match jobs::get_run(&s.st.db, &s.id).await {
                Ok(run) => {
                    s.queue.extend(diff_events(s.last.as_ref(), &run));
                    if run.is_terminal() {
                        s.queue.push_back(json_event("done", &run));
                        s.finished = true;
                    }
                    s.last = Some(run);
                }
                Err(e) => {
                    s.queue.push_back(json_event(
                        "error",
                        &ErrorBody {
                            error: "internal".into(),
                            detail: e.to_string(),
                        },
                    ));
                    s.finished = true;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---------------------------------------------------------------------------------------------
// handlers: models

/// Task query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TaskQuery {
    /// `classify` (default) or `rank`.
    pub task: Option<String>,
    /// Page size for lists.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/models", tag = "models", params(TaskQuery), responses((status = 200, body = Vec<ModelInfo>)))]
async fn list_models(State(st): State<Shared>, Q(q): Q<TaskQuery>) -> Result<Json<Vec<ModelInfo>>> {
    Ok(Json(
        registry::list(&st.db, q.task.as_deref(), q.limit.unwrap_or(100)).await?,
    ))
}

#[utoipa::path(get, path = "/api/models/current", tag = "models", params(TaskQuery),
    responses((status = 200, description = "the champion's manifest; files at /api/models/{model_id}/…"), (status = 404, body = ErrorBody)))]
async fn current_model(State(st): State<Shared>, Q(q): Q<TaskQuery>) -> Result<Response> {
    let task = q.task.unwrap_or_else(|| "classify".into());
    let m = registry::current(&st.db, &task)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no {task} model has been promoted yet")))?;
    st.metrics.set_model(&task, &m.id);
    let mut resp = Json(&m.manifest).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&m.id) {
        h.insert("x-model-id", v);
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 404, body = ErrorBody)))]
async fn get_model(State(st): State<Shared>, P(id): P<String>) -> Result<Json<ModelInfo>> {
    Ok(Json(registry::get(&st.db, &id).await?))
}

#[utoipa::path(post, path = "/api/models/{id}/promote", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn promote(State(st): State<Shared>, _: Admin, P(id): P<String>) -> Result<Json<ModelInfo>> {
    let m = registry::promote(&st.db, &id, "admin").await?;
    st.predictor.invalidate().await;
    Ok(Json(m))
}

#[utoipa::path(post, path = "/api/models/{id}/rollback", tag = "models", params(("id" = String, Path, description = "the current champion")),
    responses((status = 200, body = ModelInfo, description = "the restored champion"), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn rollback(State(st): State<Shared>, _: Admin, P(id): P<String>) -> Result<Json<ModelInfo>> {
    let m = registry::rollback(&st.db, &id, "admin").await?;
    st.predictor.invalidate().await;
    Ok(Json(m))
}

/// A parsed single `Range: bytes=…` header against an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// Serve the whole object.
    Full,
    /// Serve `start..end` (end exclusive).
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parse a `Range` header (one range; multi-range requests get the full object, as RFC 9110
/// allows).
pub fn parse_range(value: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size, n == 0)),
        (false, true) => a.parse::<u64>().ok().map(|s| (s, size, false)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, (e + 1).min(size), false)),
            _ => return ByteRange::Full,
        },
        (true, true) => return ByteRange::Full,
    };
    match parsed {
        None => ByteRange::Full,
        Some((_, _, true)) => ByteRange::Unsatisfiable,
        Some((s, e, _)) if s >= size || s >= e => ByteRange::Unsatisfiable,
        Some((s, e, _)) => ByteRange::Part(s, e),
    }
}

#[utoipa::path(get, path = "/api/models/{id}/{file}", tag = "models",
    params(("id" = String, Path), ("file" = String, Path, description = "classify: model.onnx, manifest.json, metrics.json, report.svg; rank: image.onnx, text.onnx, manifest.json, metrics.json, gallery.json, gallery.bin")),
    responses((status = 200, description = "the file; immutable, strong ETag"), (status = 206, description = "a byte range"),
        (status = 304, description = "not modified"), (status = 404, body = ErrorBody), (status = 416, description = "bad range")))]
async fn model_file(
    State(st): State<Shared>,
    P((id, file)): P<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let ctype = match file.as_str() {
        "model.onnx" | "image.onnx" | "text.onnx" | "gallery.bin" => "application/octet-stream",
        "manifest.json" | "metrics.json" | "gallery.json" => "application/json",
        "report.svg" => "image/svg+xml",
        _ => return Err(Error::NotFound(format!("no model file {file:?}"))),
    };
    if !is_safe_id(&id) {
        return Err(Error::NotFound(format!("no model {id:?}")));
    }
    let model = registry::get(&st.db, &id).await?;
    // ONNX files: their sha256 (as the manifest says); other files: model id + name.
    let etag = match (file.as_str(), &model.manifest.text) {
        ("model.onnx" | "image.onnx", _) => format!("\"{}\"", model.sha256),
        ("text.onnx", Some(t)) => format!("\"{}\"", t.onnx.sha256),
        _ => format!("\"{}-{}\"", model.id, file.replace('.', "-")),
    };
    let mut base = HeaderMap::new();
    base.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(|e| Error::Internal(e.to_string()))?,
    );
    base.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    base.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    base.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && (inm.trim() == "*"
            || inm
                .split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, base).into_response());
    }
    let key = model_key(&id, &file);
    let size = st
        .storage
        .size(&key)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{key} is missing")))?;
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = if if_range_ok {
        parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            size,
        )
    } else {
        ByteRange::Full
    };
    match range {
        ByteRange::Full => {
            let bytes = st.storage.get(&key).await?;
            Ok((StatusCode::OK, base, bytes).into_response())
        }
        ByteRange::Part(s, e) => {
            let bytes = st.storage.get_range(&key, s..e).await?;
            let cr = format!("bytes {s}-{}/{size}", e - 1);
            base.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(|e| Error::Internal(e.to_string()))?,
            );
            Ok((StatusCode::PARTIAL_CONTENT, base, bytes).into_response())
        }
        ByteRange::Unsatisfiable => {
            let cr = format!("bytes */{size}");
            base.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(|e| Error::Internal(e.to_string()))?,
            );
            let body = Json(ErrorBody {
                error: "range_not_satisfiable".into(),
                detail: format!("object has {size} bytes"),
            });
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, base, body).into_response())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// handlers: predict, health, metrics, docs

/// Prediction query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PredictQuery {
    /// How many labels (default 5).
    pub k: Option<usize>,
}

#[utoipa::path(post, path = "/api/predict", tag = "predict", params(PredictQuery),
    request_body(content = inline(PredictForm), content_type = "multipart/form-data"),
    responses((status = 200, body = PredictResponse), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "no model promoted yet")))]
async fn predict_handler(
    State(st): State<Shared>,
    Q(q): Q<PredictQuery>,
    mp: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<PredictResponse>> {
    let result = async {
        let form = read_form(mp?, 1).await?;
        let f = form
            .files
            .into_iter()
            .next()
            .ok_or_else(|| Error::BadRequest("send the image as a file field".into()))?;
        predict::predict(
            &st.predictor,
            &st.db,
            &st.storage,
            f.filename,
            f.bytes,
            st.limits(),
            q.k.unwrap_or(5),
        )
        .await
    }
    .await;
    st.metrics
        .predictions
        .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
        .inc();
    Ok(Json(result?))
}

/// Health of one dependency.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// Reachable and working.
    pub ok: bool,
    /// Round trip in ms.
    pub ms: f64,
    /// Error, if any.
    pub error: Option<String>,
}

/// Health report.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// Database probe.
    pub database: Check,
    /// Storage probe (write, read, delete).
    pub storage: Check,
    /// Champion classifier, if any.
    pub model: Option<String>,
    /// Server version.
    pub version: String,
}

async fn probe<F: std::future::Future<Output = Result<()>>>(f: F) -> Check {
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), f).await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(Ok(())) => Check {
            ok: true,
            ms,
            error: None,
        },
        Ok(Err(e)) => Check {
            ok: false,
            ms,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            ok: false,
            ms,
            error: Some("timed out after 5 s".into()),
        },
    }
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(st): State<Shared>) -> (StatusCode, Json<Health>) {
    let database = probe(st.db.check()).await;
    let storage = probe(st.storage.check()).await;
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
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(h),
    )
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
async fn metrics(State(st): State<Shared>) -> Result<Response> {
    // The serving model comes from the database at scrape time (another server or a worker
    // may have promoted one).
    if let Some(m) = registry::current(&st.db, "classify").await? {
        st.metrics.set_model("classify", &m.id);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render()?,
    )
        .into_response())
}

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

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "edgeml api", description = "Labeled uploads, review, retraining, model registry and predictions. \
        Browsers download the champion ONNX from /api/models/{id}/model.onnx and classify locally."),
    paths(upload, list_datasets, create_dataset, get_dataset, add_label, list_images, image_statuses, get_image, image_blob,
        review_queue, review, start_training, list_runs, get_run, cancel_run, run_events,
        list_models, current_model, get_model, promote, rollback, model_file, predict_handler, health, metrics),
    components(schemas(ErrorBody, UploadResponse, Uploaded, NewDataset, NewLabel, ReviewRequest, ReviewResponse, Decision,
        images::Action, TrainRequest, RunInfo, ModelInfo, registry::GateDecision, PredictResponse, Health, Check,
        images::DatasetInfo, images::LabelCount, images::ImageStatus, ImageRow, ImagePage)),
    modifiers(&SecurityAddon),
    tags((name = "images", description = "datasets, labels and uploads"), (name = "review", description = "admin label review"),
        (name = "training", description = "retrain jobs and live progress"), (name = "models", description = "registry, promotion, downloads"),
        (name = "predict", description = "server-side fallback prediction"), (name = "operations", description = "health and metrics"))
)]
pub struct ApiDoc;

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

async fn docs_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("docs.js"),
    )
        .into_response()
}

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

/// Build the full router for a state.
pub fn router(st: Shared) -> Router {
    let upload_limit = DefaultBodyLimit::max(st.cfg.max_upload_bytes);
    let declared_limit =
        axum::middleware::from_fn_with_state(st.cfg.max_upload_bytes, declared_length_limit);
    let api = Router::new()
        .route("/datasets", get(list_datasets).post(create_dataset))
        .route("/datasets/{id}", get(get_dataset))
        .route("/datasets/{id}/labels", post(add_label))
        .route(
            "/datasets/{id}/images",
            post(upload)
                .layer(upload_limit)
                .layer(declared_limit.clone()),
        )
        .route("/images", get(list_images))
        .route("/images/status", get(image_statuses))
        .route("/images/{id}", get(get_image))
        .route("/images/{id}/blob", get(image_blob))
        .route("/review", get(review_queue).post(review))
        .route("/train", get(list_runs).post(start_training))
        .route("/train/{id}", get(get_run))
        .route("/train/{id}/cancel", post(cancel_run))
        .route("/train/{id}/events", get(run_events))
        .route("/models", get(list_models))
        .route("/models/current", get(current_model))
        .route("/models/{id}", get(get_model))
        .route("/models/{id}/promote", post(promote))
        .route("/models/{id}/rollback", post(rollback))
        .route("/models/{id}/{file}", get(model_file))
        .route(
            "/predict",
            post(predict_handler)
                .layer(upload_limit)
                .layer(declared_limit),
        )
        .route("/openapi.json", get(openapi_json))
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(1024 * 1024));

    let mut app = Router::new()
        .nest("/api", api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/docs", get(docs_page))
        .route("/docs/docs.js", get(docs_js));
    let dir = &st.cfg.static_dir;
    if dir.join("index.html").is_file() {
        let index = ServeFile::new(dir.join("index.html"));
        let files = Router::new()
            .fallback_service(
                ServeDir::new(dir)
                    .precompressed_br()
                    .precompressed_gzip()
                    .fallback(index),
            )
            .layer(axum::middleware::from_fn(static_cache_control));
        app = app.merge(files);
    } else {
        // No web app built yet: the docs page is the front door.
        app = app
            .route(
                "/",
                get(|| async { axum::response::Redirect::temporary("/docs") }),
            )
            .fallback(api_not_found);
    }
    let compress = DefaultPredicate::new()
        .and(NotForContentType::const_new("application/octet-stream"))
        .and(SizeAbove::new(1024));
    let mut app = app
        .layer(axum::middleware::from_fn_with_state(
            st.metrics.clone(),
            crate::metrics::track,
        ))
        .layer(CompressionLayer::new().compress_when(compress))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(TraceLayer::new_for_http());
    if !st.cfg.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = st
            .cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    app.with_state(st)
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

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), ByteRange::Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), ByteRange::Part(0, 10));
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            ByteRange::Part(90, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            ByteRange::Part(90, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=95-200"), 100),
            ByteRange::Part(95, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), ByteRange::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), ByteRange::Full);
        assert_eq!(parse_range(Some("bytes=9-2"), 100), ByteRange::Full);
    }

    #[test]
    fn token_bucket_refuses_bursts_and_says_when_to_retry() {
        let rl = RateLimiter::new(60, 2);
        let ip = IpAddr::from([10, 0, 0, 1]);
        rl.check(ip).unwrap();
        rl.check(ip).unwrap();
        match rl.check(ip) {
            Err(Error::RateLimited(s)) => assert!((1..=2).contains(&s), "{s}"),
            other => panic!("{other:?}"),
        }
        rl.check(IpAddr::from([10, 0, 0, 2])).unwrap();
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(!check_bearer(&h, "t0ken-t0ken-t0ken").unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken-t0ken-t0ken"),
        );
        assert!(check_bearer(&h, "t0ken-t0ken-t0ken").unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(matches!(
            check_bearer(&h, "t0ken-t0ken-t0ken"),
            Err(Error::Forbidden(_))
        ));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(
            check_bearer(&h, "t0ken-t0ken-t0ken"),
            Err(Error::Unauthorized(_))
        ));
    }
}
