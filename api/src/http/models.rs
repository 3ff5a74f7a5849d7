//! Model registry routes: versions, the champion's manifest, promote and rollback, and model
//! files served as immutable downloads (strong ETag, `If-None-Match` → 304, single `Range`
//! requests → 206/416, `If-Range`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::extract::{Admin, P, Q, Shared};
use crate::error::ErrorBody;
use crate::registry::{self, ModelInfo};
use crate::storage::{is_safe_id, model_key};
use crate::{Error, Result};

/// Task query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// `classify` (default) or `rank`.
    #[param(inline)]
    pub task: Option<contract::Task>,
    /// Page size for lists (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/models", tag = "models", params(TaskQuery), responses((status = 200, body = Vec<ModelInfo>)))]
pub(super) async fn list_models(
    State(st): State<Shared>,
    Q(q): Q<TaskQuery>,
) -> Result<Json<Vec<ModelInfo>>> {
    let limit = crate::util::in_range("limit", q.limit, 1, 1000)?.unwrap_or(100);
    Ok(Json(
        registry::list(&st.db, q.task.map(|t| t.as_str()), limit).await?,
    ))
}

/// Query of the current-model route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CurrentQuery {
    /// `classify` (default) or `rank`.
    #[param(inline)]
    pub task: Option<contract::Task>,
}

#[utoipa::path(get, path = "/api/models/current", tag = "models", params(CurrentQuery),
    responses((status = 200, description = "the champion's manifest; files at /api/models/{model_id}/…"), (status = 404, body = ErrorBody)))]
pub(super) async fn current_model(
    State(st): State<Shared>,
    Q(q): Q<CurrentQuery>,
) -> Result<Response> {
    let task = q.task.unwrap_or(contract::Task::Classify);
    let m = registry::current(&st.db, task.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no {task} model has been promoted yet")))?;
    st.metrics.set_model(task.as_str(), &m.id);
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
pub(super) async fn get_model(
    State(st): State<Shared>,
    P(id): P<String>,
) -> Result<Json<ModelInfo>> {
    Ok(Json(registry::get(&st.db, &id).await?))
}

#[utoipa::path(post, path = "/api/models/{id}/promote", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn promote(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
) -> Result<Json<ModelInfo>> {
    let m = registry::promote(&st.db, &id, "admin").await?;
    st.predictor.invalidate().await;
    Ok(Json(m))
}

#[utoipa::path(post, path = "/api/models/{id}/rollback", tag = "models", params(("id" = String, Path, description = "the current champion")),
    responses((status = 200, body = ModelInfo, description = "the restored champion"), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn rollback(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
) -> Result<Json<ModelInfo>> {
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
    /// Answer 416 with the object's size.
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
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size), false)),
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

/// The content type of a model file, or `None` for a name no model folder holds.
fn content_type(file: &str) -> Option<&'static str> {
    use contract::{ModelFiles, Task};
    if !Task::ALL
        .iter()
        .any(|t| ModelFiles::is_model_file(*t, file))
    {
        return None;
    }
    Some(match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("onnx" | "bin") => "application/octet-stream",
        Some("nnef") => "application/x-tar",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => return None,
    })
}

/// The strong ETag of a model file: files the manifest hashes (ONNX and NNEF graphs, gallery
/// files) their sha256, other files model id + name (a model folder never changes).
fn etag_of(model: &ModelInfo, file: &str) -> String {
    let m = &model.manifest;
    let text = m.text.as_ref();
    let hashed = [
        Some((m.onnx.file.as_str(), &model.sha256)),
        m.nnef.as_ref().map(|n| (n.file.as_str(), &n.sha256)),
        text.map(|t| (t.onnx.file.as_str(), &t.onnx.sha256)),
        text.and_then(|t| t.nnef.as_ref())
            .map(|n| (n.file.as_str(), &n.sha256)),
        m.gallery
            .as_ref()
            .map(|g| (g.index.file.as_str(), &g.index.sha256)),
        m.gallery
            .as_ref()
            .map(|g| (g.vectors.file.as_str(), &g.vectors.sha256)),
    ]
    .into_iter()
    .flatten()
    .find(|(name, _)| *name == file)
    .map(|(_, sha)| sha);
    match hashed {
        Some(sha) => format!("\"{sha}\""),
        None => format!("\"{}-{}\"", model.id, file.replace('.', "-")),
    }
}

fn header_value(v: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(v).map_err(|e| Error::Internal(e.to_string()))
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.trim() == "*"
                || inm
                    .split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag)
        })
}

