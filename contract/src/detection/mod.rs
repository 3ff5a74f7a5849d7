//! Detection boxes and their evaluation, defined once: intersection over union, class-wise
//! non-maximum suppression, the decoding of a detection head's maps into boxes ([`decode`]),
//! and COCO's average precision (what `pycocotools`' `COCOeval`
//! reports for boxes: all areas, at most 100 detections per image and category, 101 recall
//! points; mAP@0.5 is its `stats[1]`, mAP@[.5:.95] its `stats[0]`).

use serde::{Deserialize, Serialize};

pub mod decode;
pub mod manifest;

pub use decode::{DecodeParams, HeadShape, decode};
pub use manifest::{DetectionMetrics, DetectionSpec};

/// A box in pixels: left, top, width, height (COCO's `bbox`).
pub type Xywh = [f32; 4];

/// Intersection over union of two boxes (0 when neither has area).
pub fn iou(a: &Xywh, b: &Xywh) -> f64 {
    let [ax, ay, aw, ah] = a.map(f64::from);
    let [bx, by, bw, bh] = b.map(f64::from);
    let iw = ((ax + aw).min(bx + bw) - ax.max(bx)).max(0.0);
    let ih = ((ay + ah).min(by + bh) - ay.max(by)).max(0.0);
    let inter = iw * ih;
    let union = aw * ah + bw * bh - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A detector's answer on one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Index of the image in the evaluated set.
    pub image: usize,
    /// Class index.
    pub label: u32,
    /// Confidence.
    pub score: f32,
    /// Where.
    pub bbox: Xywh,
}

/// A box as clients show it: the label's name, the score, where (in the image's pixels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledBox {
    /// The label.
    pub label: String,
    /// Confidence, 0–1.
    pub score: f32,
    /// Left, top, width, height in pixels.
    pub bbox: Xywh,
}

/// A true box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Index of the image in the evaluated set.
    pub image: usize,
    /// Class index.
    pub label: u32,
    /// Where.
    pub bbox: Xywh,
}

/// Class-wise non-maximum suppression: the detections kept, best first. Within a class, a
/// detection is dropped when it overlaps a better-scored kept one by more than `threshold`
/// IoU; ties in score keep the input order.
pub fn nms(detections: &[Detection], threshold: f64) -> Vec<Detection> {
    let mut order: Vec<&Detection> = detections.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in order {
        let clash = kept
            .iter()
            .any(|k| k.image == d.image && k.label == d.label && iou(&k.bbox, &d.bbox) > threshold);
        if !clash {
            kept.push(*d);
        }
    }
    kept
}

/// COCO's ten IoU thresholds, 0.5 to 0.95 (as `numpy.linspace(.5, .95, 10)` gives them).
pub fn iou_thresholds() -> Vec<f64> {
    let step = (0.95 - 0.5) / 9.0;
    (0..10)
        .map(|i| {
            if i == 9 {
                0.95
            } else {
                f64::from(i) * step + 0.5
            }
        })
        .collect()
}

/// COCO's 101 recall points, 0 to 1 (as `numpy.linspace(0, 1, 101)` gives them).
fn recall_points() -> Vec<f64> {
    (0..=100)
        .map(|i| if i == 100 { 1.0 } else { f64::from(i) * 0.01 })
        .collect()
}

/// Most detections per image and class that count (COCO's `maxDets` 100).
pub const MAX_DETECTIONS: usize = 100;

/// Average precision per class at one IoU threshold, COCO's way: per image, a class's
/// detections (best first, at most [`MAX_DETECTIONS`]) each take the unmatched true box of
/// that class with the highest IoU ≥ `threshold` (a later box wins a tie); over all images,
/// precision is made non-increasing and read at the 101 recall points. `None` for a class
/// with no true box.
pub fn average_precision(
    truths: &[Truth],
    detections: &[Detection],
    classes: u32,
    threshold: f64,
) -> Vec<Option<f64>> {
    let images = truths
        .iter()
        .map(|t| t.image)
        .chain(detections.iter().map(|d| d.image))
        .max()
        .map_or(0, |m| m + 1);
    let points = recall_points();
    (0..classes)
        .map(|class| {
            let positives = truths.iter().filter(|t| t.label == class).count();
            if positives == 0 {
                return None;
            }
            // (score, matched) of every counted detection, image by image.
            let mut scored: Vec<(f32, bool)> = Vec::new();
            for image in 0..images {
                let gts: Vec<&Truth> = truths
                    .iter()
                    .filter(|t| t.image == image && t.label == class)
                    .collect();
                let mut dts: Vec<&Detection> = detections
                    .iter()
                    .filter(|d| d.image == image && d.label == class)
                    .collect();
                dts.sort_by(|a, b| b.score.total_cmp(&a.score));
                dts.truncate(MAX_DETECTIONS);
                let mut taken = vec![false; gts.len()];
                for d in dts {
                    let mut best = threshold.min(1.0 - 1e-10);
                    let mut matched = None;
                    for (g, t) in gts.iter().enumerate() {
                        if taken[g] {
                            continue;
                        }
                        let o = iou(&d.bbox, &t.bbox);
                        if o < best {
                            continue;
                        }
                        best = o;
                        matched = Some(g);
                    }
                    if let Some(g) = matched {
                        taken[g] = true;
                    }
                    scored.push((d.score, matched.is_some()));
                }
            }
            // All images' detections, best first (stable: image order within a score).
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let (mut tp, mut fp) = (0.0f64, 0.0f64);
            let mut recall = Vec::with_capacity(scored.len());
            let mut precision = Vec::with_capacity(scored.len());
            for &(_, hit) in &scored {
                if hit {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
                recall.push(tp / positives as f64);
                precision.push(tp / (fp + tp + f64::EPSILON));
            }
            for i in (1..precision.len()).rev() {
                if precision[i] > precision[i - 1] {
                    precision[i - 1] = precision[i];
                }
            }
            let sum: f64 = points
                .iter()
                .map(|&r| {
                    let at = recall.partition_point(|&x| x < r);
                    precision.get(at).copied().unwrap_or(0.0)
                })
                .sum();
            Some(sum / points.len() as f64)
        })
        .collect()
}

/// COCO box metrics of a detector on a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanAp {
    /// mAP@0.5: average precision at IoU 0.5, over the classes that have true boxes.
    pub map50: f64,
    /// mAP@[.5:.95]: the same averaged over the ten IoU thresholds 0.5, 0.55, …, 0.95.
    pub map50_95: f64,
    /// Per class: AP@0.5 (`None`: no true box of that class).
    pub per_class_ap50: Vec<Option<f64>>,
}

