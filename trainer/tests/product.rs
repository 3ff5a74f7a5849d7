//! Product classification on the bundled Open Clip Art drawings (title + keywords + SVG
//! drawing per item): import errors leave nothing behind, and a small run on real items beats
//! the majority class by far in each modality, with candle = tract on the exported head.
//!
//! Needs `scripts/fetch-assets.sh` (the README's test command runs it first).

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use contract::ModelFiles;
use trainer::backbone::{Backbone, default_weights_path};
use trainer::product::{self, ProductConfig, ProductSet};
use trainer::run::{DirStore, FeatureStore, RunMeta};
use wasm_infer::{ModelManifest, ProductSession, Task};

fn assets() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets")
}

/// A folder with one real photo and one real drawing, and `file` written with `body`.
fn folder_with(file: &str, body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let photos = assets().join("datasets/tuxpaint-photos/animals");
    let photo = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    std::fs::copy(&photo, dir.path().join("img/photo.png")).unwrap();
    let svg = assets().join("datasets/openclipart/svg");
    std::fs::copy(
        svg.join("food/breads_and_carbs/bread_mateya_01.svg"),
        dir.path().join("img/bread.svg"),
    )
    .unwrap();
    // Draws only an embedded bitmap, which is not rendered: blank.
    std::fs::copy(
        svg.join("animals/birds/penguin/tux_didier_fabert_01.svg"),
        dir.path().join("img/blank.svg"),
    )
    .unwrap();
    std::fs::write(dir.path().join("img/not-an-image.png"), b"hello").unwrap();
    std::fs::write(dir.path().join(file), body).unwrap();
    dir
}

fn import_err(file: &str, body: &str) -> String {
    let dir = folder_with(file, body);
    ProductSet::import(&dir.path().join(file))
        .unwrap_err()
        .to_string()
}

#[test]
fn imports_jsonl_and_csv_with_svg_png_and_text_only_items() {
    let jsonl = concat!(
        r#"{"title": "Koala", "text": "grey, tree", "image": "img/photo.png", "category": "animals"}"#,
        "\n",
        r#"{"title": "Bread", "image": "img/bread.svg", "category": "food"}"#,
        "\n\n",
        r#"{"title": "Cheese sandwich", "category": "food"}"#,
        "\n",
        r#"{"title": "", "image": "img/bread.svg", "category": "food"}"#,
        "\n",
        r#"{"title": "Bread", "image": "img/bread.svg", "category": "food"}"#,
        "\n",
    );
    let dir = folder_with("items.jsonl", jsonl);
    let set = ProductSet::import(&dir.path().join("items.jsonl")).unwrap();
    assert_eq!(set.labels, ["animals", "food"]);
    assert_eq!(set.items.len(), 4, "the exact repeat of row 2 is skipped");
    assert_eq!(set.skipped.len(), 1);
    assert!(set.skipped[0].path.ends_with(":6"), "{:?}", set.skipped);
    let bread = &set.items[1];
    let drawing = bread.image.as_ref().unwrap();
    assert_eq!((drawing.width, drawing.height), (256, 256));
    assert_eq!(bread.label, 1);
    assert!(set.items[2].image.is_none());
    assert_eq!(set.items[0].words(), "Koala grey, tree");
    // The same drawing splits the same way whatever its title.
    assert_eq!(set.items[3].split, bread.split);

    let dir = folder_with(
        "items.jsonl",
        r#"{"title": "Tux", "image": "img/blank.svg", "category": "animals"}"#,
    );
    let set = ProductSet::import(&dir.path().join("items.jsonl")).unwrap();
    assert!(set.items[0].image.is_none(), "a blank drawing is no image");
    assert!(set.skipped[0].reason.contains("draws nothing"));
    let e = import_err(
        "items.jsonl",
        r#"{"title": "", "image": "img/blank.svg", "category": "animals"}"#,
    );
    assert!(
        e.contains("draws nothing") && e.contains("title is empty"),
        "{e}"
    );

    let csv = "title,category,image,text\nKoala,animals,img/photo.png,\"grey, tree\"\nBaguette,food,,long loaf\n";
    let dir = folder_with("items.csv", csv);
    let set = ProductSet::import(&dir.path().join("items.csv")).unwrap();
    assert_eq!(set.items.len(), 2);
    assert_eq!(set.items[0].text, "grey, tree");
    assert!(set.items[1].image.is_none());
}

