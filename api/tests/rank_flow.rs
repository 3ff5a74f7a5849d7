//! Image-text ranking through the api, on SQLite + local storage and PostgreSQL + S3: the
//! seed import keeps each photo's caption, uploads carry captions (a duplicate upload adds
//! its caption to the stored image), bad captions are refused with nothing stored, a
//! `task: "rank"` retrain runs through the same jobs, gate and registry as classification,
//! and the published model (two encoders + gallery) searches the gallery the way a browser
//! will: native tract on the downloaded files.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Blobs, Sql, TOKEN, TestServer, root, sha256};
use serde_json::{Value, json};
use std::sync::Arc;

use wasm_infer::{Backbone, ModelManifest, PixelFormat, Pixels, Session, TextEncoder};

const LABELS: [&str; 7] = [
    "animals",
    "clothes",
    "food",
    "household",
    "plants",
    "space",
    "vehicles",
];

/// A seed folder with every bundled photo but `exclude`, with their caption files (the whole
/// set: Recall@10 needs a test split well above 10 images).
fn seed_without(exclude: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for label in LABELS {
        let src = root().join("assets/datasets/tuxpaint-photos").join(label);
        let dst = dir.path().join(label);
        std::fs::create_dir_all(&dst).unwrap();
        for p in std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name != exclude && p.extension().is_some_and(|e| e == "png" || e == "txt") {
                std::fs::copy(&p, dst.join(&name)).unwrap();
            }
        }
    }
    dir
}

