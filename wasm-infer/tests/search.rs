//! Gallery search on hand-made galleries: int8 ranking, local images, "more like this",
//! image → caption with duplicates removed, and refusal of inconsistent files; the wasm32
//! build (run under node) answers "more like this" exactly as the native search does.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use contract::worker::FromWorker;

use contract::gallery::{Gallery, GalleryItem, quantize};
use wasm_infer::search::{LocalImage, SearchIndex};

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn item(id: &str, label: &str, captions: &[&str]) -> GalleryItem {
    GalleryItem {
        id: id.into(),
        label: label.into(),
        captions: captions.iter().map(|c| c.to_string()).collect(),
    }
}

/// Three images along three axes (the third slightly towards the first): `gallery.json` and
/// `gallery.bin`.
fn gallery() -> (Gallery, Vec<u8>) {
    let vectors = [
        unit(&[1.0, 0.0, 0.0]),
        unit(&[0.0, 1.0, 0.0]),
        unit(&[0.6, 0.0, 0.8]),
    ];
    let bin: Vec<u8> = vectors.iter().flat_map(|v| quantize(v)).collect();
    let gallery = Gallery {
        model_id: "rank-1".into(),
        dim: 3,
        count: 3,
        scale: contract::gallery::SCALE,
        items: vec![
            item("a", "animals", &["a koala", "a grey koala"]),
            item("b", "food", &["an apple"]),
            item("c", "animals", &["a koala"]),
        ],
    };
    (gallery, bin)
}

fn index() -> SearchIndex {
    let (gallery, bin) = gallery();
    SearchIndex::new(gallery, &bin).unwrap()
}

#[test]
fn ranks_the_gallery_by_cosine_best_first() {
    let idx = index();
    let hits = idx.top_k(&unit(&[1.0, 0.0, 0.1]), 2).unwrap();
    let ids: Vec<_> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(hits[0].caption, "a koala");
    // int8 storage: within one quantisation step of the f32 cosine.
    let exact = unit(&[1.0, 0.0, 0.1])[0];
    assert!(
        (hits[0].score - exact).abs() < 1.0 / 127.0,
        "{}",
        hits[0].score
    );
    assert_eq!(idx.top_k(&[1.0, 0.0, 0.0], 10).unwrap().len(), 3);
}

#[test]
fn local_images_rank_with_the_gallery_and_replace_themselves() {
    let mut idx = index();
    let local = LocalImage {
        id: "mine".into(),
        label: "food".into(),
        caption: "my pear".into(),
        vector: unit(&[0.0, 1.0, 0.05]),
        thumb: Some("blob:x".into()),
    };
    idx.add_local(local.clone()).unwrap();
    idx.add_local(local).unwrap();
    assert_eq!(idx.local_count(), 1);
    let hits = idx.top_k(&[0.0, 1.0, 0.0], 2).unwrap();
    assert_eq!(hits[0].id, "b");
    assert_eq!(hits[1].id, "mine");
    assert!(hits[1].local);
    assert_eq!(hits[1].thumb.as_deref(), Some("blob:x"));
    let wrong = LocalImage {
        id: "x".into(),
        label: "food".into(),
        caption: String::new(),
        vector: vec![1.0],
        thumb: None,
    };
    assert!(idx.add_local(wrong).is_err());
}

#[test]
fn more_like_this_uses_the_stored_vector() {
    let idx = index();
    let (q, caption) = idx.query_of("c").unwrap();
    assert_eq!(caption, "a koala");
    let hits = idx.top_k(&q, 3).unwrap();
    assert_eq!(hits[0].id, "c");
    assert_eq!(hits[1].id, "a");
    assert!(idx.query_of("nope").is_err());
}

