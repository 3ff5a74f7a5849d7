//! Training jobs: a queue in the database, workers that claim runs (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, a single atomic UPDATE on SQLite), heartbeats carrying live progress, cancel,
//! re-queueing of runs whose worker died, and auto-retrain after N new approved images.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OnceCell, watch};
use trainer::backbone::Backbone;
use trainer::pipeline::{self, Progress, RunMeta};
use trainer::rank::RankConfig;
use trainer::train::{EpochMetrics, TrainConfig};

use crate::db::{Backend, Db};
use crate::images::status as image_status;
use crate::metrics::Metrics;
use crate::registry;
use crate::storage::{Storage, image_key};
use crate::util::{new_id, now_ms};
use crate::{Error, Result};

/// Run states.
pub mod status {
    /// Waiting for a worker.
    pub const QUEUED: &str = "queued";
    /// Claimed by a worker.
    pub const RUNNING: &str = "running";
    /// Finished; a candidate was registered.
    pub const SUCCEEDED: &str = "succeeded";
    /// Finished with an error (the champion is untouched).
    pub const FAILED: &str = "failed";
    /// Cancelled by an admin.
    pub const CANCELLED: &str = "cancelled";
}

/// Runs that crashed their worker this many times are failed instead of re-queued.
pub const MAX_ATTEMPTS: i64 = 2;

#[derive(Debug, Clone, sqlx::FromRow)]
struct RunRow {
    id: String,
    dataset_id: String,
    task: String,
    params: String,
    status: String,
    reason: String,
    progress: Option<String>,
    epochs: String,
    error: Option<String>,
    snapshot_id: Option<String>,
    images: Option<i64>,
    model_id: Option<String>,
    worker: Option<String>,
    cancel_requested: i64,
    attempts: i64,
    created_at: i64,
    started_at: Option<i64>,
    heartbeat_at: Option<i64>,
    finished_at: Option<i64>,
}

/// A training run as the api reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunInfo {
    /// Id.
    pub id: String,
    /// Dataset trained on.
    pub dataset_id: String,
    /// `classify` or `rank`.
    pub task: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Why it was started (`manual`, `auto: …`, `startup`).
    pub reason: String,
    /// Hyper-parameters.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Latest progress event (`stage`: features, batch, epoch, export).
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Progress>,
    /// Per-epoch metrics so far.
    #[schema(value_type = Vec<Object>)]
    pub epochs: Vec<EpochMetrics>,
    /// Why it failed.
    pub error: Option<String>,
    /// Content id of the approved images it trained on.
    pub snapshot_id: Option<String>,
    /// Number of approved images in the snapshot.
    pub images: Option<i64>,
    /// Candidate it registered.
    pub model_id: Option<String>,
    /// Worker that holds or held it.
    pub worker: Option<String>,
    /// Claims so far (a run whose worker died is re-queued once).
    pub attempts: i64,
    /// Cancel was requested.
    pub cancel_requested: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub started_at: Option<i64>,
    /// Unix ms of the last heartbeat.
    pub heartbeat_at: Option<i64>,
    /// Unix ms.
    pub finished_at: Option<i64>,
}

impl RunInfo {
    /// Whether the run will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            status::SUCCEEDED | status::FAILED | status::CANCELLED
        )
    }
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

