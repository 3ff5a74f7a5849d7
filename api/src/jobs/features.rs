//! The backbone feature cache in object storage, under `features/` (keys from
//! [`trainer::run::cache::key`]): one entry per (backbone, image, view), shared by every worker
//! process and by the classification and ranking runs. No route serves it; the orphan sweep
//! deletes an image's entries with the image ([`crate::images::sweep`]).

use futures::{StreamExt, TryStreamExt};
use tokio::runtime::Handle;
use trainer::run::FeatureStore;

use crate::Error;
use crate::storage::Storage;

/// Storage prefix of the cache.
pub const PREFIX: &str = "features";

/// Requests in flight per batch (S3 round trips overlap; local reads are cheap either way).
const CONCURRENCY: usize = 32;

/// Storage key of a cache entry.
pub fn storage_key(key: &str) -> String {
    format!("{PREFIX}/{key}")
}

/// [`FeatureStore`] over the api's [`Storage`], called from a training thread (blocking on
/// the runtime it was made on).
#[derive(Debug, Clone)]
pub struct StorageFeatures {
    storage: Storage,
    rt: Handle,
}

impl StorageFeatures {
    /// A cache in `storage`, driven by the current runtime (call from inside it).
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            rt: Handle::current(),
        }
    }
}

fn cache_error(e: Error) -> trainer::Error {
    tracing::warn!(error = %e, "feature cache");
    trainer::Error::Cache(e.to_string())
}

impl FeatureStore for StorageFeatures {
    fn load(&self, keys: &[String]) -> trainer::Result<Vec<Option<Vec<u8>>>> {
        self.rt
            .block_on(
                futures::stream::iter(keys)
                    .map(|k| async move {
                        match self.storage.get(&storage_key(k)).await {
                            Ok(b) => Ok(Some(b.to_vec())),
                            Err(Error::NotFound(_)) => Ok(None),
                            Err(e) => Err(e),
                        }
                    })
                    .buffered(CONCURRENCY)
                    .try_collect(),
            )
            .map_err(cache_error)
    }

    fn save(&self, entries: &[(String, Vec<u8>)]) -> trainer::Result<()> {
        self.rt
            .block_on(
                futures::stream::iter(entries)
                    .map(|(k, bytes)| async move {
                        let key = storage_key(k);
                        self.storage
                            .put(&key, bytes::Bytes::from(bytes.clone()))
                            .await
                    })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<()>(),
            )
            .map_err(cache_error)
    }
}
