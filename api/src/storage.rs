//! Object storage behind one small interface, with two real backends: a local folder and any
//! S3 server (both through `object_store`, whose local backend writes to a temporary file and
//! renames, and whose S3 PUTs are atomic, so readers never see half-written objects).
//! Keys are content-addressed: `images/<sha256>`, `models/<model_id>/<file>`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::Config;
use crate::metrics::time_storage;
use crate::{Error, Result};

/// A blob store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    describe: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Full key under the storage root, e.g. `images/<sha256>`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, Unix milliseconds.
    pub modified_ms: i64,
}

/// Key of an uploaded image.
pub fn image_key(sha256: &str) -> String {
    format!("images/{sha256}")
}

/// Key of one file of a model version.
pub fn model_key(model_id: &str, file: &str) -> String {
    format!("models/{model_id}/{file}")
}

/// Whether `id` is safe to use in a key: `[a-z0-9-]`, 1..=64 chars.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Storage {
    /// Open the store named by the configuration (`file://` or `s3://`).
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let url = cfg.storage_url()?;
        if let Some(path) = url.strip_prefix("file://") {
            Self::local(std::path::Path::new(path))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Config(format!("no bucket in STORAGE_URL {url}")));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&cfg.s3_region);
            if let Some(e) = &cfg.s3_endpoint {
                b = b
                    .with_endpoint(e)
                    .with_allow_http(e.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(k) = &cfg.s3_access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(s) = &cfg.s3_secret_access_key {
                b = b.with_secret_access_key(s);
            }
            let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
            let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
                s3
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(
                    s3,
                    prefix.trim_matches('/'),
                ))
            };
            Ok(Storage {
                store,
                describe: format!("s3://{bucket}/{prefix}"),
            })
        } else {
            Err(Error::Config(format!(
                "STORAGE_URL must start with file:// or s3:// (got {url})"
            )))
        }
    }

    /// A local folder store.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?
            .with_automatic_cleanup(true);
        Ok(Storage {
            store: Arc::new(fs),
            describe: format!("file://{}", dir.display()),
        })
    }

    /// Where the blobs live, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Write a whole object (atomic for readers).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        time_storage("put", async {
            self.store
                .put(&ObjPath::from(key), PutPayload::from_bytes(bytes))
                .await?;
            Ok(())
        })
        .await
    }

    /// Read a whole object; `NotFound` when absent.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        time_storage("get", async {
            match self.store.get(&ObjPath::from(key)).await {
                Ok(r) => Ok(r.bytes().await?),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(Error::NotFound(format!("no object {key}")))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Stream an object (or a byte range of it) without holding it in memory: its size and a
    /// body that yields it chunk by chunk; `NotFound` when absent.
    pub async fn stream(&self, key: &str, range: Option<Range<u64>>) -> Result<axum::body::Body> {
        let opts = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        // Timed until the object opens (the body then streams at the client's pace).
        time_storage("open", async {
            match self.store.get_opts(&ObjPath::from(key), opts).await {
                Ok(r) => Ok(axum::body::Body::from_stream(r.into_stream())),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(Error::NotFound(format!("no object {key}")))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Read a byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        time_storage("get_range", async {
            Ok(self.store.get_range(&ObjPath::from(key), range).await?)
        })
        .await
    }

    /// Size of an object, or `None` when absent.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        time_storage("head", async {
            match self.store.head(&ObjPath::from(key)).await {
                Ok(m) => Ok(Some(m.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Delete an object (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        time_storage("delete", async {
            match self.store.delete(&ObjPath::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// All objects under `prefix` (e.g. `images`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let p = ObjPath::from(prefix);
        let metas: Vec<_> = time_storage("list", async {
            Ok(self.store.list(Some(&p)).try_collect().await?)
        })
        .await?;
        Ok(metas
            .into_iter()
            .map(|m| Listed {
                key: m.location.to_string(),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .collect())
    }

    /// Health probe: write, read back and delete a small object.
    pub async fn check(&self) -> Result<()> {
        let key = "health/probe".to_string();
        let body = Bytes::from_static(b"ok");
        self.put(&key, body.clone()).await?;
        let back = self.get(&key).await?;
        self.delete(&key).await?;
        if back != body {
            return Err(Error::Internal(
                "storage probe read back different bytes".into(),
            ));
        }
        Ok(())
    }
}
