//! Datasets, labels and labeled images: upload validation, content-addressed ingest (blob
//! first, then row, all-or-nothing per request), review, listing, orphan sweeping.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::Db;
use crate::storage::{Storage, image_key};
use crate::util::{new_id, now_ms};
use crate::{Error, Result};

/// Image review states.
pub mod status {
    /// Uploaded by a non-admin, waiting for review.
    pub const PENDING: &str = "pending";
    /// Used for training.
    pub const APPROVED: &str = "approved";
    /// Kept for the record, never trained on.
    pub const REJECTED: &str = "rejected";
}

/// A dataset with its labels and image counts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetInfo {
    /// Id used in URLs.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `classify` or `rank`.
    pub task: String,
    /// Labels with per-status counts, sorted by name.
    pub labels: Vec<LabelCount>,
    /// Unix ms.
    pub created_at: i64,
}

/// Image counts of one label.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LabelCount {
    /// Label.
    pub name: String,
    /// Approved images.
    pub approved: i64,
    /// Images waiting for review.
    pub pending: i64,
    /// Rejected images.
    pub rejected: i64,
}

/// One stored image.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ImageRow {
    /// Id.
    pub id: String,
    /// Dataset.
    pub dataset_id: String,
    /// Content hash; the blob lives at `images/<sha256>`.
    pub sha256: String,
    /// Label.
    pub label: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Sniffed format (`png`, `jpeg`, `webp`, `gif`, `bmp`).
    pub format: String,
    /// Size in bytes.
    pub bytes: i64,
    /// Width in pixels.
    pub width: i64,
    /// Height in pixels.
    pub height: i64,
    /// Original file name (informational; never used as a key).
    pub filename: String,
    /// Who uploaded it.
    pub uploader: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last review decision.
    pub reviewed_at: Option<i64>,
    /// Who reviewed it.
    pub reviewed_by: Option<String>,
}

/// Limits applied to every uploaded image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest side in pixels.
    pub max_side: u32,
    /// Largest area in pixels.
    pub max_pixels: u64,
}

/// One file of an upload request.
#[derive(Debug, Clone)]
pub struct UploadFile {
    /// Client-side name.
    pub filename: String,
    /// Content.
    pub bytes: Bytes,
}

/// Who is uploading.
#[derive(Debug, Clone)]
pub struct Uploader {
    /// Display name (validated).
    pub name: String,
    /// Admin uploads are approved directly.
    pub admin: bool,
}

/// A file that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Client-side name.
    pub filename: String,
    /// Content hash.
    pub sha256: String,
    /// Sniffed format.
    pub format: &'static str,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Content.
    pub bytes: Bytes,
    /// Captions to store with the image (ranking datasets); may be empty.
    pub captions: Vec<String>,
}

/// Per-file result of an upload.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Client-side name.
    pub filename: String,
    /// Image id (the existing one for duplicates).
    pub id: String,
    /// Content hash.
    pub sha256: String,
    /// Label now stored for the image.
    pub label: String,
    /// Review status now stored for the image.
    pub status: String,
    /// True when the same content was already in the dataset (nothing new stored).
    pub duplicate: bool,
}

/// Longest caption accepted, in characters.
pub const MAX_CAPTION_CHARS: usize = 500;

/// Captions are short plain text: not empty, no control characters, at most
/// [`MAX_CAPTION_CHARS`].
pub fn validate_caption(caption: &str) -> Result<()> {
    let n = caption.chars().count();
    if caption.trim().is_empty() || n > MAX_CAPTION_CHARS || caption.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "a caption must be 1 to {MAX_CAPTION_CHARS} characters of text without control characters (got {n})"
        )));
    }
    Ok(())
}

/// Captions of images, by image id (for ranking runs).
pub async fn captions_of(db: &Db, dataset_id: &str) -> Result<HashMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.image_id, c.caption FROM captions c JOIN images i ON i.id = c.image_id \
         WHERE i.dataset_id = $1 ORDER BY c.image_id, c.created_at, c.caption",
    )
    .bind(dataset_id)
    .fetch_all(db.pool())
    .await?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (id, c) in rows {
        out.entry(id).or_default().push(c);
    }
    Ok(out)
}

