//! Hostile and concurrent clients against a real server: identical uploads racing (one row,
//! never a 5xx), approvals racing past the auto-retrain threshold (one queued run), captions
//! reviewed like images (only approved ones reach training), duplicate uploads that do not
//! reveal other people's pending images, uploader names in any script, the server's limits
//! document, the caps on images waiting for review (per client and in total), the decode
//! budget, and progress streams (one poller per run, a cap, an end on shutdown). Each race
//! runs on SQLite + local storage and on PostgreSQL + S3.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Blobs, Sql, TOKEN, TestServer, photos};
use serde_json::{Value, json};

/// One labeled upload with optional caption and uploader name (already percent-encoded).
async fn send(
    s: &TestServer,
    label: &str,
    file: &(String, Vec<u8>),
    caption: Option<&str>,
    uploader: Option<&str>,
    admin: bool,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new().text("label", label.to_string());
    if let Some(c) = caption {
        form = form.text("caption", c.to_string());
    }
    form = form.part(
        "files",
        reqwest::multipart::Part::bytes(file.1.clone()).file_name(file.0.clone()),
    );
    let mut req = s
        .http
        .post(s.url("/api/datasets/default/images"))
        .multipart(form);
    if let Some(u) = uploader {
        req = req.header("x-uploader", u);
    }
    if admin {
        req = req.bearer_auth(TOKEN);
    }
    req.send().await.unwrap()
}

async fn identical_uploads_race(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| c.workers = 0).await;
    s.add_labels(&["food"]).await;
    for (round, file) in photos("food", 3).into_iter().enumerate() {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (http, url, file) = (
                s.http.clone(),
                s.url("/api/datasets/default/images"),
                file.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let form = reqwest::multipart::Form::new().text("label", "food").part(
                    "files",
                    reqwest::multipart::Part::bytes(file.1).file_name(file.0),
                );
                let r = http.post(url).multipart(form).send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            }));
        }
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        let mut ids = Vec::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            *statuses.entry(status).or_default() += 1;
            assert!(
                status == 200 || status == 201,
                "round {round}: {status} {body}"
            );
            let img = &body["images"][0];
            assert_eq!(img["duplicate"], status == 200, "{body}");
            ids.push(img["id"].as_str().unwrap().to_string());
        }
        assert_eq!(statuses.get(&201), Some(&1), "round {round}: {statuses:?}");
        ids.dedup();
        assert_eq!(ids.len(), 1, "every answer names the one stored row");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE id = $1")
            .bind(&ids[0])
            .fetch_one(s.db().pool())
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }
    let (rows, blobs) = s.counts().await;
    assert_eq!((rows, blobs), (3, 3));
    s.stop().await;
}

on_both_backends!(identical_uploads_race: identical_uploads_race_sqlite, identical_uploads_race_postgres);

