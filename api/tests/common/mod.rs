//! Shared harness: a real server on a loopback port over SQLite or PostgreSQL and local or S3
//! storage (the servers `scripts/test-services.sh` starts), plus real images.
#![allow(dead_code, clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::path::{Path, PathBuf};

use api::config::Config;
use api::db::Db;
use api::storage::Storage;
use futures::StreamExt;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// Two tests running `$flow(sql, blobs)`: `$sqlite_local` on SQLite + local storage,
/// `$postgres_s3` on PostgreSQL + S3.
#[macro_export]
macro_rules! on_both_backends {
    ($flow:ident: $sqlite_local:ident, $postgres_s3:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite_local() {
            $flow($crate::common::Sql::Sqlite, $crate::common::Blobs::Local).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres_s3() {
            $flow($crate::common::Sql::Postgres, $crate::common::Blobs::S3).await;
        }
    };
}

/// Which metadata store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sql {
    Sqlite,
    Postgres,
}

/// Which blob store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blobs {
    Local,
    S3,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the api tests through scripts/test.sh (it starts PostgreSQL and an \
             S3 server on loopback), or `source scripts/test-services.sh` first"
        )
    })
}

fn rand_suffix() -> String {
    api::util::random_hex(6)
}

/// A fresh PostgreSQL database on the test server.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let admin = required_env("EDGEML_TEST_POSTGRES_URL");
    sqlx::any::install_default_drivers();
    let name = format!("edgeml_test_{}", rand_suffix());
    let mut c = sqlx::AnyConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// A fresh bucket on the S3 test server.
pub async fn fresh_bucket() -> (String, String) {
    let endpoint = required_env("EDGEML_TEST_S3_ENDPOINT");
    let bucket = format!("edgeml-test-{}", rand_suffix());
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    (endpoint, bucket)
}

/// A configuration for a test server in `dir`.
pub async fn config(dir: &Path, sql: Sql, blobs: Blobs) -> Config {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.data_dir = dir.to_path_buf();
    c.database_url = Some(match sql {
        Sql::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
        Sql::Postgres => fresh_postgres().await,
    });
    match blobs {
        Blobs::Local => c.storage_url = Some(format!("file://{}", dir.join("objects").display())),
        Blobs::S3 => {
            let (endpoint, bucket) = fresh_bucket().await;
            c.storage_url = Some(format!("s3://{bucket}"));
            c.s3_endpoint = Some(endpoint);
            c.s3_access_key_id = Some("test".into());
            c.s3_secret_access_key = Some("test".into());
        }
    }
    if matches!(blobs, Blobs::Local) {
        std::fs::create_dir_all(dir.join("objects")).unwrap();
    }
    c.admin_token = Some(TOKEN.into());
    c.static_dir = dir.join("no-static");
    c.no_seed = true;
    c.train_on_start = false;
    c.auto_retrain_after = 0;
    c.workers = 0;
    c
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub server: Option<api::app::Server>,
    pub cfg: Config,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(sql: Sql, blobs: Blobs, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), sql, blobs).await;
        tweak(&mut cfg);
        Self::start_with(cfg, dir).await
    }

    pub async fn start_with(cfg: Config, dir: tempfile::TempDir) -> TestServer {
        let st = api::app::state(cfg.clone()).await.unwrap();
        api::app::bootstrap(&st).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = api::app::start(st, listener, std::future::pending())
            .await
            .unwrap();
        TestServer {
            base: format!("http://{}", server.addr),
            http: reqwest::Client::new(),
            server: Some(server),
            cfg,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn db(&self) -> &Db {
        &self.server.as_ref().unwrap().state.db
    }

    pub fn storage(&self) -> &Storage {
        &self.server.as_ref().unwrap().state.storage
    }

    pub fn state(&self) -> &std::sync::Arc<api::app::AppState> {
        &self.server.as_ref().unwrap().state
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn admin_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(TOKEN)
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).bearer_auth(TOKEN).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Queue a run (`POST /api/train` with `body`, answered 202) and read its Server-Sent
    /// Events until the run ends: the queued run as answered, and the events.
    pub async fn train_and_follow(&self, body: serde_json::Value) -> (serde_json::Value, Vec<Sse>) {
        let r = self
            .admin_post("/api/train")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{body}");
        let run: serde_json::Value = r.json().await.unwrap();
        let id = run["id"].as_str().unwrap();
        let events = read_sse(
            self.get(&format!("/api/train/{id}/events"))
                .send()
                .await
                .unwrap(),
            100_000,
        )
        .await;
        (run, events)
    }

    /// Add labels to the `default` dataset.
    pub async fn add_labels(&self, labels: &[&str]) {
        for l in labels {
            let r = self
                .admin_post("/api/datasets/default/labels")
                .json(&serde_json::json!({"name": l}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    }

    /// Upload files with one label; `admin` sends the token.
    pub async fn upload(
        &self,
        label: &str,
        files: &[(String, Vec<u8>)],
        admin: bool,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new().text("label", label.to_string());
        for (name, bytes) in files {
            form = form.part(
                "files",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
            );
        }
        let mut req = self
            .http
            .post(self.url("/api/datasets/default/images"))
            .multipart(form);
        if admin {
            req = req.bearer_auth(TOKEN);
        }
        req.send().await.unwrap()
    }

    /// Scrape `/metrics`: every line must be a `# HELP`/`# TYPE` comment or a sample
    /// `name{labels} value` of a family with a `# TYPE`, and the whole text must parse
    /// (prometheus-parse). Returns `(name, sorted labels, value)` per sample line (histogram
    /// and summary lines too, e.g. `…_count`).
    pub async fn metrics(&self) -> Vec<Sample> {
        let r = self.get("/metrics").send().await.unwrap();
        assert_eq!(r.status(), 200);
        parse_metrics(&r.text().await.unwrap())
    }

    /// Rows in `images` and objects under `images/`.
    pub async fn counts(&self) -> (i64, usize) {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images")
            .fetch_one(self.db().pool())
            .await
            .unwrap();
        let blobs = self.storage().list("images").await.unwrap().len();
        (rows, blobs)
    }
}

/// A Prometheus text scrape, checked line by line (see [`TestServer::metrics`]).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let lines: Vec<std::io::Result<String>> = text.lines().map(|l| Ok(l.to_string())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap();
    let mut typed = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
            None => (series, ""),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no # TYPE for {line}");
        let mut labels: Vec<(String, String)> = if labels.is_empty() {
            Vec::new()
        } else {
            labels
                .split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect()
        };
        labels.sort();
        out.push((name.to_string(), labels, value));
    }
    assert!(!scrape.samples.is_empty());
    out
}

/// One scraped sample: name, labels (sorted), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// The value of the scraped sample `name` with exactly these labels (any order).
pub fn metric(m: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    m.iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

/// Workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first `n` photos (sorted by name) of a bundled class.
pub fn photos(label: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("assets/datasets/tuxpaint-photos").join(label);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-assets.sh)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    names.sort();
    names
        .into_iter()
        .take(n)
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub data: serde_json::Value,
}

/// Read an SSE stream until it ends (or `limit` events).
pub async fn read_sse(resp: reqwest::Response, limit: usize) -> Vec<Sse> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            out.push(Sse {
                event,
                data: serde_json::from_str(&data).unwrap(),
            });
            if out.len() >= limit {
                return out;
            }
        }
    }
    out
}

/// sha256 hex.
pub fn sha256(bytes: &[u8]) -> String {
    wasm_infer::session::sha256_hex(bytes)
}