#[test]
fn bad_rows_stop_the_import_with_their_line() {
    let e = import_err("items.csv", "name,category\nKoala,animals\n");
    assert!(e.contains("no `title` column"), "{e}");
    let e = import_err("items.csv", "title,text\nKoala,grey\n");
    assert!(e.contains("no `category` column"), "{e}");
    let e = import_err(
        "items.jsonl",
        "{\"title\": \"Koala\", \"category\": \"animals\"}\n{\"title\": \"Bus\", \"image\": \"img/bus.png\", \"category\": \"vehicles\"}\n",
    );
    assert!(
        e.contains("items.jsonl:2") && e.contains("img/bus.png"),
        "{e}"
    );
    let e = import_err(
        "items.jsonl",
        "{\"title\": \"  \", \"text\": \"a bread\", \"category\": \"food\"}\n",
    );
    assert!(
        e.contains(":1") && e.contains("title is empty and there is no image"),
        "{e}"
    );
    let e = import_err(
        "items.jsonl",
        "{\"title\": \"x\", \"image\": \"img/not-an-image.png\", \"category\": \"food\"}\n",
    );
    assert!(e.contains("not-an-image.png"), "{e}");
    let e = import_err(
        "items.jsonl",
        "{\"title\": \"x\", \"image\": \"../img/photo.png\", \"category\": \"food\"}\n",
    );
    assert!(e.contains("inside the file's folder"), "{e}");
    let e = import_err("items.jsonl", "{\"title\": \"x\"}\n");
    assert!(e.contains("no `category` column"), "{e}");
    let e = import_err("items.jsonl", "{\"title\": \"x\", \"category\": \"\"}\n");
    assert!(e.contains(":1"), "{e}");
    let e = import_err("items.txt", "x");
    assert!(e.contains(".jsonl or .csv"), "{e}");
}

