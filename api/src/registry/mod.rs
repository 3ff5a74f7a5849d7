//! Model registry: every finished run registers a candidate (files first, then the row); a
//! quality gate decides whether it replaces the champion; promotion and rollback keep a
//! history so rollbacks walk back through earlier champions.

use bytes::Bytes;
pub use contract::api::{GateDecision, ModelInfo};
use contract::{ModelFiles, Stage, Task};
use trainer::run::ModelFolder;
use wasm_infer::manifest::ModelManifest;

mod gate;
mod sessions;
pub use gate::{ChampionFigure, GateConfig, decide, evidence_of};
pub use sessions::{load_manifest, load_product_session, load_session, score_on_test_split};

use crate::db::Db;
use crate::storage::{Storage, model_key};
use crate::util::{new_id, now_ms};
use crate::{Error, Result};

/// Files a model of `task` stores ([`ModelFiles::of`]).
pub fn model_files(task: Task) -> &'static [&'static str] {
    ModelFiles::of(task)
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ModelRow {
    id: String,
    dataset_id: String,
    task: Task,
    run_id: Option<String>,
    stage: Stage,
    sha256: String,
    bytes: i64,
    manifest: String,
    gate: String,
    created_at: i64,
    promoted_at: Option<i64>,
}

impl TryFrom<ModelRow> for ModelInfo {
    type Error = Error;
    fn try_from(r: ModelRow) -> Result<Self> {
        Ok(ModelInfo {
            manifest: ModelManifest::from_json(&r.manifest)?,
            gate: serde_json::from_str(&r.gate)?,
            id: r.id,
            dataset_id: r.dataset_id,
            task: r.task,
            run_id: r.run_id,
            stage: r.stage,
            sha256: r.sha256,
            bytes: r.bytes,
            created_at: r.created_at,
            promoted_at: r.promoted_at,
        })
    }
}

/// The champion of a task, if any.
pub async fn current(db: &Db, task: &str) -> Result<Option<ModelInfo>> {
    let row: Option<ModelRow> = crate::metrics::time_db(
        "current_model",
        sqlx::query_as("SELECT * FROM models WHERE task = $1 AND stage = $2")
            .bind(task)
            .bind(Stage::Champion)
            .fetch_optional(db.pool()),
    )
    .await?;
    row.map(ModelInfo::try_from).transpose()
}

/// One model; `NotFound` when absent.
pub async fn get(db: &Db, id: &str) -> Result<ModelInfo> {
    let row: ModelRow = sqlx::query_as("SELECT * FROM models WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no model {id:?}")))?;
    row.try_into()
}

/// Models, newest first.
pub async fn list(db: &Db, task: Option<&str>, limit: i64) -> Result<Vec<ModelInfo>> {
    let rows: Vec<ModelRow> = sqlx::query_as(
        "SELECT * FROM models WHERE ($1 IS NULL OR task = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(task.map(str::to_string))
    .bind(limit.clamp(1, 1000))
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(ModelInfo::try_from).collect()
}

/// The run a registration belongs to and the worker that must still own it.
#[derive(Debug, Clone, Copy)]
pub struct RunOwner<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// The worker that claimed it.
    pub worker: &'a str,
}

/// Why a registration transaction did not leave a row.
enum NotRegistered {
    /// Rolled back: no row refers to the uploaded files.
    RolledBack(Error),
    /// The commit's outcome is unknown: the files may be referenced, so they stay (the orphan
    /// sweeper removes them later if no row came to be).
    Uncertain(Error),
}

impl<E: Into<Error>> From<E> for NotRegistered {
    fn from(e: E) -> Self {
        NotRegistered::RolledBack(e.into())
    }
}

