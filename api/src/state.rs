//! The state the handlers, workers and the maintenance task share: configuration, database,
//! storage, metrics, the predictor, the admin token, the per-client quotas and the admission
//! limits, the decode budget, the live run feeds and the shutdown signal. Built once by
//! `app::state`; the HTTP layer and the wiring both read it, neither owns it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell, Semaphore, watch};

use crate::Result;
use crate::config::Config;
use crate::db::Db;
use crate::http::guard::{Admission, QuotaConfig, Quotas, TrustedProxies};
use crate::images::{DecodeBudget, Limits, PendingCaps, PendingGauge};
use crate::jobs::{self, RunFeeds, Worker};
use crate::metrics::Metrics;
use crate::predict::Predictor;
use crate::storage::Storage;

/// Shared server state.
pub struct AppState {
    /// Read once at start-up and validated.
    pub cfg: Config,
    /// Metadata: datasets, images, runs, models.
    pub db: Db,
    /// Blobs: images and model files.
    pub storage: Storage,
    /// Prometheus collectors (one registry per server).
    pub metrics: Arc<Metrics>,
    /// Server-side inference with the cached champion.
    pub predictor: Predictor,
    /// Admin bearer token (`ADMIN_TOKEN`, or one generated for development).
    pub admin_token: String,
    /// Per-client quotas; the maintenance task forgets idle clients.
    pub quotas: Quotas,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted: TrustedProxies,
    /// Requests in flight and request bodies in memory.
    pub admission: Admission,
    /// Memory and threads for image decoding.
    pub decode: DecodeBudget,
    /// Live state of watched runs (progress streams).
    pub feeds: RunFeeds,
    /// Wakes in-process workers when a run is queued.
    pub wake: Arc<Notify>,
    /// Turns true when the server stops (workers, streams and the accept loop follow it).
    pub shutdown: watch::Sender<bool>,
    /// Images waiting for review in total (counted at most once a second).
    pub pending: Arc<PendingGauge>,
    /// The last storage probe of `/ready` (probes are cached briefly).
    pub storage_probe: Mutex<Option<(Instant, std::result::Result<f64, String>)>>,
}

impl AppState {
    /// Build the state around connected database and storage.
    pub fn new(cfg: Config, db: Db, storage: Storage, admin_token: String) -> Result<Self> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(AppState {
            quotas: Quotas::new(QuotaConfig {
                uploads_per_min: (cfg.upload_rate_per_min, cfg.upload_burst),
                predicts_per_min: (cfg.predict_rate_per_min, cfg.predict_burst),
                upload_mib_per_hour: cfg.upload_mb_per_hour,
                upload_files_per_hour: cfg.upload_files_per_hour,
            })?,
            trusted: TrustedProxies::parse(&cfg.trusted_proxies)?,
            admission: Admission {
                requests: Arc::new(Semaphore::new(cfg.max_requests_in_flight)),
                body_mib: Arc::new(Semaphore::new(cfg.body_memory_mb as usize)),
                max_body: cfg.max_upload_bytes as u64,
                wait: Duration::from_secs(5),
            },
            decode: DecodeBudget::new(
                cfg.decode_memory_mb,
                // One more than the cores: while a finished request hands its slot to the
                // next, the spare keeps every core busy (BENCHMARKS.md, "one more decode
                // slot").
                cfg.decode_threads.unwrap_or(cores + 1),
                Duration::from_secs(10),
            ),
            feeds: RunFeeds::new(cfg.max_event_streams, shutdown_rx),
            metrics: Arc::new(Metrics::new()?),
            predictor: Predictor::default(),
            wake: Arc::new(Notify::new()),
            shutdown,
            pending: Arc::default(),
            storage_probe: Mutex::new(None),
            admin_token,
            cfg,
            db,
            storage,
        })
    }

    /// Image limits for uploads.
    pub fn limits(&self) -> Limits {
        Limits {
            max_side: self.cfg.max_image_side,
            max_pixels: self.cfg.max_image_pixels,
        }
    }

    /// Image limits for predictions.
    pub fn predict_limits(&self) -> Limits {
        Limits {
            max_side: self.cfg.max_image_side,
            max_pixels: self.cfg.max_predict_pixels,
        }
    }

    /// Caps on what waits for review.
    pub fn pending_caps(&self) -> PendingCaps {
        PendingCaps {
            per_client: self.cfg.max_pending_per_client,
            total: self.cfg.max_pending_total,
            captions_per_image: self.cfg.max_captions_per_image,
            gauge: Arc::clone(&self.pending),
        }
    }

    /// The limits document clients read (`GET /api/limits`).
    pub fn public_limits(&self) -> contract::api::Limits {
        let c = &self.cfg;
        contract::api::Limits {
            max_files: u32::try_from(c.max_files).unwrap_or(u32::MAX),
            max_upload_bytes: c.max_upload_bytes as u64,
            max_image_side: c.max_image_side,
            max_image_pixels: c.max_image_pixels,
            max_predict_pixels: c.max_predict_pixels,
            max_caption_chars: crate::images::MAX_CAPTION_CHARS as u32,
            max_captions_per_image: u32::try_from(c.max_captions_per_image).unwrap_or(u32::MAX),
            upload_rate_per_min: c.upload_rate_per_min,
            predict_rate_per_min: c.predict_rate_per_min,
            max_pending_per_client: u32::try_from(c.max_pending_per_client).unwrap_or(u32::MAX),
        }
    }

    /// Queue an auto-retrain if due; returns the run id.
    pub async fn auto_retrain(&self, dataset_id: &str) -> Option<String> {
        match jobs::maybe_auto_retrain(&self.db, dataset_id, self.cfg.auto_retrain_after).await {
            Ok(Some(run)) => {
                self.wake.notify_waiters();
                Some(run.id)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "auto-retrain check failed");
                None
            }
        }
    }

    /// A worker sharing this state's database, storage and metrics.
    pub fn worker(&self, backbone: Arc<OnceCell<Arc<trainer::backbone::Backbone>>>) -> Worker {
        Worker {
            db: self.db.clone(),
            storage: self.storage.clone(),
            backbone_path: self.cfg.backbone_path(),
            backbone,
            gate: self.cfg.gate(),
            feature_cache: self.cfg.feature_cache,
            id: Worker::make_id(),
            heartbeat: Duration::from_millis(500),
            wake: self.wake.clone(),
            metrics: self.metrics.clone(),
        }
    }
}
