//! Training jobs: killing the worker process mid-run re-queues the run and then fails it,
//! leaving the champion untouched; cancel; concurrent claims never share a run (PostgreSQL
//! SKIP LOCKED and SQLite); auto-retrain after N approvals; a worker process's own `/metrics`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use api::jobs;
use common::{Blobs, Sql, TestServer, metric, parse_metrics, photos};
use serde_json::{Value, json};
use trainer::train::TrainConfig;

const LABELS: [&str; 3] = ["animals", "food", "plants"];

async fn seed_approved(s: &TestServer, per_label: usize) {
    s.add_labels(&LABELS).await;
    for l in LABELS {
        let r = s.upload(l, &photos(l, per_label), true).await;
        assert_eq!(r.status(), 201);
    }
}

fn quick() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        views: 1,
        patience: 4,
        ..TrainConfig::default()
    }
}

fn slow() -> TrainConfig {
    TrainConfig {
        epochs: 5000,
        patience: 5000,
        views: 1,
        ..TrainConfig::default()
    }
}

async fn wait_for(
    s: &TestServer,
    run: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    loop {
        let r = s.json(&format!("/api/train/{run}")).await;
        if pred(&r) {
            return r;
        }
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn champion(s: &TestServer) -> Option<String> {
    api::registry::current(s.db(), "classify")
        .await
        .unwrap()
        .map(|m| m.id)
}

fn spawn_worker(s: &TestServer) -> std::process::Child {
    spawn_worker_with(s, &[])
}

fn spawn_worker_with(s: &TestServer, extra: &[&str]) -> std::process::Child {
    let c = &s.cfg;
    std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("worker")
        .args(extra)
        .arg("--data-dir")
        .arg(&c.data_dir)
        .arg("--database-url")
        .arg(c.database_url.as_ref().unwrap())
        .arg("--storage-url")
        .arg(c.storage_url.as_ref().unwrap())
        .arg("--admin-token")
        .arg(common::TOKEN)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap()
}

async fn kill_worker_mid_run(sql: Sql) {
    let s = TestServer::start(sql, Blobs::Local, |c| c.worker_lease_secs = 2).await;
    seed_approved(&s, 20).await;

    // A champion first, trained by a worker in this process.
    let st = s.state().clone();
    let first = jobs::enqueue(s.db(), "default", &quick(), "manual")
        .await
        .unwrap();
    let w = st.worker(Default::default());
    let (id, outcome) = w.run_once().await.unwrap().unwrap();
    assert_eq!(id, first.id);
    assert!(
        matches!(outcome, jobs::Outcome::Succeeded(_)),
        "{outcome:?}"
    );
    let champ = champion(&s).await.expect("first model promoted");
    let models_before = s.storage().list("models").await.unwrap().len();

    // A long run, taken by a separate worker process that is then killed (twice).
    let run = jobs::enqueue(s.db(), "default", &slow(), "manual")
        .await
        .unwrap();
    for attempt in 1..=2 {
        let mut child = spawn_worker(&s);
        let r = wait_for(
            &s,
            &run.id,
            "the worker to report epochs",
            Duration::from_secs(120),
            |r| {
                r["status"] == "running"
                    && r["attempts"] == attempt
                    && !r["epochs"].as_array().unwrap().is_empty()
            },
        )
        .await;
        assert_ne!(r["worker"], Value::Null);
        child.kill().unwrap();
        child.wait().unwrap();
        let expected = if attempt < jobs::MAX_ATTEMPTS {
            "queued"
        } else {
            "failed"
        };
        let r = wait_for(&s, &run.id, "the reaper", Duration::from_secs(30), |r| {
            r["status"] == expected
        })
        .await;
        assert!(
            r["error"].as_str().unwrap().contains("stopped responding"),
            "{r}"
        );
        assert_eq!(
            champion(&s).await.as_deref(),
            Some(champ.as_str()),
            "champion unchanged"
        );
        if expected == "queued" {
            assert_eq!(r["worker"], Value::Null);
            assert_eq!(
                r["epochs"],
                json!([]),
                "progress of the dead attempt is cleared"
            );
        }
    }
    let models: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models")
        .fetch_one(s.db().pool())
        .await
        .unwrap();
    assert_eq!(models, 1, "no candidate from the killed run");
    assert_eq!(
        s.storage().list("models").await.unwrap().len(),
        models_before,
        "no model files either"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_sqlite() {
    kill_worker_mid_run(Sql::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_postgres() {
    kill_worker_mid_run(Sql::Postgres).await;
}

/// A separate worker process serves its own `/metrics` (`--metrics-listen`): the run it
/// trained (count and duration by task and outcome), its database calls, its process, and the
/// shared queue as the database has it; the api server, which trained nothing, has no run. A
/// burst of scrapes answers alike while a stalled client is cut off by the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_serves_its_metrics() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |_| {}).await;
    seed_approved(&s, 6).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(spawn_worker_with(
        &s,
        &["--metrics-listen", &addr, "--header-read-timeout-secs", "1"],
    ));
    let http = reqwest::Client::new();
    let scrape = || async {
        let r = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        parse_metrics(&r.text().await.unwrap())
    };
    let t0 = Instant::now();
    while http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the worker's /health"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = jobs::enqueue(s.db(), "default", &quick(), "manual")
        .await
        .unwrap();
    wait_for(
        &s,
        &run.id,
        "the worker's run",
        Duration::from_secs(300),
        |r| r["status"] == "succeeded",
    )
    .await;
    let m = scrape().await;
    let done = [("task", "classify"), ("outcome", "succeeded")];
    assert_eq!(
        metric(&m, "edgeml_training_run_duration_seconds_count", &done),
        Some(1.0)
    );
    assert!(metric(&m, "edgeml_training_run_duration_seconds_sum", &done).unwrap() > 0.0);
    assert_eq!(
        metric(
            &m,
            "edgeml_training_runs_total",
            &[("outcome", "succeeded")]
        ),
        Some(1.0)
    );
    for op in ["claim", "begin_write", "commit"] {
        let n = metric(
            &m,
            "edgeml_database_operation_duration_seconds_count",
            &[("op", op), ("outcome", "ok")],
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{op}: {n:?}");
    }
    assert!(metric(&m, "edgeml_process_resident_memory_bytes", &[]).unwrap() > 1e6);
    for status in ["queued", "running"] {
        assert_eq!(
            metric(&m, "edgeml_training_queue_runs", &[("status", status)]),
            Some(0.0),
            "{status}"
        );
    }
    // Twenty scrapes at once answer like one, while a client that never finishes its request
    // head is disconnected by the same accept loop as the api's (header-read timeout).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let burst = futures::future::join_all((0..20).map(|_| scrape())).await;
    for m in &burst {
        assert_eq!(
            metric(m, "edgeml_training_run_duration_seconds_count", &done),
            Some(1.0)
        );
    }
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "a stalled client is cut off within the header timeout"
    );
    // Nothing else is served there.
    let other = http
        .get(format!("http://{addr}/api/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let server = s.metrics().await;
    assert_eq!(
        metric(&server, "edgeml_training_run_duration_seconds_count", &done),
        None
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    s.stop().await;
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_running_and_queued_runs() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| c.workers = 1).await;
    seed_approved(&s, 12).await;
    let r = s
        .admin_post("/api/train")
        .json(&json!({"params": {"epochs": 5000, "patience": 5000, "views": 1}}))
        .send()
        .await
        .unwrap();
    let running: Value = r.json().await.unwrap();
    let id = running["id"].as_str().unwrap();
    let queued: Value = s
        .admin_post("/api/train")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let qid = queued["id"].as_str().unwrap();
    wait_for(&s, id, "running", Duration::from_secs(60), |r| {
        r["status"] == "running"
    })
    .await;
    // The queue as the metrics show it: one running, one waiting (for a while now).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "edgeml_training_queue_runs", &[("status", "queued")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "edgeml_training_queue_runs", &[("status", "running")]),
        Some(1.0)
    );
    let age = metric(&m, "edgeml_training_queue_oldest_queued_seconds", &[]).unwrap();
    assert!(age >= 1.0, "oldest queued run waited {age} s");
    assert!(metric(&m, "edgeml_process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(metric(&m, "edgeml_process_open_fds", &[]).unwrap() > 0.0);

    let r = s
        .admin_post(&format!("/api/train/{qid}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
    let r = s
        .admin_post(&format!("/api/train/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = wait_for(&s, id, "cancelled", Duration::from_secs(30), |r| {
        r["status"] == "cancelled"
    })
    .await;
    assert_eq!(r["model_id"], Value::Null);
    assert_eq!(champion(&s).await, None);
    // Both gone from the queue; the cancelled run's duration is recorded for its task.
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "edgeml_training_queue_runs", &[("status", "queued")]),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "edgeml_training_queue_runs", &[("status", "running")]),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "edgeml_training_queue_oldest_queued_seconds", &[]),
        Some(0.0)
    );
    let done = [("outcome", "cancelled"), ("task", "classify")];
    assert_eq!(
        metric(&m, "edgeml_training_run_duration_seconds_count", &done),
        Some(1.0)
    );
    assert!(metric(&m, "edgeml_training_run_duration_seconds_sum", &done).unwrap() > 0.0);
    let r = s
        .admin_post(&format!("/api/train/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    s.stop().await;
}

async fn concurrent_claims(sql: Sql) {
    let s = TestServer::start(sql, Blobs::Local, |_| {}).await;
    s.add_labels(&["food"]).await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(
            jobs::enqueue(s.db(), "default", &quick(), "manual")
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = s.db().clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(run) = jobs::claim(&db, &format!("w{i}")).await.unwrap() {
                got.push(run.id);
            }
            got
        }));
    }
    let mut claimed: Vec<String> = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    claimed.sort();
    queued.sort();
    assert_eq!(claimed, queued, "every run claimed exactly once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_postgres_skip_locked() {
    concurrent_claims(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_sqlite() {
    concurrent_claims(Sql::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_retrain_after_n_approvals() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| c.auto_retrain_after = 10).await;
    s.add_labels(&["food", "plants"]).await;
    let r = s.upload("food", &photos("food", 6), false).await;
    assert_eq!(r.status(), 201);
    let r = s.upload("plants", &photos("plants", 6), false).await;
    assert_eq!(r.status(), 201);
    let pending = s.json("/api/review").await;
    let ids: Vec<&Value> = pending["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids.len(), 12);
    // 9 approvals: below the threshold.
    let first: Vec<Value> = ids[..9]
        .iter()
        .map(|id| json!({"id": id, "action": "approve"}))
        .collect();
    let r: Value = s
        .admin_post("/api/review")
        .json(&json!({"decisions": first}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["auto_retrain"], Value::Null);
    // One relabel (not an approval), then the 10th approval triggers a run.
    let relabel = json!({"decisions": [{"id": ids[9], "action": "relabel", "label": "plants"}]});
    let r: Value = s
        .admin_post("/api/review")
        .json(&relabel)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["auto_retrain"], Value::Null);
    assert_eq!(r["images"][0]["label"], "plants");
    assert_eq!(r["images"][0]["status"], "pending");
    let tenth = json!({"decisions": [{"id": ids[10], "action": "approve"}]});
    let r: Value = s
        .admin_post("/api/review")
        .json(&tenth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = r["auto_retrain"]
        .as_str()
        .expect("auto-retrain queued")
        .to_string();
    let info = s.json(&format!("/api/train/{run}")).await;
    assert_eq!(info["status"], "queued");
    assert!(info["reason"].as_str().unwrap().starts_with("auto"));
    // While it is queued, more approvals do not queue another.
    let more = json!({"decisions": [{"id": ids[11], "action": "approve"}, {"id": ids[9], "action": "approve"}]});
    let r: Value = s
        .admin_post("/api/review")
        .json(&more)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["auto_retrain"], Value::Null);
    assert_eq!(s.json("/api/train").await.as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_requeues_the_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path(), Sql::Sqlite, Blobs::Local).await;
    cfg.workers = 1;
    let s = TestServer::start_with(cfg.clone(), dir).await;
    seed_approved(&s, 12).await;
    let run = jobs::enqueue(s.db(), "default", &slow(), "manual")
        .await
        .unwrap();
    s.state().wake.notify_waiters();
    wait_for(&s, &run.id, "running", Duration::from_secs(60), |r| {
        r["status"] == "running"
    })
    .await;
    let db_url = cfg.database_url.clone().unwrap();
    let TestServer { server, dir, .. } = s;
    server.unwrap().shutdown().await.unwrap();
    let db = api::db::Db::connect(&db_url).await.unwrap();
    let r = jobs::get_run(&db, &run.id).await.unwrap();
    assert_eq!(r.status, contract::RunStatus::Queued, "{r:?}");
    assert_eq!(r.attempts, 0);
    assert!(r.error.unwrap().contains("shutdown"));
    drop(dir);
}

/// The files of a registered model under a new model id (as if a second run had trained it).
async fn copy_of(s: &TestServer, model: &str, new_id: &str) -> trainer::run::ModelFolder {
    let mut folder = trainer::run::ModelFolder::new();
    for name in api::registry::model_files(contract::Task::Classify) {
        let bytes = s
            .storage()
            .get(&api::storage::model_key(model, name))
            .await
            .unwrap();
        let bytes = if *name == contract::ModelFiles::MANIFEST {
            let mut m = wasm_infer::manifest::ModelManifest::from_json(
                std::str::from_utf8(&bytes).unwrap(),
            )
            .unwrap();
            m.model_id = new_id.to_string();
            m.to_json().unwrap().into_bytes()
        } else {
            bytes.to_vec()
        };
        folder = folder.with(name, bytes);
    }
    // The shared backbone's files, stored once under their sha256, travel with the folder.
    let manifest = api::registry::load_manifest(s.storage(), model)
        .await
        .unwrap();
    let b = manifest.backbone.unwrap();
    let q = b.int8.unwrap();
    for (name, sha) in [(b.onnx.file, b.onnx.sha256), (q.file, q.sha256)] {
        let key = contract::ModelFiles::backbone_key(&name, &sha);
        let bytes = s.storage().get(&key).await.unwrap();
        folder = folder.with(&name, bytes.to_vec());
    }
    folder
}

/// Queue a run and claim it as `worker`.
async fn claimed(s: &TestServer, worker: &str) -> jobs::RunInfo {
    let queued = jobs::enqueue(s.db(), "default", &quick(), "test")
        .await
        .unwrap();
    let run = jobs::claim(s.db(), worker).await.unwrap().unwrap();
    assert_eq!(run.id, queued.id);
    run
}

async fn registration_needs_ownership(sql: Sql) {
    let s = TestServer::start(sql, Blobs::Local, |c| {
        c.workers = 0;
        c.train_on_start = false;
    })
    .await;
    seed_approved(&s, 8).await;
    jobs::enqueue(s.db(), "default", &quick(), "first")
        .await
        .unwrap();
    let (_, outcome) = s
        .state()
        .worker(Default::default())
        .run_once()
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome, jobs::Outcome::Succeeded(_)),
        "{outcome:?}"
    );
    let first = champion(&s).await.unwrap();
    let register = |folder: trainer::run::ModelFolder, run: String, worker: &'static str| {
        let (db, storage) = (s.db().clone(), s.storage().clone());
        async move {
            let owner = api::registry::RunOwner {
                run_id: &run,
                worker,
            };
            api::registry::register(
                &db,
                &storage,
                &folder,
                "default",
                Some(owner),
                &api::registry::GateConfig::with_margin(0.5),
            )
            .await
        }
    };
    let files_of = |id: &str| {
        let (storage, prefix) = (s.storage().clone(), format!("models/{id}/"));
        async move {
            storage
                .list("models")
                .await
                .unwrap()
                .into_iter()
                .filter(|o| o.key.starts_with(&prefix))
                .count()
        }
    };

    // Cancelled after its last progress callback: not registered, its files removed.
    let a = claimed(&s, "w-a").await;
    jobs::cancel(s.db(), &a.id).await.unwrap();
    let e = register(
        copy_of(&s, &first, "m-cancelled").await,
        a.id.clone(),
        "w-a",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, api::Error::Trainer(trainer::Error::Cancelled)),
        "{e:?}"
    );
    assert!(api::registry::get(s.db(), "m-cancelled").await.is_err());
    assert_eq!(files_of("m-cancelled").await, 0);

    // Its lease expired and the reaper re-queued it: the old worker cannot register.
    let b = claimed(&s, "w-b").await;
    sqlx::query("UPDATE runs SET heartbeat_at = 0 WHERE id = $1")
        .bind(&b.id)
        .execute(s.db().pool())
        .await
        .unwrap();
    assert_eq!(
        jobs::reap_stale(s.db(), 1000).await.unwrap(),
        vec![b.id.clone()]
    );
    let e = register(copy_of(&s, &first, "m-reaped").await, b.id.clone(), "w-b")
        .await
        .unwrap_err();
    assert!(matches!(e, api::Error::Lost(_)), "{e:?}");
    assert!(api::registry::get(s.db(), "m-reaped").await.is_err());
    // Take the re-queued run off the queue for what follows.
    jobs::cancel(s.db(), &b.id).await.unwrap();

    // Two owned runs finishing together: both registered, exactly one champion.
    let c1 = claimed(&s, "w-c1").await;
    let c2 = claimed(&s, "w-c2").await;
    let (f1, f2) = (
        copy_of(&s, &first, "m-one").await,
        copy_of(&s, &first, "m-two").await,
    );
    let (r1, r2) = tokio::join!(register(f1, c1.id, "w-c1"), register(f2, c2.id, "w-c2"));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert!(
        r1.gate.promote && r2.gate.promote,
        "both pass a lenient gate"
    );
    let champions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM models WHERE task = 'classify' AND stage = 'champion'",
    )
    .fetch_one(s.db().pool())
    .await
    .unwrap();
    assert_eq!(champions, 1);
    let now = champion(&s).await.unwrap();
    assert!(now == "m-one" || now == "m-two", "{now}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_needs_ownership_sqlite() {
    registration_needs_ownership(Sql::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_needs_ownership_postgres() {
    registration_needs_ownership(Sql::Postgres).await;
}

/// Heartbeats every millisecond, so a beat is waiting on the run's row whenever the
/// registration transaction holds it: every run must still register and finish. (A worker
/// that awaited its beats beside the training future deadlocked here: the beat waited for the
/// transaction, and the transaction's future was no longer polled.)
async fn beats_never_stall_registration(sql: Sql) {
    let s = TestServer::start(sql, Blobs::Local, |_| {}).await;
    seed_approved(&s, 10).await;
    let st = s.state().clone();
    let mut w = st.worker(Default::default());
    w.heartbeat = std::time::Duration::from_millis(1);
    for _ in 0..3 {
        let run = jobs::enqueue(s.db(), "default", &quick(), "manual")
            .await
            .unwrap();
        let done = tokio::time::timeout(std::time::Duration::from_secs(180), w.run_once())
            .await
            .expect("a run with a beat every millisecond did not finish in 180 s")
            .unwrap()
            .unwrap();
        assert_eq!(done.0, run.id);
        assert!(
            matches!(done.1, jobs::Outcome::Succeeded(_)),
            "{:?}",
            done.1
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_never_stall_registration_sqlite() {
    beats_never_stall_registration(Sql::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_never_stall_registration_postgres() {
    beats_never_stall_registration(Sql::Postgres).await;
}
