//! A retrain end to end through HTTP, on SQLite + local storage and on PostgreSQL + S3:
//! upload labeled images, review, train, follow SSE progress, candidate registered, gate,
//! current model downloads with a matching sha256 (ETag, Range, 304), predict, promote,
//! rollback, metrics.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Blobs, Sql, TestServer, metric, photos, sha256};
use serde_json::{Value, json};

const LABELS: [&str; 3] = ["animals", "food", "plants"];

async fn train(s: &TestServer, seed: u64) -> Value {
    let (run, events) = s
        .train_and_follow(json!({"dataset_id": "default", "params": {"epochs": 12, "views": 1, "patience": 12, "seed": seed}}))
        .await;
    assert_eq!(run["status"], "queued");
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(names.contains(&"progress"), "{names:?}");
    assert!(names.contains(&"status"), "{names:?}");
    let epochs: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "epoch")
        .map(|e| &e.data)
        .collect();
    assert!(!epochs.is_empty(), "no epoch events: {names:?}");
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(
            e["epoch"].as_u64(),
            Some(i as u64 + 1),
            "epochs arrive in order, once each"
        );
        assert!(e["train_loss"].as_f64().unwrap().is_finite());
    }
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["epochs"].as_array().unwrap().len(), epochs.len());
    assert_eq!(
        done["images"].as_i64(),
        Some(60),
        "the rejected image is not trained on"
    );
    done.clone()
}

/// Where a model's backbone features came from (its metrics.json).
async fn feature_cache(s: &TestServer, model: &str) -> Value {
    s.json(&format!("/api/models/{model}/metrics.json")).await["timing"]["feature_cache"].clone()
}