/// Merge user parameters (a JSON object, unknown keys refused) over the defaults and validate.
pub fn parse_params(params: Option<&serde_json::Value>) -> Result<TrainConfig> {
    let Some(v) = params else {
        return Ok(TrainConfig::default());
    };
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Invalid("params must be a JSON object".into()))?;
    let defaults = serde_json::to_value(TrainConfig::default())?;
    let known = defaults
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(k) = obj.keys().find(|k| !known.contains(k)) {
        return Err(Error::Invalid(format!(
            "unknown training parameter {k:?} (known: {})",
            known.join(", ")
        )));
    }
    let cfg: TrainConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Invalid(format!("training parameters: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
}

/// Merge user parameters of a ranking run over [`RankConfig`]'s defaults and validate.
pub fn parse_rank_params(params: Option<&serde_json::Value>) -> Result<RankConfig> {
    let Some(v) = params else {
        return Ok(RankConfig::default());
    };
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Invalid("params must be a JSON object".into()))?;
    let defaults = serde_json::to_value(RankConfig::default())?;
    let known: Vec<String> = defaults
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(k) = obj.keys().find(|k| !known.contains(k)) {
        return Err(Error::Invalid(format!(
            "unknown ranking parameter {k:?} (known: {})",
            known.join(", ")
        )));
    }
    let cfg: RankConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Invalid(format!("ranking parameters: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
}

/// Tasks a run can train.
pub const TASKS: [&str; 2] = ["classify", "rank"];

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
        "classify",
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
    if !TASKS.contains(&task) {
        return Err(Error::Invalid(format!(
            "unknown task {task:?} (known: {})",
            TASKS.join(", ")
        )));
    }
    let ds = crate::images::get_dataset(db, dataset_id).await?;
    let id = new_id("run");
    sqlx::query(
        "INSERT INTO runs (id, dataset_id, task, params, status, reason, progress, epochs, cancel_requested, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, '[]', 0, 0, $7)",
    )
    .bind(&id)
    .bind(&ds.id)
    .bind(task)
    .bind(serde_json::to_string(params)?)
    .bind(status::QUEUED)
    .bind(reason)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    get_run(db, &id).await
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
    match run.status.as_str() {
        status::QUEUED => {
            sqlx::query("UPDATE runs SET status = $1, finished_at = $2, error = $3 WHERE id = $4 AND status = $5")
                .bind(status::CANCELLED)
                .bind(now_ms())
                .bind("cancelled before it started")
                .bind(id)
                .bind(status::QUEUED)
                .execute(db.pool())
                .await?;
        }
        status::RUNNING => {
            sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1")
                .bind(id)
                .execute(db.pool())
                .await?;
        }
        other => return Err(Error::Conflict(format!("run {id} already {other}"))),
    }
    get_run(db, id).await
}

async fn claim_next(db: &Db, worker: &str) -> Result<Option<RunRow>> {
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
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now)
        .fetch_optional(db.pool())
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
/// run is queued or running for it.
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
    .bind(image_status::APPROVED)
    .bind(since.unwrap_or(0))
    .fetch_one(db.pool())
    .await?;
    if (fresh as u64) < threshold {
        return Ok(None);
    }
    let run = enqueue(
        db,
        dataset_id,
        &TrainConfig::default(),
        &format!("auto: {fresh} newly approved images"),
    )
    .await?;
    tracing::info!(run = %run.id, fresh, "auto-retrain queued");
    Ok(Some(run))
}

#[derive(Default)]
struct Live {
    progress: Option<Progress>,
    epochs: Vec<EpochMetrics>,
}

/// What a worker needs.
#[derive(Clone)]
pub struct Worker {
    /// Database.
    pub db: Db,
    /// Blob store.
    pub storage: Storage,
    /// Backbone weights file.
    pub backbone_path: std::path::PathBuf,
    /// Loaded once per process.
    pub backbone: Arc<OnceCell<Arc<Backbone>>>,
    /// Gate margin.
    pub gate_margin: f64,
    /// Identity written into claimed runs.
    pub id: String,
    /// Heartbeat and progress write interval.
    pub heartbeat: Duration,
    /// Woken when a run is queued in this process.
    pub wake: Arc<Notify>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// How a claimed run ended for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Candidate registered.
    Succeeded(String),
    /// Error recorded.
    Failed(String),
    /// Cancelled by request.
    Cancelled,
    /// Interrupted by shutdown and re-queued.
    Requeued,
    /// Another party took the run away (lease expired).
    Lost,
}

