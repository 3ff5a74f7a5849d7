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
    /// Regression the gate allows against the champion, on the metric's scale (0.02 = 2
    /// points): a candidate is promoted when, at the gate's confidence, it is no worse than
    /// the champion by more than this and better than the strongest baseline.
    #[arg(long, env = "GATE_MARGIN", default_value_t = 0.02)]
    pub gate_margin: f64,
    /// Confidence level of the gate's paired-bootstrap intervals (two-sided).
    #[arg(long, env = "GATE_CONFIDENCE", default_value_t = 0.95)]
    pub gate_confidence: f64,
    /// Bootstrap resamples per comparison.
    #[arg(long, env = "GATE_RESAMPLES", default_value_t = 2000)]
    pub gate_resamples: u32,
    /// Bootstrap seed (the same evidence and seed give the same verdict).
    #[arg(long, env = "GATE_SEED", default_value_t = 42)]
    pub gate_seed: u64,
    /// Keep the frozen backbone's features in storage (`features/`), so a retrain computes the
    /// backbone only for images it has not seen (`false`: recompute everything every run).
    #[arg(long, env = "FEATURE_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub feature_cache: bool,
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
    /// Largest image area the prediction route decodes, in pixels.
    #[arg(long, env = "MAX_PREDICT_PIXELS", default_value_t = 40_000_000)]
    pub max_predict_pixels: u64,
    /// Upload requests per minute per client (token bucket refill rate; admin requests are
    /// exempt from every per-client quota).
    #[arg(long, env = "UPLOAD_RATE_PER_MIN", default_value_t = 120)]
    pub upload_rate_per_min: u32,
    /// Upload requests a client may burst.
    #[arg(long, env = "UPLOAD_BURST", default_value_t = 60)]
    pub upload_burst: u32,
    /// Upload MiB per hour per client.
    #[arg(long, env = "UPLOAD_MB_PER_HOUR", default_value_t = 2048)]
    pub upload_mb_per_hour: u32,
    /// Uploaded files per hour per client.
    #[arg(long, env = "UPLOAD_FILES_PER_HOUR", default_value_t = 5000)]
    pub upload_files_per_hour: u32,
    /// Prediction requests per minute per client.
    #[arg(long, env = "PREDICT_RATE_PER_MIN", default_value_t = 240)]
    pub predict_rate_per_min: u32,
    /// Prediction requests a client may burst.
    #[arg(long, env = "PREDICT_BURST", default_value_t = 60)]
    pub predict_burst: u32,
    /// Images one client may have waiting for review.
    #[arg(long, env = "MAX_PENDING_PER_CLIENT", default_value_t = 1000)]
    pub max_pending_per_client: u64,
    /// Images waiting for review in total (beyond: contributions answer 503).
    #[arg(long, env = "MAX_PENDING_TOTAL", default_value_t = 100_000)]
    pub max_pending_total: u64,
    /// Captions one image may carry.
    #[arg(long, env = "MAX_CAPTIONS_PER_IMAGE", default_value_t = 20)]
    pub max_captions_per_image: u64,
    /// Reverse proxies (addresses or CIDR blocks, comma separated) whose `X-Forwarded-For`
    /// names the client; without it the peer address is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send a request head (also the keep-alive idle timeout).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may stall between two chunks.
    #[arg(long, env = "BODY_IDLE_TIMEOUT_SECS", default_value_t = 10)]
    pub body_idle_timeout_secs: u64,
    /// Deadline of an ordinary request, in seconds (progress streams excepted).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Deadline of an upload or prediction, in seconds.
    #[arg(long, env = "UPLOAD_TIMEOUT_SECS", default_value_t = 120)]
    pub upload_timeout_secs: u64,
    /// Connections open at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// `/api` requests in flight at once (beyond: 503 at once).
    #[arg(long, env = "MAX_REQUESTS_IN_FLIGHT", default_value_t = 512)]
    pub max_requests_in_flight: usize,
    /// MiB of upload and prediction bodies held in memory at once.
    #[arg(long, env = "BODY_MEMORY_MB", default_value_t = 384)]
    pub body_memory_mb: u32,
    /// MiB of decoded pixels at once (each decode holds what its header announces).
    #[arg(long, env = "DECODE_MEMORY_MB", default_value_t = 768)]
    pub decode_memory_mb: u32,
    /// Decoding threads: images decoded and predicted at once (default: one more than the
    /// cores).
    #[arg(long, env = "DECODE_THREADS")]
    pub decode_threads: Option<usize>,
    /// Progress streams open at once.
    #[arg(long, env = "MAX_EVENT_STREAMS", default_value_t = 256)]
    pub max_event_streams: usize,
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

    /// The gate's settings.
    pub fn gate(&self) -> crate::registry::GateConfig {
        crate::registry::GateConfig {
            margin: self.gate_margin,
            confidence: self.gate_confidence,
            resamples: self.gate_resamples,
            seed: self.gate_seed,
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
        if !(0.5..1.0).contains(&self.gate_confidence) {
            return Err(Error::Config("GATE_CONFIDENCE must be in [0.5, 1)".into()));
        }
        if !(100..=100_000).contains(&self.gate_resamples) {
            return Err(Error::Config(
                "GATE_RESAMPLES must be in 100..=100000".into(),
            ));
        }
        if self.max_upload_bytes < 1024 || self.max_files == 0 || self.max_image_side == 0 {
            return Err(Error::Config("upload limits must be positive".into()));
        }
        if self.upload_rate_per_min == 0 || self.upload_burst == 0 {
            return Err(Error::Config("upload rate limits must be positive".into()));
        }
        let positive = [
            self.header_read_timeout_secs,
            self.body_idle_timeout_secs,
            self.request_timeout_secs,
            self.upload_timeout_secs,
            u64::from(self.body_memory_mb),
            u64::from(self.decode_memory_mb),
            self.max_connections as u64,
            self.max_requests_in_flight as u64,
            self.max_event_streams as u64,
        ];
        if positive.contains(&0) {
            return Err(Error::Config(
                "timeouts, connection, request, memory and stream limits must be positive".into(),
            ));
        }
        if u64::from(self.body_memory_mb) * (1 << 20) < self.max_upload_bytes as u64 + (1 << 20) {
            return Err(Error::Config(
                "BODY_MEMORY_MB must hold at least one MAX_UPLOAD_BYTES body".into(),
            ));
        }
        Ok(())
    }
}
