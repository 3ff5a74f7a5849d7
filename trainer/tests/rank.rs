//! Image-text ranking end to end on the bundled real captioned photos (Tux Paint stamps: one
//! short caption per photo): train the dual encoder, evaluate against chance and the
//! bag-of-words baseline, export both encoders, check candle against tract, and load the
//! folder the way a consumer would.
//!
//! Needs `scripts/fetch-assets.sh` (the README's test command runs it first).

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use trainer::backbone::{Backbone, default_classes_path, default_weights_path, imagenet_classes};
use trainer::dataset::Dataset;
use trainer::rank::{self, RankConfig};
use trainer::run::{Progress, RunMeta};
use wasm_infer::session::sha256_hex;
use wasm_infer::{ModelManifest, PixelFormat, Pixels, Session, Task, TextEncoder};

#[test]
fn dual_encoder_on_captioned_photos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
    let data = root.join("datasets/tuxpaint-photos");
    let weights = default_weights_path();
    assert!(
        data.exists() && weights.exists(),
        "bundled assets missing: run scripts/fetch-assets.sh"
    );
    let dataset = Dataset::import_folder(&data).unwrap();
    let captioned = dataset
        .samples
        .iter()
        .filter(|s| !s.captions.is_empty())
        .count();
    assert!(captioned >= 250, "captions imported for {captioned} photos");
    let backbone = Backbone::load(&weights).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("rank-model");
    let mut epochs = 0;
    let classes = imagenet_classes(&default_classes_path()).unwrap();
    let trained = rank::run(
        &dataset,
        &backbone,
        None,
        &classes,
        &RankConfig::default(),
        &RunMeta {
            model_id: Some("rank-test".into()),
            parent_model_id: None,
            ..Default::default()
        },
        &dir,
        &mut |p| {
            if matches!(p, Progress::Batch { .. }) {
                epochs += 1;
            }
            true
        },
    )
    .unwrap();
    let report = &trained.report;
    assert_eq!(epochs, report.history.len());
    let m = report.manifest.rank_metrics.clone().unwrap();
    println!(
        "ranking, test split ({} images, {} captions): caption→image R@1 {:.3} R@5 {:.3} R@10 {:.3} median rank {}; \
         image→caption R@1 {:.3} R@5 {:.3} R@10 {:.3}; untrained (class names only) R@10 {:.3}; bag-of-words R@10 {:.3} (median rank {}); chance R@10 {:.3}; \
         best epoch {} of {}; parity image {:e} text {:e}",
        m.n_images,
        m.n_texts,
        m.text_to_image.r1,
        m.text_to_image.r5,
        m.text_to_image.r10,
        m.text_to_image.median_rank,
        m.image_to_text.r1,
        m.image_to_text.r5,
        m.image_to_text.r10,
        report.zero_shot_text_to_image.r10,
        m.bow_text_to_image.r10,
        m.bow_text_to_image.median_rank,
        m.random_text_to_image.r10,
        report.best_epoch,
        report.history.len(),
        report.parity.image_max_abs_diff,
        report.parity.text_max_abs_diff,
    );
    // Clearly better than both baselines on images it never saw.
    assert!(
        m.text_to_image.r10 >= m.bow_text_to_image.r10 + 0.1,
        "ranking R@10 {} vs bag-of-words {}",
        m.text_to_image.r10,
        m.bow_text_to_image.r10
    );
    assert!(m.text_to_image.r10 >= m.random_text_to_image.r10 + 0.2);
    assert!(m.text_to_image.median_rank < m.random_text_to_image.median_rank / 2.0);
    assert!(report.parity.image_max_abs_diff <= rank::PARITY_TOLERANCE);
    assert!(report.parity.text_max_abs_diff <= rank::PARITY_TOLERANCE);

    // The folder as a consumer loads it: manifest, both encoders verified by hash.
    let manifest =
        ModelManifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.task, Task::Rank);
    let image = std::fs::read(dir.join(rank::IMAGE_FILE)).unwrap();
    let text = std::fs::read(dir.join(rank::TEXT_FILE)).unwrap();
    let session = trainer::run::load_session(&dir).unwrap();
    // The image tower runs on the same shared backbone file as the classifier.
    assert_eq!(
        manifest.backbone.as_ref().map(|b| b.onnx.sha256.clone()),
        Some(wasm_infer::session::sha256_hex(
            &trainer::export::export_backbone(&backbone)
        ))
    );
    let encoder = TextEncoder::new(&text, &manifest).unwrap();
    assert!(
        TextEncoder::new(&image, &manifest).is_err(),
        "wrong file refused"
    );
    // A photo and its own caption are closer than the photo and a caption of another class.
    let sample = dataset
        .samples
        .iter()
        .find(|s| s.source.contains("/animals/") && !s.captions.is_empty())
        .unwrap();
    let img = sample.decode().unwrap();
    let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
    let e = session.embed(&pixels).unwrap();
    let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit image embedding: {norm}");
    let own = encoder.embed(&sample.captions[0]).unwrap();
    let norm: f32 = own.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit text embedding: {norm}");
    assert_eq!(own.len(), e.len());
    wasm_agrees_with_native(&dir, &dataset, &manifest, &session, &encoder);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        metrics["history"].as_array().unwrap().len(),
        report.history.len()
    );

    // The run hands back exactly the files it wrote, the gallery among them: every image of
    // the dataset (captioned or not), listed in the manifest with both files' digests.
    let files = trained.files.clone();
    for (name, bytes) in files.files() {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    let index = std::fs::read(dir.join(rank::GALLERY_JSON)).unwrap();
    let gallery: contract::gallery::Gallery = serde_json::from_slice(&index).unwrap();
    assert_eq!(gallery.count, dataset.samples.len());
    assert_eq!(gallery.model_id, manifest.model_id);
    let vectors = std::fs::read(dir.join(rank::GALLERY_BIN)).unwrap();
    assert_eq!(vectors.len(), gallery.count * gallery.dim);
    let listed = manifest.gallery.clone().unwrap();
    for (digest, name) in [
        (&listed.index, rank::GALLERY_JSON),
        (&listed.vectors, rank::GALLERY_BIN),
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(digest.file, name);
        assert_eq!(digest.bytes, bytes.len() as u64);
        assert_eq!(digest.sha256, sha256_hex(&bytes), "{name}");
    }
    // Each vector is the exported encoder's embedding of its image (tract, on the f32
    // backbone), to the quantisation step, and points where the browser's embedding (8-bit
    // backbone) points: checked on images with and without captions.
    let full = trainer::run::ShippedBackbone::of(&backbone)
        .unwrap()
        .session(&image, &manifest)
        .unwrap();
    let uncaptioned = dataset.samples.iter().position(|s| s.captions.is_empty());
    for row in [0, dataset.samples.len() / 2, dataset.samples.len() - 1]
        .into_iter()
        .chain(uncaptioned)
    {
        let s = &dataset.samples[row];
        let img = s.decode().unwrap();
        let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
        let want = full.embed(&px).unwrap();
        let shipped = session.embed(&px).unwrap();
        let cos: f32 = want.iter().zip(&shipped).map(|(a, b)| a * b).sum();
        assert!(cos > 0.99, "{}: 8-bit backbone cosine {cos}", s.source);
        let got = &vectors[row * gallery.dim..(row + 1) * gallery.dim];
        for (q, w) in got.iter().zip(&want) {
            let v = f32::from(*q as i8) / gallery.scale;
            assert!(
                (v - w).abs() <= 0.5 / gallery.scale + 1e-4,
                "{}: {v} vs {w}",
                s.source
            );
        }
    }
}

