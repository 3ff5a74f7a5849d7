//! Image routes: labeled uploads (per-IP rate limit in the router), the admin's browsing and
//! review queue, review decisions, contributors' status checks, and image blobs.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
pub use contract::api::{ReviewRequest, ReviewResponse, UploadResponse};
use serde::Deserialize;

use super::extract::{Admin, Form, J, MaybeAdmin, P, Q, Shared, read_form};
use super::guard::{Client, take};
use crate::error::ErrorBody;
use crate::images::{self, CaptionPage, CaptionQuery, ImagePage, ImageQuery, ImageRow, Uploader};
use crate::state::AppState;
use crate::storage::image_key;
use crate::{Error, Result};

// The multipart body of an upload, for the OpenAPI document only (the handler reads it field
// by field); a doc comment here would change the document.
#[derive(utoipa::ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by utoipa's derive, never built
pub(super) struct UploadForm {
    /// Label for every file in the request (one of the dataset's labels); not sent to a
    /// detection dataset, whose images take their labels from their boxes.
    #[schema(value_type = Option<contract::api::Name>)]
    label: Option<String>,
    /// Detection datasets only, and then required with exactly one file: the image's boxes,
    /// a JSON array of 1 to 100 `{"label": NAME, "bbox": [x, y, w, h]}` (pixels; inside the
    /// image, a positive area, known labels).
    boxes: Option<String>,
    /// Optional caption for every file in the request (for image-text ranking): 1 to 500
    /// characters, not only spaces, no control characters.
    #[schema(
        max_length = 500,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    caption: Option<String>,
    /// One to `MAX_FILES` image files (PNG, JPEG, WebP, GIF, BMP; checked by content).
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1, max_items = 200)]
    files: Vec<Vec<u8>>,
}

/// Names only the server and admins use: an anonymous upload cannot pose as them.
const RESERVED_UPLOADERS: [&str; 3] = ["admin", "seed", "anonymous"];

/// Who uploads: the `X-Uploader` name if given (percent-encoded UTF-8, validated), else
/// `admin` or `anonymous`.
fn uploader(headers: &HeaderMap, admin: bool, client: &Client) -> Result<Uploader> {
    let name = match headers.get("x-uploader") {
        Some(v) => {
            let raw = v.to_str().map_err(|_| {
                Error::BadRequest("X-Uploader must be percent-encoded UTF-8".into())
            })?;
            let n = percent_decode(raw)?;
            images::validate_uploader(&n)?;
            if !admin && RESERVED_UPLOADERS.iter().any(|r| n.eq_ignore_ascii_case(r)) {
                return Err(Error::BadRequest(format!(
                    "X-Uploader {n:?} is reserved; choose another name"
                )));
            }
            n
        }
        None if admin => "admin".into(),
        None => "anonymous".into(),
    };
    Ok(Uploader {
        name,
        admin,
        client: client.tag.clone(),
    })
}

/// Decode `%XX` escapes (as `encodeURIComponent` writes them) into UTF-8 text.
pub fn percent_decode(raw: &str) -> Result<String> {
    let bad = || Error::BadRequest("X-Uploader has a malformed percent escape".into());
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().ok_or_else(bad)?;
            let lo = bytes.next().ok_or_else(bad)?;
            let hex = [hi, lo];
            let s = std::str::from_utf8(&hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| bad())?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::BadRequest("X-Uploader is not UTF-8 once decoded".into()))
}

#[utoipa::path(post, path = "/api/datasets/{id}/images", tag = "images",
    params(("id" = String, Path, description = "dataset id"),
        ("X-Uploader" = Option<String>, Header, description = "uploader name: 1-64 letters, digits, spaces or _-.@, percent-encoded UTF-8 (`encodeURIComponent`); `admin`, `seed` and `anonymous` are reserved",
            pattern = "^[A-Za-z0-9_.@-]{1,64}$")),
    request_body(content = inline(UploadForm), content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse, description = "stored (pending unless the admin token was sent)"), (status = 200, body = UploadResponse, description = "every file was already in the dataset: nothing stored"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "wrong admin token"),
        (status = 404, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security((), ("bearer" = [])))]