async fn upload(
    s: &TestServer,
    label: &str,
    caption: Option<&str>,
    name: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new().text("label", label.to_string());
    if let Some(c) = caption {
        form = form.text("caption", c.to_string());
    }
    form = form.part(
        "files",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    s.http
        .post(s.url("/api/datasets/default/images"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn caption_rows(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM captions")
        .fetch_one(s.db().pool())
        .await
        .unwrap()
}

async fn flow(sql: Sql, blobs: Blobs) {
    let extra = common::photos("animals", 1).pop().unwrap();
    let seed = seed_without(&extra.0);
    let seed_path = seed.path().to_path_buf();
    let s = TestServer::start(sql, blobs, move |c| {
        c.no_seed = false;
        c.seed_dir = Some(seed_path);
        c.workers = 1;
    })
    .await;
    let (images, _) = s.counts().await;
    let captions = caption_rows(&s).await;
    assert!(images >= 100, "seeded {images} images");
    assert!(
        captions >= images * 9 / 10,
        "{captions} captions for {images} seeded photos"
    );

    // A new photo with a caption; the same photo again with a second caption (a duplicate:
    // nothing new stored but its caption).
    let r = upload(
        &s,
        "animals",
        Some("A small brown animal."),
        &extra.0,
        extra.1.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = upload(
        &s,
        "animals",
        Some("An animal on white."),
        &extra.0,
        extra.1.clone(),
    )
    .await;
    assert_eq!(r.status(), 200, "duplicate");
    let of_extra: Vec<String> =
        sqlx::query_scalar("SELECT caption FROM captions WHERE image_id = $1 ORDER BY caption")
            .bind(&id)
            .fetch_all(s.db().pool())
            .await
            .unwrap();
    assert_eq!(of_extra, ["A small brown animal.", "An animal on white."]);
    // Bad captions: refused, nothing stored.
    let before = (s.counts().await, caption_rows(&s).await);
    let other = common::photos("food", 1).pop().unwrap();
    for bad in ["line\u{7}bell", &"x".repeat(501), "   "] {
        let r = upload(&s, "food", Some(bad), &other.0, other.1.clone()).await;
        assert_eq!(r.status(), 400, "caption {bad:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "bad_request");
    }
    assert_eq!((s.counts().await, caption_rows(&s).await), before);

    // Unknown task and unknown ranking parameter: 422, no run.
    for body in [
        json!({"task": "segment"}),
        json!({"task": "rank", "params": {"views": 2}}),
        json!({"task": "rank", "params": {"batch_size": 1}}),
    ] {
        let r = s.admin_post("/api/train").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
    }
    assert_eq!(s.json("/api/train").await.as_array().unwrap().len(), 0);

    // Retrain a ranking model through the jobs.
    let (run, events) = s
        .train_and_follow(json!({"task": "rank", "params": {"epochs": 40, "seed": 3}}))
        .await;
    assert_eq!(run["task"], "rank");
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(events.iter().any(|e| e.event == "progress"));
    let model_id = done["model_id"].as_str().unwrap().to_string();
    assert_eq!(done["images"].as_i64().unwrap(), images + 1);

    // Registered through the gate (first ranking model: it must beat the baselines).
    let info = s.json(&format!("/api/models/{model_id}")).await;
    assert_eq!(info["task"], "rank");
    assert_eq!(info["gate"]["metric"], "text_to_image_r10");
    assert_eq!(info["stage"], "champion", "{}", info["gate"]);
    let m = &info["manifest"]["rank_metrics"];
    println!(
        "api ranking model {model_id}: test R@10 {} (bag of words {}, chance {})",
        m["text_to_image"]["r10"], m["bow_text_to_image"]["r10"], m["random_text_to_image"]["r10"]
    );
    // The classification champion is a different task: untouched (there is none).
    let r = s
        .get("/api/models/current?task=classify")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Files as a browser downloads them, checked against the manifest.
    let manifest_text = s
        .get("/api/models/current?task=rank")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let manifest = ModelManifest::from_json(&manifest_text).unwrap();
    assert_eq!(manifest.model_id, model_id);
    let text_spec = manifest.text.clone().unwrap();
    let get = |file: &'static str| {
        let r = s.get(&format!("/api/models/{model_id}/{file}"));
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200, "{file}");
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            (etag, r.bytes().await.unwrap().to_vec())
        }
    };
    let (etag, image_onnx) = get("image_head.onnx").await;
    assert_eq!(sha256(&image_onnx), manifest.onnx.sha256);
    assert_eq!(etag, format!("\"{}\"", manifest.onnx.sha256));
    let (etag, text_onnx) = get("text.onnx").await;
    assert_eq!(sha256(&text_onnx), text_spec.onnx.sha256);
    assert_eq!(etag, format!("\"{}\"", text_spec.onnx.sha256));
    // What browsers load: the same towers as NNEF, hashed in the manifest.
    let (etag, image_nnef) = get("image_head.nnef").await;
    let image_nnef_spec = manifest.nnef.clone().unwrap();
    assert_eq!(sha256(&image_nnef), image_nnef_spec.sha256);
    assert_eq!(etag, format!("\"{}\"", image_nnef_spec.sha256));
    let (etag, text_nnef) = get("text.nnef").await;
    let text_nnef_spec = text_spec.nnef.clone().unwrap();
    assert_eq!(sha256(&text_nnef), text_nnef_spec.sha256);
    assert_eq!(etag, format!("\"{}\"", text_nnef_spec.sha256));
    let (_, gallery_json) = get("gallery.json").await;
    let (_, gallery_bin) = get("gallery.bin").await;
    let gallery: Value = serde_json::from_slice(&gallery_json).unwrap();
    let (count, dim) = (
        gallery["count"].as_u64().unwrap() as usize,
        gallery["dim"].as_u64().unwrap() as usize,
    );
    assert_eq!(
        count as i64,
        images + 1,
        "every approved image is in the gallery"
    );
    assert_eq!(gallery_bin.len(), count * dim);
    assert_eq!(gallery["model_id"], model_id.as_str());
    let r = s
        .get(&format!("/api/models/{model_id}/model.onnx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a ranking model has no model.onnx");

    // The gallery vector of the uploaded photo is its image embedding (quantised to 1/127).
    // The image head on the backbone the classifier runs on: stored once, f32 (what the
    // gallery is computed from) and 8-bit (what clients run).
    let spec = manifest.backbone.clone().unwrap();
    let fetch = |file: String| {
        let r = s.get(&format!("/api/backbones/{file}"));
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200, "{file}");
            r.bytes().await.unwrap()
        }
    };
    let full = Backbone::full(
        &fetch(format!("{}.onnx", spec.onnx.sha256)).await,
        &manifest,
    )
    .unwrap();
    let shipped = Backbone::new(
        &fetch(format!("{}.q8", spec.shipped().sha256)).await,
        &manifest,
    )
    .unwrap();
    let session = Session::composed(Arc::new(full), &image_onnx, manifest.clone()).unwrap();
    let session_int8 = Session::composed(Arc::new(shipped), &image_onnx, manifest.clone()).unwrap();
    let encoder = TextEncoder::new(&text_onnx, &manifest).unwrap();
    let items = gallery["items"].as_array().unwrap();
    let row = items.iter().position(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(items[row]["captions"].as_array().unwrap().len(), 2);
    let img = wasm_infer::decode::decode_image(&extra.1).unwrap();
    let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
    let e = session.embed(&px).unwrap();
    let stored: Vec<f32> = gallery_bin[row * dim..(row + 1) * dim]
        .iter()
        .map(|&b| f32::from(b as i8) / 127.0)
        .collect();
    let diff = e
        .iter()
        .zip(&stored)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff <= 0.5 / 127.0 + 1e-6,
        "quantised gallery vector off by {diff}"
    );
    // The browser's embedding (8-bit backbone) points the same way; its NNEF image head and
    // text encoder give what the ONNX ones give.
    let e8 = session_int8.embed(&px).unwrap();
    let shipped_nnef = Backbone::new(
        &fetch(format!("{}.q8", spec.shipped().sha256)).await,
        &manifest,
    )
    .unwrap();
    let browser = Session::composed_nnef(Arc::new(shipped_nnef), &image_nnef, manifest.clone())
        .unwrap()
        .embed(&px)
        .unwrap();
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5);
    assert!(
        close(&browser, &e8),
        "NNEF image head differs from the ONNX one"
    );
    let browser_text = TextEncoder::from_nnef(&text_nnef, &manifest).unwrap();
    let caption = "a koala in a tree";
    assert!(close(
        &browser_text.embed(caption).unwrap(),
        &encoder.embed(caption).unwrap()
    ));
    let cos: f32 = e.iter().zip(&e8).map(|(a, b)| a * b).sum();
    assert!(
        cos > 0.99,
        "8-bit backbone embedding: cosine {cos} with the f32 one"
    );

    // Search the gallery by each image's own caption: its image ranks in the top 10 far more
    // often than chance.
    let mut hits = 0;
    let mut queries = 0;
    for (i, item) in items.iter().enumerate() {
        let Some(caption) = item["captions"].as_array().unwrap().first() else {
            continue;
        };
        let q = encoder.embed(caption.as_str().unwrap()).unwrap();
        let score = |r: usize| -> f32 {
            gallery_bin[r * dim..(r + 1) * dim]
                .iter()
                .zip(&q)
                .map(|(&b, x)| f32::from(b as i8) * x)
                .sum()
        };
        let mine = score(i);
        let better = (0..count).filter(|&r| r != i && score(r) > mine).count();
        queries += 1;
        if better < 10 {
            hits += 1;
        }
    }
    let recall = hits as f64 / queries as f64;
    let chance = 10.0 / count as f64;
    println!(
        "gallery search by own caption: R@10 {recall:.3} over {count} images (chance {chance:.3})"
    );
    assert!(recall >= 4.0 * chance, "R@10 {recall} vs chance {chance}");

    // A second ranking run: the gate pairs it with the champion, whose towers (through tract)
    // rank the very same test captions; query for query, they reproduce the champion's own
    // recorded Recall@10 on this snapshot (up to a query whose rank sits on the 10th place).
    let (_, events) = s
        .train_and_follow(json!({"task": "rank", "params": {"epochs": 10, "seed": 4}}))
        .await;
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    let second = done["model_id"].as_str().unwrap().to_string();
    let gate = &s.json(&format!("/api/models/{second}")).await["gate"];
    assert_eq!(gate["champion_id"], model_id.as_str());
    assert_eq!(gate["champion_same_split"], true, "{gate}");
    assert!(["promote", "inconclusive", "reject"].contains(&gate["verdict"].as_str().unwrap()));
    let metrics = s.json(&format!("/api/models/{second}/metrics.json")).await;
    let evidence: contract::evidence::Evidence =
        serde_json::from_value(metrics["evidence"].clone()).unwrap();
    let n = evidence.items.len();
    assert_eq!(n as u64, m["n_texts"].as_u64().unwrap());
    assert_eq!(gate["n"].as_u64(), Some(n as u64));
    let champ = evidence.champion.as_ref().unwrap();
    assert_eq!(champ.id, model_id);
    let recorded = m["text_to_image"]["r10"].as_f64().unwrap();
    assert!(
        (champ.outcomes.mean() - recorded).abs() <= 1.0 / n as f64 + 1e-9,
        "champion re-scored {} vs recorded {recorded}",
        champ.outcomes.mean()
    );
    let names: Vec<&str> = evidence.baselines.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["bag of words", "chance"]);
    s.stop().await;
}

on_both_backends!(flow: rank_end_to_end_sqlite_local, rank_end_to_end_postgres_s3);
