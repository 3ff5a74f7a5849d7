//! The detection model: its targets decode back to the true boxes; a head trained on a few
//! bundled composites fits them, is scored from the detections it reports, and its exported
//! ONNX and NNEF heads (and the whole ONNX pair from the image) agree with candle — natively
//! and in the wasm32 build, whose session decodes the same boxes; `trainer eval` scores it as
//! browsers run it, on held-out composites and on the real photos boxed by hand.
//! Needs `scripts/fetch-assets.sh` and `scripts/build-wasm.sh` (the README's test command runs
//! both first).

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use contract::ModelFiles;
use contract::detection::{DecodeParams, HeadShape, decode, iou, mean_ap};
use trainer::backbone::{Backbone, MAP_SIDE, default_weights_path};
use trainer::dataset::{Dataset, Split};
use trainer::detect::fit::{DetectConfig, score, targets, truths};
use trainer::detect::pipeline::{Splits, preprocess, run, shown};
use trainer::detect::{BoxLabel, ComposeConfig, DetectItem, DetectSet, Rect, Stamp, compose_set};
use trainer::run::{DirStore, FeaturePass, FeatureStore, RunMeta, View, load_session};
use wasm_infer::Task;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets")
}

fn item(width: u32, height: u32, boxes: &[(usize, [f32; 4])]) -> DetectItem {
    DetectItem {
        source: format!("{width}x{height}"),
        sha256: "0".repeat(64),
        split: Split::Train,
        width,
        height,
        boxes: boxes
            .iter()
            .map(|&(label, [x, y, w, h])| BoxLabel {
                label,
                rect: Rect { x, y, w, h },
            })
            .collect(),
        bytes: Arc::from(Vec::new()),
    }
}

#[test]
fn targets_decode_back_to_the_true_boxes() {
    // Two images of other shapes than the grid's; boxes of two classes, overlapping ones,
    // one touching the border.
    let a = item(
        320,
        240,
        &[
            (0, [10.0, 20.0, 120.0, 90.0]),
            (1, [150.0, 100.0, 160.0, 130.0]),
            (1, [60.0, 80.0, 100.0, 100.0]),
        ],
    );
    let b = item(200, 400, &[(2, [0.0, 0.0, 90.0, 220.0])]);
    let items = [&a, &b];
    let side = MAP_SIDE;
    let t = targets(&items, 3, side).unwrap();
    // A perfect head: probability 1 exactly at centres, the target edges everywhere.
    let maps = Tensor::cat(&[&t.centres, &t.edges], 1).unwrap();
    let rows = maps.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    let shape = HeadShape { classes: 3, side };
    let mut found = Vec::new();
    for (k, (row, it)) in rows.iter().zip(items).enumerate() {
        found.extend(
            decode(
                row,
                shape,
                (it.width, it.height),
                k,
                &DecodeParams::evaluation(),
            )
            .unwrap(),
        );
    }
    let truth = truths(&items);
    assert_eq!(found.len(), truth.len(), "{found:?}");
    for t in &truth {
        let best = found
            .iter()
            .filter(|d| d.image == t.image && d.label == t.label)
            .map(|d| iou(&d.bbox, &t.bbox))
            .fold(0.0, f64::max);
        assert!(best > 0.9999, "{t:?}: best IoU {best}");
    }
    let m = mean_ap(&truth, &found, 3);
    assert!((m.map50_95 - 1.0).abs() < 1e-9, "{m:?}");
    // Each centre cell regresses its own box at full weight; cells away from every box
    // learn nothing.
    let w = t.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(w.iter().filter(|&&v| v == 1.0).count(), 4);
    assert_eq!(
        w[2 * side * side - 1],
        0.0,
        "the corner of image b is in no box"
    );
}

