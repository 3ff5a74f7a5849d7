//! Server and worker configuration: flags and environment variables with embedded defaults
//! (SQLite + local storage under `./data`, 127.0.0.1:8080).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Error, Result};

/// Configuration shared by `api serve` and `api worker`. Every flag can also be set from the
/// environment variable named next to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder for the default SQLite database and local object storage.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// `sqlite://path.db` or `postgres://user:pass@host/db`; default `<data-dir>/edgeml.db`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// `file:///abs/path` or `s3://bucket[/prefix]`; default `<data-dir>/objects`.
    #[arg(long, env = "STORAGE_URL")]
    pub storage_url: Option<String>,
    /// S3 endpoint (MinIO, any S3 server); AWS when unset.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// S3 access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Bearer token for admin routes. In development a random one is generated and logged
    /// when unset; production mode refuses to start without it.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Production mode: requires ADMIN_TOKEN, logs JSON.
    #[arg(long, env = "EDGEML_PRODUCTION")]
    pub production: bool,
    /// Static web app folder served at `/` (used when it has an `index.html`).
    #[arg(long, env = "STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,
    /// Labeled image folder (one sub-folder per label) imported as the first dataset when the
    /// database has none.
    #[arg(
        long,
        env = "SEED_DIR",
        default_value = "assets/datasets/tuxpaint-photos"
    )]
    pub seed_dir: Option<PathBuf>,
    /// Do not import a seed dataset.
    #[arg(long, env = "NO_SEED")]
    pub no_seed: bool,
    /// Queue a training run at start-up when no champion model exists.
    #[arg(long, env = "TRAIN_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub train_on_start: bool,
    /// Queue a retrain when this many images were approved since the last run (0 = never).
    #[arg(long, env = "AUTO_RETRAIN_AFTER", default_value_t = 10)]
    pub auto_retrain_after: u64,
    /// A candidate is promoted only if its test accuracy is at most this much below the
    /// champion's (and above the majority baseline).
    #[arg(long, env = "GATE_MARGIN", default_value_t = 0.02)]
    pub gate_margin: f64,
    /// In-process training workers (0: only separate `api worker` processes train).
    #[arg(long, env = "WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// A running job whose worker has not reported for this long is re-queued (or failed
    /// after its second attempt).
    #[arg(long, env = "WORKER_LEASE_SECS", default_value_t = 60)]
    pub worker_lease_secs: u64,
    /// Largest request body for uploads and predictions, in bytes.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Largest accepted image side, in pixels.
    #[arg(long, env = "MAX_IMAGE_SIDE", default_value_t = trainer::dataset::MAX_SIDE)]
    pub max_image_side: u32,
    /// Largest accepted image area, in pixels.
    #[arg(long, env = "MAX_IMAGE_PIXELS", default_value_t = 40_000_000)]
    pub max_image_pixels: u64,
    /// Files per upload request.
    #[arg(long, env = "MAX_FILES", default_value_t = 200)]
    pub max_files: usize,
    /// Upload requests per minute per client IP (token bucket refill rate).
    #[arg(long, env = "UPLOAD_RATE_PER_MIN", default_value_t = 120)]
    pub upload_rate_per_min: u32,
    /// Upload requests a client IP may burst.
    #[arg(long, env = "UPLOAD_BURST", default_value_t = 60)]
    pub upload_burst: u32,
    /// Allowed CORS origins (comma separated); CORS is off when empty.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Backbone weights (safetensors); default `$EDGEML_BACKBONE` or the fetched asset.
    #[arg(long, env = "BACKBONE")]
    pub backbone: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            c: Config,
        }
        <Wrap as clap::Parser>::parse_from(["api"]).c
    }
}

impl Config {
    /// Database URL, defaulting to a SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("edgeml.db").display()
            ),
        }
    }

    /// Storage URL, defaulting to a folder in the data folder.
    pub fn storage_url(&self) -> Result<String> {
        match &self.storage_url {
            Some(u) => Ok(u.clone()),
            None => {
                let dir = self.data_dir.join("objects");
                std::fs::create_dir_all(&dir)?;
                let abs = std::fs::canonicalize(&dir)?;
                Ok(format!("file://{}", abs.display()))
            }
        }
    }

    /// Backbone weights path.
    pub fn backbone_path(&self) -> PathBuf {
        self.backbone
            .clone()
            .unwrap_or_else(trainer::backbone::default_weights_path)
    }

    /// The seed folder, when seeding is enabled and it exists.
    pub fn seed_dir(&self) -> Option<PathBuf> {
        if self.no_seed {
            return None;
        }
        self.seed_dir.clone().filter(|d| d.is_dir())
    }

    /// Check settings that cannot be expressed as clap constraints.
    pub fn validate(&self) -> Result<()> {
        if self.production && self.admin_token.as_deref().unwrap_or("").is_empty() {
            return Err(Error::Config(
                "production mode requires ADMIN_TOKEN (refusing to start with open admin routes)"
                    .into(),
            ));
        }
        if let Some(t) = &self.admin_token
            && t.len() < 16
        {
            return Err(Error::Config(
                "ADMIN_TOKEN must be at least 16 characters".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.gate_margin) {
            return Err(Error::Config("GATE_MARGIN must be in [0, 1]".into()));
        }
        if self.max_upload_bytes < 1024 || self.max_files == 0 || self.max_image_side == 0 {
            return Err(Error::Config("upload limits must be positive".into()));
        }
        if self.upload_rate_per_min == 0 || self.upload_burst == 0 {
            return Err(Error::Config("upload rate limits must be positive".into()));
        }
        Ok(())
    }
}
