//! Detection boxes and their evaluation, defined once: intersection over union, class-wise
//! non-maximum suppression, the decoding of a detection head's maps into boxes ([`decode`]),
//! and COCO's average precision (what `pycocotools`' `COCOeval`
//! reports for boxes: all areas, at most 100 detections per image and category, 101 recall
//! points; mAP@0.5 is its `stats[1]`, mAP@[.5:.95] its `stats[0]`).

use serde::{Deserialize, Serialize};

mod ap;
pub mod decode;
pub mod manifest;

pub use ap::{
    ApTable, Hit, MAX_DETECTIONS, MeanAp, average_precision, iou_thresholds, matches, mean_ap,
    truth_labels,
};

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

/// Why `bbox` cannot be a box of a `width × height` image (`None` when it can): finite, a
/// positive area, inside the image. Every box stored or trained on passes this check.
pub fn box_problem(bbox: &Xywh, width: u32, height: u32) -> Option<String> {
    let [x, y, w, h] = *bbox;
    if bbox.iter().any(|c| !c.is_finite()) {
        return Some(format!("box {bbox:?} is not finite"));
    }
    if w <= 0.0 || h <= 0.0 {
        return Some(format!("box {bbox:?} has no area"));
    }
    if x < 0.0 || y < 0.0 || x + w > width as f32 || y + h > height as f32 {
        return Some(format!("box {bbox:?} leaves the {width}×{height} image"));
    }
    None
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabelledBox {
    /// The label.
    pub label: String,
    /// Confidence, 0–1.
    pub score: f32,
    /// Left, top, width, height in pixels.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f32>, min_items = 4, max_items = 4))]
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