/// Reject names that could be mistaken for paths or that carry control characters.
pub fn validate_filename(name: &str) -> Result<()> {
    let bad = name.len() > 255
        || name.contains('/')
        || name.contains('\\')
        || name.contains("..")
        || name.chars().any(char::is_control);
    if bad {
        return Err(Error::BadRequest(format!(
            "invalid file name {name:?}: no paths, '..', or control characters (max 255 bytes)"
        )));
    }
    Ok(())
}

/// Validate an uploader name given in the `X-Uploader` header.
pub fn validate_uploader(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | ' '));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "X-Uploader must be 1-64 letters, digits, spaces or _-.@".into(),
        ))
    }
}

/// Check one uploaded file: content-sniffed allowed format, header dimensions within limits
/// (before any pixel is decoded), full decode with the trainer's decoder, hash.
pub fn check_image(filename: &str, bytes: Bytes, limits: Limits) -> Result<Checked> {
    check_and_decode(filename, bytes, limits).map(|(c, _)| c)
}

/// [`check_image`], also returning the decoded pixels (for predictions).
pub fn check_and_decode(
    filename: &str,
    bytes: Bytes,
    limits: Limits,
) -> Result<(Checked, image::RgbaImage)> {
    validate_filename(filename)?;
    if bytes.is_empty() {
        return Err(Error::BadRequest(format!("{filename:?} is empty")));
    }
    let format = image::guess_format(&bytes).map_err(|_| {
        Error::UnsupportedFormat(format!(
            "{filename:?} is not a PNG, JPEG, WebP, GIF or BMP image (checked by content, not by name or content type)"
        ))
    })?;
    let name = match format {
        image::ImageFormat::Png => "png",
        image::ImageFormat::Jpeg => "jpeg",
        image::ImageFormat::WebP => "webp",
        image::ImageFormat::Gif => "gif",
        image::ImageFormat::Bmp => "bmp",
        other => {
            return Err(Error::UnsupportedFormat(format!(
                "{filename:?} is {other:?}; accepted formats: PNG, JPEG, WebP, GIF, BMP"
            )));
        }
    };
    let (width, height) = image::ImageReader::with_format(Cursor::new(&bytes[..]), format)
        .into_dimensions()
        .map_err(|e| Error::InvalidImage(format!("{filename:?}: unreadable {name} header: {e}")))?;
    if width == 0 || height == 0 {
        return Err(Error::InvalidImage(format!("{filename:?} has no pixels")));
    }
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(Error::ImageTooLarge(format!(
            "{filename:?} is {width}×{height}; limits are {} px per side and {} px in total",
            limits.max_side, limits.max_pixels
        )));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_has_end_marker(&bytes) {
        return Err(Error::InvalidImage(format!(
            "{filename:?} is a truncated JPEG (no end-of-image marker)"
        )));
    }
    let pixels = trainer::dataset::decode_image(&bytes)
        .map_err(|e| Error::InvalidImage(format!("{filename:?} does not decode: {e}")))?;
    let (sha256, _) = trainer::dataset::digest(&bytes);
    let checked = Checked {
        filename: filename.to_string(),
        sha256,
        format: name,
        width,
        height,
        bytes,
        captions: Vec::new(),
    };
    Ok((checked, pixels))
}

/// JPEG decoders fill missing scan data with grey instead of failing; a complete file ends
/// with the EOI marker (0xFFD9), possibly followed by padding.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

// ---------------------------------------------------------------------------------------------
// datasets and labels