impl Worker {
    /// A worker identity: host, pid and a random suffix.
    pub fn make_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        format!(
            "{host}-{}-{}",
            std::process::id(),
            crate::util::random_hex(3)
        )
    }

    /// Claim and run jobs until `shutdown` turns true.
    pub async fn run_forever(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, "training worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            match claim_next(&self.db, &self.id).await {
                Ok(Some(run)) => {
                    let outcome = self.execute(run, shutdown.clone()).await;
                    tracing::info!(worker = %self.id, ?outcome, "run finished");
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not claim a run"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.id, "training worker stopped");
    }

    /// Claim one queued run and execute it (for tests and one-shot workers).
    pub async fn run_once(&self) -> Result<Option<(String, Outcome)>> {
        let (_tx, rx) = watch::channel(false);
        match claim_next(&self.db, &self.id).await? {
            Some(run) => {
                let id = run.id.clone();
                Ok(Some((id, self.execute(run, rx).await)))
            }
            None => Ok(None),
        }
    }

    async fn backbone(&self) -> Result<Arc<Backbone>> {
        let path = self.backbone_path.clone();
        self.backbone
            .get_or_try_init(|| async move {
                let b = tokio::task::spawn_blocking(move || Backbone::load(&path))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))??;
                Ok::<_, Error>(Arc::new(b))
            })
            .await
            .cloned()
    }

    async fn execute(&self, run: RunRow, mut shutdown: watch::Receiver<bool>) -> Outcome {
        let live = Arc::new(Mutex::new(Live::default()));
        let cancel = Arc::new(AtomicBool::new(false));
        tracing::info!(run = %run.id, worker = %self.id, attempt = run.attempts, "training run claimed");
        let work = self.train(&run, live.clone(), cancel.clone());
        tokio::pin!(work);
        let mut tick = tokio::time::interval(self.heartbeat);
        let mut lost = false;
        let mut interrupted = false;
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {
                    match self.beat(&run.id, &live).await {
                        Ok(Some(false)) => {}
                        Ok(Some(true)) => cancel.store(true, Ordering::Relaxed),
                        Ok(None) => { lost = true; cancel.store(true, Ordering::Relaxed); }
                        Err(e) => tracing::warn!(run = %run.id, error = %e, "heartbeat failed"),
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        interrupted = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        };
        let _ = self.beat(&run.id, &live).await;
        let outcome = match result {
            _ if lost => Outcome::Lost,
            Ok(model_id) => Outcome::Succeeded(model_id),
            Err(Error::Trainer(trainer::Error::Cancelled)) if interrupted => Outcome::Requeued,
            Err(Error::Trainer(trainer::Error::Cancelled)) => Outcome::Cancelled,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        if let Err(e) = self.finish(&run, &outcome).await {
            tracing::error!(run = %run.id, error = %e, "could not record the end of a run");
        }
        let label = match &outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Requeued => "requeued",
            Outcome::Lost => "lost",
        };
        self.metrics.training_runs.with_label_values(&[label]).inc();
        outcome
    }

    /// Write progress + heartbeat; `Some(cancel_requested)` or `None` when the run is no
    /// longer ours.
    async fn beat(&self, run_id: &str, live: &Mutex<Live>) -> Result<Option<bool>> {
        let (progress, epochs) = {
            let l = live
                .lock()
                .map_err(|_| Error::Internal("progress lock poisoned".into()))?;
            (
                l.progress.as_ref().map(serde_json::to_string).transpose()?,
                serde_json::to_string(&l.epochs)?,
            )
        };
        let flag: Option<i64> = sqlx::query_scalar(
            "UPDATE runs SET heartbeat_at = $1, progress = $2, epochs = $3 \
             WHERE id = $4 AND worker = $5 AND status = 'running' RETURNING cancel_requested",
        )
        .bind(now_ms())
        .bind(progress)
        .bind(epochs)
        .bind(run_id)
        .bind(&self.id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(flag.map(|f| f != 0))
    }

    async fn finish(&self, run: &RunRow, outcome: &Outcome) -> Result<()> {
        let now = now_ms();
        let (sql, error, model): (&str, Option<String>, Option<String>) = match outcome {
            Outcome::Lost => return Ok(()),
            Outcome::Succeeded(m) => (
                "UPDATE runs SET status = 'succeeded', finished_at = $1, error = $2, model_id = $3 WHERE id = $4 AND worker = $5",
                None,
                Some(m.clone()),
            ),
            Outcome::Failed(e) => (
                "UPDATE runs SET status = 'failed', finished_at = $1, error = $2, model_id = $3 WHERE id = $4 AND worker = $5",
                Some(e.clone()),
                None,
            ),
            Outcome::Cancelled => (
                "UPDATE runs SET status = 'cancelled', finished_at = $1, error = $2, model_id = $3 WHERE id = $4 AND worker = $5",
                Some("cancelled while running".into()),
                None,
            ),
            Outcome::Requeued => (
                "UPDATE runs SET status = 'queued', worker = NULL, progress = NULL, epochs = '[]', \
                 attempts = attempts - 1, started_at = NULL, finished_at = $1, error = $2, model_id = $3 WHERE id = $4 AND worker = $5",
                Some("interrupted by a server shutdown; re-queued".into()),
                None,
            ),
        };
        sqlx::query(sql)
            .bind(now)
            .bind(error)
            .bind(model)
            .bind(&run.id)
            .bind(&self.id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The approved images of the run's dataset (with their captions for ranking runs) as a
    /// trainer dataset; its content id and size are recorded on the run.
    async fn snapshot(
        &self,
        run: &RunRow,
        cancel: &AtomicBool,
    ) -> Result<trainer::dataset::Dataset> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, sha256, label FROM images WHERE dataset_id = $1 AND status = $2 ORDER BY sha256",
        )
        .bind(&run.dataset_id)
        .bind(image_status::APPROVED)
        .fetch_all(self.db.pool())
        .await?;
        if rows.is_empty() {
            return Err(Error::Invalid("the dataset has no approved images".into()));
        }
        let mut captions = if run.task == "rank" {
            crate::images::captions_of(&self.db, &run.dataset_id).await?
        } else {
            Default::default()
        };
        let mut labels: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
        labels.sort();
        labels.dedup();
        let mut builder = trainer::dataset::Builder::new(labels);
        for (id, sha, label) in &rows {
            if cancel.load(Ordering::Relaxed) {
                return Err(trainer::Error::Cancelled.into());
            }
            let bytes = self.storage.get(&image_key(sha)).await.map_err(|e| {
                Error::Internal(format!("image {id} ({sha}) is missing from storage: {e}"))
            })?;
            let caps = captions.remove(id).unwrap_or_default();
            builder.add_with_captions(label, id, &bytes, caps)?;
        }
        let dataset = builder.finish()?;
        if let Some(s) = dataset.skipped.first() {
            tracing::warn!(image = %s.path, reason = %s.reason, skipped = dataset.skipped.len(), "images skipped");
        }
        sqlx::query("UPDATE runs SET snapshot_id = $1, images = $2 WHERE id = $3")
            .bind(dataset.snapshot_id())
            .bind(dataset.samples.len() as i64)
            .bind(&run.id)
            .execute(self.db.pool())
            .await?;
        Ok(dataset)
    }

    /// Snapshot, train a ranking model in a blocking thread, embed the gallery, register the
    /// candidate.
    async fn train_rank(
        &self,
        run: &RunRow,
        live: Arc<Mutex<Live>>,
        cancel: Arc<AtomicBool>,
    ) -> Result<String> {
        let config: RankConfig = serde_json::from_str(&run.params)?;
        let dataset = self.snapshot(run, &cancel).await?;
        let parent = registry::current(&self.db, &run.task).await?.map(|m| m.id);
        let backbone = self.backbone().await?;
        let classes_path = self.backbone_path.with_file_name("imagenet_classes.txt");
        let tmp = tempfile::tempdir()?;
        let out_dir = tmp.path().join("model");
        let dir = out_dir.clone();
        tokio::task::spawn_blocking(move || {
            let classes = trainer::backbone::imagenet_classes(&classes_path)?;
            let meta = RunMeta {
                model_id: None,
                parent_model_id: parent,
            };
            let mut on_progress = |p: Progress| {
                if let Ok(mut l) = live.lock() {
                    l.progress = Some(p);
                }
                !cancel.load(Ordering::Relaxed)
            };
            trainer::rank::run(
                &dataset,
                &backbone,
                &classes,
                &config,
                &meta,
                &dir,
                &mut on_progress,
            )?;
            trainer::rank::write_gallery(&dir, &dataset)?;
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::Internal(format!("training thread: {e}")))??;
        let model = registry::register(
            &self.db,
            &self.storage,
            &out_dir,
            &run.dataset_id,
            Some(&run.id),
            self.gate_margin,
            None,
        )
        .await?;
        Ok(model.id)
    }

    /// Snapshot approved images, train in a blocking thread, register the candidate.
    async fn train(
        &self,
        run: &RunRow,
        live: Arc<Mutex<Live>>,
        cancel: Arc<AtomicBool>,
    ) -> Result<String> {
        if run.task == "rank" {
            return self.train_rank(run, live, cancel).await;
        }
        let config: TrainConfig = serde_json::from_str(&run.params)?;
        let dataset = self.snapshot(run, &cancel).await?;
        let parent = registry::current(&self.db, &run.task).await?.map(|m| m.id);
        let backbone = self.backbone().await?;
        let tmp = tempfile::tempdir()?;
        let out_dir = tmp.path().join("model");
        let dir = out_dir.clone();
        let run_id = run.id.clone();
        let champion = match &parent {
            Some(id) => match registry::load_session(&self.storage, id).await {
                Ok(s) => Some((id.clone(), s)),
                Err(e) => {
                    tracing::warn!(champion = %id, error = %e, "could not load the champion to re-score it");
                    None
                }
            },
            None => None,
        };
        let rescored = tokio::task::spawn_blocking(move || {
            let meta = RunMeta { model_id: None, parent_model_id: parent };
            let mut on_progress = |p: Progress| {
                if let Ok(mut l) = live.lock() {
                    if let Progress::Epoch(e) = &p {
                        tracing::info!(run = %run_id, epoch = e.epoch, val_accuracy = e.val_accuracy, train_loss = e.train_loss, "epoch");
                        l.epochs.push(e.clone());
                    }
                    l.progress = Some(p);
                }
                !cancel.load(Ordering::Relaxed)
            };
            pipeline::run(&dataset, &backbone, &config, &meta, &dir, &mut on_progress)?;
            // The champion on the very same test images, for a fair gate.
            let rescored = champion.and_then(|(id, session)| {
                match registry::score_on_test_split(&session, &dataset) {
                    Ok(Some(accuracy)) => Some(registry::ChampionScore { id, score: accuracy, same_split: true }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(champion = %id, error = %e, "re-scoring the champion failed");
                        None
                    }
                }
            });
            Ok::<_, Error>(rescored)
        })
        .await
        .map_err(|e| Error::Internal(format!("training thread: {e}")))??;
        let model = registry::register(
            &self.db,
            &self.storage,
            &out_dir,
            &run.dataset_id,
            Some(&run.id),
            self.gate_margin,
            rescored,
        )
        .await?;
        Ok(model.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_merge_over_defaults_and_refuse_unknown_keys() {
        let c = parse_params(Some(&serde_json::json!({"epochs": 5, "views": 1}))).unwrap();
        assert_eq!(
            (c.epochs, c.views, c.batch_size),
            (5, 1, TrainConfig::default().batch_size)
        );
        let e = parse_params(Some(&serde_json::json!({"epohcs": 5}))).unwrap_err();
        assert!(e.to_string().contains("epohcs"), "{e}");
        let e = parse_params(Some(&serde_json::json!({"epochs": 0}))).unwrap_err();
        assert_eq!(
            e.status_code().0,
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
        assert!(parse_params(Some(&serde_json::json!([1]))).is_err());
        assert_eq!(parse_params(None).unwrap(), TrainConfig::default());
    }
}
