//! The training worker: claims queued runs, trains them through their task's [`TrainTask`],
//! writes heartbeats carrying live progress, honours cancel requests and shutdowns, and
//! records how each run ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{ImageStatus, Task};
use futures::StreamExt;
use tokio::sync::{Notify, OnceCell, watch};
use trainer::backbone::Backbone;
use trainer::run::{FeatureStore, Progress, RunMeta};
use trainer::train::EpochMetrics;

use super::detect::Detect;
use super::features::StorageFeatures;
use super::queue::{RunRow, claim_next};
use super::task::{Classify, Job, Product, Rank, TrainTask};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::registry;
use crate::storage::{Storage, image_key};
use crate::util::now_ms;
use crate::{Error, Result};

/// Image blobs a snapshot fetches at once.
const SNAPSHOT_FETCHES: usize = 16;

/// What the training thread reports, written to the run at each heartbeat.
#[derive(Default)]
struct Live {
    progress: Option<Progress>,
    epochs: Vec<EpochMetrics>,
}

/// What a worker needs.
#[derive(Clone)]
pub struct Worker {
    /// The queue and the registry.
    pub db: Db,
    /// Image blobs (the snapshot) and model files (registration).
    pub storage: Storage,
    /// Backbone weights file (`imagenet_classes.txt` lies next to it).
    pub backbone_path: std::path::PathBuf,
    /// The backbone, loaded on the first run and shared by the process.
    pub backbone: Arc<OnceCell<Arc<Backbone>>>,
    /// How the gate decides.
    pub gate: crate::registry::GateConfig,
    /// Keep backbone features in storage between runs ([`super::features`]).
    pub feature_cache: bool,
    /// Identity written into claimed runs.
    pub id: String,
    /// Heartbeat and progress write interval.
    pub heartbeat: Duration,
    /// Woken when a run is queued in this process.
    pub wake: Arc<Notify>,
    /// Prometheus counters (`training_runs` by outcome).
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
            // A dropped sender means nobody can ask any more: stop rather than spin.
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
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
        let started = std::time::Instant::now();
        // Resolves once, when the server stops (or can no longer tell us to).
        let stopping = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        tokio::pin!(stopping);
        let live = Arc::new(Mutex::new(Live::default()));
        let cancel = Arc::new(AtomicBool::new(false));
        tracing::info!(run = %run.id, worker = %self.id, attempt = run.attempts, "training run claimed");
        let work = self.train(&run, live.clone(), cancel.clone());
        tokio::pin!(work);
        // Heartbeats run in a task of their own. A beat updates the run's row, which the
        // registration transaction (inside `work`) holds locked until it commits: a beat
        // awaited in this loop would stop `work` from being polled, and neither would finish.
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(Notify::new());
        let beats = {
            let (me, id, live, cancel) =
                (self.clone(), run.id.clone(), live.clone(), cancel.clone());
            let (lost, stop) = (lost.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(me.heartbeat);
                loop {
                    tokio::select! {
                        _ = tick.tick() => match me.beat(&id, &live).await {
                            Ok(Some(false)) => {}
                            Ok(Some(true)) => cancel.store(true, Ordering::Relaxed),
                            Ok(None) => {
                                lost.store(true, Ordering::Relaxed);
                                cancel.store(true, Ordering::Relaxed);
                            }
                            Err(e) => tracing::warn!(run = %id, error = %e, "heartbeat failed"),
                        },
                        _ = stop.notified() => break,
                    }
                }
            })
        };
        let mut interrupted = false;
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = &mut stopping, if !interrupted => {
                    interrupted = true;
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        };
        stop.notify_one();
        if let Err(e) = beats.await {
            tracing::warn!(run = %run.id, error = %e, "heartbeat task ended abnormally");
        }
        let lost = lost.load(Ordering::Relaxed);
        let _ = self.beat(&run.id, &live).await;
        let outcome = match result {
            _ if lost => Outcome::Lost,
            Err(Error::Lost(_)) => Outcome::Lost,
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
        self.metrics
            .training_duration
            .with_label_values(&[run.task.as_str(), label])
            .observe(started.elapsed().as_secs_f64());
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
        captions: bool,
        cancel: &AtomicBool,
    ) -> Result<trainer::dataset::Dataset> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, sha256, label, width, height FROM images \
             WHERE dataset_id = $1 AND status = $2 ORDER BY sha256",
        )
        .bind(&run.dataset_id)
        .bind(ImageStatus::Approved)
        .fetch_all(self.db.pool())
        .await?;
        if rows.is_empty() {
            return Err(Error::Invalid("the dataset has no approved images".into()));
        }
        let mut captions = if captions {
            crate::images::captions_of(&self.db, &run.dataset_id).await?
        } else {
            Default::default()
        };
        let mut labels: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
        labels.sort();
        labels.dedup();
        let mut builder = trainer::dataset::Builder::new(labels);
        // Blobs are fetched a few at a time (S3 round trips overlap), added in order; the
        // images were decoded and measured at upload, so they are only hashed here.
        let wanted: Vec<(String, String)> = rows
            .iter()
            .map(|(id, sha, ..)| (id.clone(), sha.clone()))
            .collect();
        let storage = self.storage.clone();
        let mut blobs = futures::stream::iter(wanted)
            .map(move |(id, sha)| {
                let storage = storage.clone();
                async move {
                    storage.get(&image_key(&sha)).await.map_err(|e| {
                        Error::Internal(format!("image {id} ({sha}) is missing from storage: {e}"))
                    })
                }
            })
            .buffered(SNAPSHOT_FETCHES);
        for (id, sha, label, width, height) in &rows {
            if cancel.load(Ordering::Relaxed) {
                return Err(trainer::Error::Cancelled.into());
            }
            let Some(bytes) = blobs.next().await else {
                break;
            };
            let caps = captions.remove(id).unwrap_or_default();
            let size = (
                sha.as_str(),
                u32::try_from(*width).unwrap_or(0),
                u32::try_from(*height).unwrap_or(0),
            );
            builder.add_checked(label, id, &bytes?, size, caps)?;
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

    /// Train the run's task: [`Worker::train_task`] with the task's [`TrainTask`].
    async fn train(
        &self,
        run: &RunRow,
        live: Arc<Mutex<Live>>,
        cancel: Arc<AtomicBool>,
    ) -> Result<String> {
        match run.task {
            Task::Classify => self.train_task::<Classify>(run, live, cancel).await,
            Task::Rank => self.train_task::<Rank>(run, live, cancel).await,
            Task::Product => self.train_task::<Product>(run, live, cancel).await,
            Task::Detect => self.train_task::<Detect>(run, live, cancel).await,
        }
    }

    /// The one path of every task: snapshot the approved images, train in a blocking thread
    /// with live progress, register the candidate from the files the trainer wrote.
    async fn train_task<T: TrainTask>(
        &self,
        run: &RunRow,
        live: Arc<Mutex<Live>>,
        cancel: Arc<AtomicBool>,
    ) -> Result<String> {
        let config: T::Config = serde_json::from_str(&run.params)?;
        let dataset = self.snapshot(run, T::CAPTIONS, &cancel).await?;
        let boxes = if T::BOXES {
            crate::images::approved_boxes(&self.db, &run.dataset_id).await?
        } else {
            Default::default()
        };
        let parent = registry::current(&self.db, T::TASK.as_str())
            .await?
            .map(|m| m.id);
        let backbone = self.backbone().await?;
        let prepared = T::prepare(&self.storage, parent.as_deref(), &backbone).await;
        let tmp = tempfile::tempdir()?;
        let job = Job {
            config,
            dataset,
            boxes,
            backbone,
            backbone_path: self.backbone_path.clone(),
            features: self.feature_cache.then(|| {
                Arc::new(StorageFeatures::new(self.storage.clone())) as Arc<dyn FeatureStore>
            }),
            meta: RunMeta {
                model_id: None,
                parent_model_id: parent,
                ..Default::default()
            },
            dir: tmp.path().join("model"),
        };
        let run_id = run.id.clone();
        let outputs = tokio::task::spawn_blocking(move || {
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
            T::train(job, prepared, &mut on_progress)
        })
        .await
        .map_err(|e| Error::Internal(format!("training thread: {e}")))??;
        self.metrics
            .record_feature_cache(T::TASK.as_str(), &outputs.feature_cache);
        let model = registry::register(
            &self.db,
            &self.storage,
            &outputs.files,
            &run.dataset_id,
            Some(registry::RunOwner {
                run_id: &run.id,
                worker: &self.id,
            }),
            &self.gate,
        )
        .await?;
        Ok(model.id)
    }
}