/// `count` composites of the bundled cut-outs of `split` on three bundled backgrounds.
fn composites(split: Split, count: usize, seed: u64) -> DetectSet {
    let photos = Dataset::import_folder(&assets().join("datasets/tuxpaint-photos")).unwrap();
    let stamps: Vec<Stamp> = photos
        .split(split)
        .take(60)
        .map(|s| Stamp {
            label: s.label,
            pixels: s.decode().unwrap(),
        })
        .collect();
    let backgrounds = trainer::detect::load_backgrounds(&assets().join("datasets/backgrounds"))
        .unwrap()
        .into_iter()
        .take(3)
        .collect::<Vec<_>>();
    let cfg = ComposeConfig {
        count,
        size: 224,
        seed,
        ..Default::default()
    };
    compose_set(&stamps, photos.labels, &backgrounds, split, &cfg).unwrap()
}

#[test]
fn a_detector_trains_exports_and_agrees_with_tract() {
    let train = composites(Split::Train, 48, 1);
    let val = composites(Split::Val, 12, 2);
    let test = composites(Split::Test, 12, 3);
    let labels = train.labels.clone();
    let (tr, va, te): (Vec<_>, Vec<_>, Vec<_>) = (
        train.items.iter().collect(),
        val.items.iter().collect(),
        test.items.iter().collect(),
    );
    let splits = Splits {
        train: &tr,
        val: &va,
        test: &te,
    };
    let backbone = Backbone::load(&default_weights_path()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = DirStore::new(tmp.path().join("cache"));
    let out = tmp.path().join("model");
    let config = DetectConfig {
        hidden: 32,
        epochs: 40,
        batch_size: 8,
        patience: 40,
        dropout: 0.0,
        ..Default::default()
    };
    let mut epochs = 0;
    let r = run(
        splits,
        &labels,
        &backbone,
        Some(&cache as &dyn FeatureStore),
        &config,
        &RunMeta::default(),
        &out,
        &mut |p| {
            if matches!(p, trainer::run::Progress::Batch { .. }) {
                epochs += 1;
            }
            true
        },
    )
    .unwrap();
    assert_eq!(epochs, 40);
    assert_eq!(r.report.history.len(), 40);

    // The folder: the shared backbone in both forms, the head in both forms, the documents.
    for f in ModelFiles::of(Task::Detect)
        .iter()
        .chain(&[ModelFiles::BACKBONE_ONNX, ModelFiles::BACKBONE_INT8])
    {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let m = &r.manifest;
    assert_eq!(m.task, Task::Detect);
    assert_eq!(m.preprocess, preprocess());
    let b = m.backbone.as_ref().unwrap();
    assert_eq!(b.output.name, "feature_map");
    assert_eq!(b.output.shape_string(), "[batch, 1280, 7, 7]");
    assert_eq!(
        m.output.shape_string(),
        format!("[batch, {}, 7, 7]", labels.len() + 4)
    );
    // Boxes are shown from the score that did best on the validation split.
    let shown_at = m.detection.unwrap().decode;
    assert_eq!(shown_at, shown(r.report.shown.min_score));
    assert!((0.05..=0.95).contains(&shown_at.min_score), "{shown_at:?}");
    assert!(r.report.shown.val_f1 > 0.0, "{:?}", r.report.shown);

    // The NNEF head keeps its two large weight tensors in 8 bits (the rest f32); candle
    // scored those very values, so the parity below holds for the NNEF head too.
    let nnef = std::fs::read(out.join(ModelFiles::DETECT_HEAD_NNEF)).unwrap();
    let mut q8 = Vec::new();
    for entry in tar::Archive::new(&nnef[..]).entries().unwrap() {
        let name = entry
            .unwrap()
            .path()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".q8") {
            q8.push(name);
        }
    }
    assert_eq!(q8.len(), 2, "{q8:?}");
    let onnx = std::fs::metadata(out.join(ModelFiles::DETECT_HEAD_ONNX))
        .unwrap()
        .len();
    assert!(
        (nnef.len() as u64) * 3 < onnx,
        "{} vs {onnx} bytes",
        nnef.len()
    );

    // candle = tract: the heads on the same maps, and the ONNX pair from the image.
    let p = r.report.parity;
    assert_eq!(p.images, 8);
    for d in [p.max_abs_diff, p.nnef_max_abs_diff, p.image_max_abs_diff] {
        assert!(d <= trainer::run::PARITY_TOLERANCE, "{p:?}");
    }

    // The figures are the detections the report lists, scored again.
    let again = mean_ap(&truths(&te), &r.report.detections, labels.len() as u32);
    assert_eq!(again.map50, r.report.test.map50);
    assert_eq!(again.map50_95, r.report.test.map50_95);
    assert_eq!(r.report.test.boxes, truths(&te).len());
    // The gate's evidence: the same mAP@0.5, recomputed from the matched detections, against
    // a whole-image baseline on the same test images.
    let e = r.report.evidence.as_ref().unwrap();
    assert_eq!(e.metric, "map50");
    assert_eq!(e.items.len(), te.len());
    assert!((e.score(&e.candidate) - r.report.test.map50).abs() < 1e-12);
    assert!(e.score(&e.baselines[0]) < r.report.test.map50);
    assert!(e.baselines[0].trivial);
    // The champion's path (the api scores a champion so): its ONNX head through tract on the
    // run's test maps, decoded alike, gives the same figure.
    let session = load_session(&out).unwrap();
    let shape = session.manifest().head_shape().unwrap();
    let champ = trainer::detect::evidence::champion_on_maps(&r.test_maps, &te, shape, |m| {
        Ok(session.run_features(m)?)
    })
    .unwrap();
    assert!(
        (e.score(&champ) - r.report.test.map50).abs() < 1e-3,
        "{} vs {}",
        e.score(&champ),
        r.report.test.map50
    );

    // It learnt: on the images it trained on, most boxes are found and placed (the maps come
    // back from the cache the run filled).
    let mut pass = FeaturePass::new(&backbone, Some(&cache), &preprocess(), tr.len());
    let maps = pass.features(&tr, View::WholeMap, &mut |_| true).unwrap();
    assert_eq!(pass.stats().hits, tr.len());
    let fitted = score(&r.head, &maps, &tr).unwrap();
    assert!(fitted.map50 > 0.5, "training mAP@0.5 {}", fitted.map50);

    // The folder loads as browsers load it (8-bit backbone, NNEF head) and gives maps that
    // decode, near candle's (the 8-bit weights move them a little).
    let session = load_session(&out).unwrap();
    let shape = m.head_shape().unwrap();
    let mut pass = FeaturePass::new(&backbone, Some(&cache), &preprocess(), 1);
    let first = pass
        .features(&te[..1], View::WholeMap, &mut |_| true)
        .unwrap();
    let candle = r.head.outputs(&first, 1).unwrap().remove(0);
    let input = trainer::run::inference_tensor(te[0], &m.preprocess).unwrap();
    let browser = session.run(&input).unwrap().remove(0);
    assert_eq!(browser.len(), shape.len());
    let d = trainer::run::max_abs_diff(&candle, &browser);
    assert!(d < 0.25, "8-bit backbone moved the maps by {d}");
    decode(&browser, shape, (te[0].width, te[0].height), 0, &shown_at).unwrap();

    wasm_agrees(&r.head, &backbone, &out, &te[..3]);

    // `trainer predict` on a detector prints the boxes the browser's session shows (on the
    // first test image where it shows some).
    let shown_on = |item: &DetectItem| {
        let img = trainer::dataset::decode_image(&item.bytes).unwrap();
        session
            .detect(&trainer::run::pixels(&img).unwrap())
            .unwrap()
    };
    let pick = te
        .iter()
        .copied()
        .find(|i| !shown_on(i).is_empty())
        .expect("the detector shows no box on any test image");
    let photo = tmp.path().join("photo.png");
    std::fs::write(&photo, &pick.bytes).unwrap();
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["predict", "--model"])
        .arg(&out)
        .arg(&photo)
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let line = String::from_utf8_lossy(&printed.stdout).into_owned();
    let fields: Vec<&str> = line.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 3, "{line}");
    let expected: Vec<String> = shown_on(pick)
        .iter()
        .map(|b| {
            let [x, y, w, h] = b.bbox;
            format!(
                "{} {:.3} [{x:.1}, {y:.1}, {w:.1}, {h:.1}]",
                b.label, b.score
            )
        })
        .collect();
    assert_eq!(fields[1], expected.join(", "), "{line}");

    // `trainer eval` on a detector: the held-out composites as a COCO folder, scored as
    // browsers run the model — the mAP of the tract session's outputs decoded for scoring.
    let held = tmp.path().join("held");
    test.write_coco(&held).unwrap();
    let (head_line, printed) = eval_printed(&out, &held);
    assert!(head_line.starts_with("12 images, "), "{head_line}");
    let mut found = Vec::new();
    for (image, item) in te.iter().enumerate() {
        let input = trainer::run::inference_tensor(*item, &m.preprocess).unwrap();
        let row = session.run(&input).unwrap().remove(0);
        let size = (item.width, item.height);
        found.extend(decode(&row, shape, size, image, &DecodeParams::evaluation()).unwrap());
    }
    let expected = mean_ap(&truths(&te), &found, labels.len() as u32);
    assert_eq!(
        printed,
        format!(
            "mAP@0.5 {:.4}  mAP@[.5:.95] {:.4}",
            expected.map50, expected.map50_95
        )
    );
    // And on the real photos boxed by hand (fixtures/real-photos, installed beside the photos
    // by fetch-assets): the committed boxes, every photo read.
    let real = assets().join("datasets/real-photos");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/real-photos/annotations.json");
    assert_eq!(
        std::fs::read(real.join("annotations.json")).unwrap(),
        std::fs::read(&fixture).unwrap(),
        "run scripts/fetch-assets.sh: the installed boxes are not the committed ones"
    );
    let set = DetectSet::import_coco(&real.join("annotations.json")).unwrap();
    assert_eq!((set.items.len(), set.truths().len()), (17, 34));
    let (head_line, printed) = eval_printed(&out, &real);
    assert!(
        head_line.starts_with("17 images, 34 true boxes"),
        "{head_line}"
    );
    assert!(printed.starts_with("mAP@0.5 "), "{printed}");
}