/// Create a dataset with its labels.
pub async fn create_dataset(
    db: &Db,
    id: Option<&str>,
    name: &str,
    labels: &[String],
) -> Result<DatasetInfo> {
    trainer::dataset::validate_label(name)
        .map_err(|e| Error::Invalid(format!("dataset name: {e}")))?;
    for l in labels {
        trainer::dataset::validate_label(l).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let id = id.map(str::to_string).unwrap_or_else(|| new_id("ds"));
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM datasets WHERE name = $1 OR id = $2")
            .bind(name)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
    if exists > 0 {
        return Err(Error::Conflict(format!(
            "a dataset named {name:?} already exists"
        )));
    }
    sqlx::query("INSERT INTO datasets (id, name, task, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(name)
        .bind("classify")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let unique: HashSet<&String> = labels.iter().collect();
    for l in unique {
        sqlx::query("INSERT INTO labels (dataset_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(l)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    get_dataset(db, &id).await
}

/// Add a label to a dataset (idempotent).
pub async fn add_label(db: &Db, dataset_id: &str, label: &str) -> Result<DatasetInfo> {
    trainer::dataset::validate_label(label).map_err(|e| Error::Invalid(e.to_string()))?;
    require_dataset(db, dataset_id).await?;
    let known: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM labels WHERE dataset_id = $1 AND name = $2")
            .bind(dataset_id)
            .bind(label)
            .fetch_one(db.pool())
            .await?;
    if known == 0 {
        sqlx::query("INSERT INTO labels (dataset_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(dataset_id)
            .bind(label)
            .bind(now_ms())
            .execute(db.pool())
            .await?;
    }
    get_dataset(db, dataset_id).await
}

/// `NotFound` unless the dataset exists (an indexed lookup; [`get_dataset`] also counts images).
pub async fn require_dataset(db: &Db, id: &str) -> Result<()> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM datasets WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    if n == 0 {
        return Err(Error::NotFound(format!("no dataset {id:?}")));
    }
    Ok(())
}

/// Labels of a dataset, sorted.
pub async fn labels(db: &Db, dataset_id: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM labels WHERE dataset_id = $1 ORDER BY name")
            .bind(dataset_id)
            .fetch_all(db.pool())
            .await?,
    )
}

/// One dataset with counts; `NotFound` when absent.
pub async fn get_dataset(db: &Db, id: &str) -> Result<DatasetInfo> {
    let row = sqlx::query("SELECT id, name, task, created_at FROM datasets WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no dataset {id:?}")))?;
    let mut labels: Vec<LabelCount> = self::labels(db, id)
        .await?
        .into_iter()
        .map(|name| LabelCount {
            name,
            approved: 0,
            pending: 0,
            rejected: 0,
        })
        .collect();
    let counts = sqlx::query(
        "SELECT label, status, COUNT(*) AS n FROM images WHERE dataset_id = $1 GROUP BY label, status",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    for c in counts {
        let (label, st, n): (String, String, i64) = (c.try_get(0)?, c.try_get(1)?, c.try_get(2)?);
        if let Some(l) = labels.iter_mut().find(|l| l.name == label) {
            match st.as_str() {
                status::APPROVED => l.approved += n,
                status::PENDING => l.pending += n,
                _ => l.rejected += n,
            }
        }
    }
    Ok(DatasetInfo {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        task: row.try_get(2)?,
        labels,
        created_at: row.try_get(3)?,
    })
}

/// All datasets, oldest first.
pub async fn list_datasets(db: &Db) -> Result<Vec<DatasetInfo>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM datasets ORDER BY created_at, id")
        .fetch_all(db.pool())
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(get_dataset(db, &id).await?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// ingest

/// Store checked images: blobs first (content-addressed), then all rows in one transaction.
/// On any failure the blobs this call created are deleted again and no row is written.
pub async fn ingest(
    db: &Db,
    storage: &Storage,
    dataset_id: &str,
    label: &str,
    files: Vec<Checked>,
    uploader: &Uploader,
) -> Result<Vec<Uploaded>> {
    let known = labels(db, dataset_id).await?;
    if !known.iter().any(|l| l == label) {
        return Err(Error::UnknownLabel(format!(
            "dataset {dataset_id:?} has no label {label:?} (labels: {})",
            known.join(", ")
        )));
    }
    let now = now_ms();
    let status = if uploader.admin {
        status::APPROVED
    } else {
        status::PENDING
    };
    for f in &files {
        for c in &f.captions {
            validate_caption(c)?;
        }
    }
    let mut results: Vec<Uploaded> = Vec::with_capacity(files.len());
    // (image id, caption) pairs to store, for new and already stored images alike.
    let mut captions: Vec<(String, String)> = Vec::new();
    let mut fresh: Vec<(Checked, String)> = Vec::new();
    let mut first_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for f in files {
        if let Some(&i) = first_of.get(&f.sha256) {
            let id = results[i].id.clone();
            captions.extend(f.captions.iter().map(|c| (id.clone(), c.clone())));
            let u = Uploaded {
                filename: f.filename,
                duplicate: true,
                ..results[i].clone()
            };
            results.push(u);
            continue;
        }
        first_of.insert(f.sha256.clone(), results.len());
        let existing: Option<(String, String, String)> = sqlx::query_as(
            "SELECT id, label, status FROM images WHERE dataset_id = $1 AND sha256 = $2",
        )
        .bind(dataset_id)
        .bind(&f.sha256)
        .fetch_optional(db.pool())
        .await?;
        match existing {
            Some((id, label, status)) => {
                captions.extend(f.captions.iter().map(|c| (id.clone(), c.clone())));
                results.push(Uploaded {
                    filename: f.filename.clone(),
                    id,
                    sha256: f.sha256.clone(),
                    label,
                    status,
                    duplicate: true,
                });
            }
            None => {
                let u = Uploaded {
                    filename: f.filename.clone(),
                    id: new_id("img"),
                    sha256: f.sha256.clone(),
                    label: label.to_string(),
                    status: status.to_string(),
                    duplicate: false,
                };
                captions.extend(f.captions.iter().map(|c| (u.id.clone(), c.clone())));
                fresh.push((f, u.id.clone()));
                results.push(u);
            }
        }
    }

    // 1. blobs
    let mut created = Vec::new();
    for (f, _) in &fresh {
        let key = image_key(&f.sha256);
        let outcome = async {
            if storage.size(&key).await? != Some(f.bytes.len() as u64) {
                storage.put(&key, f.bytes.clone()).await?;
                Ok::<bool, Error>(true)
            } else {
                Ok(false)
            }
        }
        .await;
        match outcome {
            Ok(true) => created.push(key),
            Ok(false) => {}
            Err(e) => {
                undo_blobs(db, storage, &created).await;
                return Err(e);
            }
        }
    }

    // 2. rows, all or nothing
    let insert = async {
        let mut tx = db.pool().begin().await?;
        for (f, id) in &fresh {
            sqlx::query(
                "INSERT INTO images (id, dataset_id, sha256, label, status, format, bytes, width, height, \
                 filename, uploader, created_at, reviewed_at, reviewed_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(id)
            .bind(dataset_id)
            .bind(&f.sha256)
            .bind(label)
            .bind(status)
            .bind(f.format)
            .bind(f.bytes.len() as i64)
            .bind(i64::from(f.width))
            .bind(i64::from(f.height))
            .bind(&f.filename)
            .bind(&uploader.name)
            .bind(now)
            .bind(uploader.admin.then_some(now))
            .bind(uploader.admin.then(|| uploader.name.clone()))
            .execute(&mut *tx)
            .await?;
        }
        for (id, caption) in &captions {
            sqlx::query(
                "INSERT INTO captions (image_id, caption, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (image_id, caption) DO NOTHING",
            )
            .bind(id)
            .bind(caption)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = insert {
        undo_blobs(db, storage, &created).await;
        return Err(e);
    }
    Ok(results)
}

/// Delete blobs this request created, unless a row (from a concurrent request) now uses them.
async fn undo_blobs(db: &Db, storage: &Storage, keys: &[String]) {
    for key in keys {
        let sha = key.trim_start_matches("images/");
        let used: std::result::Result<i64, _> =
            sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE sha256 = $1")
                .bind(sha)
                .fetch_one(db.pool())
                .await;
        if matches!(used, Ok(0))
            && let Err(e) = storage.delete(key).await
        {
            tracing::warn!(%key, error = %e, "could not delete blob of a failed upload; the sweeper will");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// listing and review

/// Filter for [`list_images`].
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct ImageQuery {
    /// Dataset id.
    pub dataset: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
    /// Label.
    pub label: Option<String>,
    /// Page size (default 50, max 500).
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

/// A page of images.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImagePage {
    /// Rows matching the filter.
    pub total: i64,
    /// This page, newest first.
    pub images: Vec<ImageRow>,
}

/// Images matching a filter, newest first.
pub async fn list_images(db: &Db, q: &ImageQuery) -> Result<ImagePage> {
    if let Some(s) = &q.status
        && ![status::PENDING, status::APPROVED, status::REJECTED].contains(&s.as_str())
    {
        return Err(Error::BadRequest(format!("unknown status {s:?}")));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let filter = "($1 IS NULL OR dataset_id = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR label = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM images WHERE {filter}"
    )))
    .bind(q.dataset.clone())
    .bind(q.status.clone())
    .bind(q.label.clone())
    .fetch_one(db.pool())
    .await?;
    let images = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM images WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    )))
    .bind(q.dataset.clone())
    .bind(q.status.clone())
    .bind(q.label.clone())
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    Ok(ImagePage { total, images })
}

/// One image; `NotFound` when absent.
pub async fn get_image(db: &Db, id: &str) -> Result<ImageRow> {
    sqlx::query_as("SELECT * FROM images WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no image {id:?}")))
}

/// Where an upload stands (what a contributor may know about their own images).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ImageStatus {
    /// Image id (as the upload answered it).
    pub id: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Label now stored (a reviewer may have corrected it).
    pub label: String,
}

/// Most ids one status request may ask about.
pub const MAX_STATUS_IDS: usize = 200;

/// Review status of the given images; unknown ids are left out. Ids come from upload answers
/// and cannot be guessed, so this needs no token.
pub async fn statuses(db: &Db, ids: &[String]) -> Result<Vec<ImageStatus>> {
    if ids.len() > MAX_STATUS_IDS {
        return Err(Error::BadRequest(format!(
            "at most {MAX_STATUS_IDS} ids per request, got {}",
            ids.len()
        )));
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, status, label FROM images WHERE id IN ({marks}) ORDER BY id"
    )));
    for id in ids {
        q = q.bind(id.clone());
    }
    Ok(q.fetch_all(db.pool()).await?)
}

