//! Reading images: the admin's filtered pages, one image, contributors' status checks, and
//! the captions a ranking run trains on.

use std::collections::HashMap;

use serde::Deserialize;

use crate::db::Db;
use crate::{Error, Result};
use contract::ImageStatus as Review;
pub use contract::api::{ImagePage, ImageReview as ImageStatus, ImageRow};

/// Filter for [`list_images`].
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct ImageQuery {
    /// Dataset id.
    pub dataset: Option<String>,
    /// `pending`, `approved` or `rejected`.
    #[param(inline)]
    pub status: Option<Review>,
    /// Label.
    pub label: Option<String>,
    /// Page size (default 50, max 500).
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

/// Images matching a filter, newest first.
pub async fn list_images(db: &Db, q: &ImageQuery) -> Result<ImagePage> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let filter = "($1 IS NULL OR dataset_id = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR label = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM images WHERE {filter}"
    )))
    .bind(q.dataset.clone())
    .bind(q.status)
    .bind(q.label.clone())
    .fetch_one(db.pool())
    .await?;
    let images = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM images WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    )))
    .bind(q.dataset.clone())
    .bind(q.status)
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