/// [`MeanAp`] of `detections` against `truths` over `classes` classes (0 when no class has a
/// true box).
pub fn mean_ap(truths: &[Truth], detections: &[Detection], classes: u32) -> MeanAp {
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let per_threshold: Vec<Vec<Option<f64>>> = iou_thresholds()
        .into_iter()
        .map(|t| average_precision(truths, detections, classes, t))
        .collect();
    let present = |aps: &[Option<f64>]| aps.iter().flatten().copied().collect::<Vec<f64>>();
    MeanAp {
        map50: mean(&present(&per_threshold[0])),
        map50_95: mean(
            &per_threshold
                .iter()
                .flat_map(|a| present(a))
                .collect::<Vec<_>>(),
        ),
        per_class_ap50: per_threshold[0].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(image: usize, label: u32, score: f32, bbox: Xywh) -> Detection {
        Detection {
            image,
            label,
            score,
            bbox,
        }
    }

    #[test]
    fn iou_by_hand() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        // Half overlapping: 50 / 150.
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 5.0, 5.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn nms_golden_cases() {
        let a = det(0, 0, 0.9, [0.0, 0.0, 10.0, 10.0]);
        let b = det(0, 0, 0.8, [1.0, 0.0, 10.0, 10.0]); // IoU 0.82 with a: dropped
        let c = det(0, 1, 0.7, [1.0, 0.0, 10.0, 10.0]); // another class: kept
        let d = det(1, 0, 0.6, [1.0, 0.0, 10.0, 10.0]); // another image: kept
        let e = det(0, 0, 0.5, [5.0, 0.0, 10.0, 10.0]); // IoU 1/3 with a: kept at 0.5
        let kept = nms(&[e, d, c, b, a], 0.5);
        assert_eq!(kept, vec![a, c, d, e]);
        // A stricter threshold drops e too.
        assert_eq!(nms(&[a, e], 0.3), vec![a]);
        assert!(nms(&[], 0.5).is_empty());
    }

    #[test]
    fn perfect_and_empty_detectors() {
        let truths = [
            Truth {
                image: 0,
                label: 0,
                bbox: [0.0, 0.0, 10.0, 10.0],
            },
            Truth {
                image: 1,
                label: 1,
                bbox: [5.0, 5.0, 20.0, 10.0],
            },
        ];
        let perfect: Vec<Detection> = truths
            .iter()
            .map(|t| det(t.image, t.label, 1.0, t.bbox))
            .collect();
        let m = mean_ap(&truths, &perfect, 3);
        // 1 / (1 + ε): COCO adds machine epsilon to every precision's denominator.
        assert!((m.map50 - 1.0).abs() < 1e-12 && (m.map50_95 - 1.0).abs() < 1e-12);
        assert!(
            m.per_class_ap50[..2]
                .iter()
                .all(|a| (a.unwrap() - 1.0).abs() < 1e-12)
        );
        assert_eq!(m.per_class_ap50[2], None);
        let none = mean_ap(&truths, &[], 3);
        assert_eq!((none.map50, none.map50_95), (0.0, 0.0));
        // A box shifted to IoU 1/3 counts at no threshold.
        let off = [det(0, 0, 1.0, [5.0, 0.0, 10.0, 10.0]), perfect[1]];
        let m = mean_ap(&truths, &off, 2);
        assert_eq!(m.per_class_ap50[0], Some(0.0));
        assert_eq!(iou_thresholds().len(), 10);
        assert_eq!(iou_thresholds()[0], 0.5);
        assert_eq!(iou_thresholds()[9], 0.95);
    }
}
