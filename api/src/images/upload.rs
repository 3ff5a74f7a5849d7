//! Ingest of checked images: dedupe by content within the request and the dataset, blobs
//! first (content-addressed), then every row in one transaction. Concurrent requests with the
//! same new image race on the `(dataset_id, sha256)` key: the first insert wins, the others
//! answer `duplicate`. A blob written by a request that then fails is never deleted here (a
//! concurrent request may already reference it): the orphan sweeper removes it after its
//! grace period if no row came to use it.

pub use contract::api::Uploaded;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The client as the rate limiter keys it (empty for the server's own imports).
    pub client: String,
}

/// Caps on what anonymous clients may leave waiting for review.
#[derive(Debug, Clone)]
pub struct PendingCaps {
    /// Images one client may have pending.
    pub per_client: u64,
    /// Images pending in total.
    pub total: u64,
    /// Captions one image may carry (any status).
    pub captions_per_image: u64,
    /// The total, counted at most once per [`PENDING_RECOUNT`] (shared by the server's
    /// requests; a fresh gauge counts on first use).
    pub gauge: Arc<PendingGauge>,
}

impl Default for PendingCaps {
    fn default() -> Self {
        PendingCaps {
            per_client: 1000,
            total: 100_000,
            captions_per_image: 20,
            gauge: Arc::default(),
        }
    }
}

/// How old the counted total of pending images may be.
pub const PENDING_RECOUNT: Duration = Duration::from_secs(1);

/// The number of images waiting for review in total, as last counted plus what this process
/// added since. Counting costs time in proportion to the queue (about 10 ms at 100,000 rows on
/// SQLite), so one request recounts at most once per [`PENDING_RECOUNT`] and the others read
/// the last figure. The total cap is a backstop against filling the disk, so a figure up to a
/// second old (other servers' uploads of that second not yet in it) is precise enough; the
/// per-client cap is counted exactly on every upload.
#[derive(Debug, Default)]
pub struct PendingGauge(Mutex<Option<(Instant, u64)>>);

impl PendingGauge {
    async fn total(&self, db: &Db, cap: u64) -> Result<u64> {
        {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *g {
                Some((at, n)) if at.elapsed() < PENDING_RECOUNT => return Ok(*n),
                // Stale: this request recounts; concurrent ones read the old figure meanwhile.
                Some((at, _)) => *at = Instant::now(),
                None => {}
            }
        }
        let n = count_at_most(db, None, cap).await?;
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), n));
        Ok(n)
    }

    fn add(&self, n: u64) {
        if let Some((_, total)) = &mut *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            *total += n;
        }
    }
}

/// Pending images (of one client, or all), counted up to `cap`: the answer is exact below the
/// cap and `cap` at or above it, and the cost stays bounded by the cap whatever the queue holds.
async fn count_at_most(db: &Db, client: Option<&str>, cap: u64) -> Result<u64> {
    let limit = i64::try_from(cap).unwrap_or(i64::MAX);
    let n: i64 = match client {
        Some(client) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM images WHERE status = $1 AND client = $2 LIMIT $3) AS p",
        )
        .bind(ImageStatus::Pending)
        .bind(client)
        .bind(limit),
        None => sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM images WHERE status = $1 LIMIT $2) AS p",
        )
        .bind(ImageStatus::Pending)
        .bind(limit),
    }
    .fetch_one(db.pool())
    .await?;
    Ok(n.max(0) as u64)
}

/// What an upload request stores: its per-file answers, the files new to the dataset (with
/// the id each gets) and every (image id, caption) pair, for new
/// and known images alike.
#[derive(Default)]
struct Plan {
    results: Vec<Uploaded>,
    fresh: Vec<(Checked, String)>,
    captions: Vec<(String, String)>,
}

