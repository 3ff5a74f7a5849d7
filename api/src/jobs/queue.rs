//! The run queue in the database: queueing, reading and cancelling runs, claiming the oldest
//! queued run (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a single atomic UPDATE on SQLite),
//! re-queueing runs whose worker died, and auto-retrain after N new approved images.

pub use contract::api::RunInfo;
use contract::{ImageStatus, RunStatus, Task};
use trainer::dataset::Split;
use trainer::train::TrainConfig;

use super::task::task_named;
use crate::db::{Backend, Db};
use crate::metrics::time_db;
use crate::util::{new_id, now_ms};
use crate::{Error, Result};

/// Runs that crashed their worker this many times are failed instead of re-queued.
pub const MAX_ATTEMPTS: i64 = 2;

/// A `runs` row as stored (JSON columns still text).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct RunRow {
    pub(super) id: String,
    pub(super) dataset_id: String,
    pub(super) task: Task,
    pub(super) params: String,
    pub(super) status: RunStatus,
    pub(super) reason: String,
    pub(super) progress: Option<String>,
    pub(super) epochs: String,
    pub(super) error: Option<String>,
    pub(super) snapshot_id: Option<String>,
    pub(super) images: Option<i64>,
    pub(super) model_id: Option<String>,
    pub(super) worker: Option<String>,
    pub(super) cancel_requested: i64,
    pub(super) attempts: i64,
    pub(super) created_at: i64,
    pub(super) started_at: Option<i64>,
    pub(super) heartbeat_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
}

impl TryFrom<RunRow> for RunInfo {
    type Error = Error;
    fn try_from(r: RunRow) -> Result<Self> {
        Ok(RunInfo {
            params: serde_json::from_str(&r.params)?,
            progress: r
                .progress
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            epochs: serde_json::from_str(&r.epochs)?,
            id: r.id,
            dataset_id: r.dataset_id,
            task: r.task,
            status: r.status,
            reason: r.reason,
            error: r.error,
            snapshot_id: r.snapshot_id,
            images: r.images,
            model_id: r.model_id,
            worker: r.worker,
            attempts: r.attempts,
            cancel_requested: r.cancel_requested != 0,
            created_at: r.created_at,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
            finished_at: r.finished_at,
        })
    }
}

/// Queue a classification run on a dataset.
pub async fn enqueue(
    db: &Db,
    dataset_id: &str,
    params: &TrainConfig,
    reason: &str,
) -> Result<RunInfo> {
    enqueue_task(
        db,
        dataset_id,
        Task::Classify.as_str(),
        &serde_json::to_value(params)?,
        reason,
    )
    .await
}

/// Queue a run of `task` (`classify` or `rank`) with already validated parameters.
pub async fn enqueue_task(
    db: &Db,
    dataset_id: &str,
    task: &str,
    params: &serde_json::Value,
    reason: &str,
) -> Result<RunInfo> {
    let id = insert_run(db, dataset_id, task_named(task)?, params, reason, false).await?;
    get_run(db, &id).await
}

/// Insert a queued run; `auto` runs are at most one queued per dataset and task (a unique
/// index), so a concurrent second one fails with a unique violation.
async fn insert_run(
    db: &Db,
    dataset_id: &str,
    task: Task,
    params: &serde_json::Value,
    reason: &str,
    auto: bool,
) -> Result<String> {
    let ds = crate::images::get_dataset(db, dataset_id).await?;
    // Detectors train on boxes, every other task on labelled images.
    if (task == Task::Detect) != (ds.task == Task::Detect) {
        return Err(Error::Invalid(if task == Task::Detect {
            format!(
                "dataset {:?} holds labelled images, not boxes: a detector trains on a \
                 detection dataset (POST /api/datasets with \"task\": \"detect\")",
                ds.id
            )
        } else {
            format!(
                "dataset {:?} holds images with boxes: it trains detectors (task \"detect\"), \
                 not {:?}",
                ds.id,
                task.as_str()
            )
        }));
    }
    let id = new_id("run");
    sqlx::query(
        "INSERT INTO runs (id, dataset_id, task, params, status, reason, progress, epochs, cancel_requested, attempts, created_at, auto) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, '[]', 0, 0, $7, $8)",
    )
    .bind(&id)
    .bind(&ds.id)
    .bind(task)
    .bind(serde_json::to_string(params)?)
    .bind(RunStatus::Queued)
    .bind(reason)
    .bind(now_ms())
    .bind(i64::from(auto))
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// Queued and running runs, and the oldest queued run's creation time (for the metrics).
pub async fn stats(db: &Db) -> Result<crate::metrics::QueueStats> {
    let (queued, running, oldest): (i64, i64, Option<i64>) = time_db(
        "queue_stats",
        sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM runs WHERE status = 'queued'), \
               (SELECT COUNT(*) FROM runs WHERE status = 'running'), \
               (SELECT MIN(created_at) FROM runs WHERE status = 'queued')",
        )
        .fetch_one(db.pool()),
    )
    .await?;
    Ok(crate::metrics::QueueStats {
        queued,
        running,
        oldest_queued_ms: oldest,
    })
}