/// `trainer eval --model MODEL --data DATA`: its first line and its mAP line.
fn eval_printed(model: &Path, data: &Path) -> (String, String) {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["eval", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    let map = lines.next().unwrap_or_default().to_string();
    (first, map)
}

/// The wasm32 build on `items`: the same preprocessed tensor as native, maps within the
/// parity tolerance of candle's on the f32 backbone, and the boxes its session shows (decoded
/// in wasm) the ones native decoding of candle's maps shows.
fn wasm_agrees(
    head: &trainer::detect::model::DetectHead,
    backbone: &Backbone,
    dir: &Path,
    items: &[&DetectItem],
) {
    use tract_onnx::prelude::DatumExt;
    use wasm_infer::session::sha256_hex;
    let pkg = common::wasm_pkg();
    let manifest = load_session(dir).unwrap().manifest().clone();
    let cases_dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (k, item) in items.iter().enumerate() {
        let img = trainer::dataset::decode_image(&item.bytes).unwrap();
        let file = format!("{k}.rgba");
        std::fs::write(cases_dir.path().join(&file), img.as_raw()).unwrap();
        cases.push(serde_json::json!({"file": file, "width": img.width(), "height": img.height()}));
        let tensor = trainer::run::inference_tensor(*item, &manifest.preprocess).unwrap();
        let bytes: Vec<u8> = tensor.iter().flat_map(|v| v.to_le_bytes()).collect();
        let input =
            Tensor::from_slice(&tensor, (1, 3, 224, 224), &candle_core::Device::Cpu).unwrap();
        let maps = backbone.feature_map(&input).unwrap();
        let candle = head.outputs(&maps, 1).unwrap().remove(0);
        expected.push((sha256_hex(&bytes), candle));
    }
    std::fs::write(
        cases_dir.path().join("cases.json"),
        serde_json::to_vec(&cases).unwrap(),
    )
    .unwrap();
    // The same model on the backbone with f32 weights, as NNEF: a copy of the folder whose
    // manifest names that file as the shipped one.
    let f32_dir = cases_dir.path().join("f32");
    std::fs::create_dir(&f32_dir).unwrap();
    let onnx = std::fs::read(dir.join(ModelFiles::BACKBONE_ONNX)).unwrap();
    let f32_nnef = wasm_infer::nnef::export(&onnx, &[f32::fact([1, 3, 224, 224])], false).unwrap();
    let mut m = manifest.clone();
    let q = m.backbone.as_mut().unwrap().int8.as_mut().unwrap();
    (q.sha256, q.bytes) = (sha256_hex(&f32_nnef), f32_nnef.len() as u64);
    std::fs::write(f32_dir.join(ModelFiles::BACKBONE_INT8), &f32_nnef).unwrap();
    std::fs::write(f32_dir.join(ModelFiles::MANIFEST), m.to_json().unwrap()).unwrap();
    std::fs::copy(
        dir.join(ModelFiles::DETECT_HEAD_NNEF),
        f32_dir.join(ModelFiles::DETECT_HEAD_NNEF),
    )
    .unwrap();
    let got = common::node_json(
        "wasm-detect-parity.mjs",
        &[&pkg, dir, cases_dir.path(), &f32_dir],
    );
    let shape = manifest.head_shape().unwrap();
    let shown = manifest.detection.unwrap().decode;
    let results = got["results"].as_array().unwrap();
    assert_eq!(results.len(), items.len());
    for ((r, (sha, candle)), item) in results.iter().zip(&expected).zip(items) {
        assert_eq!(
            r["tensor_sha256"].as_str().unwrap(),
            sha,
            "wasm preprocessing differs"
        );
        let floats = |key: &str| -> Vec<f32> {
            r[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let wasm_f32 = floats("maps_f32");
        let d = trainer::run::max_abs_diff(candle, &wasm_f32);
        assert!(
            d <= trainer::run::PARITY_TOLERANCE,
            "candle vs wasm tract maps: {d}"
        );
        assert_eq!(floats("maps").len(), shape.len());
        // The boxes the wasm session shows are candle's maps decoded natively.
        let ours = decode(candle, shape, (item.width, item.height), 0, &shown).unwrap();
        let theirs = r["shown_f32"]["boxes"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ours:?} vs {theirs:?}");
        for (a, b) in ours.iter().zip(theirs) {
            assert_eq!(
                b["label"].as_str().unwrap(),
                manifest.labels[a.label as usize]
            );
            let bbox: Vec<f32> = b["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert!(
                iou(&a.bbox, &[bbox[0], bbox[1], bbox[2], bbox[3]]) > 0.999,
                "{a:?} vs {b}"
            );
        }
        assert!(r["shown"]["boxes"].is_array());
        // Every peak (down to COCO's 0.001) decodes to the same boxes from either side's maps.
        let size = (item.width, item.height);
        let every = DecodeParams::evaluation();
        let a = decode(candle, shape, size, 0, &every).unwrap();
        let b = decode(&wasm_f32, shape, size, 0, &every).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x.label == y.label && iou(&x.bbox, &y.bbox) > 0.999,
                "{x:?} vs {y:?}"
            );
        }
    }
}