#[test]
fn small_run_on_real_drawings_beats_the_majority_in_every_modality() {
    let items = assets().join("datasets/openclipart/items.jsonl");
    let weights = default_weights_path();
    assert!(
        items.exists() && weights.exists(),
        "bundled assets missing: run scripts/fetch-assets.sh"
    );
    let set = ProductSet::import(&items).unwrap().limit_per_label(30);
    assert_eq!(set.labels.len(), 11);
    let backbone = Backbone::load(&weights).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = DirStore::new(cache_dir.path());
    let config = ProductConfig {
        epochs: 40,
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("m");
    let meta = RunMeta {
        model_id: Some("product-test".into()),
        ..Default::default()
    };
    let run = product::run(
        &set,
        &backbone,
        Some(&cache as &dyn FeatureStore),
        &config,
        &meta,
        &dir,
        &mut |_| true,
    )
    .unwrap();
    let r = &run.report;
    let t = &r.test;
    eprintln!(
        "text {:.3} image {:.3} both {:.3} (weighted F1), majority {:.3}, {} scored",
        t.text.weighted_f1,
        t.image.weighted_f1,
        t.both.weighted_f1,
        t.majority_baseline,
        r.counts[3]
    );
    assert!(r.counts[3] >= 20, "{:?}", r.counts);
    // 11 categories: the majority class is right about one time in ten.
    assert!(t.majority_baseline < 0.2);
    assert!(t.text.weighted_f1 >= 0.5, "text only {:?}", t.text);
    assert!(t.image.weighted_f1 >= 0.3, "image only {:?}", t.image);
    assert!(t.both.weighted_f1 >= 0.5, "text + image {:?}", t.both);
    assert!(r.parity.items >= 20);
    assert!(r.parity.max_abs_diff <= 1e-4 && r.parity.nnef_max_abs_diff <= 1e-4);
    assert_eq!(r.splits.test.len(), r.counts[3]);
    // The gate's evidence: weighted F1 of title + image, and of each tower alone, recomputed
    // from the predicted labels, equal to the report's figures.
    let e = r.evidence.as_ref().unwrap();
    assert_eq!(e.metric, "weighted_f1");
    assert!((e.score(&e.candidate) - t.both.weighted_f1).abs() < 1e-12);
    assert!((e.score(&e.baselines[1]) - t.text.weighted_f1).abs() < 1e-12);
    assert!((e.score(&e.baselines[2]) - t.image.weighted_f1).abs() < 1e-12);

    // The folder is what a consumer loads: the manifest validates, its files match it, and
    // the browser's session (8-bit backbone, NNEF head) classifies a test drawing from its
    // pixels, its title, or both, as candle did on the f32 features.
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let manifest =
        ModelManifest::from_json(&String::from_utf8(read(ModelFiles::MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest, run.manifest);
    assert_eq!(manifest.task, Task::Product);
    assert_eq!(manifest.product_metrics.as_ref(), Some(&r.test));
    for name in ModelFiles::of(Task::Product) {
        assert_eq!(read(name), run.files.get(name).unwrap(), "{name}");
    }
    // The browser's head keeps its word table in 8 bits, and the model the run scored is
    // exactly what that entry decodes to.
    let nnef_head = read(ModelFiles::PRODUCT_HEAD_NNEF);
    let mut q8 = Vec::new();
    for entry in tar::Archive::new(&nnef_head[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".q8") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            q8.push(wasm_infer::quant::decode_tensor(&bytes).unwrap());
        }
    }
    assert_eq!(q8.len(), 1, "one 8-bit tensor: the word table");
    let words: Vec<f32> = run.model.words.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(q8[0].shape(), run.model.words.dims());
    let plain = q8[0].try_as_plain_ram().unwrap();
    assert_eq!(plain.as_slice::<f32>().unwrap(), &words[..]);
    assert!(nnef_head.len() * 2 < read(ModelFiles::PRODUCT_HEAD_ONNX).len());
    let backbone_q8 =
        wasm_infer::Backbone::new(&read(ModelFiles::BACKBONE_INT8), &manifest).unwrap();
    let session = ProductSession::from_nnef(
        std::sync::Arc::new(backbone_q8),
        &read(ModelFiles::PRODUCT_HEAD_NNEF),
        manifest.clone(),
    )
    .unwrap();
    let item = set
        .items
        .iter()
        .find(|i| r.splits.test.first() == Some(&i.source))
        .unwrap();
    let img = item.image.as_ref().unwrap().decode().unwrap();
    let pixels = trainer::run::pixels(&img).unwrap();
    let both = session.classify(Some(&pixels), &item.words(), 3).unwrap();
    let text = session.classify(None, &item.words(), 3).unwrap();
    let image = session.classify(Some(&pixels), "", 3).unwrap();
    assert_eq!(both.len(), 3);
    assert_eq!(
        both[0].label, r.splits.predicted[0][2],
        "browser vs candle, both"
    );
    assert_eq!(
        text[0].label, r.splits.predicted[0][0],
        "browser vs candle, text"
    );
    assert_ne!(both, image, "the title changes the scores");
    assert!(
        session.classify(None, " ?! ", 3).is_err(),
        "no words and no image"
    );

    // wasm tract (the node build of what browsers run) = candle on given features, and =
    // native tract on the same files from an encoded image decoded in wasm.
    let tokenizer =
        wasm_infer::Tokenizer::new(manifest.product.clone().unwrap().tokenizer).unwrap();
    let prep = wasm_infer::Preprocess::efficientnet_lite();
    let scored: Vec<&product::ProductItem> = r
        .splits
        .test
        .iter()
        .take(6)
        .map(|src| set.items.iter().find(|i| &i.source == src).unwrap())
        .collect();
    let mut given = Vec::new();
    let mut encoded = Vec::new();
    let mut candle = Vec::new();
    let files = tempfile::tempdir().unwrap();
    let mut file_cases = Vec::new();
    let mut native = Vec::new();
    for (n, item) in scored.iter().enumerate() {
        let sample = item.image.as_ref().unwrap();
        let x = trainer::run::inference_tensor(sample, &prep).unwrap();
        let x =
            candle_core::Tensor::from_vec(x, (1, 3, 224, 224), &candle_core::Device::Cpu).unwrap();
        let f: Vec<f32> = backbone
            .features(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let words = item.words();
        for (features, text) in [
            (Some(&f), words.as_str()),
            (None, words.as_str()),
            (Some(&f), ""),
        ] {
            let e = tokenizer.encode_optional(text);
            let b =
                product::ProductBatch::new(&[features.map(Vec::as_slice)], &[&e], f.len()).unwrap();
            candle.push(
                run.model
                    .probabilities(&b)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
            given.push(serde_json::json!({"features": features, "text": text}));
            encoded.push(e);
        }
        let img = sample.decode().unwrap();
        let path = files.path().join(format!("{n}.png"));
        img.save(&path).unwrap();
        let pixels = trainer::run::pixels(&img).unwrap();
        let nf = session.features(&pixels).unwrap();
        native.push((
            session.scores(Some(&nf), &words).unwrap(),
            session.scores(Some(&nf), "").unwrap(),
        ));
        file_cases.push(serde_json::json!({"image": path, "text": words}));
    }
    let cases = files.path().join("cases.json");
    std::fs::write(
        &cases,
        serde_json::to_vec(&serde_json::json!({"given": given, "files": file_cases})).unwrap(),
    )
    .unwrap();
    let pkg = common::wasm_pkg();
    let got = common::node_json("wasm-product-parity.mjs", &[&pkg, &dir, &cases]);
    let close = |a: &serde_json::Value, b: &[f32], what: &str| {
        let a: Vec<f32> = a
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(a.len(), b.len(), "{what}");
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-4, "{what}: wasm differs by {d:e}");
    };
    for (k, c) in candle.iter().enumerate() {
        close(&got["given"][k], c, &format!("wasm vs candle, case {k}"));
    }
    for (k, (both, image)) in native.iter().enumerate() {
        close(
            &got["files"][k]["both"],
            both,
            &format!("wasm vs native, file {k}, both"),
        );
        close(
            &got["files"][k]["image"],
            image,
            &format!("wasm vs native, file {k}, image"),
        );
        assert_eq!(got["files"][k]["top"].as_array().unwrap().len(), 3);
    }
    // wasm's `tokenize` reads a product manifest as the session does (no words: no text).
    for (k, e) in encoded.iter().enumerate() {
        let t = &got["tokens"][k];
        let ids: Vec<i64> = serde_json::from_value(t["ids"].clone()).unwrap();
        let mask: Vec<f32> = serde_json::from_value(t["mask"].clone()).unwrap();
        assert_eq!(
            (ids, mask),
            (e.ids.clone(), e.mask.clone()),
            "tokens of case {k}"
        );
    }
    assert!(encoded.iter().any(|e| e.mask.iter().all(|m| *m == 0.0)));
    assert!(
        got["nothing_error"]
            .as_str()
            .unwrap()
            .contains("nothing to classify"),
        "{}",
        got["nothing_error"]
    );

    // A second run reads every image's features from the cache and gives the same figures.
    let again = product::run(
        &set,
        &backbone,
        Some(&cache),
        &config,
        &meta,
        &out.path().join("m2"),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(again.report.feature_cache.computed, 0);
    assert_eq!(
        again.report.test, run.report.test,
        "same seed, same figures"
    );
}