/// Upload the files of a trained model folder (as the trainer wrote them: no second read
/// from disk) to storage, then in one transaction: check that `owner` still owns its run (not
/// cancelled, not reaped), read the champion, insert the candidate, run the gate and promote
/// it if it passes. Files are written before the row and deleted again only when the
/// transaction certainly left no row.
pub async fn register(
    db: &Db,
    storage: &Storage,
    files: &ModelFolder,
    dataset_id: &str,
    owner: Option<RunOwner<'_>>,
    gate: &GateConfig,
) -> Result<ModelInfo> {
    let file = |name: &str| {
        files
            .get(name)
            .ok_or_else(|| Error::Internal(format!("the trained model has no {name}")))
    };
    let manifest_json = std::str::from_utf8(file(ModelFiles::MANIFEST)?)
        .map_err(|e| Error::Internal(format!("manifest is not UTF-8: {e}")))?;
    let manifest = ModelManifest::from_json(manifest_json)?;
    // The files browsers load are checked against the manifest before anything is written: a
    // row never names a head its clients would refuse.
    let browser = manifest
        .nnef
        .iter()
        .chain(manifest.text.as_ref().and_then(|t| t.nnef.as_ref()));
    for d in browser {
        wasm_infer::session::verify_digest(file(&d.file)?, &d.file, &d.sha256, d.bytes)?;
    }
    let evidence = files
        .get(ModelFiles::METRICS)
        .map(gate::evidence_of)
        .transpose()?
        .flatten();
    if !crate::storage::is_safe_id(&manifest.model_id) {
        return Err(Error::Internal(format!(
            "model id {:?} is not key-safe",
            manifest.model_id
        )));
    }
    let id = manifest.model_id.clone();
    let mut written = Vec::new();
    let upload = async {
        // The shared backbone's files under their addresses (rewritten, not skipped when
        // present: a fresh time keeps the orphan sweep off them until this row exists).
        // Never deleted with a failed registration: other models may run on them.
        if let Some(b) = &manifest.backbone {
            let int8 = b
                .int8
                .iter()
                .map(|q| (q.file.as_str(), q.sha256.as_str(), q.bytes));
            let onnx =
                std::iter::once((b.onnx.file.as_str(), b.onnx.sha256.as_str(), b.onnx.bytes));
            for (name, sha, size) in onnx.chain(int8) {
                let bytes = file(name)?;
                wasm_infer::session::verify_digest(bytes, name, sha, size)?;
                storage
                    .put(
                        &ModelFiles::backbone_key(name, sha),
                        Bytes::copy_from_slice(bytes),
                    )
                    .await?;
            }
        }
        for name in model_files(manifest.task) {
            let key = model_key(&id, name);
            storage
                .put(&key, Bytes::copy_from_slice(file(name)?))
                .await?;
            written.push(key);
        }
        Ok::<(), Error>(())
    }
    .await;
    let outcome = match upload {
        Ok(()) => {
            let row = NewModel {
                manifest: &manifest,
                manifest_json,
                evidence: evidence.as_ref(),
                dataset_id,
                owner,
            };
            insert_and_gate(db, row, gate).await
        }
        Err(e) => Err(NotRegistered::RolledBack(e)),
    };
    match outcome {
        Ok(()) => get(db, &id).await,
        Err(NotRegistered::Uncertain(e)) => Err(e),
        Err(NotRegistered::RolledBack(e)) => {
            for key in &written {
                if let Err(e) = storage.delete(key).await {
                    tracing::warn!(%key, error = %e, "could not delete files of a failed registration");
                }
            }
            Err(e)
        }
    }
}

/// The row a registration inserts.
struct NewModel<'a> {
    manifest: &'a ModelManifest,
    manifest_json: &'a str,
    evidence: Option<&'a contract::evidence::Evidence>,
    dataset_id: &'a str,
    owner: Option<RunOwner<'a>>,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Serialise champion changes of `task` for the rest of the transaction (PostgreSQL: an