/// One run; `NotFound` when absent.
pub async fn get_run(db: &Db, id: &str) -> Result<RunInfo> {
    let row: RunRow = sqlx::query_as("SELECT * FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no training run {id:?}")))?;
    row.try_into()
}

/// Runs, newest first.
pub async fn list_runs(db: &Db, limit: i64) -> Result<Vec<RunInfo>> {
    let rows: Vec<RunRow> =
        sqlx::query_as("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT $1")
            .bind(limit.clamp(1, 1000))
            .fetch_all(db.pool())
            .await?;
    rows.into_iter().map(RunInfo::try_from).collect()
}

/// Cancel a run: a queued run is cancelled at once; a running one is flagged and its worker
/// stops at the next batch.
pub async fn cancel(db: &Db, id: &str) -> Result<RunInfo> {
    let run = get_run(db, id).await?;
    match run.status {
        RunStatus::Queued => {
            sqlx::query("UPDATE runs SET status = $1, finished_at = $2, error = $3 WHERE id = $4 AND status = $5")
                .bind(RunStatus::Cancelled)
                .bind(now_ms())
                .bind("cancelled before it started")
                .bind(id)
                .bind(RunStatus::Queued)
                .execute(db.pool())
                .await?;
        }
        RunStatus::Running => {
            sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1")
                .bind(id)
                .execute(db.pool())
                .await?;
        }
        other => return Err(Error::Conflict(format!("run {id} already {other}"))),
    }
    get_run(db, id).await
}

/// Claim the oldest queued run for `worker` as its raw row.
pub(super) async fn claim_next(db: &Db, worker: &str) -> Result<Option<RunRow>> {
    let pick = match db.backend() {
        Backend::Postgres => {
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
        Backend::Sqlite => {
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1"
        }
    };
    let now = now_ms();
    let sql = format!(
        "UPDATE runs SET status = 'running', worker = $1, started_at = $2, heartbeat_at = $2, \
         attempts = attempts + 1, progress = NULL, epochs = '[]', error = NULL \
         WHERE id = ({pick}) AND status = 'queued' RETURNING *"
    );
    Ok(time_db(
        "claim",
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(now)
            .fetch_optional(db.pool()),
    )
    .await?)
}

/// Claim the oldest queued run for `worker`, if any (safe with many concurrent workers).
pub async fn claim(db: &Db, worker: &str) -> Result<Option<RunInfo>> {
    claim_next(db, worker)
        .await?
        .map(RunInfo::try_from)
        .transpose()
}

/// Runs whose worker stopped heart-beating for `lease_ms`: re-queued, or failed once they
/// used [`MAX_ATTEMPTS`]. Returns the affected run ids.
pub async fn reap_stale(db: &Db, lease_ms: i64) -> Result<Vec<String>> {
    let cutoff = now_ms() - lease_ms;
    let stale: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, attempts, worker FROM runs WHERE status = 'running' AND heartbeat_at < $1",
    )
    .bind(cutoff)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::new();
    for (id, attempts, worker) in stale {
        let worker = worker.unwrap_or_default();
        let done = if attempts >= MAX_ATTEMPTS {
            sqlx::query(
                "UPDATE runs SET status = 'failed', finished_at = $1, error = $2 \
                 WHERE id = $3 AND status = 'running' AND heartbeat_at < $4",
            )
            .bind(now_ms())
            .bind(format!(
                "worker {worker} stopped responding (attempt {attempts} of {MAX_ATTEMPTS}); the champion is unchanged"
            ))
            .bind(&id)
            .bind(cutoff)
            .execute(db.pool())
            .await?
        } else {
            sqlx::query(
                "UPDATE runs SET status = 'queued', worker = NULL, progress = NULL, epochs = '[]', \
                 error = $1 WHERE id = $2 AND status = 'running' AND heartbeat_at < $3",
            )
            .bind(format!("worker {worker} stopped responding; re-queued"))
            .bind(&id)
            .bind(cutoff)
            .execute(db.pool())
            .await?
        };
        if done.rows_affected() == 1 {
            tracing::warn!(run = %id, %worker, attempts, "reaped a run whose worker stopped");
            out.push(id);
        }
    }
    Ok(out)
}

