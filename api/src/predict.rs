//! Server-side prediction (fallback for clients without wasm): the champion ONNX run by the
//! same `wasm-infer` session and preprocessing the browser uses, natively.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use contract::api::PredictResponse;
use tokio::sync::RwLock;
use wasm_infer::ProductSession;
use wasm_infer::session::Session;

use crate::db::Db;
use crate::images::{DecodeBudget, Limits};
use crate::registry;
use crate::storage::Storage;
use crate::{Error, Result};

/// How long the champion id is trusted before the database is asked again.
const CHAMPION_TTL: Duration = Duration::from_secs(2);

/// A task's champion as loaded for predictions, reloaded when the champion changes.
struct Slot<S> {
    loaded: RwLock<Option<(String, Arc<S>)>>,
    champion: RwLock<Option<(Instant, Option<String>)>>,
    /// Held while a session loads: concurrent requests after a promotion wait for one load
    /// instead of each building its own copy of the model.
    loading: tokio::sync::Mutex<()>,
}

impl<S> Default for Slot<S> {
    fn default() -> Self {
        Self {
            loaded: RwLock::new(None),
            champion: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }
}

impl<S> Slot<S> {
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

    /// The champion's session, loaded by `load` when it changed.
    async fn session<F, Fut>(&self, db: &Db, task: &str, load: F) -> Result<Arc<S>>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<S>>,
    {
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
        let session = Arc::new(load(id.clone()).await?);
        *self.loaded.write().await = Some((id, session.clone()));
        Ok(session)
    }
}

/// The loaded champions (classifier, product model), reloaded when a champion changes.
#[derive(Default)]
pub struct Predictor {
    classify: Slot<Session>,
    product: Slot<ProductSession>,
    detect: Slot<Session>,
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

    /// Forget the cached champion ids (after a promotion or rollback in this process).
    pub async fn invalidate(&self) {
        *self.classify.champion.write().await = None;
        *self.product.champion.write().await = None;
        *self.detect.champion.write().await = None;
    }

    /// The classification champion's session, loading it from storage when it changed.
    pub async fn session(&self, db: &Db, storage: &Storage, task: &str) -> Result<Arc<Session>> {
        self.classify
            .session(db, task, |id| async move {
                registry::load_session(storage, &id).await
            })
            .await
    }

    /// The product champion's session, loading it from storage when it changed.
    pub async fn product_session(&self, db: &Db, storage: &Storage) -> Result<Arc<ProductSession>> {
        self.product
            .session(db, "product", |id| async move {
                registry::load_product_session(storage, &id).await
            })
            .await
    }
}

impl Predictor {
    /// The detection champion's session, loading it from storage when it changed.
    pub async fn detect_session(&self, db: &Db, storage: &Storage) -> Result<Arc<Session>> {
        self.detect
            .session(db, "detect", |id| async move {
                registry::load_session(storage, &id).await
            })
            .await
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
                boxes: None,
                ms: t0.elapsed().as_secs_f64() * 1e3,
            })
        })
        .await
}

/// Validate and decode an image (within the decode budget), then find objects in it with the
/// detection champion: the boxes the browser's session shows for the same image.
pub async fn predict_detect(
    ctx: PredictCtx<'_>,
    filename: String,
    bytes: Bytes,
    limits: Limits,
) -> Result<PredictResponse> {
    let session = ctx.predictor.detect_session(ctx.db, ctx.storage).await?;
    let (_running, threads) = ctx.predictor.start();
    ctx.decode
        .with_decoded(filename, bytes, limits, move |_, img| {
            let t0 = Instant::now();
            let pixels = trainer::pipeline::pixels(&img)?;
            let boxes = wasm_infer::session::with_threads(threads, || session.detect(&pixels))?;
            Ok(PredictResponse {
                model_id: session.manifest().model_id.clone(),
                predictions: Vec::new(),
                boxes: Some(boxes),
                ms: t0.elapsed().as_secs_f64() * 1e3,
            })
        })
        .await
}

/// The longest title a product prediction takes, in characters (the caption limit's order).
pub const MAX_TITLE_CHARS: usize = 500;

/// Classify a product with the product champion from its title and/or an image (validated
/// and decoded within the decode budget, like any prediction): the server's answer for
/// clients without wasm, the same session code the browser runs.
pub async fn predict_product(
    ctx: PredictCtx<'_>,
    title: String,
    image: Option<(String, Bytes)>,
    limits: Limits,
    k: usize,
) -> Result<PredictResponse> {
    if !(1..=100).contains(&k) {
        return Err(Error::BadRequest(format!("k must be 1 to 100 (got {k})")));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Error::BadRequest(format!(
            "the title is longer than {MAX_TITLE_CHARS} characters"
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(Error::BadRequest("the title has control characters".into()));
    }
    if image.is_none() && wasm_infer::tokenizer::words(&title).is_empty() {
        return Err(Error::BadRequest(
            "send a title with at least one word, an image (file field), or both".into(),
        ));
    }
    let session = ctx.predictor.product_session(ctx.db, ctx.storage).await?;
    let (_running, threads) = ctx.predictor.start();
    let classify = move |img: Option<image::RgbaImage>| -> Result<PredictResponse> {
        let t0 = Instant::now();
        let pixels = img.as_ref().map(trainer::pipeline::pixels).transpose()?;
        let predictions = wasm_infer::session::with_threads(threads, || {
            session.classify(pixels.as_ref(), &title, k)
        })?;
        Ok(PredictResponse {
            model_id: session.manifest().model_id.clone(),
            predictions,
            boxes: None,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    };
    match image {
        Some((filename, bytes)) => {
            ctx.decode
                .with_decoded(filename, bytes, limits, move |_, img| classify(Some(img)))
                .await
        }
        None => tokio::task::spawn_blocking(move || classify(None))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?,
    }
}
