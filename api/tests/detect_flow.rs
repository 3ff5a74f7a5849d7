//! Object detection through the api, on SQLite + local storage and PostgreSQL + S3: a
//! detection dataset takes images with their boxes (bad boxes refused with nothing stored),
//! review corrects boxes, a `task: "detect"` run trains on the approved images and their boxes
//! through the same jobs, gate (mAP@0.5, resampled image by image) and registry as the other
//! tasks, `POST /api/predict?task=detect` answers with the boxes the browser's files give, and
//! a second run is paired with the champion on the same test images.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Blobs, Sql, TOKEN, TestServer, root};
use contract::api::ImageBox;
use contract::detection::iou;
use serde_json::{Value, json};
use trainer::dataset::{Dataset, Split};
use trainer::detect::{ComposeConfig, DetectSet, Stamp, compose_set};
use wasm_infer::{Backbone, ModelManifest, PixelFormat, Pixels, Session, Task};

const LABELS: [&str; 3] = ["animals", "food", "vehicles"];

/// Composites of Tux Paint cut-outs of three labels on the bundled backgrounds, exact boxes.
fn composites(count: usize, seed: u64) -> DetectSet {
    let photos = Dataset::import_folder(&root().join("assets/datasets/tuxpaint-photos")).unwrap();
    let mut stamps = Vec::new();
    for (k, name) in LABELS.iter().enumerate() {
        let label = photos.labels.iter().position(|l| l == name).unwrap();
        stamps.extend(
            photos
                .samples
                .iter()
                .filter(|s| s.label == label)
                .take(24)
                .map(|s| Stamp {
                    label: k,
                    pixels: s.decode().unwrap(),
                }),
        );
    }
    let backgrounds =
        trainer::detect::load_backgrounds(&root().join("assets/datasets/backgrounds")).unwrap();
    let cfg = ComposeConfig {
        size: 256,
        count,
        min_objects: 1,
        max_objects: 2,
        min_scale: 0.35,
        max_scale: 0.6,
        seed,
        ..ComposeConfig::default()
    };
    let labels = LABELS.iter().map(|l| l.to_string()).collect();
    compose_set(&stamps, labels, &backgrounds, Split::Train, &cfg).unwrap()
}

fn boxes_of(set: &DetectSet, i: usize) -> Vec<ImageBox> {
    set.items[i]
        .boxes
        .iter()
        .map(|b| ImageBox {
            label: set.labels[b.label].clone(),
            bbox: [b.rect.x, b.rect.y, b.rect.w, b.rect.h],
        })
        .collect()
}

/// `POST /api/datasets/{dataset}/images` with the given form fields and files.
async fn upload(
    s: &TestServer,
    dataset: &str,
    fields: &[(&str, String)],
    files: &[&[u8]],
    admin: bool,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.clone());
    }
    for (i, f) in files.iter().enumerate() {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(f.to_vec()).file_name(format!("c{i}.png")),
        );
    }
    let mut req = s
        .http
        .post(s.url(&format!("/api/datasets/{dataset}/images")))
        .multipart(form);
    if admin {
        req = req.bearer_auth(TOKEN);
    }
    req.send().await.unwrap()
}

