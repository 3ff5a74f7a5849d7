//! Server-side prediction (fallback for clients without wasm): the champion ONNX run by the
//! same `wasm-infer` session and preprocessing the browser uses, natively.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use contract::api::PredictResponse;
use tokio::sync::RwLock;
use wasm_infer::session::Session;

use crate::db::Db;
use crate::images::{DecodeBudget, Limits};
use crate::registry;
use crate::storage::Storage;
use crate::{Error, Result};

/// How long the champion id is trusted before the database is asked again.
const CHAMPION_TTL: Duration = Duration::from_secs(2);

/// The loaded champion, reloaded when the champion changes.
#[derive(Default)]
pub struct Predictor {
    loaded: RwLock<Option<(String, Arc<Session>)>>,
    champion: RwLock<Option<(Instant, Option<String>)>>,
    /// Held while a session loads: concurrent requests after a promotion wait for one load
    /// instead of each building its own copy of the model.
    loading: tokio::sync::Mutex<()>,
    /// Predictions running now (see `Predictor::start`).
    running: AtomicUsize,
}

/// A running prediction, counted in [`Predictor::running`] until dropped.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Predictor {
    async fn champion_id(&self, db: &Db, task: &str) -> Result<Option<String>> {
        if let Some((at, id)) = self.champion.read().await.as_ref()
            && at.elapsed() < CHAMPION_TTL
        {
            return Ok(id.clone());
        }
        let id = registry::current(db, task).await?.map(|m| m.id);
        *self.champion.write().await = Some((Instant::now(), id.clone()));
        Ok(id)
    }

    /// Count a prediction as running, and say how many intra-op threads it gets: every core
    /// (up to 4) when it is the only one, so a lone client gets its answer sooner; one when
    /// others run, so concurrent requests share the cores by request, not by splitting each.
    fn start(&self) -> (Running<'_>, usize) {
        let others = self.running.fetch_add(1, Ordering::SeqCst);
        let threads = if others == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
        } else {
            1
        };
        (Running(&self.running), threads)
    }

    /// Forget the cached champion id (after a promotion or rollback in this process).
    pub async fn invalidate(&self) {
        *self.champion.write().await = None;
    }

    /// The champion's session, loading it from storage when it changed.
    pub async fn session(&self, db: &Db, storage: &Storage, task: &str) -> Result<Arc<Session>> {
        let Some(id) = self.champion_id(db, task).await? else {
            return Err(Error::Unavailable(format!(
                "no {task} model has been promoted yet"
            )));
        };
        if let Some((loaded, s)) = self.loaded.read().await.as_ref()
            && *loaded == id
        {
            return Ok(s.clone());
        }
        let _one_load = self.loading.lock().await;
        if let Some((loaded, s)) = self.loaded.read().await.as_ref()
            && *loaded == id
        {
            return Ok(s.clone());
        }
        let session = registry::load_session(storage, &id).await?;
        let session = Arc::new(session);
        *self.loaded.write().await = Some((id, session.clone()));
        Ok(session)
    }
}

/// Where a prediction runs: the champion's session, the database and storage it is loaded
/// from, and the decode budget the image is decoded within.
pub struct PredictCtx<'a> {
    /// The cached champion.
    pub predictor: &'a Predictor,
    /// Registry.
    pub db: &'a Db,
    /// Model files.
    pub storage: &'a Storage,
    /// Server-wide decode budget.
    pub decode: &'a DecodeBudget,
}

/// Validate and decode an image (within the decode budget), then classify it with the
/// champion.
pub async fn predict(
    ctx: PredictCtx<'_>,
    filename: String,
    bytes: Bytes,
    limits: Limits,
    k: usize,
) -> Result<PredictResponse> {
    let session = ctx
        .predictor
        .session(ctx.db, ctx.storage, "classify")
        .await?;
    if !(1..=100).contains(&k) {
        return Err(Error::BadRequest(format!("k must be 1 to 100 (got {k})")));
    }
    // Preprocessing and inference run inside the decode budget: the full-size pixels are
    // freed before another decode may take their place.
    let (_running, threads) = ctx.predictor.start();
    ctx.decode
        .with_decoded(filename, bytes, limits, move |_, img| {
            let t0 = Instant::now();
            let pixels = trainer::pipeline::pixels(&img)?;
            let predictions =
                wasm_infer::session::with_threads(threads, || session.classify(&pixels, k))?;
            Ok(PredictResponse {
                model_id: session.manifest().model_id.clone(),
                predictions,
                ms: t0.elapsed().as_secs_f64() * 1e3,
            })
        })
        .await
}