/// Sort the files into duplicates (of an earlier file in the request or of an image already
/// in the dataset) and fresh ones. A contributor who sends an image someone else left pending
/// or got rejected learns only that it is known: the answer carries their own label and
/// `pending`, not the other upload's.
async fn plan(
    db: &Db,
    dataset_id: &str,
    label: &str,
    uploader: &Uploader,
    files: Vec<Checked>,
) -> Result<Plan> {
    let status = if uploader.admin {
        ImageStatus::Approved
    } else {
        ImageStatus::Pending
    };
    let mut p = Plan::default();
    let mut first_of: HashMap<String, usize> = HashMap::new();
    let request_label = label;
    for f in files {
        let label = f.label.clone();
        let label = label.as_deref().unwrap_or(request_label);
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
            Some((id, l, s)) => {
                let (l, s) = visible_to(uploader, label, (l, s));
                (id, l, s, true)
            }
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

/// What a duplicate upload may tell its sender about the stored image: admins and approved
/// images are shown as they are; anyone else's pending or rejected upload is not revealed.
fn visible_to(
    uploader: &Uploader,
    sent_label: &str,
    (label, status): (String, ImageStatus),
) -> (String, ImageStatus) {
    if uploader.admin || status == ImageStatus::Approved {
        (label, status)
    } else {
        (sent_label.to_string(), ImageStatus::Pending)
    }
}

/// Write the blobs of fresh files that storage does not hold yet.
async fn put_blobs(storage: &Storage, fresh: &[(Checked, String)]) -> Result<()> {
    for (f, _) in fresh {
        let key = image_key(&f.sha256);
        if storage.size(&key).await? != Some(f.bytes.len() as u64) {
            storage.put(&key, f.bytes.clone()).await?;
        }
    }
    Ok(())
}

/// Refuse an anonymous upload that would leave more images waiting for review than the caps
/// allow (for its client, or in total).
async fn check_pending(
    db: &Db,
    uploader: &Uploader,
    fresh: usize,
    caps: &PendingCaps,
) -> Result<()> {
    if uploader.admin || fresh == 0 {
        return Ok(());
    }
    let mine = count_at_most(db, Some(&uploader.client), caps.per_client).await?;
    if mine + fresh as u64 > caps.per_client {
        return Err(Error::RateLimited(
            3600,
            format!(
                "this client already has {mine} images waiting for review (at most {}); try again once they are reviewed",
                caps.per_client
            ),
        ));
    }
    let all = caps.gauge.total(db, caps.total).await?;
    if all + fresh as u64 > caps.total {
        return Err(Error::Unavailable(format!(
            "the review queue is full ({all} images waiting); contributions are paused until it is reviewed"
        )));
    }
    Ok(())
}

/// Insert the rows of fresh images and every caption in one transaction. A fresh image that a
/// concurrent request inserted first becomes a duplicate of that row (its captions follow it).
async fn insert_rows(
    db: &Db,
    dataset_id: &str,
    label: &str,
    uploader: &Uploader,
    p: &mut Plan,
    caps: &PendingCaps,
) -> Result<()> {
    let now = now_ms();
    let status = if uploader.admin {
        ImageStatus::Approved
    } else {
        ImageStatus::Pending
    };
    let mut tx = db.begin_write().await?;
    let mut winner: HashMap<String, String> = HashMap::new();
    let request_label = label;
    for (f, id) in &p.fresh {
        let label = f.label.as_deref().unwrap_or(request_label);
        let inserted = sqlx::query(
            "INSERT INTO images (id, dataset_id, sha256, label, status, format, bytes, width, height, \
             filename, uploader, client, created_at, reviewed_at, reviewed_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (dataset_id, sha256) DO NOTHING",
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
        .bind(&uploader.client)
        .bind(now)
        .bind(uploader.admin.then_some(now))
        .bind(uploader.admin.then(|| uploader.name.clone()))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() > 0 && !f.boxes.is_empty() {
            super::boxes::write_boxes(&mut tx, id, &f.boxes).await?;
        }
        if inserted.rows_affected() == 0 {
            let (other, l, s): (String, String, ImageStatus) = sqlx::query_as(
                "SELECT id, label, status FROM images WHERE dataset_id = $1 AND sha256 = $2",
            )
            .bind(dataset_id)
            .bind(&f.sha256)
            .fetch_one(&mut *tx)
            .await?;
            let (l, s) = visible_to(uploader, label, (l, s));
            for r in p.results.iter_mut().filter(|r| r.id == *id) {
                (r.id, r.label, r.status, r.duplicate) = (other.clone(), l.clone(), s, true);
            }
            winner.insert(id.clone(), other);
        }
    }
    let caption_status = status;
    for (id, caption) in &p.captions {
        let id = winner.get(id).unwrap_or(id);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM captions WHERE image_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if count as u64 >= caps.captions_per_image {
            return Err(Error::Invalid(format!(
                "image {id} already has {count} captions (at most {})",
                caps.captions_per_image
            )));
        }
        sqlx::query(
            "INSERT INTO captions (image_id, caption, created_at, uploader, status, reviewed_at, reviewed_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (image_id, caption) DO NOTHING",
        )
        .bind(id)
        .bind(caption)
        .bind(now)
        .bind(&uploader.name)
        .bind(caption_status)
        .bind(uploader.admin.then_some(now))
        .bind(uploader.admin.then(|| uploader.name.clone()))
        .execute(&mut *tx)
        .await?;
    }
    crate::db::commit(tx).await?;
    Ok(())
}

/// Store checked images: blobs first (content-addressed), then all rows in one transaction
/// (nothing written on failure; blobs left behind are the sweeper's). Admin uploads and their
/// captions are approved at once; anyone else's wait for review.
pub async fn ingest(
    db: &Db,
    storage: &Storage,
    dataset_id: &str,
    label: &str,
    files: Vec<Checked>,
    uploader: &Uploader,
    caps: PendingCaps,
) -> Result<Vec<Uploaded>> {
    let known = labels(db, dataset_id).await?;
    let detect = super::boxes::dataset_task(db, dataset_id).await? == contract::Task::Detect;
    for f in &files {
        if detect {
            super::boxes::check_boxes(&f.boxes, f.width, f.height, &known)?;
        } else if !f.boxes.is_empty() {
            return Err(Error::Invalid(format!(
                "dataset {dataset_id:?} holds labelled images: boxes go to a detection dataset"
            )));
        }
    }
    for label in files
        .iter()
        .map(|f| f.label.as_deref().unwrap_or(label))
        .chain([label])
    {
        if !known.iter().any(|l| l == label) {
            return Err(Error::UnknownLabel(format!(
                "dataset {dataset_id:?} has no label {label:?} (labels: {})",
                known.join(", ")
            )));
        }
    }
    for f in &files {
        for c in &f.captions {
            validate_caption(c)?;
        }
    }
    let mut p = plan(db, dataset_id, label, uploader, files).await?;
    check_pending(db, uploader, p.fresh.len(), &caps).await?;
    put_blobs(storage, &p.fresh).await?;
    insert_rows(db, dataset_id, label, uploader, &mut p, &caps).await?;
    if !uploader.admin {
        let added = p.results.iter().filter(|r| !r.duplicate).count();
        caps.gauge.add(added as u64);
    }
    Ok(p.results)
}