/// advisory lock; on SQLite a write transaction holds the database's write lock already).
async fn lock_champion(db: &Db, tx: &mut Tx<'_>, task: Task) -> Result<()> {
    if db.backend() == crate::db::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::TEXT")
            .bind(format!("edgeml-champion-{task}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The champion of a task, read inside a transaction.
async fn current_in(tx: &mut Tx<'_>, task: Task) -> Result<Option<ModelInfo>> {
    let row: Option<ModelRow> =
        sqlx::query_as("SELECT * FROM models WHERE task = $1 AND stage = $2")
            .bind(task)
            .bind(Stage::Champion)
            .fetch_optional(&mut **tx)
            .await?;
    row.map(ModelInfo::try_from).transpose()
}

/// Whether the worker still owns the run (claimed by it, running, not cancelled); touching its
/// heartbeat also makes this transaction the writer (SQLite) and locks the run row
/// (PostgreSQL) until commit, so a reaper or a cancel cannot slip in between.
async fn check_owner(tx: &mut Tx<'_>, owner: RunOwner<'_>) -> Result<()> {
    let cancel: Option<i64> = sqlx::query_scalar(
        "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND worker = $3 AND status = 'running' \
         RETURNING cancel_requested",
    )
    .bind(now_ms())
    .bind(owner.run_id)
    .bind(owner.worker)
    .fetch_optional(&mut **tx)
    .await?;
    match cancel {
        None => Err(Error::Lost(format!(
            "run {} is no longer owned by worker {} (reaped or finished elsewhere): its model is not registered",
            owner.run_id, owner.worker
        ))),
        Some(0) => Ok(()),
        Some(_) => Err(Error::Trainer(trainer::Error::Cancelled)),
    }
}

async fn insert_and_gate(
    db: &Db,
    m: NewModel<'_>,
    gate: &GateConfig,
) -> std::result::Result<(), NotRegistered> {
    let task = m.manifest.task;
    let mut tx = db.begin_write().await?;
    if let Some(owner) = m.owner {
        check_owner(&mut tx, owner).await?;
    }
    lock_champion(db, &mut tx, task).await?;
    let champion = current_in(&mut tx, task).await?;
    let decision = gate::decide_for(m.manifest, m.evidence, champion.as_ref(), gate)?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO models (id, dataset_id, task, run_id, stage, sha256, bytes, manifest, gate, created_at, promoted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
    )
    .bind(&m.manifest.model_id)
    .bind(m.dataset_id)
    .bind(task)
    .bind(m.owner.map(|o| o.run_id.to_string()))
    .bind(Stage::Candidate)
    .bind(&m.manifest.onnx.sha256)
    .bind(m.manifest.onnx.bytes as i64)
    .bind(m.manifest_json)
    .bind(serde_json::to_string(&decision).map_err(Error::from)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if decision.promote {
        let previous = champion.as_ref().map(|c| c.id.clone());
        swap_champion(
            &mut tx,
            task,
            &m.manifest.model_id,
            previous.as_deref(),
            previous.as_deref(),
            "gate",
            "trainer",
        )
        .await?;
    }
    crate::db::commit(tx)
        .await
        .map_err(NotRegistered::Uncertain)?;
    tracing::info!(model = %m.manifest.model_id, promote = decision.promote, reason = %decision.reason, "model registered");
    Ok(())
}

/// Archive `previous` (the current champion), make `model_id` champion, record the promotion
/// with `history_previous` as the model a later rollback returns to.
async fn swap_champion(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    task: Task,
    model_id: &str,
    previous: Option<&str>,
    history_previous: Option<&str>,
    reason: &str,
    actor: &str,
) -> Result<()> {
    let now = now_ms();
    if let Some(prev) = previous {
        sqlx::query("UPDATE models SET stage = $1 WHERE id = $2 AND stage = $3")
            .bind(Stage::Archived)
            .bind(prev)
            .bind(Stage::Champion)
            .execute(&mut **tx)
            .await?;
    }
    let done = sqlx::query("UPDATE models SET stage = $1, promoted_at = $2 WHERE id = $3")
        .bind(Stage::Champion)
        .bind(now)
        .bind(model_id)
        .execute(&mut **tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(
                "another promotion changed the champion at the same time; retry".into(),
            ),
            _ => Error::Db(e),
        })?;
    if done.rows_affected() != 1 {
        return Err(Error::NotFound(format!("no model {model_id:?}")));
    }
    sqlx::query(
        "INSERT INTO promotions (id, task, model_id, previous_model_id, reason, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("promo"))
    .bind(task)
    .bind(model_id)
    .bind(history_previous.map(str::to_string))
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Make a model the champion of its task (manual override of the gate).
pub async fn promote(db: &Db, id: &str, actor: &str) -> Result<ModelInfo> {
    let model = get(db, id).await?;
    let mut tx = db.begin_write().await?;
    lock_champion(db, &mut tx, model.task).await?;
    let champion = current_in(&mut tx, model.task).await?;
    if champion.as_ref().is_some_and(|c| c.id == id) {
        return Err(Error::Conflict(format!("{id} is already the champion")));
    }
    let previous = champion.map(|c| c.id);
    swap_champion(
        &mut tx,
        model.task,
        id,
        previous.as_deref(),
        previous.as_deref(),
        "manual",
        actor,
    )
    .await?;
    crate::db::commit(tx).await?;
    get(db, id).await
}

/// Replace champion `id` by the model it replaced; returns the restored champion.
pub async fn rollback(db: &Db, id: &str, actor: &str) -> Result<ModelInfo> {
    let model = get(db, id).await?;
    if model.stage != Stage::Champion {
        return Err(Error::Conflict(format!(
            "{id} is not the champion (it is {})",
            model.stage
        )));
    }
    let previous: Option<Option<String>> = sqlx::query_scalar(
        "SELECT previous_model_id FROM promotions WHERE model_id = $1 AND task = $2 ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(id)
    .bind(model.task)
    .fetch_optional(db.pool())
    .await?;
    let Some(target) = previous.flatten() else {
        return Err(Error::Conflict(format!(
            "{id} has no earlier champion to roll back to"
        )));
    };
    // The restored model's own predecessor, so a second rollback goes further back.
    let before_target: Option<Option<String>> = sqlx::query_scalar(
        "SELECT previous_model_id FROM promotions WHERE model_id = $1 AND task = $2 ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(&target)
    .bind(model.task)
    .fetch_optional(db.pool())
    .await?;
    let mut tx = db.begin_write().await?;
    lock_champion(db, &mut tx, model.task).await?;
    if current_in(&mut tx, model.task)
        .await?
        .is_none_or(|c| c.id != id)
    {
        return Err(Error::Conflict(format!(
            "{id} stopped being the champion meanwhile"
        )));
    }
    swap_champion(
        &mut tx,
        model.task,
        &target,
        Some(id),
        before_target.flatten().as_deref(),
        &format!("rollback from {id}"),
        actor,
    )
    .await?;
    crate::db::commit(tx).await?;
    get(db, &target).await
}
