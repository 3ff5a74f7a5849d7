//! Ingest of checked images: dedupe by content within the request and the dataset, blobs
//! first (content-addressed), then every row in one transaction; on failure the blobs this
//! request created are deleted again, so a request stores all its files or none.

pub use contract::api::Uploaded;
use std::collections::HashMap;

use bytes::Bytes;

use super::check::{Checked, validate_caption};
use super::datasets::labels;
use crate::db::Db;
use crate::storage::{Storage, image_key};
use crate::util::{new_id, now_ms};
use crate::{Error, Result};
use contract::ImageStatus;

/// One file of an upload request.
#[derive(Debug, Clone)]
pub struct UploadFile {
    /// Client-side name (validated; `upload` when the client sent none).
    pub filename: String,
    /// The file as received, not yet checked.
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

/// What an upload request stores: its per-file answers, the files new to the dataset (with
/// the id each gets) and every (image id, caption) pair, for new and known images alike.
#[derive(Default)]
struct Plan {
    results: Vec<Uploaded>,
    fresh: Vec<(Checked, String)>,
    captions: Vec<(String, String)>,
}

/// Sort the files into duplicates (of an earlier file in the request or of an image already
/// in the dataset) and fresh ones.
async fn plan(
    db: &Db,
    dataset_id: &str,
    label: &str,
    status: ImageStatus,
    files: Vec<Checked>,
) -> Result<Plan> {
    let mut p = Plan::default();
    let mut first_of: HashMap<String, usize> = HashMap::new();
    for f in files {
        if let Some(&i) = first_of.get(&f.sha256) {
            let id = p.results[i].id.clone();
            p.captions
                .extend(f.captions.iter().map(|c| (id.clone(), c.clone())));
            let u = Uploaded {
                filename: f.filename,
                duplicate: true,
                ..p.results[i].clone()
            };
            p.results.push(u);
            continue;
        }
        first_of.insert(f.sha256.clone(), p.results.len());
        let existing: Option<(String, String, ImageStatus)> = sqlx::query_as(
            "SELECT id, label, status FROM images WHERE dataset_id = $1 AND sha256 = $2",
        )
        .bind(dataset_id)
        .bind(&f.sha256)
        .fetch_optional(db.pool())
        .await?;
        let (id, label, status, duplicate) = match existing {
            Some((id, label, status)) => (id, label, status, true),
            None => (new_id("img"), label.to_string(), status, false),
        };
        p.captions
            .extend(f.captions.iter().map(|c| (id.clone(), c.clone())));
        p.results.push(Uploaded {
            filename: f.filename.clone(),
            id: id.clone(),
            sha256: f.sha256.clone(),
            label,
            status,
            duplicate,
        });
        if !duplicate {
            p.fresh.push((f, id));
        }
    }
    Ok(p)
}

/// Write the blobs of fresh files that storage does not hold yet; returns the keys created.
/// On failure the blobs created so far are deleted again.
async fn put_blobs(db: &Db, storage: &Storage, fresh: &[(Checked, String)]) -> Result<Vec<String>> {
    let mut created = Vec::new();
    for (f, _) in fresh {
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
    Ok(created)
}

/// Insert the rows of fresh images and every caption in one transaction.
async fn insert_rows(
    db: &Db,
    dataset_id: &str,
    label: &str,
    status: ImageStatus,
    uploader: &Uploader,
    p: &Plan,
) -> Result<()> {
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    for (f, id) in &p.fresh {
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
    for (id, caption) in &p.captions {
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
    Ok(())
}

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
    let status = if uploader.admin {
        ImageStatus::Approved
    } else {
        ImageStatus::Pending
    };
    for f in &files {
        for c in &f.captions {
            validate_caption(c)?;
        }
    }
    let p = plan(db, dataset_id, label, status, files).await?;
    let created = put_blobs(db, storage, &p.fresh).await?;
    if let Err(e) = insert_rows(db, dataset_id, label, status, uploader, &p).await {
        undo_blobs(db, storage, &created).await;
        return Err(e);
    }
    Ok(p.results)
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