/// What a reviewer does with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Use it for training (optionally with a corrected label).
    Approve,
    /// Never train on it.
    Reject,
    /// Change the label, keep the status.
    Relabel,
}

/// One review decision.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// Image id.
    pub id: String,
    /// What to do.
    pub action: Action,
    /// New label (required for `relabel`, optional for `approve`).
    pub label: Option<String>,
}

/// Apply review decisions in one transaction (any unknown id or label: nothing applied).
/// Returns the updated images and how many became newly approved.
pub async fn review(
    db: &Db,
    decisions: &[Decision],
    reviewer: &str,
) -> Result<(Vec<ImageRow>, usize)> {
    if decisions.is_empty() {
        return Err(Error::BadRequest("no decisions".into()));
    }
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    let mut newly_approved = 0;
    let mut ids = Vec::new();
    for d in decisions {
        let img: ImageRow = sqlx::query_as("SELECT * FROM images WHERE id = $1")
            .bind(&d.id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no image {:?}", d.id)))?;
        let label = match (&d.label, d.action) {
            (Some(l), _) => {
                let known: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM labels WHERE dataset_id = $1 AND name = $2",
                )
                .bind(&img.dataset_id)
                .bind(l)
                .fetch_one(&mut *tx)
                .await?;
                if known == 0 {
                    return Err(Error::UnknownLabel(format!(
                        "dataset {:?} has no label {l:?}",
                        img.dataset_id
                    )));
                }
                l.clone()
            }
            (None, Action::Relabel) => {
                return Err(Error::BadRequest(format!(
                    "relabel of {:?} needs a label",
                    d.id
                )));
            }
            (None, _) => img.label.clone(),
        };
        let new_status = match d.action {
            Action::Approve => status::APPROVED,
            Action::Reject => status::REJECTED,
            Action::Relabel => img.status.as_str(),
        };
        if new_status == status::APPROVED && img.status != status::APPROVED {
            newly_approved += 1;
        }
        sqlx::query(
            "UPDATE images SET label = $1, status = $2, reviewed_at = $3, reviewed_by = $4 WHERE id = $5",
        )
        .bind(&label)
        .bind(new_status)
        .bind(now)
        .bind(reviewer)
        .bind(&d.id)
        .execute(&mut *tx)
        .await?;
        ids.push(d.id.clone());
    }
    tx.commit().await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(get_image(db, &id).await?);
    }
    Ok((out, newly_approved))
}

