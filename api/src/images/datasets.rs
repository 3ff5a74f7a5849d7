//! Datasets and their labels: create, add a label, look up with per-status image counts.

use std::collections::HashSet;

use sqlx::Row;

use crate::db::Db;
use crate::util::{new_id, now_ms};
use crate::{Error, Result};
pub use contract::api::{DatasetInfo, LabelCount};
use contract::{ImageStatus, Task};

/// Most labels a new dataset is created with (the documented `maxItems`).
pub const MAX_LABELS: usize = 1000;

/// Create a dataset with its labels, for labelled images (`Task::Classify`, which ranking and
/// product runs also read) or for images with boxes (`Task::Detect`).
pub async fn create_dataset(
    db: &Db,
    id: Option<&str>,
    name: &str,
    labels: &[String],
    task: Task,
) -> Result<DatasetInfo> {
    if !matches!(task, Task::Classify | Task::Detect) {
        return Err(Error::Invalid(format!(
            "a dataset holds labelled images (classify; ranking and product runs read them too) \
             or images with boxes (detect), not {:?}",
            task.as_str()
        )));
    }
    trainer::dataset::validate_label(name)
        .map_err(|e| Error::Invalid(format!("dataset name: {e}")))?;
    if labels.len() > MAX_LABELS {
        return Err(Error::Invalid(format!(
            "{} labels (at most {MAX_LABELS})",
            labels.len()
        )));
    }
    for l in labels {
        trainer::dataset::validate_label(l).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let id = id.map(str::to_string).unwrap_or_else(|| new_id("ds"));
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM datasets WHERE name = $1 OR id = $2")
            .bind(name)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
    if exists > 0 {
        return Err(Error::Conflict(format!(
            "a dataset named {name:?} already exists"
        )));
    }
    sqlx::query("INSERT INTO datasets (id, name, task, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(name)
        .bind(task)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let unique: HashSet<&String> = labels.iter().collect();
    for l in unique {
        sqlx::query("INSERT INTO labels (dataset_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(l)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    crate::db::commit(tx).await?;
    get_dataset(db, &id).await
}

/// Add a label to a dataset (idempotent).
pub async fn add_label(db: &Db, dataset_id: &str, label: &str) -> Result<DatasetInfo> {
    trainer::dataset::validate_label(label).map_err(|e| Error::Invalid(e.to_string()))?;
    require_dataset(db, dataset_id).await?;
    let known: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM labels WHERE dataset_id = $1 AND name = $2")
            .bind(dataset_id)
            .bind(label)
            .fetch_one(db.pool())
            .await?;
    if known == 0 {
        sqlx::query("INSERT INTO labels (dataset_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(dataset_id)
            .bind(label)
            .bind(now_ms())
            .execute(db.pool())
            .await?;
    }
    get_dataset(db, dataset_id).await
}

/// `NotFound` unless the dataset exists (an indexed lookup; [`get_dataset`] also counts images).
pub async fn require_dataset(db: &Db, id: &str) -> Result<()> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM datasets WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    if n == 0 {
        return Err(Error::NotFound(format!("no dataset {id:?}")));
    }
    Ok(())
}

/// Labels of a dataset, sorted.
pub async fn labels(db: &Db, dataset_id: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM labels WHERE dataset_id = $1 ORDER BY name")
            .bind(dataset_id)
            .fetch_all(db.pool())
            .await?,
    )
}

/// One dataset with counts; `NotFound` when absent.
pub async fn get_dataset(db: &Db, id: &str) -> Result<DatasetInfo> {
    let row = sqlx::query("SELECT id, name, task, created_at FROM datasets WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no dataset {id:?}")))?;
    let mut labels: Vec<LabelCount> = self::labels(db, id)
        .await?
        .into_iter()
        .map(|name| LabelCount {
            name,
            approved: 0,
            pending: 0,
            rejected: 0,
        })
        .collect();
    let counts = sqlx::query(
        "SELECT label, status, COUNT(*) AS n FROM images WHERE dataset_id = $1 GROUP BY label, status",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    for c in counts {
        let (label, st, n): (String, ImageStatus, i64) =
            (c.try_get(0)?, c.try_get(1)?, c.try_get(2)?);
        if let Some(l) = labels.iter_mut().find(|l| l.name == label) {
            match st {
                ImageStatus::Approved => l.approved += n,
                ImageStatus::Pending => l.pending += n,
                ImageStatus::Rejected => l.rejected += n,
            }
        }
    }
    Ok(DatasetInfo {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        task: row.try_get(2)?,
        labels,
        created_at: row.try_get(3)?,
    })
}

/// All datasets, oldest first.
pub async fn list_datasets(db: &Db) -> Result<Vec<DatasetInfo>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM datasets ORDER BY created_at, id")
        .fetch_all(db.pool())
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(get_dataset(db, &id).await?);
    }
    Ok(out)
}
