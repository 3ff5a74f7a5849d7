//! The shared contracts: manifest JSON round-trip and validation, preprocessing golden values.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

use wasm_infer::manifest::{FileDigest, GalleryFiles};
use wasm_infer::preprocess::image_to_tensor;
use wasm_infer::session::sha256_hex;
use wasm_infer::*;

fn fixture(path: &str) -> image::RgbaImage {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(path);
    image::open(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .to_rgba8()
}

fn manifest() -> ModelManifest {
    ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        model_id: "cls-test".into(),
        task: Task::Classify,
        onnx: OnnxFile {
            file: "head.onnx".into(),
            sha256: "ab".repeat(32),
            bytes: 10,
            opset: 13,
        },
        nnef: Some(FileDigest {
            file: "head.nnef".into(),
            sha256: "ac".repeat(32),
            bytes: 12,
        }),
        backbone: Some(BackboneRef {
            onnx: OnnxFile {
                file: "backbone.onnx".into(),
                sha256: "ef".repeat(32),
                bytes: 13_000_000,
                opset: 13,
            },
            output: TensorSpec {
                name: "features".into(),
                shape: vec![Dim::Symbol("batch".into()), Dim::Fixed(1280)],
            },
            int8: Some(FileDigest {
                file: "backbone.q8".into(),
                sha256: "e1".repeat(32),
                bytes: 3_400_000,
            }),
        }),
        input: TensorSpec {
            name: "image".into(),
            shape: vec![
                Dim::Symbol("batch".into()),
                Dim::Fixed(3),
                Dim::Fixed(224),
                Dim::Fixed(224),
            ],
        },
        output: TensorSpec {
            name: "probs".into(),
            shape: vec![Dim::Symbol("batch".into()), Dim::Fixed(2)],
        },
        preprocess: Preprocess::efficientnet_lite(),
        labels: vec!["cat".into(), "dog".into()],
        metrics: Some(EvalMetrics {
            n_test: 2,
            accuracy: 0.5,
            macro_f1: 0.5,
            majority_baseline: 0.5,
            per_class: vec![],
            confusion: vec![vec![1, 0], vec![1, 0]],
            estimate: None,
        }),
        dataset_snapshot: "cd".repeat(32),
        parent_model_id: Some("cls-parent".into()),
        created_at: "2026-11-25T19:00:00Z".into(),
        trainer_version: "0.1.0".into(),
        text: None,
        rank_metrics: None,
        product: None,
        product_metrics: None,
        detection: None,
        detection_metrics: None,
        gallery: None,
        backbone_sha256: None,
    }
}

/// A ranking manifest with a gallery (its digests are made up: only the manifest is checked).
fn rank_manifest() -> ModelManifest {
    let batched = |name: &str, n: usize| TensorSpec {
        name: name.into(),
        shape: vec![Dim::Symbol("batch".into()), Dim::Fixed(n)],
    };
    let digest = |file: &str, fill: &str| FileDigest {
        file: file.into(),
        sha256: fill.repeat(32),
        bytes: 10,
    };
    ModelManifest {
        model_id: "rank-test".into(),
        task: Task::Rank,
        onnx: OnnxFile {
            file: "image.onnx".into(),
            ..manifest().onnx
        },
        output: batched("embedding", 8),
        labels: vec![],
        metrics: None,
        text: Some(TextTower {
            onnx: OnnxFile {
                file: "text.onnx".into(),
                sha256: "ef".repeat(32),
                bytes: 10,
                opset: 13,
            },
            nnef: Some(digest("text.nnef", "0e")),
            ids: batched("ids", 4),
            mask: batched("mask", 4),
            output: batched("embedding", 8),
            tokenizer: TokenizerSpec {
                kind: tokenizer::KIND.into(),
                max_len: 4,
                vocab: vec!["<pad>".into(), "<unk>".into(), "koala".into()],
            },
        }),
        gallery: Some(GalleryFiles {
            index: digest("gallery.json", "01"),
            vectors: digest("gallery.bin", "02"),
        }),
        nnef: Some(digest("image_head.nnef", "0f")),
        ..manifest()
    }
}

