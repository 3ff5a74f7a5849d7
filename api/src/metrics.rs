//! Prometheus metrics: HTTP requests and latency per route, uploads, predictions, training
//! runs and their durations per task, refusals by route and reason, object-storage call
//! latencies, the training queue (queued and running runs, the oldest
//! queued run's age, read from the database at scrape time), the serving model version, and
//! the process (memory, CPU, open files; Linux). One registry per server (tests run several
//! side by side).

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::{Error, Result};

/// The server's collectors, registered in their own registry under the `edgeml_` prefix.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{method, route, status}`.
    pub requests: IntCounterVec,
    /// `http_request_duration_seconds{method, route}`.
    pub latency: HistogramVec,
    /// `uploads_total{result}` (per file: stored, duplicate; per request: rejected).
    pub uploads: IntCounterVec,
    /// `predictions_total{result}`.
    pub predictions: IntCounterVec,
    /// `training_runs_total{outcome}` finished by workers of this process.
    pub training_runs: IntCounterVec,
    /// `training_run_duration_seconds{task, outcome}`: claim to end, runs of this process.
    pub training_duration: HistogramVec,
    /// `training_queue_runs{status}`: queued and running runs (all workers), at scrape time.
    pub queue_runs: IntGaugeVec,
    /// `training_queue_oldest_queued_seconds`: how long the oldest queued run has waited
    /// (0 when none waits), at scrape time.
    pub queue_oldest: Gauge,
    /// `model_info{task, model_id}` = 1 for the champion this process last served.
    pub model: IntGaugeVec,
    /// `refusals_total{route, reason}`: error answers by route and error code.
    pub refusals: IntCounterVec,
    /// `feature_cache_views_total{task, outcome}`: backbone feature views of the training runs
    /// this process finished, by where they came from (`hit`, `computed`, `corrupt`,
    /// `store_error`).
    pub feature_cache: IntCounterVec,
}

/// `storage_operation_duration_seconds{op, outcome}`: object-storage calls of this process
/// (shared by every server in it; each server's registry exposes it).
pub static STORAGE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // constant, valid options: cannot fail
    HistogramVec::new(
        HistogramOpts::new(
            "storage_operation_duration_seconds",
            "Object storage calls by operation and outcome",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        &["op", "outcome"],
    )
    .expect("valid histogram options")
});

/// Time one object-storage call (`outcome` is `ok` or `error`; a missing object is `ok`).
pub async fn time_storage<T>(
    op: &'static str,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let t0 = Instant::now();
    let r = call.await;
    let outcome = match &r {
        Ok(_) | Err(Error::NotFound(_)) => "ok",
        Err(_) => "error",
    };
    STORAGE_LATENCY
        .with_label_values(&[op, outcome])
        .observe(t0.elapsed().as_secs_f64());
    r
}

/// `database_operation_duration_seconds{op, outcome}`: database calls of this process that
/// tell contention and round-trip time apart: `begin_write` (waiting for the write lock on
/// SQLite, a connection on PostgreSQL), `commit`, `ping` (the readiness probe), `claim` (a
/// worker taking a queued run), `queue_stats` and `current_model` (read at every scrape and
/// every model check).
pub static DB_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // constant, valid options: cannot fail
    HistogramVec::new(
        HistogramOpts::new(
            "database_operation_duration_seconds",
            "Database calls by operation and outcome",
        )
        .buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 15.0,
        ]),
        &["op", "outcome"],
    )
    .expect("valid histogram options")
});

/// Time one database call (`outcome` is `ok` or `error`; a missing row is `ok`).
pub async fn time_db<T, E>(
    op: &'static str,
    call: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E> {
    let t0 = Instant::now();
    let r = call.await;
    DB_LATENCY
        .with_label_values(&[op, if r.is_ok() { "ok" } else { "error" }])
        .observe(t0.elapsed().as_secs_f64());
    r
}

/// The training queue as the database has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Runs waiting for a worker.
    pub queued: i64,
    /// Runs a worker holds.
    pub running: i64,
    /// When the oldest queued run was created (ms since the epoch).
    pub oldest_queued_ms: Option<i64>,
}

fn err(e: prometheus::Error) -> Error {
    Error::Internal(format!("metrics: {e}"))
}

