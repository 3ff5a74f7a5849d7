//! COCO box mAP (`contract::detection::mean_ap`) against `pycocotools`' `COCOeval` on the same
//! random cases, within 1e-6. pycocotools comes from PyPI: `scripts/test-services.sh`
//! installs it with SciPy and exports `EDGEML_TEST_SCIPY_PYTHON`; without it the test uses
//! `python3`, and fails (not skips) when that has no pycocotools.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use contract::detection::{Detection, Truth, mean_ap};
use contract::evidence::SplitMix64;

/// A random case: `images` images, `classes` classes (the last one never true, only
/// detected), true boxes with jittered, missed, duplicated and false detections, scores on a
/// 1/64 grid (exact in f32 and f64, with ties), and one image flooded with 130 detections of
/// one class (beyond COCO's 100 per image and class).
fn case(seed: u64, images: usize, classes: u32) -> (Vec<Truth>, Vec<Detection>) {
    let mut rng = SplitMix64::new(seed);
    let mut int = |n: usize| rng.below(n) as f32;
    let mut truths = Vec::new();
    let mut detections = Vec::new();
    let score = |k: f32| k / 64.0;
    for image in 0..images {
        for _ in 0..(int(5) as usize) {
            let label = int(classes as usize - 1) as u32;
            let (x, y, w, h) = (int(700), int(700), 20.0 + int(180), 20.0 + int(180));
            truths.push(Truth {
                image,
                label,
                bbox: [x, y, w, h],
            });
            if int(10) < 7.0 {
                let j = int(9) - 4.0;
                let k = int(13) - 6.0;
                detections.push(Detection {
                    image,
                    label,
                    score: score(1.0 + int(63)),
                    bbox: [x + j, y - k, (w + k * 2.0).max(1.0), (h + j * 3.0).max(1.0)],
                });
            }
            if int(10) < 2.0 {
                detections.push(Detection {
                    image,
                    label,
                    score: score(1.0 + int(63)),
                    bbox: [x + int(30), y, w, h],
                });
            }
        }
        for _ in 0..(int(3) as usize) {
            detections.push(Detection {
                image,
                label: int(classes as usize) as u32,
                score: score(1.0 + int(63)),
                bbox: [int(800), int(800), 10.0 + int(150), 10.0 + int(150)],
            });
        }
    }
    for i in 0..130 {
        detections.push(Detection {
            image: 0,
            label: 0,
            score: score(1.0 + (i % 63) as f32),
            bbox: [int(900), int(900), 5.0 + int(90), 5.0 + int(90)],
        });
    }
    (truths, detections)
}

fn pycocotools(images: usize, classes: u32, truths: &[Truth], dets: &[Detection]) -> (f64, f64) {
    let doc = serde_json::json!({
        "images": images,
        "classes": classes,
        "truths": truths.iter().map(|t| {
            let [x, y, w, h] = t.bbox;
            serde_json::json!([t.image, t.label, x, y, w, h])
        }).collect::<Vec<_>>(),
        "detections": dets.iter().map(|d| {
            let [x, y, w, h] = d.bbox;
            serde_json::json!([d.image, d.label, d.score, x, y, w, h])
        }).collect::<Vec<_>>(),
    });
    let text = common::reference_python("coco_reference.py", &doc.to_string(), "pycocotools");
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1])
}

#[test]
fn mean_ap_matches_pycocotools() {
    for (seed, images, classes) in [(1, 25, 4), (2, 40, 3), (3, 10, 6), (4, 60, 2)] {
        let (truths, dets) = case(seed, images, classes);
        let ours = mean_ap(&truths, &dets, classes);
        let (map50, map50_95) = pycocotools(images, classes, &truths, &dets);
        assert!(
            (ours.map50 - map50).abs() <= 1e-6 && (ours.map50_95 - map50_95).abs() <= 1e-6,
            "seed {seed}: ours {} / {}, pycocotools {map50} / {map50_95}",
            ours.map50,
            ours.map50_95
        );
        assert!(
            ours.map50 > 0.05 && ours.map50 < 0.99,
            "seed {seed}: {}",
            ours.map50
        );
        assert!(ours.map50_95 < ours.map50, "seed {seed}");
        assert_eq!(ours.per_class_ap50[classes as usize - 1], None);
    }
}
