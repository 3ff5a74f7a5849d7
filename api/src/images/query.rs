//! Reading images: the admin's filtered pages (with each image's captions), one image,
//! contributors' status checks, the caption review queue, and the approved captions a ranking
//! run trains on.

use std::collections::HashMap;

use serde::Deserialize;

use crate::db::Db;
use crate::{Error, Result};
use contract::ImageStatus as Review;
pub use contract::api::{Caption, CaptionPage, ImagePage, ImageReview as ImageStatus, ImageRow};

/// Filter for [`list_images`].
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageQuery {
    /// Dataset id.
    pub dataset: Option<String>,
    /// `pending`, `approved` or `rejected`.
    #[param(inline)]
    pub status: Option<Review>,
    /// Label.
    pub label: Option<String>,
    /// Page size (default 50, max 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Rows to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<i64>,
}

/// A page's limit and offset within the documented bounds (400 outside them).
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64)> {
    let limit = crate::util::in_range("limit", limit, 1, 500)?.unwrap_or(50);
    let offset = crate::util::in_range("offset", offset, 0, 1_000_000)?.unwrap_or(0);
    Ok((limit, offset))
}

/// Images matching a filter, newest first.
pub async fn list_images(db: &Db, q: &ImageQuery) -> Result<ImagePage> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = "($1 IS NULL OR dataset_id = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR label = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM images WHERE {filter}"
    )))
    .bind(q.dataset.clone())
    .bind(q.status)
    .bind(q.label.clone())
    .fetch_one(db.pool())
    .await?;
    let mut images: Vec<ImageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM images WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    )))
    .bind(q.dataset.clone())
    .bind(q.status)
    .bind(q.label.clone())
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    attach_captions(db, &mut images).await?;
    Ok(ImagePage { total, images })
}

/// The columns of a [`Caption`], from `captions c JOIN images i`.
const CAPTION_COLUMNS: &str = "c.image_id, i.dataset_id, i.label, c.caption, c.uploader, c.status, \
     c.created_at, c.reviewed_at, c.reviewed_by";

/// Fill in the captions and boxes of a page of images (one query each for the page).
async fn attach_captions(db: &Db, images: &mut [ImageRow]) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let marks = (1..=images.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CAPTION_COLUMNS} FROM captions c JOIN images i ON i.id = c.image_id \
         WHERE c.image_id IN ({marks}) ORDER BY c.created_at, c.caption"
    )));
    for img in images.iter() {
        q = q.bind(img.id.clone());
    }
    let rows: Vec<Caption> = q.fetch_all(db.pool()).await?;
    let mut by_image: HashMap<String, Vec<Caption>> = HashMap::new();
    for c in rows {
        by_image.entry(c.image_id.clone()).or_default().push(c);
    }
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    let mut boxes = super::boxes::boxes_of_images(db, &ids).await?;
    for img in images {
        img.captions = by_image.remove(&img.id).unwrap_or_default();
        img.boxes = boxes.remove(&img.id).unwrap_or_default();
    }
    Ok(())
}

/// One caption of an image.
pub async fn caption(db: &Db, image_id: &str, text: &str) -> Result<Option<Caption>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CAPTION_COLUMNS} FROM captions c JOIN images i ON i.id = c.image_id \
         WHERE c.image_id = $1 AND c.caption = $2"
    )))
    .bind(image_id)
    .bind(text)
    .fetch_optional(db.pool())
    .await?)
}

/// Filter for [`list_captions`].
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaptionQuery {
    /// `pending` (default), `approved` or `rejected`.
    #[param(inline)]
    pub status: Option<Review>,
    /// Page size (default 50, max 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Rows to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<i64>,
}

/// Captions with a status (pending by default) whose image is approved, oldest first: the
/// caption review queue (captions of pending images are decided with their image).
pub async fn list_captions(db: &Db, q: &CaptionQuery) -> Result<CaptionPage> {
    let status = q.status.unwrap_or(Review::Pending);
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = "c.status = $1 AND i.status = $2";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM captions c JOIN images i ON i.id = c.image_id WHERE {filter}"
    )))
    .bind(status)
    .bind(Review::Approved)
    .fetch_one(db.pool())
    .await?;
    let captions = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CAPTION_COLUMNS} FROM captions c JOIN images i ON i.id = c.image_id \
         WHERE {filter} ORDER BY c.created_at, c.image_id, c.caption LIMIT $3 OFFSET $4"
    )))
    .bind(status)
    .bind(Review::Approved)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    Ok(CaptionPage { total, captions })
}

/// One image; `NotFound` when absent.
pub async fn get_image(db: &Db, id: &str) -> Result<ImageRow> {
    let img: ImageRow = sqlx::query_as("SELECT * FROM images WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no image {id:?}")))?;
    let mut one = [img];
    attach_captions(db, &mut one).await?;
    let [img] = one;
    Ok(img)
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

/// Approved captions of images, by image id (for ranking runs and their galleries).
pub async fn captions_of(db: &Db, dataset_id: &str) -> Result<HashMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.image_id, c.caption FROM captions c JOIN images i ON i.id = c.image_id \
         WHERE i.dataset_id = $1 AND c.status = $2 ORDER BY c.image_id, c.created_at, c.caption",
    )
    .bind(dataset_id)
    .bind(Review::Approved)
    .fetch_all(db.pool())
    .await?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (id, c) in rows {
        out.entry(id).or_default().push(c);
    }
    Ok(out)
}