impl Metrics {
    /// Register every collector.
    pub fn new() -> Result<Self> {
        let registry = Registry::new_custom(Some("edgeml".into()), None).map_err(err)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .map_err(err)?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["method", "route"],
        )
        .map_err(err)?;
        let uploads = IntCounterVec::new(
            Opts::new("uploads_total", "Uploaded images by result"),
            &["result"],
        )
        .map_err(err)?;
        let predictions = IntCounterVec::new(
            Opts::new("predictions_total", "Server-side predictions"),
            &["result"],
        )
        .map_err(err)?;
        let training_runs = IntCounterVec::new(
            Opts::new(
                "training_runs_total",
                "Training runs finished by this process",
            ),
            &["outcome"],
        )
        .map_err(err)?;
        let model = IntGaugeVec::new(
            Opts::new("model_info", "Champion model served"),
            &["task", "model_id"],
        )
        .map_err(err)?;
        let training_duration = HistogramVec::new(
            HistogramOpts::new(
                "training_run_duration_seconds",
                "Training runs finished by this process, from claim to end",
            )
            .buckets(vec![
                1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ]),
            &["task", "outcome"],
        )
        .map_err(err)?;
        let queue_runs = IntGaugeVec::new(
            Opts::new(
                "training_queue_runs",
                "Training runs queued or running (all workers)",
            ),
            &["status"],
        )
        .map_err(err)?;
        let queue_oldest = Gauge::new(
            "training_queue_oldest_queued_seconds",
            "Age of the oldest queued training run (0 when none waits)",
        )
        .map_err(err)?;
        let refusals = IntCounterVec::new(
            Opts::new("refusals_total", "Error answers by route and error code"),
            &["route", "reason"],
        )
        .map_err(err)?;
        let feature_cache = IntCounterVec::new(
            Opts::new(
                "feature_cache_views_total",
                "Backbone feature views of finished training runs: cache hits, computed, corrupt entries, store errors",
            ),
            &["task", "outcome"],
        )
        .map_err(err)?;
        for c in [
            &requests,
            &uploads,
            &predictions,
            &training_runs,
            &refusals,
            &feature_cache,
        ] {
            registry.register(Box::new(c.clone())).map_err(err)?;
        }
        for h in [&latency, &training_duration, &STORAGE_LATENCY, &DB_LATENCY] {
            registry.register(Box::new(h.clone())).map_err(err)?;
        }
        registry
            .register(Box::new(queue_runs.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(queue_oldest.clone()))
            .map_err(err)?;
        registry.register(Box::new(model.clone())).map_err(err)?;
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(err)?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            uploads,
            predictions,
            training_runs,
            training_duration,
            queue_runs,
            queue_oldest,
            model,
            refusals,
            feature_cache,
        })
    }

    /// Count where a finished run's backbone features came from.
    pub fn record_feature_cache(&self, task: &str, stats: &trainer::run::CacheStats) {
        for (outcome, n) in [
            ("hit", stats.hits),
            ("computed", stats.computed),
            ("corrupt", stats.corrupt),
            ("store_error", stats.store_errors),
        ] {
            self.feature_cache
                .with_label_values(&[task, outcome])
                .inc_by(n as u64);
        }
    }

    /// Record the training queue as read from the database at `now_ms`.
    pub fn set_queue(&self, q: QueueStats, now_ms: i64) {
        self.queue_runs.with_label_values(&["queued"]).set(q.queued);
        self.queue_runs
            .with_label_values(&["running"])
            .set(q.running);
        let age = q.oldest_queued_ms.map_or(0, |t| (now_ms - t).max(0));
        self.queue_oldest.set(age as f64 / 1000.0);
    }

    /// Record the champion being served.
    pub fn set_model(&self, task: &str, model_id: &str) {
        self.model.reset();
        self.model.with_label_values(&[task, model_id]).set(1);
    }

    /// Prometheus text format.
    pub fn render(&self) -> Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(err)?;
        String::from_utf8(buf).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The `method` label: the standard methods by name, anything a client invents as `OTHER`
/// (so the label set stays bounded).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// Middleware: count and time every request by its route template (not the raw path, so ids
/// do not explode the label set).
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| {
            if req.uri().path().starts_with("/api/") {
                "unmatched".into()
            } else {
                "static".into()
            }
        });
    let method = method_label(req.method()).to_string();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    metrics
        .latency
        .with_label_values(&[&method, &route])
        .observe(t0.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&method, &route, resp.status().as_str()])
        .inc();
    if let Some(crate::error::ErrorCode(code)) = resp.extensions().get() {
        metrics
            .refusals
            .with_label_values(&[route.as_str(), code])
            .inc();
    }
    resp
}