/// The wasm32 build (run by node) tokenizes like native Rust (golden strings: case, punctuation,
/// plurals, unicode, unknown words, truncation, empty) and embeds texts and encoded images like
/// native tract (≤ 1e-4). Needs `scripts/build-wasm.sh`.
fn wasm_agrees_with_native(
    dir: &Path,
    dataset: &Dataset,
    manifest: &ModelManifest,
    session: &Session,
    encoder: &TextEncoder,
) {
    let pkg = common::wasm_pkg();
    let mut texts: Vec<String> = [
        "A koala.",
        "Two KOALAS, eating leaves!",
        "a red double-decker bus",
        "Ünïcode wörds and 3 cats",
        "",
        "?!",
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
    ]
    .map(String::from)
    .to_vec();
    let images: Vec<_> = dataset
        .samples
        .iter()
        .filter(|s| !s.captions.is_empty())
        .take(6)
        .collect();
    texts.extend(images.iter().map(|s| s.captions[0].clone()));
    let cases = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cases.path(),
        serde_json::to_vec(&serde_json::json!({
            "texts": texts,
            "images": images.iter().map(|s| s.source.clone()).collect::<Vec<_>>(),
        }))
        .unwrap(),
    )
    .unwrap();
    let got = common::node_json("wasm-rank-parity.mjs", &[&pkg, dir, cases.path()]);
    let tok = wasm_infer::Tokenizer::new(manifest.text.clone().unwrap().tokenizer).unwrap();
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
        assert!(d <= 1e-4, "{what}: wasm vs native differ by {d:e}");
    };
    for (i, t) in texts.iter().enumerate() {
        let native = tok.encode(t);
        let ids: Vec<i64> = got["tokens"][i]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(ids, native.ids, "tokens of {t:?}");
        close(
            &got["tokens"][i]["mask"],
            &native.mask,
            &format!("mask of {t:?}"),
        );
        close(
            &got["text_embeddings"][i],
            &encoder.embed(t).unwrap(),
            &format!("embedding of {t:?}"),
        );
    }
    for (i, s) in images.iter().enumerate() {
        let img = s.decode().unwrap();
        let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
        close(
            &got["image_embeddings"][i],
            &session.embed(&px).unwrap(),
            &s.source,
        );
    }
    let wrong = got["wrong_file_error"].as_str().unwrap_or_default();
    assert!(
        wrong.contains("sha256") || wrong.contains("bytes"),
        "{wrong}"
    );
}
