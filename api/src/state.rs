//! The state the handlers, workers and the maintenance task share: configuration, database,
//! storage, metrics, the predictor, the admin token and the per-IP upload quota. Built once by
//! `app::state`; the HTTP layer and the wiring both read it, neither owns it.

use std::sync::Arc;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use tokio::sync::{Notify, OnceCell};
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::PeerIpKeyExtractor;

use crate::config::Config;
use crate::db::Db;
use crate::images::Limits;
use crate::jobs::{self, Worker};
use crate::metrics::Metrics;
use crate::predict::Predictor;
use crate::storage::Storage;
use crate::{Error, Result};

/// The per-IP upload quota (a GCRA limiter keyed by the peer address: the same shape as a
/// token bucket refilled at a steady rate).
pub type UploadLimit = GovernorConfig<PeerIpKeyExtractor, NoOpMiddleware>;

/// `per_min` uploads per minute per client IP, in bursts of at most `burst`.
pub fn upload_limit(per_min: u32, burst: u32) -> Result<UploadLimit> {
    let period = Duration::from_nanos(60_000_000_000 / u64::from(per_min.max(1)));
    GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .finish()
        .ok_or_else(|| Error::Config("upload rate limits must be positive".into()))
}

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
    /// Upload quota per client IP; the maintenance task forgets idle addresses.
    pub upload_limit: Arc<UploadLimit>,
    /// Wakes in-process workers when a run is queued.
    pub wake: Arc<Notify>,
}

impl AppState {
    /// Image limits from the configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            max_side: self.cfg.max_image_side,
            max_pixels: self.cfg.max_image_pixels,
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
            gate_margin: self.cfg.gate_margin,
            id: Worker::make_id(),
            heartbeat: Duration::from_millis(500),
            wake: self.wake.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn upload_quota_refuses_bursts_per_ip() {
        let quota = upload_limit(60, 2).unwrap();
        let limiter = quota.limiter();
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!(limiter.check_key(&ip).is_ok());
        assert!(limiter.check_key(&ip).is_ok());
        assert!(limiter.check_key(&ip).is_err());
        assert!(limiter.check_key(&IpAddr::from([10, 0, 0, 2])).is_ok());
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(upload_limit(60, 0).is_err());
    }
}