async fn flow(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| c.workers = 1).await;
    s.add_labels(&LABELS).await;

    // Contributors upload; everything lands as pending.
    for label in LABELS {
        let r = s.upload(label, &photos(label, 20), false).await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        let imgs = body["images"].as_array().unwrap();
        assert_eq!(imgs.len(), 20);
        assert!(
            imgs.iter()
                .all(|i| i["status"] == "pending" && i["duplicate"] == false)
        );
    }
    // Same files again: duplicates, nothing new stored.
    let r = s.upload("animals", &photos("animals", 2), false).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["duplicate"] == true)
    );
    // A mislabeled image to reject.
    let extra = photos("plants", 21).pop().unwrap();
    let r = s.upload("animals", &[extra], false).await;
    let extra_id = r.json::<Value>().await.unwrap()["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one_ok = body["images"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.counts().await, (61, 61));
    // A contributor (no token) can follow their own uploads by id; unknown ids are left out.
    let status_of = |ids: String| {
        let r = s.get(&format!("/api/images/status?ids={ids}"));
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let st = status_of(format!("{extra_id},{one_ok},img-unknown")).await;
    let mut want = vec![
        json!({"id": extra_id, "status": "pending", "label": "animals"}),
        json!({"id": one_ok, "status": "pending", "label": "animals"}),
    ];
    want.sort_by_key(|v| v["id"].as_str().unwrap().to_string());
    assert_eq!(st, json!(want));
    let too_many = vec!["x"; 201].join(",");
    let r = s
        .get(&format!("/api/images/status?ids={too_many}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Review: approve the 60, reject the extra one.
    let queue = s.json("/api/review?limit=500").await;
    assert_eq!(queue["total"], 61);
    let decisions: Vec<Value> = queue["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let reject = i["filename"].as_str().unwrap() == photos("plants", 21)[20].0
                && i["label"] == "animals";
            json!({"id": i["id"], "action": if reject { "reject" } else { "approve" }})
        })
        .collect();
    let r = s
        .admin_post("/api/review")
        .json(&json!({"decisions": decisions}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ds = s.json("/api/datasets/default").await;
    let approved: i64 = ds["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["approved"].as_i64().unwrap())
        .sum();
    let rejected: i64 = ds["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rejected"].as_i64().unwrap())
        .sum();
    assert_eq!((approved, rejected), (60, 1));
    assert_eq!(s.json("/api/review").await["total"], 0);
    let st = status_of(format!("{extra_id},{one_ok}")).await;
    let by_id = |id: &str| {
        st.as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(
        (by_id(&extra_id), by_id(&one_ok)),
        (json!("rejected"), json!("approved"))
    );

    // No model yet: predictions are unavailable, not wrong.
    let probe = photos("food", 1).pop().unwrap();
    let predict = |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("x.png"),
        );
        s.http
            .post(s.url("/api/predict?k=3"))
            .multipart(form)
            .send()
    };
    let r = predict(probe.1.clone()).await.unwrap();
    assert_eq!(r.status(), 503);

    // First training: candidate registered, gate promotes it (no champion, beats baseline).
    let run = train(&s, 1).await;
    let first = run["model_id"].as_str().unwrap().to_string();
    let model = s.json(&format!("/api/models/{first}")).await;
    let gate = &model["gate"];
    let acc = model["manifest"]["metrics"]["accuracy"].as_f64().unwrap();
    let base = model["manifest"]["metrics"]["majority_baseline"]
        .as_f64()
        .unwrap();
    println!(
        "{sql:?}/{blobs:?}: first model accuracy {acc:.3} (baseline {base:.3}): {}",
        gate["reason"]
    );
    // The gate decided on evidence: 60 images leave a test split far under 200, so every
    // training and test image was predicted by 5-fold cross-validation, next to kNN on the
    // same features and the majority class.
    let metrics = s.json(&format!("/api/models/{first}/metrics.json")).await;
    let split = |name: &str| metrics["split_sizes"][name].as_u64().unwrap();
    let (train_n, test_n) = (split("train"), split("test"));
    assert!(acc > base);
    assert_eq!(gate["verdict"], "promote", "{}", gate["reason"]);
    assert_eq!(gate["promote"], true, "3 well-separated classes must pass");
    assert_eq!(gate["n"].as_u64(), Some(train_n + test_n));
    assert!(
        gate["method"]
            .as_str()
            .unwrap()
            .contains("5-fold cross-validation"),
        "{gate}"
    );
    assert!(
        gate["test"].as_str().unwrap().contains("paired bootstrap"),
        "{gate}"
    );
    let roles: Vec<(&str, &str)> = gate["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["against"].as_str().unwrap(), c["check"].as_str().unwrap()))
        .collect();
    assert!(
        roles.len() == 2 && roles[0].0.starts_with("kNN") && roles[1] == ("majority class", "pass"),
        "{roles:?}"
    );
    let interval = &gate["interval"];
    assert!(
        interval["lo"].as_f64() <= interval["mean"].as_f64()
            && interval["mean"].as_f64() <= interval["hi"].as_f64()
    );
    // metrics.json carries every prediction: the verdict recomputes from it.
    let evidence: contract::evidence::Evidence =
        serde_json::from_value(metrics["evidence"].clone()).unwrap();
    assert_eq!(evidence.items.len() as u64, train_n + test_n);
    let again = api::registry::decide(&evidence, None, &api::registry::GateConfig::default());
    assert_eq!(serde_json::to_value(&again).unwrap(), *gate);
    assert_eq!(model["stage"], "champion");
    assert_eq!(model["manifest"]["labels"], json!(LABELS));
    assert_eq!(
        model["manifest"]["metrics"]["estimate"]["n"].as_u64(),
        Some(train_n + test_n)
    );
    // Every view went through the backbone once and into the feature cache: one augmented
    // view (`views` 1) of the training and test images (the test images' for the
    // cross-validation), the clean view of every image (the training images' for kNN).
    let n_views = 60 + train_n + test_n;
    assert_eq!(
        feature_cache(&s, &first).await,
        json!({"hits": 0, "computed": n_views, "corrupt": 0, "store_errors": 0})
    );
    assert_eq!(
        s.storage().list("features").await.unwrap().len() as u64,
        n_views
    );

    // The current model and its ONNX, integrity-checked and cache-friendly.
    let r = s
        .get("/api/models/current?task=classify")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-model-id"], first.as_str());
    let manifest: Value = r.json().await.unwrap();
    let onnx_url = format!("/api/models/{first}/head.onnx");
    let r = s.get(&onnx_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    let onnx = r.bytes().await.unwrap();
    assert_eq!(sha256(&onnx), manifest["onnx"]["sha256"].as_str().unwrap());
    assert_eq!(
        onnx.len() as u64,
        manifest["onnx"]["bytes"].as_u64().unwrap()
    );
    assert_eq!(
        etag,
        format!("\"{}\"", sha256(&onnx)),
        "strong ETag = content hash"
    );
    let r = s
        .get(&onnx_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = s
        .get(&onnx_url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{}", onnx.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), onnx.slice(100..200));
    let r = s
        .get(&onnx_url)
        .header("range", format!("bytes={}-", onnx.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = s
        .get(&format!("/api/models/{first}/report.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<svg"));

    // Server-side predict with the champion: the same session code the browser runs.
    let r = predict(probe.1.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["model_id"], first.as_str());
    let preds = p["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let total: f64 = preds.iter().map(|x| x["score"].as_f64().unwrap()).sum();
    assert!(
        (total - 1.0).abs() < 1e-3,
        "3 classes, top-3 probabilities sum to 1: {total}"
    );
    // The head is kilobytes; the backbone is one content-addressed file shared by versions.
    assert!(onnx.len() < 100_000, "head of {} bytes", onnx.len());
    // What browsers run: the 8-bit backbone; the server runs the f32 one (the reference the
    // 8-bit file is measured against: bytes do not matter there).
    let backbone_sha = manifest["backbone"]["int8"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let f32_sha = manifest["backbone"]["onnx"]["sha256"].as_str().unwrap();
    let r = s
        .get(&format!("/api/backbones/{f32_sha}.onnx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let f32_bytes = r.bytes().await.unwrap();
    assert_eq!(sha256(&f32_bytes), f32_sha);
    let backbone_url = format!("/api/backbones/{backbone_sha}.q8");
    let r = s.get(&backbone_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["etag"], format!("\"{backbone_sha}\"").as_str());
    let backbone_bytes = r.bytes().await.unwrap();
    assert_eq!(sha256(&backbone_bytes), backbone_sha);
    assert!(
        backbone_bytes.len() < 4_000_000,
        "{} bytes",
        backbone_bytes.len()
    );
    let r = s
        .get(&backbone_url)
        .header("if-none-match", format!("\"{backbone_sha}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    for bad in [
        format!("/api/backbones/{}.onnx", "0".repeat(64)),
        format!("/api/backbones/{}.q8", backbone_sha.to_uppercase()),
        format!("/api/backbones/{backbone_sha}.onnx"),
        format!("/api/backbones/{backbone_sha}"),
        "/api/backbones/..%2Fimages.onnx".to_string(),
    ] {
        let r = s.get(&bad).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{bad}");
    }
    let local = |backbone: wasm_infer::Backbone| {
        let manifest =
            wasm_infer::manifest::ModelManifest::from_json(&manifest.to_string()).unwrap();
        let session =
            wasm_infer::session::Session::composed(std::sync::Arc::new(backbone), &onnx, manifest)
                .unwrap();
        let img = image::load_from_memory(&probe.1).unwrap().to_rgba8();
        session
            .classify(&trainer::pipeline::pixels(&img).unwrap(), 3)
            .unwrap()
    };
    let m = wasm_infer::manifest::ModelManifest::from_json(&manifest.to_string()).unwrap();
    // The server's answer is the f32 backbone + head's, to the float.
    let reference = local(wasm_infer::Backbone::full(&f32_bytes, &m).unwrap());
    assert_eq!(preds[0]["label"], reference[0].label.as_str());
    assert!((preds[0]["score"].as_f64().unwrap() - f64::from(reference[0].score)).abs() < 1e-6);
    // A browser's (8-bit backbone) agrees on the label.
    let browser = local(wasm_infer::Backbone::new(&backbone_bytes, &m).unwrap());
    assert_eq!(browser[0].label, reference[0].label);
    // … and so does what a browser really loads: the NNEF head the manifest names, served
    // with its sha256 as strong ETag, on the 8-bit NNEF backbone.
    let r = s
        .get(&format!("/api/models/{first}/head.nnef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let nnef_sha = manifest["nnef"]["sha256"].as_str().unwrap();
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{nnef_sha}\"")
    );
    let head_nnef = r.bytes().await.unwrap();
    assert_eq!(sha256(&head_nnef), nnef_sha);
    let session = wasm_infer::session::Session::composed_nnef(
        std::sync::Arc::new(wasm_infer::Backbone::new(&backbone_bytes, &m).unwrap()),
        &head_nnef,
        m.clone(),
    )
    .unwrap();
    let img = image::load_from_memory(&probe.1).unwrap().to_rgba8();
    let nnef_top = session
        .classify(&trainer::pipeline::pixels(&img).unwrap(), 3)
        .unwrap();
    assert_eq!(nnef_top[0].label, reference[0].label);
    for (a, b) in nnef_top.iter().zip(&browser) {
        assert_eq!(a.label, b.label);
        assert!(
            (a.score - b.score).abs() <= 1e-5,
            "NNEF vs ONNX head: {a:?} vs {b:?}"
        );
    }

    // Second training (another seed): the gate decides against the champion.
    let run2 = train(&s, 2).await;
    let second = run2["model_id"].as_str().unwrap().to_string();
    let m2 = s.json(&format!("/api/models/{second}")).await;
    // Same images, another seed: the views are fixed per image, so no backbone pass at all.
    assert_eq!(
        feature_cache(&s, &second).await,
        json!({"hits": n_views, "computed": 0, "corrupt": 0, "store_errors": 0})
    );
    // … and /metrics counts both runs' views by where they came from.
    let samples = s.metrics().await;
    let views = |outcome: &str| {
        metric(
            &samples,
            "edgeml_feature_cache_views_total",
            &[("task", "classify"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        ["hit", "computed", "corrupt", "store_error"].map(views),
        [
            Some(n_views as f64),
            Some(n_views as f64),
            Some(0.0),
            Some(0.0)
        ]
    );
    assert_eq!(m2["gate"]["champion_id"], first.as_str());
    assert_eq!(
        m2["gate"]["champion_same_split"], true,
        "the champion paired with the candidate on the same images"
    );
    println!("second model gate: {}", m2["gate"]["reason"]);
    // Cross-validated: the champion's recipe (its config, read from its metrics.json) retrained
    // on the same folds; its figure is the mean of its outcomes there.
    let metrics2 = s.json(&format!("/api/models/{second}/metrics.json")).await;
    let evidence2: contract::evidence::Evidence =
        serde_json::from_value(metrics2["evidence"].clone()).unwrap();
    let champ = evidence2.champion.as_ref().unwrap();
    assert_eq!(champ.id, first);
    assert!(champ.how.contains("recipe (12 epochs"), "{}", champ.how);
    assert_eq!(m2["gate"]["champion"].as_f64(), Some(champ.outcomes.mean()));
    let champ_cmp = m2["gate"]["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "champion")
        .unwrap()
        .clone();
    assert_eq!(champ_cmp["paired"], true);
    assert!(champ_cmp["mcnemar"]["p_value"].as_f64().unwrap() <= 1.0);
    let figure = api::registry::ChampionFigure {
        id: first.clone(),
        recorded: Some(acc),
    };
    let again = api::registry::decide(
        &evidence2,
        Some(&figure),
        &api::registry::GateConfig::default(),
    );
    assert_eq!(serde_json::to_value(&again).unwrap(), m2["gate"]);
    assert_eq!(m2["manifest"]["parent_model_id"], first.as_str());
    // Both versions run on the one stored backbone, loaded once in the server.
    assert_eq!(m2["manifest"]["backbone"], manifest["backbone"]);
    assert_eq!(s.storage().list("backbones").await.unwrap().len(), 2);
    let (a, b) = (
        api::registry::load_session(s.storage(), &first)
            .await
            .unwrap(),
        api::registry::load_session(s.storage(), &second)
            .await
            .unwrap(),
    );
    assert!(std::sync::Arc::ptr_eq(
        a.backbone().unwrap(),
        b.backbone().unwrap()
    ));
    // The sweep leaves a backbone that models run on.
    let swept = api::images::sweep_orphans(s.db(), s.storage(), -1)
        .await
        .unwrap();
    assert_eq!(swept.backbones, 0);
    assert_eq!(s.storage().list("backbones").await.unwrap().len(), 2);
    let promoted = m2["gate"]["promote"].as_bool().unwrap();
    assert_eq!(promoted, m2["gate"]["verdict"] == "promote");
    if !promoted {
        assert_eq!(m2["stage"], "candidate");
        let r = s
            .admin_post(&format!("/api/models/{second}/promote"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        s.json("/api/models/current").await["model_id"],
        second.as_str()
    );
    assert_eq!(
        s.json(&format!("/api/models/{first}")).await["stage"],
        "archived"
    );

    // Rollback restores the first model; a second rollback has nowhere to go.
    let r = s
        .http
        .post(s.url(&format!("/api/models/{second}/rollback")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "rollback needs the admin token");
    let r = s
        .admin_post(&format!("/api/models/{second}/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.json("/api/models/current").await["model_id"],
        first.as_str()
    );
    let r = s
        .admin_post(&format!("/api/models/{first}/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
    let r = predict(probe.1).await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["model_id"],
        first.as_str(),
        "predict follows the rollback"
    );

    // History and metrics.
    let runs = s.json("/api/train").await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(s.json("/api/models").await.as_array().unwrap().len(), 2);
    let metrics = s
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("edgeml_uploads_total{result=\"stored\"} 61"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgeml_training_runs_total{outcome=\"succeeded\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/api/datasets/{id}/images\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgeml_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    let info = format!("edgeml_model_info{{model_id=\"{first}\",task=\"classify\"}} 1");
    assert!(metrics.contains(&info), "{metrics}");
    // Every family parses; both runs' durations are recorded for their task; none waits.
    let m = s.metrics().await;
    let ok = [("outcome", "succeeded"), ("task", "classify")];
    assert_eq!(
        metric(&m, "edgeml_training_run_duration_seconds_count", &ok),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "edgeml_training_queue_runs", &[("status", "queued")]),
        Some(0.0)
    );
    // The Grafana dashboard (deploy/) only charts series this server exposes, through the
    // data source the provisioning file declares.
    let names: std::collections::HashSet<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
    let root = common::root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/dashboards/edgeml.json")).unwrap(),
    )
    .unwrap();
    let provisioned = std::fs::read_to_string(
        root.join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let uid = target["datasource"]["uid"].as_str().unwrap();
            assert!(provisioned.contains(&format!("uid: {uid}")), "{uid}");
            let expr = target["expr"].as_str().unwrap();
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("edgeml_"))
                .collect();
            assert!(!used.is_empty(), "{expr}");
            for name in used {
                assert!(
                    names.contains(name),
                    "the dashboard charts {name}, which /metrics lacks"
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 15, "{charted}");
    // Object storage calls are timed (blobs and model files were written and read).
    for op in ["put", "get"] {
        let n = metric(
            &m,
            "edgeml_storage_operation_duration_seconds_count",
            &[("op", op), ("outcome", "ok")],
        );
        assert!(n.unwrap_or(0.0) > 0.0, "{op}: {n:?}");
    }
    // So are the database calls (uploads and reviews wrote, the worker claimed, /metrics read
    // the queue and the champion, /ready pinged).
    let health: Value = s.json("/ready").await;
    let m = s.metrics().await;
    for op in [
        "begin_write",
        "commit",
        "claim",
        "queue_stats",
        "current_model",
        "ping",
    ] {
        let n = metric(
            &m,
            "edgeml_database_operation_duration_seconds_count",
            &[("op", op), ("outcome", "ok")],
        );
        assert!(n.unwrap_or(0.0) > 0.0, "{op}: {n:?}");
    }
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model"], first.as_str());

    // The gate re-scores a champion by its head on the run's backbone features; without a
    // usable head (or on another backbone) it loads the whole graph instead.
    use api::jobs::task::{ChampionScorer, Classify, TrainTask};
    let backbone =
        trainer::backbone::Backbone::load(&trainer::backbone::default_weights_path()).unwrap();
    let prepared = Classify::prepare(s.storage(), Some(&first), &backbone).await;
    assert!(matches!(prepared.unwrap().scorer, ChampionScorer::Head(..)));
    let head = format!("models/{first}/head.safetensors");
    s.storage().delete(&head).await.unwrap();
    let prepared = Classify::prepare(s.storage(), Some(&first), &backbone).await;
    assert!(matches!(prepared.unwrap().scorer, ChampionScorer::Graph(_)));
    s.stop().await;
}

on_both_backends!(flow: retrain_end_to_end_sqlite_local, retrain_end_to_end_postgres_s3);