/// Queue a retrain when `threshold` images were approved since the dataset's last run and no
/// run is queued or running for it; under any concurrency at most one is queued (the
/// database's unique index decides).
pub async fn maybe_auto_retrain(
    db: &Db,
    dataset_id: &str,
    threshold: u64,
) -> Result<Option<RunInfo>> {
    if threshold == 0 {
        return Ok(None);
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE dataset_id = $1 AND status IN ('queued', 'running')",
    )
    .bind(dataset_id)
    .fetch_one(db.pool())
    .await?;
    if active > 0 {
        return Ok(None);
    }
    let since: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(created_at) FROM runs WHERE dataset_id = $1 AND status <> 'cancelled'",
    )
    .bind(dataset_id)
    .fetch_one(db.pool())
    .await?;
    let fresh: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM images WHERE dataset_id = $1 AND status = $2 AND reviewed_at > $3",
    )
    .bind(dataset_id)
    .bind(ImageStatus::Approved)
    .bind(since.unwrap_or(0))
    .fetch_one(db.pool())
    .await?;
    if (fresh as u64) < threshold {
        return Ok(None);
    }
    // A detection dataset retrains its detector; any other its classifier.
    let (task, params) = match crate::images::dataset_task(db, dataset_id).await? {
        // A detector trains, selects and is gated on images of all three splits: until the
        // approved ones fall in each, a run would only fail; the approvals keep counting.
        Task::Detect if !every_split(db, dataset_id).await? => {
            tracing::info!(dataset = %dataset_id, fresh, "auto-retrain waits for approved images in every split");
            return Ok(None);
        }
        Task::Detect => (
            Task::Detect,
            serde_json::to_value(trainer::detect::fit::DetectConfig::default())?,
        ),
        _ => (
            Task::Classify,
            serde_json::to_value(TrainConfig::default())?,
        ),
    };
    let queued = insert_run(
        db,
        dataset_id,
        task,
        &params,
        &format!("auto: {fresh} newly approved images"),
        true,
    )
    .await;
    let id = match queued {
        Ok(id) => id,
        // A concurrent request queued it first.
        Err(Error::Db(sqlx::Error::Database(d))) if d.is_unique_violation() => return Ok(None),
        Err(e) => return Err(e),
    };
    tracing::info!(run = %id, fresh, "auto-retrain queued");
    Ok(Some(get_run(db, &id).await?))
}

/// Whether the dataset's approved images fall in all three splits (train, validation, test;
/// an image's split is fixed by its content's hash, as the trainer assigns it).
async fn every_split(db: &Db, dataset_id: &str) -> Result<bool> {
    let digests: Vec<String> =
        sqlx::query_scalar("SELECT sha256 FROM images WHERE dataset_id = $1 AND status = $2")
            .bind(dataset_id)
            .bind(ImageStatus::Approved)
            .fetch_all(db.pool())
            .await?;
    let mut seen = [false; 3];
    for hex_digest in &digests {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut raw)
            .map_err(|e| Error::Internal(format!("stored sha256 {hex_digest:?}: {e}")))?;
        seen[match Split::of_digest(&raw) {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }] = true;
        if seen == [true; 3] {
            return Ok(true);
        }
    }
    Ok(false)
}