#[test]
fn image_to_text_returns_each_caption_once() {
    let mut idx = index();
    let captions: Vec<String> = idx.captions().map(String::from).collect();
    assert_eq!(captions, ["a koala", "a grey koala", "an apple", "a koala"]);
    assert!(idx.top_captions(&[1.0, 0.0, 0.0], 2).is_err());
    let vecs = [
        unit(&[1.0, 0.0, 0.0]),
        unit(&[0.9, 0.1, 0.0]),
        unit(&[0.0, 1.0, 0.0]),
        unit(&[1.0, 0.0, 0.0]),
    ]
    .concat();
    idx.set_caption_vectors(vecs).unwrap();
    let hits = idx.top_captions(&[1.0, 0.0, 0.0], 3).unwrap();
    let found: Vec<_> = hits.iter().map(|h| h.caption.as_str()).collect();
    assert_eq!(found, ["a koala", "a grey koala", "an apple"]);
    assert_eq!(hits[0].id, "a");
    assert_eq!(hits[2].label, "food");
}

#[test]
fn inconsistent_galleries_and_queries_are_refused() {
    let gallery = Gallery {
        model_id: "m".into(),
        dim: 3,
        count: 2,
        scale: 127.0,
        items: vec![item("a", "x", &[]), item("b", "y", &[])],
    };
    assert!(SearchIndex::new(gallery.clone(), &[0u8; 5]).is_err());
    let ok = SearchIndex::new(gallery, &[0u8; 6]).unwrap();
    assert!(ok.top_k(&[1.0, 0.0], 1).is_err());
    assert!(ok.in_gallery("b") && !ok.in_gallery("c"));
}

/// The node flavour of the wasm build (`$EDGEML_WASM_PKG`, else `<target>/wasm-pkg/node`,
/// written by `scripts/build-wasm.sh`).
fn wasm_pkg() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let pkg = std::env::var_os("EDGEML_WASM_PKG")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.ancestors().nth(3).unwrap().join("wasm-pkg/node"));
    assert!(
        pkg.join("wasm_infer.js").exists(),
        "wasm build missing at {}: run scripts/build-wasm.sh (scripts/test.sh does)",
        pkg.display()
    );
    pkg
}

#[test]
fn wasm_search_answers_like_the_native_one() {
    let dir = std::env::temp_dir().join(format!("edgeml-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut idx = index();
    let (gallery, bin) = gallery();
    std::fs::write(
        dir.join("gallery.json"),
        serde_json::to_string(&gallery).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("gallery.bin"), bin).unwrap();
    let local = LocalImage {
        id: "mine".into(),
        label: "food".into(),
        caption: "my pear".into(),
        vector: unit(&[0.1, 1.0, 0.3]),
        thumb: Some("blob:thumb".into()),
    };
    idx.add_local(local.clone()).unwrap();
    let ids = ["a", "b", "c", "mine"];
    let cases = serde_json::json!({
        "k": 3,
        "ids": ids,
        "local": [{"id": local.id, "label": local.label, "caption": local.caption,
                   "vector": local.vector, "thumb": local.thumb}],
    });
    let cases_file = dir.join("cases.json");
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/wasm-search.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(wasm_pkg())
        .arg(&dir)
        .arg(&cases_file)
        .output()
        .expect("node must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let ready: FromWorker = serde_json::from_value(got["ready"].clone()).unwrap();
    assert_eq!(
        ready,
        FromWorker::RankReady {
            model_id: "rank-1".into(),
            count: 3,
            local: 1
        }
    );
    for (id, reply) in ids.iter().zip(got["similar"].as_array().unwrap()) {
        let Ok(FromWorker::SearchResult { query, results, .. }) =
            serde_json::from_value::<FromWorker>(reply.clone())
        else {
            panic!("not a search result: {reply}");
        };
        let (q, caption) = idx.query_of(id).unwrap();
        assert_eq!(query, format!("like: {caption}"));
        let native = idx.top_k(&q, 3).unwrap();
        assert_eq!(results.len(), native.len());
        for (w, n) in results.iter().zip(&native) {
            assert_eq!(
                (&w.id, &w.caption, w.local, &w.thumb),
                (&n.id, &n.caption, n.local, &n.thumb)
            );
            assert!(
                (w.score - n.score).abs() < 1e-6,
                "{id}: {} vs {}",
                w.score,
                n.score
            );
        }
    }
    let broken = got["broken"].as_str().unwrap();
    assert!(broken.contains("gallery size does not match"), "{broken}");
}