pub(super) async fn upload(
    State(st): State<Shared>,
    MaybeAdmin(admin): MaybeAdmin,
    Extension(client): Extension<Client>,
    P(dataset_id): P<String>,
    headers: HeaderMap,
    mp: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>)> {
    let result = async {
        let who = uploader(&headers, admin, &client)?;
        let form = read_form(
            mp?,
            &["label", "caption", "boxes", "files"],
            st.cfg.max_files,
        )
        .await?;
        if !admin {
            let n = u32::try_from(form.files.len()).unwrap_or(u32::MAX);
            take(
                &st.quotas.upload_files,
                &client.key,
                n,
                "uploaded files per hour",
            )?;
        }
        upload_files(&st, &dataset_id, form, &who).await
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
    let detect = images::dataset_task(&st.db, dataset_id).await? == contract::Task::Detect;
    if form.files.is_empty() {
        return Err(Error::BadRequest(
            "no files in the request (send one or more file fields)".into(),
        ));
    }
    // A detection image is labelled by its boxes: one image per request, with its boxes.
    let boxes = match (detect, form.fields.get("boxes")) {
        (true, Some(json)) => images::boxes::parse_boxes(json)?,
        (true, None) => {
            return Err(Error::Invalid(
                "missing 'boxes' field: images of a detection dataset come with their boxes".into(),
            ));
        }
        (false, Some(_)) => {
            return Err(Error::Invalid(format!(
                "dataset {dataset_id:?} holds labelled images: boxes go to a detection dataset"
            )));
        }
        (false, None) => Vec::new(),
    };
    let label = if detect {
        if form.fields.contains_key("label") {
            return Err(Error::Invalid(
                "images of a detection dataset take their labels from their boxes: send \
                 'boxes', not 'label'"
                    .into(),
            ));
        }
        if form.files.len() != 1 {
            return Err(Error::Invalid(format!(
                "boxes belong to one image: send one file per request (got {})",
                form.files.len()
            )));
        }
        images::boxes::main_label(&boxes)
            .ok_or_else(|| {
                Error::Invalid("an image of a detection dataset needs at least one box".into())
            })?
            .to_string()
    } else {
        // Optional in the form's schema (detection datasets take boxes instead), required
        // here: a semantic refusal.
        form.fields.get("label").cloned().ok_or_else(|| {
            Error::Invalid(format!(
                "missing 'label' field: images of dataset {dataset_id:?} are labelled"
            ))
        })?
    };
    let limits = st.limits();
    let caption = form.fields.get("caption").cloned();
    if let Some(c) = &caption {
        images::validate_caption(c)?;
    }
    let mut checked = Vec::with_capacity(form.files.len());
    for f in form.files {
        let mut c = st.decode.check(f.filename, f.bytes, limits).await?;
        c.captions.extend(caption.clone());
        c.boxes.clone_from(&boxes);
        checked.push(c);
    }
    let stored = images::ingest(
        &st.db,
        &st.storage,
        dataset_id,
        &label,
        checked,
        uploader,
        st.pending_caps(),
    )
    .await?;
    Ok(answer_stored(st, dataset_id, label, stored, uploader.admin).await)
}

/// The answer to an upload or an import that stored `stored`: counted in the metrics, an
/// auto-retrain queued when an admin's images (approved as they arrive) may have crossed the
/// threshold, 201 when anything new was stored, else 200.
async fn answer_stored(
    st: &AppState,
    dataset_id: &str,
    label: String,
    stored: Vec<images::Uploaded>,
    admin: bool,
) -> (StatusCode, Json<UploadResponse>) {
    let fresh = stored.iter().filter(|u| !u.duplicate).count();
    let count = |kind: &str, n: usize| {
        st.metrics
            .uploads
            .with_label_values(&[kind])
            .inc_by(n as u64);
    };
    count("stored", fresh);
    count("duplicate", stored.len() - fresh);
    let auto = if admin {
        st.auto_retrain(dataset_id).await
    } else {
        None
    };
    let status = if fresh > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(UploadResponse {
            dataset_id: dataset_id.to_string(),
            label,
            images: stored,
            auto_retrain: auto,
        }),
    )
}

// The multipart body of a COCO import, for the OpenAPI document only.
#[derive(utoipa::ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by utoipa's derive, never built
pub(super) struct CocoForm {
    /// The COCO JSON document (`images` with `id`, `file_name`, `width`, `height`;
    /// `annotations` with `id`, `image_id`, `category_id`, `bbox` [x, y, w, h] in pixels;
    /// `categories` with `id` and `name`, each one of the dataset's labels), at most 1 MiB.
    annotations: String,
    /// The images it names, each file named as its `file_name` (PNG, JPEG, WebP, GIF, BMP).
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1, max_items = 200)]
    files: Vec<Vec<u8>>,
}

#[utoipa::path(post, path = "/api/datasets/{id}/coco", tag = "images",
    params(("id" = String, Path, description = "detection dataset id")),
    request_body(content = inline(CocoForm), content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse, description = "stored and approved, with their boxes"), (status = 200, body = UploadResponse, description = "every image was already in the dataset: nothing stored"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a bad document, box or image: the entry named, nothing stored"), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn import_coco(
    State(st): State<Shared>,
    _: Admin,
    P(dataset_id): P<String>,
    mp: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>)> {
    let result = coco_files(&st, &dataset_id, mp).await;
    if result.is_err() {
        st.metrics.uploads.with_label_values(&["rejected"]).inc();
    }
    result
}

