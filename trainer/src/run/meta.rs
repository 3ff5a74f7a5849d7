//! What a run reports while it works ([`Progress`]) and who the model it makes is
//! ([`RunMeta`] in, [`Identity`] out).

pub use contract::api::Progress;
use serde::Serialize;
use wasm_infer::session::sha256_hex;

use crate::dataset::Dataset;

/// Identity and lineage of the model a run produces, as the caller chooses them.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// Model id; derived from the dataset, config and time when `None`.
    pub model_id: Option<String>,
    /// The model this retrains, if any.
    pub parent_model_id: Option<String>,
    /// The champion, for the gate's evidence: scored on the run's own examples
    /// ([`crate::evidence`]; classification runs).
    pub champion: Option<crate::evidence::ChampionRef>,
}

/// The identity fields every manifest records, fixed once when the export starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The model id ([`RunMeta::model_id_or`]).
    pub model_id: String,
    /// Content id of the dataset trained on ([`Dataset::snapshot_id`]).
    pub snapshot: String,
    /// RFC 3339 time of the export.
    pub created_at: String,
    /// The model this retrains, if any.
    pub parent_model_id: Option<String>,
}

impl RunMeta {
    /// The model id to record: the given one, else `PREFIX-` + 12 hex digits of the sha256 of
    /// the dataset snapshot, the creation time and the config.
    pub fn model_id_or(
        &self,
        prefix: &str,
        snapshot: &str,
        created_at: &str,
        config: &impl Serialize,
    ) -> String {
        self.model_id.clone().unwrap_or_else(|| {
            let seed = format!(
                "{snapshot}{created_at}{}",
                serde_json::to_string(config).unwrap_or_default()
            );
            format!("{prefix}-{}", &sha256_hex(seed.as_bytes())[..12])
        })
    }

    /// Snapshot the dataset, stamp the time and settle the model id (`PREFIX-…` when none
    /// was given).
    pub fn identify(&self, prefix: &str, dataset: &Dataset, config: &impl Serialize) -> Identity {
        let snapshot = dataset.snapshot_id();
        let created_at = now_rfc3339();
        Identity {
            model_id: self.model_id_or(prefix, &snapshot, &created_at, config),
            snapshot,
            created_at,
            parent_model_id: self.parent_model_id.clone(),
        }
    }
}

/// Now, as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
