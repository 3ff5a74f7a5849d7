//! Orphan sweeping: blobs no row points to (failed uploads, deleted models, health probes),
//! the feature-cache entries of images no row points to any more, and backbones no model
//! runs on.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::db::Db;
use crate::storage::Storage;
use crate::util::now_ms;

/// What a sweep removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SweepReport {
    /// Image blobs without a row.
    pub images: usize,
    /// Model files without a model row.
    pub model_files: usize,
    /// Feature-cache entries of images without a row.
    #[serde(default)]
    pub feature_entries: usize,
    /// Backbone files no model's manifest names.
    #[serde(default)]
    pub backbones: usize,
}

/// Delete blobs no row points to, if older than `grace_ms` (uploads in flight write the blob
/// before the row, so young orphans are left alone).
pub async fn sweep_orphans(db: &Db, storage: &Storage, grace_ms: i64) -> Result<SweepReport> {
    let cutoff = now_ms() - grace_ms;
    let mut report = SweepReport::default();
    for obj in storage.list("images").await? {
        if obj.modified_ms > cutoff {
            continue;
        }
        let sha = obj.key.trim_start_matches("images/");
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE sha256 = $1")
            .bind(sha)
            .fetch_one(db.pool())
            .await?;
        if used == 0 {
            storage.delete(&obj.key).await?;
            report.images += 1;
        }
    }
    for obj in storage.list("models").await? {
        if obj.modified_ms > cutoff {
            continue;
        }
        let Some(model_id) = obj.key.split('/').nth(1) else {
            continue;
        };
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models WHERE id = $1")
            .bind(model_id)
            .fetch_one(db.pool())
            .await?;
        if used == 0 {
            storage.delete(&obj.key).await?;
            report.model_files += 1;
        }
    }
    // Feature-cache entries go with their image: one lookup per image, whatever its views.
    let mut by_image: HashMap<String, Vec<String>> = HashMap::new();
    for obj in storage.list(crate::jobs::features::PREFIX).await? {
        if obj.modified_ms > cutoff {
            continue;
        }
        let key = obj.key.trim_start_matches("features/");
        if let Some(sha) = trainer::run::cache::image_of_key(key) {
            by_image.entry(sha.to_string()).or_default().push(obj.key);
        }
    }
    for (sha, keys) in by_image {
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE sha256 = $1")
            .bind(&sha)
            .fetch_one(db.pool())
            .await?;
        if used == 0 {
            for key in keys {
                storage.delete(&key).await?;
                report.feature_entries += 1;
            }
        }
    }
    // A backbone stays while any model's manifest names it (its sha256 appears nowhere else
    // in a manifest); registrations rewrite it before their row, so the grace covers them.
    for obj in storage.list("backbones").await? {
        if obj.modified_ms > cutoff {
            continue;
        }
        let Some(sha) = obj
            .key
            .strip_prefix("backbones/")
            .and_then(|f| f.split_once('.'))
            .map(|(h, _)| h)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            continue;
        };
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models WHERE manifest LIKE $1")
            .bind(format!("%{sha}%"))
            .fetch_one(db.pool())
            .await?;
        if used == 0 {
            storage.delete(&obj.key).await?;
            report.backbones += 1;
        }
    }
    for obj in storage.list("health").await? {
        if obj.modified_ms <= cutoff {
            storage.delete(&obj.key).await?;
        }
    }
    Ok(report)
}