/// A refused upload: what it tries, its fields, its files, the status and what the error says.
type BadUpload<'a> = (&'a str, Vec<(&'a str, String)>, Vec<&'a [u8]>, u16, &'a str);

async fn box_rows(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM boxes")
        .fetch_one(s.db().pool())
        .await
        .unwrap()
}

async fn flow(sql: Sql, blobs: Blobs) {
    let s = TestServer::start(sql, blobs, |c| {
        c.workers = 1;
    })
    .await;
    let set = composites(160, 21);
    let r = s
        .admin_post("/api/datasets")
        .json(&json!({"name": "objects", "labels": LABELS, "task": "detect"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ds: Value = r.json().await.unwrap();
    assert_eq!(ds["task"], "detect");
    let id = ds["id"].as_str().unwrap().to_string();
    let r = s
        .admin_post("/api/datasets")
        .json(&json!({"name": "labelled", "labels": ["animals"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let labelled: Value = r.json().await.unwrap();
    assert_eq!(labelled["task"], "classify");
    let r = s
        .admin_post("/api/datasets")
        .json(&json!({"name": "ranked", "task": "rank"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "a dataset holds labels or boxes");

    // Bad boxes: a clear error, nothing stored (no row, no blob, no box).
    let png = set.items[0].bytes.to_vec();
    let good = serde_json::to_string(&boxes_of(&set, 0)).unwrap();
    let two = [png.as_slice(), set.items[1].bytes.as_ref()];
    let cases: Vec<BadUpload> = vec![
        (
            "outside the image",
            vec![(
                "boxes",
                r#"[{"label": "food", "bbox": [200, 10, 80, 40]}]"#.into(),
            )],
            vec![&png],
            422,
            "leaves the 256×256 image",
        ),
        (
            "no area",
            vec![(
                "boxes",
                r#"[{"label": "food", "bbox": [20, 10, 0, 40]}]"#.into(),
            )],
            vec![&png],
            422,
            "has no area",
        ),
        (
            "unknown label",
            vec![(
                "boxes",
                r#"[{"label": "cars", "bbox": [20, 10, 30, 40]}]"#.into(),
            )],
            vec![&png],
            422,
            "no label \"cars\"",
        ),
        (
            "no box",
            vec![("boxes", "[]".into())],
            vec![&png],
            422,
            "at least one box",
        ),
        (
            "not boxes",
            vec![("boxes", r#"{"label": "food"}"#.into())],
            vec![&png],
            422,
            "JSON array",
        ),
        ("no boxes field", vec![], vec![&png], 422, "missing 'boxes'"),
        (
            "a label instead",
            vec![("boxes", good.clone()), ("label", "food".into())],
            vec![&png],
            422,
            "take their labels from their boxes",
        ),
        (
            "two images, one set of boxes",
            vec![("boxes", good.clone())],
            two.to_vec(),
            422,
            "one file per request",
        ),
    ];
    for (what, fields, files, status, says) in cases {
        let r = upload(&s, &id, &fields, &files, true).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        let e: Value = r.json().await.unwrap();
        assert!(e["detail"].as_str().unwrap().contains(says), "{what}: {e}");
    }
    let r = upload(
        &s,
        labelled["id"].as_str().unwrap(),
        &[("label", "animals".into()), ("boxes", good.clone())],
        &[&png],
        true,
    )
    .await;
    assert_eq!(r.status(), 422, "boxes on a dataset of labelled images");
    assert_eq!(s.counts().await, (0, 0));
    assert_eq!(box_rows(&s).await, 0);

    // A contributor's image waits with its boxes; the admin corrects them while approving.
    let r = upload(&s, &id, &[("boxes", good.clone())], &[&png], false).await;
    assert_eq!(r.status(), 201);
    let up: Value = r.json().await.unwrap();
    let first = up["images"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(up["images"][0]["status"], "pending");
    let page = s
        .json(&format!("/api/images?dataset={id}&status=pending"))
        .await;
    let row = &page["images"][0];
    let stored: Vec<ImageBox> = serde_json::from_value(row["boxes"].clone()).unwrap();
    assert_eq!(stored, boxes_of(&set, 0));
    let mut corrected = boxes_of(&set, 0);
    corrected[0].bbox[0] = (corrected[0].bbox[0] - 2.0).max(0.0);
    let bad = json!({"decisions": [{"id": first, "action": "approve",
        "boxes": [{"label": "food", "bbox": [0, 0, 300, 10]}]}]});
    let r = s.admin_post("/api/review").json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 422, "a corrected box outside the image");
    let still = s
        .json(&format!("/api/images?dataset={id}&status=pending"))
        .await;
    assert_eq!(still["total"], 1, "nothing applied");
    let r = s
        .admin_post("/api/review")
        .json(&json!({"decisions": [{"id": first, "action": "approve", "boxes": corrected}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let reviewed: Value = r.json().await.unwrap();
    let row = &reviewed["images"][0];
    assert_eq!(row["status"], "approved");
    let now: Vec<ImageBox> = serde_json::from_value(row["boxes"].clone()).unwrap();
    assert_eq!(now, corrected);

    // The same new image with its boxes sent twenty times at once: one row, its boxes once.
    let fields = [("boxes", serde_json::to_string(&boxes_of(&set, 1)).unwrap())];
    let files = [set.items[1].bytes.as_ref()];
    let burst =
        futures::future::join_all((0..20).map(|_| upload(&s, &id, &fields, &files, true))).await;
    let mut ids = Vec::new();
    for r in burst {
        assert!(r.status() == 201 || r.status() == 200, "{}", r.status());
        let v: Value = r.json().await.unwrap();
        ids.push(v["images"][0]["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one image for twenty identical uploads");
    assert_eq!(
        box_rows(&s).await as usize,
        corrected.len() + set.items[1].boxes.len()
    );

    // The admin's images are approved with their boxes.
    for i in 2..set.items.len() {
        let boxes = serde_json::to_string(&boxes_of(&set, i)).unwrap();
        let r = upload(&s, &id, &[("boxes", boxes)], &[&set.items[i].bytes], true).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let total: usize = set.items.iter().map(|i| i.boxes.len()).sum();
    assert_eq!(box_rows(&s).await as usize, total);

    coco_import(&s, labelled["id"].as_str().unwrap()).await;

    // Runs and datasets must hold the same kind of thing.
    for (body, says) in [
        (
            json!({"task": "classify", "dataset_id": id}),
            "holds images with boxes",
        ),
        (
            json!({"task": "detect", "dataset_id": labelled["id"]}),
            "holds labelled images, not boxes",
        ),
        (json!({"task": "detect", "params": {"epochs": 0}}), "epochs"),
    ] {
        let r = s.admin_post("/api/train").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["detail"].as_str().unwrap().contains(says), "{e}");
    }

    let (run, events) = s
        .train_and_follow(json!({"task": "detect", "params": {"epochs": 40, "seed": 3}}))
        .await;
    assert_eq!(run["task"], "detect");
    assert_eq!(
        run["dataset_id"],
        id.as_str(),
        "the detection dataset, unnamed"
    );
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    let model_id = done["model_id"].as_str().unwrap().to_string();
    let info = s.json(&format!("/api/models/{model_id}")).await;
    assert_eq!(info["task"], "detect");
    let gate = &info["gate"];
    assert_eq!(gate["metric"], "map50");
    assert!(gate["test"].as_str().unwrap().contains("mAP@0.5"), "{gate}");
    let dm = &info["manifest"]["detection_metrics"];
    println!(
        "api detector {model_id}: test mAP@0.5 {} mAP@[.5:.95] {} on {} images; gate {}",
        dm["map50"], dm["map50_95"], dm["images"], gate["reason"]
    );
    // The gate's figure is the run's own test mAP@0.5.
    assert!(
        (gate["candidate"].as_f64().unwrap() - dm["map50"].as_f64().unwrap()).abs() < 1e-9,
        "{gate}"
    );
    assert_eq!(info["stage"], "champion", "{gate}");
    let metrics = s
        .json(&format!("/api/models/{model_id}/metrics.json"))
        .await;
    let evidence: contract::evidence::Evidence =
        serde_json::from_value(metrics["evidence"].clone()).unwrap();
    assert_eq!(evidence.baselines[0].name, "whole image, most boxed label");
    let test_shas: Vec<&str> = set
        .items
        .iter()
        .filter(|i| Split::of_digest(&hex(&i.sha256)) == Split::Test)
        .map(|i| i.sha256.as_str())
        .collect();
    let mut recorded: Vec<&str> = evidence.items.iter().map(String::as_str).collect();
    recorded.sort_unstable();
    let mut expected = test_shas.clone();
    expected.sort_unstable();
    assert_eq!(recorded, expected, "the test split is the images' hash's");

    // The server's boxes for a test image: the model's own, and the browser's files (8-bit
    // backbone, 8-bit NNEF head) find the same objects.
    let k = set
        .items
        .iter()
        .position(|i| i.sha256 == test_shas[0])
        .unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(set.items[k].bytes.to_vec()).file_name("t.png"),
    );
    let r = s
        .http
        .post(s.url("/api/predict?task=detect"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["model_id"], model_id.as_str());
    let served: Vec<contract::detection::LabelledBox> =
        serde_json::from_value(p["boxes"].clone()).unwrap();
    let text = s
        .get("/api/models/current?task=detect")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let manifest = ModelManifest::from_json(&text).unwrap();
    assert_eq!(manifest.task, Task::Detect);
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
    let shipped = manifest.backbone.as_ref().unwrap().shipped();
    let backbone = get(contract::ModelFiles::backbone_url(
        &shipped.file,
        &shipped.sha256,
    ))
    .await;
    let browser = Session::composed_nnef(
        Arc::new(Backbone::new(&backbone, &manifest).unwrap()),
        &head,
        manifest.clone(),
    )
    .unwrap();
    let img = trainer::dataset::decode_image(&set.items[k].bytes).unwrap();
    let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
    let local = browser.detect(&pixels).unwrap();
    println!("server boxes {served:?}\nbrowser boxes {local:?}");
    // Clear boxes (well above the shown score) are found by both, same label, same place.
    let min = manifest.detection.unwrap().decode.min_score + 0.1;
    for (a, b) in [(&served, &local), (&local, &served)] {
        for x in a.iter().filter(|x| x.score >= min) {
            assert!(
                b.iter()
                    .any(|y| y.label == x.label && iou(&x.bbox, &y.bbox) >= 0.75),
                "{x:?} not in {b:?}"
            );
        }
    }

    // A second run is paired with the champion on the same test images.
    let (_, events) = s
        .train_and_follow(json!({"task": "detect", "params": {"epochs": 20, "seed": 4}}))
        .await;
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    let second = done["model_id"].as_str().unwrap().to_string();
    let gate = &s.json(&format!("/api/models/{second}")).await["gate"];
    assert_eq!(gate["champion_id"], model_id.as_str());
    assert_eq!(gate["champion_same_split"], true, "{gate}");
    let again: contract::evidence::Evidence = serde_json::from_value(
        s.json(&format!("/api/models/{second}/metrics.json")).await["evidence"].clone(),
    )
    .unwrap();
    assert_eq!(again.items, evidence.items);
    // The champion's head through tract on the run's test maps: its own recorded mAP.
    let vs = gate["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "champion")
        .unwrap();
    assert!(
        (vs["score"].as_f64().unwrap() - dm["map50"].as_f64().unwrap()).abs() < 1e-3,
        "{vs} vs {dm}"
    );
    s.stop().await;
}

/// A refused COCO import: what is wrong, the document, the files, the status, what it says.
type BadImport<'a> = (&'a str, String, Vec<(String, Vec<u8>)>, u16, &'a str);

/// `POST /api/datasets/{dataset}/coco` with a COCO document and files.
async fn post_coco(
    s: &TestServer,
    dataset: &str,
    annotations: &str,
    files: &[(String, Vec<u8>)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new().text("annotations", annotations.to_string());
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
        );
    }
    s.http
        .post(s.url(&format!("/api/datasets/{dataset}/coco")))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// A COCO folder (as `trainer compose` writes them) imported through the api: refused with
/// the entry named and nothing stored when any part is wrong; stored and approved with every
/// box otherwise.
async fn coco_import(s: &TestServer, labelled: &str) {
    // A dataset of its own, so the flow's training set is untouched.
    let r = s
        .admin_post("/api/datasets")
        .json(&json!({"name": "imported", "labels": LABELS, "task": "detect"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let dataset = created["id"].as_str().unwrap();
    let set = composites(6, 77);
    let dir = tempfile::tempdir().unwrap();
    set.write_coco(dir.path()).unwrap();
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("annotations.json")).unwrap())
            .unwrap();
    let files: Vec<(String, Vec<u8>)> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["file_name"].as_str().unwrap().to_string();
            let bytes = std::fs::read(dir.path().join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    let before = (s.counts().await, box_rows(s).await);
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        f(&mut d);
        d.to_string()
    };
    let cases: Vec<BadImport> = vec![
        (
            "a box outside its image",
            bad(&|d| d["annotations"][0]["bbox"] = json!([250, 0, 40, 40])),
            files.clone(),
            422,
            "leaves the 256×256 image",
        ),
        (
            "an unknown category",
            bad(&|d| d["annotations"][1]["category_id"] = json!(99)),
            files.clone(),
            422,
            "unknown category id 99",
        ),
        (
            "a repeated image id",
            bad(&|d| d["images"][1]["id"] = d["images"][0]["id"].clone()),
            files.clone(),
            422,
            "appears twice",
        ),
        (
            "a category the dataset lacks",
            bad(&|d| d["categories"][0]["name"] = json!("boats")),
            files.clone(),
            422,
            "\"boats\" is not a label of the dataset",
        ),
        (
            "a named file missing",
            doc.to_string(),
            files[1..].to_vec(),
            422,
            "no file named",
        ),
        (
            "a file the document does not name",
            bad(&|d| {
                let gone = d["images"].as_array_mut().unwrap().pop().unwrap()["id"].clone();
                d["annotations"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|a| a["image_id"] != gone);
            }),
            files.clone(),
            422,
            "is not an image of the annotations",
        ),
        ("not JSON", "{".into(), files.clone(), 422, "annotations"),
    ];
    for (what, text, files, status, says) in cases {
        let r = post_coco(s, dataset, &text, &files).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        let e: Value = r.json().await.unwrap();
        assert!(e["detail"].as_str().unwrap().contains(says), "{what}: {e}");
    }
    let r = post_coco(s, labelled, &doc.to_string(), &files).await;
    assert_eq!(r.status(), 422, "COCO into a dataset of labelled images");
    assert_eq!(
        (s.counts().await, box_rows(s).await),
        before,
        "nothing stored"
    );

    // The same import eight times at once: every image stored once, with its boxes once.
    let text = doc.to_string();
    let answers =
        futures::future::join_all((0..8).map(|_| post_coco(s, dataset, &text, &files))).await;
    let mut ups = Vec::new();
    for r in answers {
        assert!(r.status() == 201 || r.status() == 200, "{}", r.status());
        ups.push(r.json::<Value>().await.unwrap());
    }
    let ids = |u: &Value| -> Vec<String> {
        u["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        ups.iter().all(|u| ids(u) == ids(&ups[0])),
        "the same images for every import"
    );
    let up = &ups[0];
    let images = up["images"].as_array().unwrap();
    assert_eq!(images.len(), set.items.len());
    for (k, u) in images.iter().enumerate() {
        assert_eq!(u["status"], "approved");
        let row = s
            .json(&format!("/api/images/{}", u["id"].as_str().unwrap()))
            .await;
        let stored: Vec<ImageBox> = serde_json::from_value(row["boxes"].clone()).unwrap();
        assert_eq!(stored, boxes_of(&set, k), "image {k}");
    }
    let added: usize = set.items.iter().map(|i| i.boxes.len()).sum();
    assert_eq!(box_rows(s).await, before.1 + added as i64);

    coco_export(s, dataset, labelled, &set, &files).await;
}

/// The way out: `GET /api/datasets/{id}/coco` gives the approved images and their boxes as the
/// COCO document the import reads back (files bound by sha256, served at `coco_url`), paged.
async fn coco_export(
    s: &TestServer,
    dataset: &str,
    labelled: &str,
    set: &DetectSet,
    files: &[(String, Vec<u8>)],
) {
    let export = |dataset: &str, query: &str| {
        s.get(&format!("/api/datasets/{dataset}/coco{query}"))
            .bearer_auth(TOKEN)
            .send()
    };
    let doc: Value = export(dataset, "").await.unwrap().json().await.unwrap();
    assert_eq!(doc["info"]["total_images"], set.items.len());
    let names: Vec<&str> = doc["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, LABELS);
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images.len(), set.items.len());
    let mut renamed = Vec::new();
    for im in images {
        let sha = im["sha256"].as_str().unwrap();
        let k = set.items.iter().position(|i| i.sha256 == sha).unwrap();
        // Named as uploaded, sized, served where it says, with the boxes imported.
        assert_eq!(im["file_name"], files[k].0.as_str());
        assert_eq!(
            (im["width"].as_u64(), im["height"].as_u64()),
            (Some(256), Some(256))
        );
        let served = s
            .get(im["coco_url"].as_str().unwrap())
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(served.bytes().await.unwrap().as_ref(), &files[k].1[..]);
        let boxes: Vec<ImageBox> = doc["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["image_id"] == im["id"])
            .map(|a| ImageBox {
                label: LABELS[a["category_id"].as_u64().unwrap() as usize - 1].into(),
                bbox: serde_json::from_value(a["bbox"].clone()).unwrap(),
            })
            .collect();
        assert_eq!(boxes, boxes_of(set, k), "image {k}");
        renamed.push(files[k].clone());
    }
    // Read back into a new dataset: the same document again (but for where files are served).
    let r = s
        .admin_post("/api/datasets")
        .json(&json!({"name": "reimported", "labels": LABELS, "task": "detect"}))
        .send()
        .await
        .unwrap();
    let again: Value = r.json().await.unwrap();
    let again = again["id"].as_str().unwrap();
    let r = post_coco(s, again, &doc.to_string(), &renamed).await;
    assert_eq!(r.status(), 201);
    let back: Value = export(again, "").await.unwrap().json().await.unwrap();
    // Each image with its boxes, by sha256 (ids count in each dataset's own order).
    let canonical = |d: &Value| {
        let mut out: Vec<(String, Value, Vec<Value>)> = d["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|im| {
                let boxes = d["annotations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["image_id"] == im["id"])
                    .map(|a| json!([a["category_id"], a["bbox"], a["area"], a["iscrowd"]]))
                    .collect();
                let file = json!([im["file_name"], im["width"], im["height"]]);
                (im["sha256"].as_str().unwrap().to_string(), file, boxes)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        (d["categories"].clone(), out)
    };
    assert_eq!(canonical(&back), canonical(&doc));
    // A document bound to other files is refused: two files swapped under their names.
    let mut swapped = renamed.clone();
    let (a, b) = (swapped[0].1.clone(), swapped[1].1.clone());
    (swapped[0].1, swapped[1].1) = (b, a);
    let r = post_coco(s, again, &doc.to_string(), &swapped).await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("is not the file annotated"),
        "{e}"
    );

    // Paged; admins only; detection datasets only; bounds checked.
    let page: Value = export(dataset, "?limit=2&offset=4")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["info"]["offset"], 4);
    let shas = |v: &[Value]| -> Vec<Value> { v.iter().map(|i| i["sha256"].clone()).collect() };
    assert_eq!(
        shas(page["images"].as_array().unwrap()),
        shas(&images[4..6])
    );
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(export(labelled, "").await.unwrap()), 422);
    assert_eq!(status(export("nope", "").await.unwrap()), 404);
    assert_eq!(status(export(dataset, "?limit=0").await.unwrap()), 400);
    let anonymous = s
        .get(&format!("/api/datasets/{dataset}/coco"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

fn hex(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

on_both_backends!(flow: detect_end_to_end_sqlite_local, detect_end_to_end_postgres_s3);

/// Auto-retrain on a detection dataset waits until its approved images fall in every split
/// (a detector trains, selects and is gated on all three); then one run is queued, a detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_retrain_waits_for_every_split() {
    let s = TestServer::start(Sql::Sqlite, Blobs::Local, |c| c.auto_retrain_after = 2).await;
    let r = s
        .admin_post("/api/datasets")
        .json(&json!({"name": "objects", "labels": LABELS, "task": "detect"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ds: Value = r.json().await.unwrap();
    let id = ds["id"].as_str().unwrap().to_string();
    let set = composites(40, 5);
    let of = |split: Split| {
        (0..set.items.len())
            .filter(|&i| Split::of_digest(&hex(&set.items[i].sha256)) == split)
            .collect::<Vec<_>>()
    };
    let (train, val, test) = (of(Split::Train), of(Split::Val), of(Split::Test));
    assert!(train.len() >= 3 && !val.is_empty() && !test.is_empty());
    let send = |i: usize| {
        let boxes = serde_json::to_string(&boxes_of(&set, i)).unwrap();
        let bytes = set.items[i].bytes.to_vec();
        let (s, id) = (&s, &id);
        async move {
            let r = upload(s, id, &[("boxes", boxes)], &[&bytes], true).await;
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }
    };
    // Three approved training images pass the threshold, but no image is in validation or test.
    for &i in &train[..3] {
        let up = send(i).await;
        assert_eq!(
            up["auto_retrain"],
            Value::Null,
            "image {i}: only training images"
        );
    }
    let up = send(val[0]).await;
    assert_eq!(up["auto_retrain"], Value::Null, "no test image yet");
    let up = send(test[0]).await;
    let run = up["auto_retrain"]
        .as_str()
        .expect("every split now: queued");
    let info = s.json(&format!("/api/train/{run}")).await;
    assert_eq!(info["task"], "detect");
    assert_eq!(info["status"], "queued");
    assert!(info["reason"].as_str().unwrap().starts_with("auto: 5 "));
    s.stop().await;
}