// ---------------------------------------------------------------------------------------------
// orphans

/// What a sweep removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SweepReport {
    /// Image blobs without a row.
    pub images: usize,
    /// Model files without a model row.
    pub model_files: usize,
}

/// Delete blobs no row points to, if older than `grace_ms` (uploads in flight write the blob
/// before the row, so young orphans are left alone).
pub async fn sweep_orphans(db: &Db, storage: &Storage, grace_ms: i64) -> Result<SweepReport> {
    let cutoff = now_ms() - grace_ms;
    let mut report = SweepReport::default();
    for obj in storage.list("images").await? {
        if obj.modified_ms > cutoff {
            continue;
        }
        let sha = obj.key.trim_start_matches("images/");
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE sha256 = $1")
            .bind(sha)
            .fetch_one(db.pool())
            .await?;
        if used == 0 {
            storage.delete(&obj.key).await?;
            report.images += 1;
        }
    }
    for obj in storage.list("models").await? {
        if obj.modified_ms > cutoff {
            continue;
        }
        let Some(model_id) = obj.key.split('/').nth(1) else {
            continue;
        };
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models WHERE id = $1")
            .bind(model_id)
            .fetch_one(db.pool())
            .await?;
        if used == 0 {
            storage.delete(&obj.key).await?;
            report.model_files += 1;
        }
    }
    for obj in storage.list("health").await? {
        if obj.modified_ms <= cutoff {
            storage.delete(&obj.key).await?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_side: 8192,
        max_pixels: 40_000_000,
    };

    fn png(w: u32, h: u32) -> Bytes {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(out)
    }

    #[test]
    fn file_names_cannot_be_paths() {
        for bad in [
            "../etc/passwd",
            "a/b.png",
            "..\\x.png",
            "x\u{0}.png",
            "..",
            &"a".repeat(300),
        ] {
            assert!(
                matches!(validate_filename(bad), Err(Error::BadRequest(_))),
                "{bad:?}"
            );
        }
        for good in ["cat.png", "IMG 0001.JPG", "été.webp", ""] {
            validate_filename(good).unwrap();
        }
    }

    #[test]
    fn accepts_a_real_png_and_reports_its_facts() {
        let c = check_image("red.png", png(3, 2), LIMITS).unwrap();
        assert_eq!((c.format, c.width, c.height), ("png", 3, 2));
        assert_eq!(c.sha256.len(), 64);
    }

    #[test]
    fn sniffs_content_not_names() {
        let e =
            check_image("photo.jpg", Bytes::from_static(b"hello, I am text"), LIMITS).unwrap_err();
        assert!(matches!(e, Error::UnsupportedFormat(_)), "{e:?}");
        // A PNG named .jpg is a PNG.
        assert_eq!(
            check_image("photo.jpg", png(2, 2), LIMITS).unwrap().format,
            "png"
        );
    }

    #[test]
    fn header_dimensions_are_checked_before_decoding() {
        let small = Limits {
            max_side: 4,
            max_pixels: 100,
        };
        let e = check_image("big.png", png(5, 1), small).unwrap_err();
        assert!(matches!(e, Error::ImageTooLarge(_)), "{e:?}");
        let e = check_image(
            "area.png",
            png(4, 4),
            Limits {
                max_side: 4,
                max_pixels: 15,
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::ImageTooLarge(_)), "{e:?}");
    }

    #[test]
    fn truncated_files_are_invalid() {
        let p = png(64, 64);
        let e = check_image("cut.png", p.slice(..p.len() - 20), LIMITS).unwrap_err();
        assert!(matches!(e, Error::InvalidImage(_)), "{e:?}");
    }
}
