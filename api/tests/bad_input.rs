//! Bad input gets a clear status + `{error, detail}` and writes nothing: run on SQLite + local
//! storage and on PostgreSQL + S3. Also: storage failures leave no rows, orphans are swept.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Blobs, Sql, TestServer, metric, photos};
use serde_json::{Value, json};

/// A PNG whose header claims `w`×`h` (valid signature, IHDR and CRCs; tiny IDAT).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn jpeg() -> Vec<u8> {
    let img = image::load_from_memory(&photos("food", 1)[0].1)
        .unwrap()
        .to_rgb8();
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

/// POST a multipart request announcing `len` body bytes over a raw socket, send the first
/// 64 KiB of it, and read the answer (a server must answer without reading 50 MB).
async fn raw_post(s: &TestServer, path: &str, len: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n--b\r\nContent-Disposition: form-data; \
         name=\"files\"; filename=\"big.png\"\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let _ = sock.write_all(&vec![0u8; 64 * 1024]).await;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers without waiting for the body")
    .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn expect(r: reqwest::Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert_eq!(ctype.as_deref(), Some("application/json"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], code, "{text}");
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

async fn bad_inputs(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |_| {}).await;
    s.add_labels(&["food", "plants"]).await;
    let before = s.counts().await;
    let upload_url = s.url("/api/datasets/default/images");

    // Empty body, and a body that is not multipart at all.
    let r = s
        .http
        .post(&upload_url)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .send()
        .await
        .unwrap();
    expect(r, 400, "bad_request").await;
    let r = s.http.post(&upload_url).send().await.unwrap();
    expect(r, 400, "bad_request").await;
    // A multipart body with a label and no file.
    let form = reqwest::multipart::Form::new().text("label", "food");
    let r = s
        .http
        .post(&upload_url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect(r, 400, "bad_request").await;

    // 50 MB body (limit 32 MiB): refused from the declared length, before it is read.
    let (status, body) = raw_post(&s, "/api/datasets/default/images", 50 * 1024 * 1024).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "payload_too_large", "{body}");
    let (status, body) = raw_post(&s, "/api/predict", 50 * 1024 * 1024).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );

    // A text file named .jpg.
    let r = s
        .upload(
            "food",
            &[("photo.jpg".into(), b"just some text, not a JPEG".to_vec())],
            false,
        )
        .await;
    let b = expect(r, 415, "unsupported_format").await;
    assert!(b["detail"].as_str().unwrap().contains("photo.jpg"));

    // A truncated JPEG.
    let j = jpeg();
    let r = s
        .upload(
            "food",
            &[("cut.jpg".into(), j[..j.len() / 2].to_vec())],
            false,
        )
        .await;
    expect(r, 422, "invalid_image").await;
    // The whole JPEG is fine (checked below, after the no-write assertions).

    // 30000×30000 PNG header: refused from the header, before any pixel is allocated.
    let r = s
        .upload(
            "food",
            &[("bomb.png".into(), png_header_only(30_000, 30_000))],
            false,
        )
        .await;
    let b = expect(r, 422, "image_too_large").await;
    assert!(b["detail"].as_str().unwrap().contains("30000"), "{b}");

    // Unknown label; unknown dataset; traversal in the dataset segment.
    let good = photos("food", 2);
    let r = s.upload("dinosaurs", &good, false).await;
    expect(r, 422, "unknown_label").await;
    let form = reqwest::multipart::Form::new().text("label", "food").part(
        "files",
        reqwest::multipart::Part::bytes(good[0].1.clone()).file_name("a.png"),
    );
    let r = s
        .http
        .post(s.url("/api/datasets/..%2F..%2Fetc/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect(r, 404, "not_found").await;

    // Path traversal in file names (the name is never used as a key, but it is refused).
    for name in ["../../etc/passwd.png", "..\\..\\x.png", "a/b.png"] {
        let r = s
            .upload("food", &[(name.to_string(), good[0].1.clone())], false)
            .await;
        expect(r, 400, "bad_request").await;
    }
    // One bad file spoils the whole request: the good one is not stored either.
    let mixed = vec![good[0].clone(), ("bad.png".to_string(), b"nope".to_vec())];
    let r = s.upload("food", &mixed, false).await;
    expect(r, 415, "unsupported_format").await;

    // Admin routes: missing token → 401, wrong token → 403.
    let r = s
        .http
        .post(s.url("/api/review"))
        .json(&json!({"decisions": []}))
        .send()
        .await
        .unwrap();
    let www = r.headers().get("www-authenticate").cloned();
    expect(r, 401, "unauthorized").await;
    assert!(www.is_some());
    let r = s
        .http
        .post(s.url("/api/review"))
        .bearer_auth("wrong-token-wrong-token")
        .json(&json!({"decisions": []}))
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;
    let r = s.http.post(s.url("/api/train")).send().await.unwrap();
    expect(r, 401, "unauthorized").await;
    let r = s
        .http
        .post(s.url("/api/train"))
        .bearer_auth("x")
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;
    let r = s.get("/api/review").send().await.unwrap();
    expect(r, 401, "unauthorized").await;
    let r = s
        .http
        .post(s.url("/api/datasets/default/labels"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect(r, 401, "unauthorized").await;
    // Wrong token on an upload is refused too (it is not silently treated as anonymous).
    let form = reqwest::multipart::Form::new().text("label", "food").part(
        "files",
        reqwest::multipart::Part::bytes(good[0].1.clone()).file_name("a.png"),
    );
    let r = s
        .http
        .post(&upload_url)
        .bearer_auth("wrong-token-wrong-token")
        .multipart(form)
        .send()
        .await
        .unwrap();
    // Refused unread: the connection closes, and says so (the next request must not reuse it).
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    expect(r, 403, "forbidden").await;

    // Bad JSON and bad parameters.
    let r = s
        .admin_post("/api/train")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect(r, 400, "bad_request").await;
    let r = s
        .admin_post("/api/train")
        .json(&json!({"params": {"epochs": 0}}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "invalid_parameter").await;
    let r = s
        .admin_post("/api/train")
        .json(&json!({"params": {"learning_rate": 1}}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "invalid_parameter").await;
    let r = s
        .admin_post("/api/review")
        .json(&json!({"decisions": [{"id": "img-nope", "action": "approve"}]}))
        .send()
        .await
        .unwrap();
    expect(r, 404, "not_found").await;
    let r = s
        .admin_post("/api/datasets/default/labels")
        .json(&json!({"name": "../etc"}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "invalid_parameter").await;

    // Malformed queries, unknown ids, traversal, files that are not served, unknown routes.
    for (path, status, code) in [
        ("/api/train?limit=lots", 400, "bad_request"),
        ("/api/predict", 405, "method_not_allowed"),
        ("/api/models/current", 404, "not_found"),
        ("/api/models/..%2F..%2Fetc/model.onnx", 404, "not_found"),
        ("/api/models/cls-nope/head.safetensors", 404, "not_found"),
        ("/api/models/cls-nope/model.onnx", 404, "not_found"),
        ("/api/models/cls-nope/head.onnx", 404, "not_found"),
        ("/api/backbones/nope.onnx", 404, "not_found"),
        ("/api/backbones/..%2Fbackbones%2Fx.onnx", 404, "not_found"),
        ("/api/train/run-nope", 404, "not_found"),
        ("/api/nothing-here", 404, "not_found"),
    ] {
        expect(s.get(path).send().await.unwrap(), status, code).await;
    }
    expect(
        s.http.delete(s.url("/api/models")).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;

    // Nothing was written by any of it.
    assert_eq!(s.counts().await, before, "rows and blobs unchanged");
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(s.db().pool())
        .await
        .unwrap();
    assert_eq!(runs, 0);
    let labels = s.json("/api/datasets/default").await["labels"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(labels, 2);

    // And the same server still takes good uploads (the checks above are not blanket refusals).
    let r = s
        .upload("food", &[good[0].clone(), ("whole.jpg".into(), j)], false)
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(s.counts().await, (before.0 + 2, before.1 + 2));

    // Security headers on API and docs responses.
    let r = s.get("/").send().await.unwrap();
    assert_eq!(
        r.url().path(),
        "/docs",
        "without a web app, / leads to the docs"
    );
    let r = s.get("/docs").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "CORS is off by default"
    );
    let r = s
        .get("/api/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-encoding"],
        "gzip",
        "JSON responses are compressed"
    );
    let spec: Value = s.json("/api/openapi.json").await;
    assert!(spec["paths"]["/api/datasets/{id}/images"]["post"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    // The refusals above, counted by route and reason.
    let m = s.metrics().await;
    let refused = |route: &str, reason: &str| {
        metric(
            &m,
            "edgeml_refusals_total",
            &[("route", route), ("reason", reason)],
        )
    };
    assert_eq!(refused("/api/datasets/{id}/images", "forbidden"), Some(1.0));
    assert!(refused("/api/train", "bad_request").unwrap() >= 1.0);
    assert!(refused("/api/train", "invalid_parameter").unwrap() >= 1.0);
    s.stop().await;
}

on_both_backends!(bad_inputs: bad_input_sqlite_local, bad_input_postgres_s3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_rate_limit_per_ip() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| {
        c.upload_burst = 2;
        c.upload_rate_per_min = 1;
    })
    .await;
    s.add_labels(&["food"]).await;
    let files = photos("food", 3);
    assert_eq!(s.upload("food", &files[0..1], false).await.status(), 201);
    assert_eq!(s.upload("food", &files[1..2], false).await.status(), 201);
    let r = s.upload("food", &files[2..3], false).await;
    assert!(r.headers().contains_key("retry-after"));
    expect(r, 429, "rate_limited").await;
    assert_eq!(s.counts().await, (2, 2));
    // An admin's bulk import is not held to the anonymous quota.
    assert_eq!(s.upload("food", &files[2..3], true).await.status(), 201);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_writes_no_rows() {
    // An S3 bucket that does not exist: the blob write fails, so no row may appear.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path(), Sql::Sqlite, Blobs::S3).await;
    cfg.storage_url = Some("s3://edgeml-missing-bucket".into());
    let s = TestServer::start_with(cfg, dir).await;
    s.add_labels(&["food"]).await;
    let r = s.upload("food", &photos("food", 2), true).await;
    let body = expect(r, 500, "internal").await;
    // The storage error is in the log under the request id, not in the answer.
    let detail = body["detail"].as_str().unwrap();
    assert!(!detail.contains("bucket"), "{detail}");
    assert!(
        detail.contains(body["request_id"].as_str().unwrap()),
        "{body}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images")
        .fetch_one(s.db().pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // Liveness does not depend on storage; readiness reports it.
    assert_eq!(s.get("/health").send().await.unwrap().status(), 200);
    let health = s.get("/ready").send().await.unwrap();
    assert_eq!(health.status(), 503);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["database"]["ok"], true);
    assert_eq!(h["storage"]["ok"], false);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_blobs_are_swept_and_used_ones_kept() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |_| {}).await;
    s.add_labels(&["food"]).await;
    let kept = photos("food", 1);
    assert_eq!(s.upload("food", &kept, true).await.status(), 201);
    let orphan = format!("images/{}", "ab".repeat(32));
    // Feature-cache entries go with their image: the orphan's two views, not the kept one's.
    let entry = |sha: &str, view: &str| {
        format!("features/v1/{}/{}/{sha}/{view}", "bb".repeat(32), &sha[..2])
    };
    let kept_sha = common::sha256(&kept[0].1);
    let orphan_sha = "ab".repeat(32);
    for key in [
        entry(&kept_sha, "clean"),
        entry(&orphan_sha, "clean"),
        entry(&orphan_sha, "aug0-a0.35"),
    ] {
        s.storage()
            .put(&key, bytes::Bytes::from_static(b"features"))
            .await
            .unwrap();
    }
    s.storage()
        .put(
            &orphan,
            bytes::Bytes::from_static(b"left by a crashed upload"),
        )
        .await
        .unwrap();
    s.storage()
        .put(
            "models/cls-gone/model.onnx",
            bytes::Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    // A backbone no model runs on (e.g. left by a failed first registration).
    let unused_backbone = contract::ModelFiles::backbone_key("backbone.q8", &"7".repeat(64));
    s.storage()
        .put(&unused_backbone, bytes::Bytes::from_static(b"backbone"))
        .await
        .unwrap();
    // Young orphans are left alone (an upload may be between blob and row).
    let r = api::images::sweep_orphans(s.db(), s.storage(), 3_600_000)
        .await
        .unwrap();
    assert_eq!(r, api::images::SweepReport::default());
    let r = api::images::sweep_orphans(s.db(), s.storage(), -1)
        .await
        .unwrap();
    assert_eq!(
        (r.images, r.model_files, r.feature_entries, r.backbones),
        (1, 1, 2, 1)
    );
    assert_eq!(s.storage().size(&unused_backbone).await.unwrap(), None);
    assert_eq!(s.counts().await, (1, 1));
    assert_eq!(s.storage().size(&orphan).await.unwrap(), None);
    let left: Vec<String> = s
        .storage()
        .list("features")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, [entry(&kept_sha, "clean")]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_app_with_spa_fallback_and_json_api_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path(), Sql::Sqlite, Blobs::Local).await;
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>edgeml</title>",
    )
    .unwrap();
    std::fs::write(web.join("app.js"), "console.log('edgeml');\n".repeat(200)).unwrap();
    std::fs::write(web.join("app-0123456789ab.js"), "console.log('v1');\n").unwrap();
    // A precompressed copy next to a file is sent as is (no compression per request).
    std::fs::write(web.join("app-0123456789ab.js.gz"), b"precompressed bytes").unwrap();
    cfg.static_dir = web;
    let s = TestServer::start_with(cfg, dir).await;
    let r = s.get("/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert!(r.text().await.unwrap().contains("<title>edgeml</title>"));
    // Files named by their content never change: cached for a year.
    let r = s.get("/app-0123456789ab.js").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.text().await.unwrap(), "console.log('v1');\n");
    let r = s
        .get("/app-0123456789ab.js")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"precompressed bytes");
    let r = s
        .get("/app.js")
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "br");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    // Client-side routes get the app shell; API routes keep JSON errors.
    let r = s.get("/admin/models").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<title>edgeml</title>"));
    expect(s.get("/api/nope").send().await.unwrap(), 404, "not_found").await;
    s.stop().await;
}