#[utoipa::path(get, path = "/api/models/{id}/{file}", tag = "models",
    params(("id" = String, Path), ("file" = String, Path, description = "classify: head.onnx, head.nnef, manifest.json, metrics.json, report.svg; rank: image_head.onnx, image_head.nnef, text.onnx, text.nnef, manifest.json, metrics.json, gallery.json, gallery.bin; product: product_head.onnx, product_head.nnef, manifest.json, metrics.json (versions written before heads were split: model.onnx, image.onnx). The .nnef files are what browsers load (the manifest's `nnef`, `text.nnef`). The heads run on the backbone the manifest names: /api/backbones/{sha256}.q8 (browsers) or .onnx")),
    responses((status = 200, description = "the file; immutable, strong ETag"), (status = 206, description = "a byte range"),
        (status = 304, description = "not modified"), (status = 404, body = ErrorBody), (status = 416, description = "bad range")))]
pub(super) async fn model_file(
    State(st): State<Shared>,
    P((id, file)): P<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let ctype =
        content_type(&file).ok_or_else(|| Error::NotFound(format!("no model file {file:?}")))?;
    if !is_safe_id(&id) {
        return Err(Error::NotFound(format!("no model {id:?}")));
    }
    let model = registry::get(&st.db, &id).await?;
    let etag = etag_of(&model, &file);
    serve_immutable(&st, &model_key(&id, &file), &etag, ctype, &headers).await
}

#[utoipa::path(get, path = "/api/backbones/{file}", tag = "models",
    params(("file" = String, Path, description = "`{sha256}.q8` (NNEF, 8-bit weights, what browsers run: `backbone.int8.sha256`) or `{sha256}.onnx` (`f32`: `backbone.onnx.sha256`): the frozen backbone a model's manifest names, shared by every version and task on it")),
    responses((status = 200, description = "the file; immutable (its address is its sha256), strong ETag"), (status = 206, description = "a byte range"),
        (status = 304, description = "not modified"), (status = 404, body = ErrorBody), (status = 416, description = "bad range")))]
pub(super) async fn backbone_file(
    State(st): State<Shared>,
    P(file): P<String>,
    headers: HeaderMap,
) -> Result<Response> {
    use contract::ModelFiles;
    let (sha, kind) = [ModelFiles::BACKBONE_ONNX, ModelFiles::BACKBONE_INT8]
        .into_iter()
        .find_map(|kind| {
            let ext = kind.rsplit_once('.').map_or(kind, |(_, e)| e);
            file.strip_suffix(ext)
                .and_then(|f| f.strip_suffix('.'))
                .map(|sha| (sha, kind))
        })
        .filter(|(h, _)| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no backbone {file:?} (expected a lower-case hex sha256 and .onnx or .q8)"
            ))
        })?;
    let key = ModelFiles::backbone_key(kind, sha);
    serve_immutable(
        &st,
        &key,
        &format!("\"{sha}\""),
        "application/octet-stream",
        &headers,
    )
    .await
}

/// Serve an object that never changes under `key` with its strong `etag`: 304 on a matching
/// `If-None-Match`, a single `Range` (honoured when `If-Range` is absent or matches) as 206,
/// an unsatisfiable one as 416.
async fn serve_immutable(
    st: &Shared,
    key: &str,
    etag: &str,
    ctype: &'static str,
    headers: &HeaderMap,
) -> Result<Response> {
    let mut base = HeaderMap::new();
    base.insert(header::ETAG, header_value(etag)?);
    base.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    base.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    base.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if not_modified(headers, etag) {
        return Ok((StatusCode::NOT_MODIFIED, base).into_response());
    }
    let size = st
        .storage
        .size(key)
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
            let body = st.storage.stream(key, None).await?;
            base.insert(header::CONTENT_LENGTH, header_value(&size.to_string())?);
            Ok((StatusCode::OK, base, body).into_response())
        }
        ByteRange::Part(s, e) => {
            let body = st.storage.stream(key, Some(s..e)).await?;
            let cr = format!("bytes {s}-{}/{size}", e - 1);
            base.insert(header::CONTENT_RANGE, header_value(&cr)?);
            base.insert(header::CONTENT_LENGTH, header_value(&(e - s).to_string())?);
            Ok((StatusCode::PARTIAL_CONTENT, base, body).into_response())
        }
        ByteRange::Unsatisfiable => {
            base.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}"))?,
            );
            let body = Json(ErrorBody {
                error: "range_not_satisfiable".into(),
                detail: format!("object has {size} bytes"),
                request_id: None,
            });
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, base, body).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            parse_range(Some("bytes=0-18446744073709551615"), 100),
            ByteRange::Part(0, 100)
        );
    }

    #[test]
    fn if_none_match() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"a\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"b\", W/\"a\""),
        );
        assert!(not_modified(&h, "\"a\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, "\"c\""));
    }
}
