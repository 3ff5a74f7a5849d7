//! Server-side prediction (fallback for clients without wasm): the champion ONNX run by the
//! same `wasm-infer` session and preprocessing the browser uses, natively.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use contract::api::PredictResponse;
use tokio::sync::RwLock;
use wasm_infer::session::Session;

use crate::db::Db;
use crate::images::{Limits, check_and_decode};
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
        let session = registry::load_session(storage, &id).await?;
        let session = Arc::new(session);
        *self.loaded.write().await = Some((id, session.clone()));
        Ok(session)
    }
}

/// Validate and decode an image, then classify it with the champion.
pub async fn predict(
    predictor: &Predictor,
    db: &Db,
    storage: &Storage,
    filename: String,
    bytes: Bytes,
    limits: Limits,
    k: usize,
) -> Result<PredictResponse> {
    let session = predictor.session(db, storage, "classify").await?;
    let k = k.clamp(1, 100);
    tokio::task::spawn_blocking(move || {
        let (_, img) = check_and_decode(&filename, bytes, limits)?;
        let t0 = Instant::now();
        let pixels = trainer::pipeline::pixels(&img)?;
        let predictions = session.classify(&pixels, k)?;
        Ok(PredictResponse {
            model_id: session.manifest().model_id.clone(),
            predictions,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}