/// Check and import the files of a COCO import form (the plain logic behind the handler).
async fn coco_files(
    st: &AppState,
    dataset_id: &str,
    mp: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>)> {
    let form = read_form(mp?, &["annotations", "files"], st.cfg.max_files).await?;
    let annotations = form.fields.get("annotations").cloned().ok_or_else(|| {
        Error::BadRequest("missing 'annotations' field (the COCO JSON document)".into())
    })?;
    if form.files.is_empty() {
        return Err(Error::BadRequest(
            "no files in the request (send the images the document names)".into(),
        ));
    }
    let limits = st.limits();
    let mut checked = Vec::with_capacity(form.files.len());
    for f in form.files {
        checked.push(st.decode.check(f.filename, f.bytes, limits).await?);
    }
    let who = Uploader {
        name: "admin".into(),
        admin: true,
        client: String::new(),
    };
    let stored = images::coco::import_coco(
        &st.db,
        &st.storage,
        dataset_id,
        &annotations,
        checked,
        &who,
        st.pending_caps(),
    )
    .await?;
    let label = stored.first().map(|u| u.label.clone()).unwrap_or_default();
    Ok(answer_stored(st, dataset_id, label, stored, true).await)
}

#[utoipa::path(get, path = "/api/images", tag = "images", params(ImageQuery),
    responses((status = 200, body = ImagePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_images(
    State(st): State<Shared>,
    _: Admin,
    Q(q): Q<ImageQuery>,
) -> Result<Json<ImagePage>> {
    Ok(Json(images::list_images(&st.db, &q).await?))
}

#[utoipa::path(get, path = "/api/images/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 200, body = ImageRow), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get_image(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
) -> Result<Json<ImageRow>> {
    Ok(Json(images::get_image(&st.db, &id).await?))
}

/// Query of the image status route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Comma-separated image ids (at most 200), as uploads answered them.
    pub ids: String,
}

#[utoipa::path(get, path = "/api/images/status", tag = "images", params(StatusQuery),
    responses((status = 200, body = Vec<images::ImageStatus>, description = "review status of the known ids"), (status = 400, body = ErrorBody)))]
pub(super) async fn image_statuses(
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

#[utoipa::path(get, path = "/api/images/{id}/blob", tag = "images", params(("id" = String, Path)),
    responses((status = 200, description = "the image bytes"), (status = 401, body = ErrorBody, description = "not approved: needs the admin token"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security((), ("bearer" = [])))]
pub(super) async fn image_blob(
    State(st): State<Shared>,
    MaybeAdmin(admin): MaybeAdmin,
    P(id): P<String>,
) -> Result<Response> {
    let img = images::get_image(&st.db, &id).await?;
    if img.status != contract::ImageStatus::Approved && !admin {
        return Err(Error::Unauthorized(
            "only approved images are public; send the admin token".into(),
        ));
    }
    let body = st.storage.stream(&image_key(&img.sha256), None).await?;
    let ctype = format!("image/{}", img.format);
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_LENGTH, img.bytes.to_string()),
            (header::CACHE_CONTROL, "private, max-age=3600".to_string()),
            (header::ETAG, format!("\"{}\"", img.sha256)),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/review", tag = "review", params(ImageQuery),
    responses((status = 200, body = ImagePage, description = "pending images unless another status is asked"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn review_queue(
    State(st): State<Shared>,
    _: Admin,
    Q(mut q): Q<ImageQuery>,
) -> Result<Json<ImagePage>> {
    q.status.get_or_insert(contract::ImageStatus::Pending);
    Ok(Json(images::list_images(&st.db, &q).await?))
}

#[utoipa::path(get, path = "/api/review/captions", tag = "review", params(CaptionQuery),
    responses((status = 200, body = CaptionPage, description = "captions of approved images waiting for review (or with another status), oldest first"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn caption_queue(
    State(st): State<Shared>,
    _: Admin,
    Q(q): Q<CaptionQuery>,
) -> Result<Json<CaptionPage>> {
    Ok(Json(images::list_captions(&st.db, &q).await?))
}

#[utoipa::path(post, path = "/api/review", tag = "review", request_body = ReviewRequest,
    responses((status = 200, body = ReviewResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn review(
    State(st): State<Shared>,
    _: Admin,
    J(b): J<ReviewRequest>,
) -> Result<Json<ReviewResponse>> {
    let done = images::review(&st.db, &b.decisions, &b.captions, "admin").await?;
    let mut auto = None;
    if done.newly_approved > 0 {
        let mut datasets: Vec<&str> = done.images.iter().map(|i| i.dataset_id.as_str()).collect();
        datasets.sort_unstable();
        datasets.dedup();
        for d in datasets {
            if let Some(run) = st.auto_retrain(d).await {
                auto = Some(run);
            }
        }
    }
    Ok(Json(ReviewResponse {
        images: done.images,
        captions: done.captions,
        auto_retrain: auto,
    }))
}
