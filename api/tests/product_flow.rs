//! Product classification through the api, on SQLite + local storage and PostgreSQL + S3: a
//! `task: "product"` run trains on the approved images with their captions as titles, through
//! the same jobs, gate and registry as the other tasks; the published model (backbone + NNEF
//! head + manifest) classifies a held-out photo the way a browser will, by its title, its
//! image, or both; bad parameters are refused before any run exists; a second run is paired
//! with the champion on the same test items.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Blobs, Sql, TOKEN, TestServer, root, sha256};
use serde_json::{Value, json};
use wasm_infer::{Backbone, ModelManifest, PixelFormat, Pixels, ProductSession, Task};

async fn flow(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| {
        c.no_seed = false;
        c.seed_dir = Some(root().join("assets/datasets/tuxpaint-photos"));
        c.workers = 1;
    })
    .await;
    let (images, _) = s.counts().await;
    assert!(images >= 100, "seeded {images} images");

    // Bad product parameters: 422, no run.
    for (body, names) in [
        (
            json!({"task": "product", "params": {"modality_dropout": 0.9}}),
            "modality_dropout",
        ),
        (json!({"task": "product", "params": {"dim": 0}}), "dim"),
        (json!({"task": "product", "params": {"views": 2}}), "views"),
    ] {
        let r = s.admin_post("/api/train").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["detail"].as_str().unwrap().contains(names), "{e}");
    }
    // Detectors train on a detection dataset, and the seeded one holds labelled images.
    let r = s
        .admin_post("/api/train")
        .json(&json!({"task": "detect"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("no detection dataset"),
        "{e}"
    );
    assert_eq!(s.json("/api/train").await.as_array().unwrap().len(), 0);
    let r = s
        .get("/api/models/current?task=detect")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no detector is registered");

    let (run, events) = s
        .train_and_follow(json!({"task": "product", "params": {"epochs": 40, "seed": 3}}))
        .await;
    assert_eq!(run["task"], "product");
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(events.iter().any(|e| e.event == "progress"));
    let model_id = done["model_id"].as_str().unwrap().to_string();

    // Registered through the gate: the first product model beats the majority class.
    let info = s.json(&format!("/api/models/{model_id}")).await;
    assert_eq!(info["task"], "product");
    assert_eq!(info["gate"]["metric"], "weighted_f1");
    assert_eq!(info["stage"], "champion", "{}", info["gate"]);
    let pm = &info["manifest"]["product_metrics"];
    // The gate decides on the run's own weighted F1 of title + image, recomputed from the
    // predicted labels.
    let gate_f1 = info["gate"]["candidate"].as_f64().unwrap();
    assert!(
        (gate_f1 - pm["both"]["weighted_f1"].as_f64().unwrap()).abs() < 1e-9,
        "{}",
        info["gate"]
    );
    assert!(
        info["gate"]["test"]
            .as_str()
            .unwrap()
            .contains("weighted F1"),
        "{}",
        info["gate"]
    );
    println!(
        "api product model {model_id}: weighted F1 text {} image {} both {} (majority accuracy {})",
        pm["text"]["weighted_f1"],
        pm["image"]["weighted_f1"],
        pm["both"]["weighted_f1"],
        pm["majority_baseline"]
    );
    assert!(pm["both"]["accuracy"].as_f64().unwrap() > pm["majority_baseline"].as_f64().unwrap());
    // The other tasks' champions are untouched (there are none).
    for task in ["classify", "rank"] {
        let r = s
            .get(&format!("/api/models/current?task={task}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{task}");
    }

    // The files a browser downloads, checked against the manifest, run as a browser runs them.
    let text = s
        .get("/api/models/current?task=product")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let manifest = ModelManifest::from_json(&text).unwrap();
    assert_eq!(
        (manifest.model_id.as_str(), manifest.task),
        (model_id.as_str(), Task::Product)
    );
    let get = |path: String| {
        let r = s.get(&path);
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().await.unwrap().to_vec()
        }
    };
    let nnef = manifest.nnef.clone().unwrap();
    let head = get(format!("/api/models/{model_id}/{}", nnef.file)).await;
    assert_eq!(sha256(&head), nnef.sha256);
    let shipped = manifest.backbone.as_ref().unwrap().shipped();
    let backbone = get(contract::ModelFiles::backbone_url(
        &shipped.file,
        &shipped.sha256,
    ))
    .await;
    let session = ProductSession::from_nnef(
        Arc::new(Backbone::new(&backbone, &manifest).unwrap()),
        &head,
        manifest.clone(),
    )
    .unwrap();
    // A test photo, by its caption: the run's own answer for it, with both inputs.
    let metrics = s
        .json(&format!("/api/models/{model_id}/metrics.json"))
        .await;
    let evidence: contract::evidence::Evidence =
        serde_json::from_value(metrics["evidence"].clone()).unwrap();
    let names: Vec<&str> = evidence.baselines.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "majority class",
            "its text tower alone",
            "its image tower alone"
        ]
    );
    let first = &evidence.items[0];
    let image_id: String = sqlx::query_scalar("SELECT id FROM images WHERE sha256 = $1")
        .bind(first)
        .fetch_one(s.db().pool())
        .await
        .unwrap();
    let caption: String = sqlx::query_scalar("SELECT caption FROM captions WHERE image_id = $1")
        .bind(&image_id)
        .fetch_one(s.db().pool())
        .await
        .unwrap();
    let r = s
        .http
        .get(s.url(&format!("/api/images/{image_id}/blob")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let img = trainer::dataset::decode_image(&bytes).unwrap();
    let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
    let both = session.classify(Some(&pixels), &caption, 3).unwrap();
    let predicted = evidence.candidate.predicted.as_ref().unwrap()[0] as usize;
    assert_eq!(both[0].label, manifest.labels[predicted], "{caption}");
    let by_title = session.classify(None, &caption, 3).unwrap();
    assert_ne!(by_title, both, "the image changes the scores");

    // The server's answer (clients without wasm): the same session code on the ONNX head and
    // the f32 backbone. By title only it is the browser's answer; with the photo it is the
    // run's own recorded answer for this item.
    let predict = |title: Option<&str>, file: Option<Vec<u8>>, query: &str| {
        let mut form = reqwest::multipart::Form::new();
        if let Some(t) = title {
            form = form.text("title", t.to_string());
        }
        if let Some(b) = file {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(b).file_name("p.png"),
            );
        }
        s.http
            .post(s.url(&format!("/api/predict?{query}")))
            .multipart(form)
            .send()
    };
    let r = predict(Some(&caption), None, "task=product&k=3")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let server: Value = r.json().await.unwrap();
    assert_eq!(server["model_id"], model_id.as_str());
    let got = server["predictions"].as_array().unwrap();
    assert_eq!(got.len(), 3);
    for (p, b) in got.iter().zip(&by_title) {
        assert_eq!(p["label"], b.label.as_str());
        assert!((p["score"].as_f64().unwrap() - f64::from(b.score)).abs() < 1e-5);
    }
    let r = predict(Some(&caption), Some(bytes.to_vec()), "task=product")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let with_photo: Value = r.json().await.unwrap();
    assert_eq!(
        with_photo["predictions"][0]["label"],
        manifest.labels[predicted].as_str()
    );
    // Twenty at once answer like one.
    let burst = futures::future::join_all(
        (0..20).map(|_| predict(Some(&caption), None, "task=product&k=3")),
    )
    .await;
    for r in burst {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["predictions"], server["predictions"]);
    }
    // Bad requests: a clear error, nothing predicted.
    let long = "a".repeat(600);
    for (title, file, query, status, says) in [
        (
            Some(""),
            None,
            "task=product",
            400,
            "title with at least one word",
        ),
        (
            Some(" ?! "),
            None,
            "task=product",
            400,
            "title with at least one word",
        ),
        (
            Some("bell\u{7}"),
            None,
            "task=product",
            400,
            "control characters",
        ),
        (
            Some(long.as_str()),
            None,
            "task=product",
            400,
            "longer than 500",
        ),
        (
            Some("a koala"),
            None,
            "task=product&k=0",
            400,
            "k must be 1 to 100",
        ),
        (
            Some("a koala"),
            Some(bytes.to_vec()),
            "k=3",
            422,
            "task=product only",
        ),
        (
            Some("a koala"),
            None,
            "task=rank",
            422,
            "no server prediction",
        ),
        (
            Some("a koala"),
            Some(b"not an image".to_vec()),
            "task=product",
            415,
            "",
        ),
    ] {
        let r = predict(title, file, query).await.unwrap();
        assert_eq!(r.status(), status, "{title:?} {query}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["detail"].as_str().unwrap().contains(says),
            "{title:?} {query}: {e}"
        );
    }

    // A second run is paired with the champion on the same test items.
    let (_, events) = s
        .train_and_follow(json!({"task": "product", "params": {"epochs": 10, "seed": 4}}))
        .await;
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    let second = done["model_id"].as_str().unwrap().to_string();
    let gate = &s.json(&format!("/api/models/{second}")).await["gate"];
    assert_eq!(gate["champion_id"], model_id.as_str());
    assert_eq!(gate["champion_same_split"], true, "{gate}");
    let metrics = s.json(&format!("/api/models/{second}/metrics.json")).await;
    let again: contract::evidence::Evidence =
        serde_json::from_value(metrics["evidence"].clone()).unwrap();
    let champ = again.champion.as_ref().unwrap();
    assert_eq!(champ.id, model_id);
    // The champion re-scored through its ONNX head on the f32 backbone gives back the answers
    // its own run recorded on the same items.
    assert_eq!(again.items, evidence.items);
    assert_eq!(champ.outcomes.predicted, evidence.candidate.predicted);
    // The champion's figure in the comparison is its weighted F1 on these items, the one its
    // own run recorded.
    let vs = gate["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "champion")
        .unwrap();
    assert!(
        (vs["score"].as_f64().unwrap() - pm["both"]["weighted_f1"].as_f64().unwrap()).abs() < 1e-9,
        "{vs}"
    );
    s.stop().await;
}
on_both_backends!(flow: product_end_to_end_sqlite_local, product_end_to_end_postgres_s3);