async fn approvals_race(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| {
        c.workers = 0;
        c.auto_retrain_after = 10;
        c.train_on_start = false;
    })
    .await;
    s.add_labels(&["food", "plants"]).await;
    let mut ids = Vec::new();
    for label in ["food", "plants"] {
        let r = s.upload(label, &photos(label, 25), false).await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        ids.extend(
            body["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(ids.len(), 50);
    let mut tasks = Vec::new();
    for id in ids {
        let req = s
            .admin_post("/api/review")
            .json(&json!({"decisions": [{"id": id, "action": "approve"}]}));
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let runs = s.json("/api/train").await;
    let queued = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "queued")
        .count();
    assert_eq!(queued, 1, "{runs}");
    s.stop().await;
}

on_both_backends!(approvals_race: approvals_race_sqlite, approvals_race_postgres);

async fn captions_are_reviewed(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| {
        c.workers = 0;
        c.max_captions_per_image = 3;
    })
    .await;
    s.add_labels(&["food", "plants"]).await;
    let files = photos("food", 2);
    // An admin's image with its caption: both approved.
    let r = send(&s, "food", &files[0], Some("A bowl of soup."), None, true).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone adds a caption to it: stored pending, not trained on.
    let r = send(
        &s,
        "food",
        &files[0],
        Some("Buy cheap pills"),
        Some("mallory"),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let trained = api::images::captions_of(s.db(), "default").await.unwrap();
    assert_eq!(trained[&id], ["A bowl of soup."]);
    let queue = s.json("/api/review/captions").await;
    assert_eq!(queue["total"], 1, "{queue}");
    assert_eq!(queue["captions"][0]["caption"], "Buy cheap pills");
    assert_eq!(queue["captions"][0]["uploader"], "mallory");
    assert_eq!(queue["captions"][0]["status"], "pending");
    // The admin's image card shows both with their status.
    let img = s.json(&format!("/api/images/{id}")).await;
    let statuses: Vec<(&str, &str)> = img["captions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["caption"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("A bowl of soup.", "approved"),
            ("Buy cheap pills", "pending")
        ]
    );
    // A second pending caption, then: one rejected, one approved.
    let r = send(&s, "food", &files[0], Some("Soup, steaming."), None, false).await;
    assert_eq!(r.status(), 200);
    let r = s
        .admin_post("/api/review")
        .json(&json!({"captions": [
            {"image_id": id, "caption": "Buy cheap pills", "action": "reject"},
            {"image_id": id, "caption": "Soup, steaming.", "action": "approve"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["captions"].as_array().unwrap().len(), 2);
    let trained = api::images::captions_of(s.db(), "default").await.unwrap();
    assert_eq!(trained[&id], ["A bowl of soup.", "Soup, steaming."]);
    assert_eq!(s.json("/api/review/captions").await["total"], 0);
    // The cap: a fourth caption is refused, nothing written.
    let r = send(&s, "food", &files[0], Some("One more."), None, false).await;
    assert_eq!(r.status(), 422);
    // A caption decision naming an unknown caption: 404, nothing applied.
    let r = s
        .admin_post("/api/review")
        .json(&json!({"captions": [{"image_id": id, "caption": "nope", "action": "approve"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A pending image's captions share its fate.
    let r = send(
        &s,
        "food",
        &files[1],
        Some("Green salad."),
        Some("zoe"),
        false,
    )
    .await;
    assert_eq!(r.status(), 201);
    let pending = r.json::<Value>().await.unwrap()["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone else sending the same file with another label learns nothing about it.
    let r = send(&s, "plants", &files[1], None, Some("eve"), false).await;
    assert_eq!(r.status(), 200);
    let dup = &r.json::<Value>().await.unwrap()["images"][0];
    assert_eq!(
        (dup["label"].as_str(), dup["status"].as_str()),
        (Some("plants"), Some("pending"))
    );
    let r = s
        .admin_post("/api/review")
        .json(&json!({"decisions": [{"id": pending, "action": "approve"}]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["captions"][0]["status"], "approved", "{body}");
    let trained = api::images::captions_of(s.db(), "default").await.unwrap();
    assert_eq!(trained[&pending], ["Green salad."]);
    s.stop().await;
}

on_both_backends!(captions_are_reviewed: captions_are_reviewed_sqlite, captions_are_reviewed_postgres);

/// Anonymous uploads of `n` photos (starting at `from`) as the client `ip` (the test's
/// loopback peer is a trusted proxy, so `X-Forwarded-For` names the client).
async fn upload_as(s: &TestServer, ip: &str, files: &[(String, Vec<u8>)]) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().text("label", "food");
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
        );
    }
    let r = s
        .http
        .post(s.url("/api/datasets/default/images"))
        .header("x-forwarded-for", ip)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").is_some();
    let body: Value = r.json().await.unwrap();
    if status == 429 {
        assert!(retry, "a 429 says when to come back: {body}");
    }
    (status, body)
}

async fn pending_caps(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| {
        c.workers = 0;
        c.max_pending_per_client = 3;
        c.max_pending_total = 5;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    s.add_labels(&["food"]).await;
    let files = photos("food", 9);
    let (a, b) = ("198.51.100.7", "203.0.113.9");
    assert_eq!(upload_as(&s, a, &files[0..2]).await.0, 201);
    // Two more would leave 4 of A's waiting: refused whole, nothing stored.
    let (status, body) = upload_as(&s, a, &files[2..4]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("2 images waiting"),
        "{body}"
    );
    assert_eq!(s.counts().await, (2, 2));
    assert_eq!(upload_as(&s, a, &files[2..3]).await.0, 201);
    // Another client is not held to A's cap, but to the total (5 waiting at most).
    assert_eq!(upload_as(&s, b, &files[3..5]).await.0, 201);
    let (status, body) = upload_as(&s, b, &files[5..6]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("queue is full"),
        "{body}"
    );
    // The admin is never capped, and a resent duplicate adds nothing to wait.
    assert_eq!(s.upload("food", &files[6..7], true).await.status(), 201);
    assert_eq!(upload_as(&s, b, &files[3..4]).await.0, 200);
    assert_eq!(s.counts().await, (6, 6));
    // Reviewing makes room: once the total is recounted, B's upload goes through.
    let a_id: String = sqlx::query_scalar(
        "SELECT id FROM images WHERE status = 'pending' ORDER BY created_at LIMIT 1",
    )
    .fetch_one(s.db().pool())
    .await
    .unwrap();
    let r = s
        .admin_post("/api/review")
        .json(&json!({"decisions": [{"id": a_id, "action": "reject"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(api::images::PENDING_RECOUNT + Duration::from_millis(200)).await;
    assert_eq!(upload_as(&s, b, &files[5..6]).await.0, 201);
    // Full again (A 2, B 3): a third client is turned away by the total.
    assert_eq!(upload_as(&s, "192.0.2.44", &files[7..8]).await.0, 503);
    s.stop().await;
}

on_both_backends!(pending_caps: pending_caps_sqlite, pending_caps_postgres);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploader_names_in_any_script_and_no_impersonation() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| c.workers = 0).await;
    s.add_labels(&["food"]).await;
    let files = photos("food", 4);
    // "Zoë Łukasz 李", percent-encoded as encodeURIComponent writes it.
    let r = send(
        &s,
        "food",
        &files[0],
        None,
        Some("Zo%C3%AB%20%C5%81ukasz%20%E6%9D%8E"),
        false,
    )
    .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.json(&format!("/api/images/{id}")).await["uploader"],
        "Zoë Łukasz 李"
    );
    for bad in ["admin", "Seed", "%ZZ", "%C3", "a%2Fb"] {
        let r = send(&s, "food", &files[1], None, Some(bad), false).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    // The admin may name itself.
    let r = send(&s, "food", &files[2], None, Some("admin"), true).await;
    assert_eq!(r.status(), 201);
    // No token in URLs: a pending image's blob needs the header.
    let r = s
        .get(&format!("/api/images/{id}/blob?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .get(&format!("/api/images/{id}/blob"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), files[0].1.as_slice());
    s.stop().await;
}

/// A PNG of `side`² zero pixels, 16-bit RGBA: tiny on the wire, 8 bytes a pixel decoded.
fn png16(side: u32) -> Vec<u8> {
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::new(side, side);
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba16(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_document_and_decode_budget() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| {
        c.workers = 0;
        c.decode_memory_mb = 16;
        c.max_files = 7;
    })
    .await;
    s.add_labels(&["food"]).await;
    let limits = s.json("/api/limits").await;
    let parsed: contract::api::Limits = serde_json::from_value(limits.clone()).unwrap();
    assert_eq!(parsed.max_files, 7);
    assert_eq!(parsed.max_upload_bytes, s.cfg.max_upload_bytes as u64);
    // 1500² × (8 + 4) bytes = 25.7 MiB to decode: more than the whole 16 MiB budget.
    let bomb = ("bomb.png".to_string(), png16(1500));
    let r = send(&s, "food", &bomb, None, None, false).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("MiB"), "{body}");
    // 1000² × 12 = 11.4 MiB fits: stored.
    let ok = ("fits.png".to_string(), png16(1000));
    assert_eq!(send(&s, "food", &ok, None, None, false).await.status(), 201);
    assert_eq!(s.counts().await, (1, 1));
    // Liveness touches nothing; readiness probes.
    let h: Value = s.json("/health").await;
    assert_eq!(h["status"], "ok");
    assert_eq!(s.json("/ready").await["storage"]["ok"], true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_share_a_poller_are_capped_and_end_on_shutdown() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| {
        c.workers = 0;
        c.max_event_streams = 3;
    })
    .await;
    s.add_labels(&["food"]).await;
    let run = api::jobs::enqueue(s.db(), "default", &Default::default(), "test")
        .await
        .unwrap();
    let url = s.url(&format!("/api/train/{}/events", run.id));
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = s.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    assert_eq!(s.state().feeds.watched(), 1, "one poller for three streams");
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // A graceful stop ends the open streams instead of waiting for them.
    let readers: Vec<_> = open
        .into_iter()
        .map(|r| tokio::spawn(common::read_sse(r, 1000)))
        .collect();
    let t0 = std::time::Instant::now();
    s.stop().await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    for r in readers {
        let events = tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(events[0].event, "snapshot");
    }
}
