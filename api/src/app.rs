//! Wiring: build the shared state (connect database and storage), seed the first dataset,
//! queue the first training, start workers and maintenance, serve with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::db::Db;
use crate::images::{self, Uploader};
use crate::jobs;
use crate::registry;
use crate::serve::ConnLimits;
pub use crate::state::AppState;
use crate::storage::Storage;
use crate::{Error, Result};

/// Orphan blobs younger than this are left alone (an upload may be between blob and row).
pub const ORPHAN_GRACE_MS: i64 = 3_600_000;

/// Connect, migrate and open storage; resolve the admin token.
pub async fn state(cfg: Config) -> Result<Arc<AppState>> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let url = cfg.database_url();
    let db = Db::connect(&url).await?;
    let storage = Storage::from_config(&cfg)?;
    tracing::info!(database = %crate::db::redact(&url), storage = %storage.describe(), "connected");
    let admin_token = match cfg.admin_token.clone().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let t = crate::util::random_hex(16);
            tracing::warn!(token = %t, "ADMIN_TOKEN not set: generated a development admin token (production mode refuses this)");
            t
        }
    };
    Ok(Arc::new(AppState::new(cfg, db, storage, admin_token)?))
}

/// First start: import the seed folder as the `default` dataset (approved), and queue a first
/// training when no champion exists.
pub async fn bootstrap(st: &AppState) -> Result<()> {
    if images::list_datasets(&st.db).await?.is_empty() {
        let dir = st.cfg.seed_dir();
        let mut labels = Vec::new();
        if let Some(d) = &dir {
            for e in std::fs::read_dir(d)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    labels.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        labels.sort();
        images::create_dataset(
            &st.db,
            Some("default"),
            "default",
            &labels,
            contract::Task::Classify,
        )
        .await?;
        if let Some(d) = dir {
            seed_images(st, &d, &labels).await?;
        }
    }
    if st.cfg.train_on_start && registry::current(&st.db, "classify").await?.is_none() {
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')")
                .fetch_one(st.db.pool())
                .await?;
        let approved: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM images WHERE dataset_id = 'default' AND status = 'approved'",
        )
        .fetch_one(st.db.pool())
        .await?;
        if active == 0 && approved > 0 {
            let run = jobs::enqueue(
                &st.db,
                "default",
                &trainer::train::TrainConfig::default(),
                "startup: no model yet",
            )
            .await?;
            tracing::info!(run = %run.id, images = approved, "no champion model: training a first one (progress: GET /api/train/{}/events)", run.id);
        }
    }
    Ok(())
}

async fn seed_images(st: &AppState, dir: &std::path::Path, labels: &[String]) -> Result<()> {
    let seeder = Uploader {
        name: "seed".into(),
        admin: true,
        client: String::new(),
    };
    let mut total = 0;
    for label in labels {
        let mut files = Vec::new();
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join(label))?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if !e.file_type()?.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = bytes::Bytes::from(std::fs::read(e.path())?);
            match images::check_image(&name, bytes, st.limits()) {
                Ok(mut c) => {
                    // The first line of NAME.txt next to the image is its caption.
                    if let Ok(text) = std::fs::read_to_string(e.path().with_extension("txt"))
                        && let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty())
                        && images::validate_caption(line).is_ok()
                    {
                        c.captions.push(line.to_string());
                    }
                    files.push(c)
                }
                Err(err) => tracing::debug!(file = %name, error = %err, "seed: skipped"),
            }
        }
        total += files.len();
        images::ingest(
            &st.db,
            &st.storage,
            "default",
            label,
            files,
            &seeder,
            st.pending_caps(),
        )
        .await?;
    }
    tracing::info!(images = total, labels = labels.len(), dir = %dir.display(), "seed dataset imported");
    Ok(())
}

/// A running server (and its workers and maintenance task).
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Shared state.
    pub state: Arc<AppState>,
    task: JoinHandle<Result<()>>,
}

impl Server {
    /// Ask for a graceful stop and wait for it.
    pub async fn shutdown(self) -> Result<()> {
        self.state.shutdown.send_replace(true);
        self.wait().await
    }

    /// Wait until the server stopped (after its signal fired or `shutdown`).
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// How long a graceful stop waits for open requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Start everything on `listener`; stops when `shutdown()` is called on the result or when
/// `signal` completes.
pub async fn start(
    st: Arc<AppState>,
    listener: tokio::net::TcpListener,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Server> {
    let addr = listener.local_addr()?;
    let stop_rx = st.shutdown.subscribe();
    let backbone = Arc::new(OnceCell::new());
    let mut workers = Vec::new();
    for _ in 0..st.cfg.workers {
        workers.push(tokio::spawn(
            st.worker(backbone.clone()).run_forever(stop_rx.clone()),
        ));
    }
    let maint = tokio::spawn(maintenance(st.clone(), stop_rx.clone()));
    let router = crate::http::router(st.clone());
    let signalled = st.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: draining requests, stopping workers");
        signalled.shutdown.send_replace(true);
    });
    let limits = conn_limits(&st);
    let state = st.clone();
    let task = tokio::spawn(async move {
        let r = crate::serve::serve(listener, router, limits, stop_rx).await;
        for w in workers {
            let _ = w.await;
        }
        maint.abort();
        state.db.close().await;
        r.map_err(Error::Io)
    });
    tracing::info!(%addr, "listening (docs: http://{addr}/docs)");
    Ok(Server {
        addr,
        state: st,
        task,
    })
}

/// The accept loop's limits from the configuration (header-read timeout, connection cap).
fn conn_limits(st: &AppState) -> ConnLimits {
    ConnLimits {
        header_read_timeout: Duration::from_secs(st.cfg.header_read_timeout_secs),
        max_connections: st.cfg.max_connections,
        shutdown_grace: SHUTDOWN_GRACE,
    }
}

/// A standalone worker's `/metrics` and `/health` on `listener`, through the same accept loop
/// as the api (header-read timeout, connection cap, graceful stop), until `stop` turns true.
pub async fn serve_worker_metrics(
    st: Arc<AppState>,
    listener: tokio::net::TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let limits = conn_limits(&st);
    crate::serve::serve(listener, crate::http::worker_router(st), limits, stop)
        .await
        .map_err(Error::Io)
}

/// Every few seconds: re-queue runs of dead workers and forget quotas of idle clients;
/// every hour: sweep orphan blobs.
async fn maintenance(st: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let lease_ms = (st.cfg.worker_lease_secs as i64) * 1000;
    let mut last_sweep: Option<std::time::Instant> = None;
    loop {
        match jobs::reap_stale(&st.db, lease_ms).await {
            Ok(ids) if !ids.is_empty() => st.wake.notify_waiters(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reaping stale runs failed"),
        }
        st.quotas.forget_idle();
        if last_sweep.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            match images::sweep_orphans(&st.db, &st.storage, ORPHAN_GRACE_MS).await {
                Ok(r) if r.images + r.model_files > 0 => tracing::info!(?r, "orphan blobs removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
            }
            last_sweep = Some(std::time::Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => if *stop.borrow() { return; },
        }
    }
}