#[test]
fn gallery_digests_round_trip_and_are_optional() {
    let m = rank_manifest();
    let back = ModelManifest::from_json(&m.to_json().unwrap()).unwrap();
    assert_eq!(back, m);
    // Manifests stored before galleries were hashed have no `gallery`: still valid.
    let mut json: serde_json::Value = serde_json::from_str(&m.to_json().unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("gallery");
    let old = ModelManifest::from_json(&json.to_string()).unwrap();
    assert_eq!(old.gallery, None);
    assert!(!old.to_json().unwrap().contains("gallery"));
}

#[test]
fn bad_file_digests_are_refused_with_a_reason() {
    type Mutation = Box<dyn Fn(&mut ModelManifest)>;
    let gallery = |m: &mut ModelManifest| m.gallery.as_mut().unwrap().clone();
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "text.onnx.sha256",
            Box::new(|m| m.text.as_mut().unwrap().onnx.sha256 = "12".into()),
        ),
        (
            "gallery.index.sha256",
            Box::new(move |m| {
                let mut g = gallery(m);
                g.index.sha256 = "g".repeat(64);
                m.gallery = Some(g);
            }),
        ),
        (
            r#"gallery.vectors.file "../model.onnx" must be "gallery.bin""#,
            Box::new(move |m| {
                let mut g = gallery(m);
                g.vectors.file = "../model.onnx".into();
                m.gallery = Some(g);
            }),
        ),
    ];
    for (expected, mutate) in cases {
        let mut m = rank_manifest();
        mutate(&mut m);
        let err = ModelManifest::from_json(&m.to_json().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    let classifier = ModelManifest {
        gallery: rank_manifest().gallery,
        ..manifest()
    };
    let err = classifier.validate().unwrap_err().to_string();
    assert!(err.contains("no search gallery"), "{err}");
}

#[test]
fn manifest_round_trips_through_json() {
    let m = manifest();
    let json = m.to_json().unwrap();
    assert!(json.contains(r#""task": "classify""#), "{json}");
    assert!(json.contains(r#""layout": "NCHW""#), "{json}");
    assert!(
        json.contains(r#""batch","#) || json.contains(r#""batch""#),
        "{json}"
    );
    let back = ModelManifest::from_json(&json).unwrap();
    assert_eq!(back, m);
    // Manifests written before heads were split have no `backbone`: their `onnx` is whole.
    let whole = ModelManifest {
        backbone: None,
        nnef: None,
        ..m
    };
    let json = whole.to_json().unwrap();
    assert!(!json.contains("backbone"), "{json}");
    assert_eq!(ModelManifest::from_json(&json).unwrap(), whole);
}

#[test]
fn inconsistent_manifests_are_refused_with_a_reason() {
    type Mutation = Box<dyn Fn(&mut ModelManifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("schema version 9", Box::new(|m| m.schema_version = 9)),
        (
            "must be [batch, 3] (one score per label)",
            Box::new(|m| m.labels.push("bird".into())),
        ),
        (
            "appears twice",
            Box::new(|m| m.labels = vec!["cat".into(), "cat".into()]),
        ),
        (
            "must be [batch, 3, 224, 224]",
            Box::new(|m| m.input.shape[2] = Dim::Fixed(192)),
        ),
        (
            "not 64 hex digits",
            Box::new(|m| m.onnx.sha256 = "xyz".into()),
        ),
        (
            "std must be positive",
            Box::new(|m| m.preprocess.std[1] = 0.0),
        ),
        (
            "backbone.onnx.sha256",
            Box::new(|m| m.backbone.as_mut().unwrap().onnx.sha256 = "12".into()),
        ),
        (
            r#"backbone.onnx.file "../x.onnx" must be "backbone.onnx""#,
            Box::new(|m| m.backbone.as_mut().unwrap().onnx.file = "../x.onnx".into()),
        ),
        (
            "must be named and [batch, dim]",
            Box::new(|m| {
                m.backbone
                    .as_mut()
                    .unwrap()
                    .output
                    .shape
                    .push(Dim::Fixed(7))
            }),
        ),
        (
            "the head and the backbone are the same file",
            Box::new(|m| m.onnx.file = "backbone.onnx".into()),
        ),
        (
            r#"backbone.int8.file "backbone.onnx" must be "backbone.q8""#,
            Box::new(|m| {
                m.backbone.as_mut().unwrap().int8.as_mut().unwrap().file = "backbone.onnx".into()
            }),
        ),
        (
            "backbone.int8.sha256",
            Box::new(|m| m.backbone.as_mut().unwrap().int8.as_mut().unwrap().sha256 = "x".into()),
        ),
        (
            r#"nnef.file "head.onnx" must be "head.nnef""#,
            Box::new(|m| m.nnef.as_mut().unwrap().file = "head.onnx".into()),
        ),
        (
            "nnef.sha256",
            Box::new(|m| m.nnef.as_mut().unwrap().sha256 = "AB".into()),
        ),
        (
            "nnef names a head, but the manifest has no separate backbone",
            Box::new(|m| m.backbone = None),
        ),
        (
            "the backbone has no NNEF file",
            Box::new(|m| m.backbone.as_mut().unwrap().int8 = None),
        ),
    ];
    for (expected, mutate) in cases {
        let mut m = manifest();
        mutate(&mut m);
        let err = ModelManifest::from_json(&m.to_json().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    let err = ModelManifest::from_json("{\"schema_version\": 1}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field"), "{err}");
}

/// Golden values for a real photo: any change to the preprocessing (filter, rounding, order
/// of operations, alpha handling) changes these, and with them every deployed model's inputs.
/// The wasm32 build is checked against the same values.
#[test]
fn preprocessing_golden_values() {
    let img = fixture("tuxpaint-mini/animals/echidna.png");
    let px = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw()).unwrap();
    let t = image_to_tensor(&px, &Preprocess::efficientnet_lite()).unwrap();
    assert_eq!(t.len(), 3 * 224 * 224);
    let bytes: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
    let probe = [
        t[0],
        t[224 * 112 + 112],
        t[224 * 224 + 5000],
        t[2 * 224 * 224 + 40000],
    ];
    println!(
        "golden: {} {:?} {}",
        sha256_hex(&bytes),
        probe,
        t.iter().sum::<f32>()
    );
    assert_eq!(probe, GOLDEN_PROBE);
    assert_eq!(sha256_hex(&bytes), GOLDEN_SHA256);
}

/// White background maps to exactly 1.0 under `(v - 127) / 128`.
pub const GOLDEN_PROBE: [f32; 4] = [1.0, -0.677843, -0.97740716, -0.99218744];
/// sha256 of the whole tensor's little-endian bytes.
pub const GOLDEN_SHA256: &str = "d39ca826d76ebe8730d96ba9b8a20734278702366e5ef6f97d53e1ad8f810f15";

fn product_manifest() -> ModelManifest {
    let len = 4;
    ModelManifest {
        model_id: "product-test".into(),
        task: Task::Product,
        onnx: OnnxFile {
            file: "product_head.onnx".into(),
            ..manifest().onnx
        },
        nnef: None,
        product: Some(ProductInputs {
            ids: batched("ids", len),
            mask: batched("mask", len),
            has_image: batched("has_image", 1),
            tokenizer: TokenizerSpec {
                kind: tokenizer::KIND.into(),
                max_len: len,
                vocab: vec!["<pad>".into(), "<unk>".into(), "bread".into()],
            },
        }),
        ..manifest()
    }
}

#[test]
fn product_manifests_need_their_inputs_and_a_backbone() {
    let m = product_manifest();
    m.validate().unwrap();
    assert_eq!(ModelManifest::from_json(&m.to_json().unwrap()).unwrap(), m);
    type Mutation = Box<dyn Fn(&mut ModelManifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("needs its head's inputs", Box::new(|m| m.product = None)),
        ("runs on a backbone", Box::new(|m| m.backbone = None)),
        (
            "expected [batch, 4]",
            Box::new(|m| {
                if let Some(p) = m.product.as_mut() {
                    p.mask = batched("mask", 5);
                }
            }),
        ),
        (
            "expected [batch, 1]",
            Box::new(|m| {
                if let Some(p) = m.product.as_mut() {
                    p.has_image = batched("has_image", 2);
                }
            }),
        ),
        (
            "three distinct names",
            Box::new(|m| {
                if let Some(p) = m.product.as_mut() {
                    p.has_image.name = "mask".into();
                }
            }),
        ),
        (
            "one score per label",
            Box::new(|m| m.labels.push("bird".into())),
        ),
        (
            "no ranking text tower",
            Box::new(|m| m.text = rank_manifest().text),
        ),
    ];
    for (expected, mutate) in cases {
        let mut m = product_manifest();
        mutate(&mut m);
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    // Product fields on another task's manifest are refused.
    let classifier = ModelManifest {
        product: product_manifest().product,
        ..manifest()
    };
    let err = classifier.validate().unwrap_err().to_string();
    assert!(err.contains("no product inputs"), "{err}");
}

/// `name [batch, n]`.
fn batched(name: &str, n: usize) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        shape: vec![Dim::Symbol("batch".into()), Dim::Fixed(n)],
    }
}

/// A detector's manifest: labels, the backbone's feature map in, maps out, the whole image.
fn detect_manifest() -> ModelManifest {
    let map = |name: &str, c: usize| TensorSpec {
        name: name.into(),
        shape: vec![
            Dim::Symbol("batch".into()),
            Dim::Fixed(c),
            Dim::Fixed(7),
            Dim::Fixed(7),
        ],
    };
    let base = manifest();
    let mut backbone = base.backbone.clone().unwrap();
    backbone.output = map("feature_map", 1280);
    ModelManifest {
        model_id: "detect-test".into(),
        task: Task::Detect,
        onnx: OnnxFile {
            file: "detect_head.onnx".into(),
            ..base.onnx.clone()
        },
        nnef: Some(FileDigest {
            file: "detect_head.nnef".into(),
            sha256: "ad".repeat(32),
            bytes: 12,
        }),
        backbone: Some(backbone),
        output: map("maps", 2 + 4),
        preprocess: Preprocess {
            fit: Fit::Stretch,
            crop_fraction: 1.0,
            ..Preprocess::efficientnet_lite()
        },
        metrics: None,
        detection: Some(contract::detection::DetectionSpec {
            side: 7,
            decode: contract::detection::DecodeParams {
                min_score: 0.3,
                nms_iou: 0.5,
                max_detections: 100,
            },
        }),
        detection_metrics: Some(contract::detection::DetectionMetrics {
            images: 3,
            boxes: 5,
            map50: 0.5,
            map50_95: 0.25,
            per_class_ap50: vec![Some(0.5), None],
        }),
        ..base
    }
}

#[test]
fn detection_manifests_need_a_map_in_and_maps_out() {
    let m = detect_manifest();
    m.validate().unwrap();
    assert_eq!(ModelManifest::from_json(&m.to_json().unwrap()).unwrap(), m);
    assert_eq!(
        m.head_shape(),
        Some(contract::detection::HeadShape {
            classes: 2,
            side: 7
        })
    );
    type Mutation = Box<dyn Fn(&mut ModelManifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("needs its output layout", Box::new(|m| m.detection = None)),
        (
            "must be [batch, 7, 7, 7]",
            Box::new(|m| m.labels.push("bird".into())),
        ),
        (
            "must be [batch, 6, 14, 14]",
            Box::new(|m| {
                if let Some(d) = m.detection.as_mut() {
                    d.side = 14;
                }
            }),
        ),
        (
            "[batch, channels, side, side]",
            Box::new(|m| m.backbone = manifest().backbone),
        ),
        (
            "must be \"stretch\"",
            Box::new(|m| m.preprocess = Preprocess::efficientnet_lite()),
        ),
        (
            "runs on a backbone's feature map",
            Box::new(|m| {
                m.backbone = None;
                m.nnef = None;
            }),
        ),
        (
            "min_score and nms_iou in [0, 1]",
            Box::new(|m| {
                if let Some(d) = m.detection.as_mut() {
                    d.decode.min_score = 1.5;
                }
            }),
        ),
        (
            "2 per-label figures for 3 labels",
            Box::new(|m| {
                m.labels.push("bird".into());
                m.output.shape[1] = Dim::Fixed(3 + 4);
            }),
        ),
        ("appears twice", Box::new(|m| m.labels[1] = "cat".into())),
    ];
    for (expected, mutate) in cases {
        let mut m = detect_manifest();
        mutate(&mut m);
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    // Detection fields on another task's manifest are refused; a classifier's backbone
    // output must stay the pooled features.
    let classifier = ModelManifest {
        detection: detect_manifest().detection,
        ..manifest()
    };
    let err = classifier.validate().unwrap_err().to_string();
    assert!(err.contains("no detection layout"), "{err}");
    let mut classifier = manifest();
    classifier.backbone = detect_manifest().backbone;
    let err = classifier.validate().unwrap_err().to_string();
    assert!(err.contains("[batch, dim]"), "{err}");
}

#[test]
fn stretching_keeps_the_whole_image() {
    // 8 × 2: the left quarter red, the rest blue. The centre crop (the middle 2 × 2) sees
    // only blue; stretched, the first quarter of every row is red.
    let mut data = Vec::new();
    for _ in 0..2 {
        for x in 0..8 {
            data.extend_from_slice(if x < 2 { &[255, 0, 0] } else { &[0, 0, 255] });
        }
    }
    let px = Pixels::new(8, 2, PixelFormat::Rgb8, &data).unwrap();
    let crop = Preprocess {
        size: 4,
        crop_fraction: 1.0,
        ..Preprocess::efficientnet_lite()
    };
    let stretch = Preprocess {
        fit: Fit::Stretch,
        ..crop.clone()
    };
    // Channel 0, row 0: red is 1.0 after normalisation, blue's red channel −0.99; the
    // triangle filter blends neighbours.
    let red = |t: &[f32], x: usize| t[x] > 0.5;
    let cropped = image_to_tensor(&px, &crop).unwrap();
    assert!((0..4).all(|x| !red(&cropped, x)), "{:?}", &cropped[..4]);
    let whole = image_to_tensor(&px, &stretch).unwrap();
    assert!(red(&whole, 0) && !red(&whole, 3), "{:?}", &whole[..4]);
    // The default is left out of the JSON, so manifests written before it read the same.
    let json = serde_json::to_string(&crop).unwrap();
    assert!(!json.contains("fit"), "{json}");
    assert!(
        serde_json::to_string(&stretch)
            .unwrap()
            .contains("\"fit\":\"stretch\"")
    );
}
