//! COCO's average precision, in two steps: [`matches`] pairs detections with true boxes image
//! by image (the only step that looks at boxes), then an [`ApTable`] reads precision at the
//! 101 recall points from the matched detections. The second step takes a weight per image,
//! so the gate's bootstrap recomputes mAP@0.5 on a resample of the images (an image drawn
//! twice weighs 2) without matching again ([`crate::evidence::Statistic::Map50`]).

use serde::{Deserialize, Serialize};

use super::{Detection, Truth, iou};

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

/// A detection as COCO's matching counted it, written as `[image, label, score, hit]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit(
    /// The image's index in the evaluated set.
    pub u32,
    /// Its class.
    pub u32,
    /// Its score.
    pub f32,
    /// Whether it took a true box.
    pub bool,
);

/// The labels of each image's true boxes (`images` images; a truth beyond them is dropped).
pub fn truth_labels(truths: &[Truth], images: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); images];
    for t in truths {
        if let Some(v) = out.get_mut(t.image) {
            v.push(t.label);
        }
    }
    out
}

/// The number of images `truths` and `detections` refer to (the highest index + 1).
fn images_of(truths: &[Truth], detections: &[Detection]) -> usize {
    truths
        .iter()
        .map(|t| t.image)
        .chain(detections.iter().map(|d| d.image))
        .max()
        .map_or(0, |m| m + 1)
}

/// COCO's matching at one IoU threshold: per image and class, the detections best first (at
/// most [`MAX_DETECTIONS`]) each take the unmatched true box of that class with the highest
/// IoU ≥ `threshold` (a later box wins a tie). Every counted detection of classes below
/// `classes`, class by class, image by image.
pub fn matches(
    truths: &[Truth],
    detections: &[Detection],
    classes: u32,
    threshold: f64,
) -> Vec<Hit> {
    let images = images_of(truths, detections);
    let mut gts: Vec<Vec<&Truth>> = vec![Vec::new(); images];
    for t in truths {
        gts[t.image].push(t);
    }
    let mut dts: Vec<Vec<&Detection>> = vec![Vec::new(); images];
    for d in detections {
        dts[d.image].push(d);
    }
    let mut out = Vec::new();
    for class in 0..classes {
        for image in 0..images {
            let gts: Vec<&Truth> = gts[image]
                .iter()
                .copied()
                .filter(|t| t.label == class)
                .collect();
            let mut dts: Vec<&Detection> = dts[image]
                .iter()
                .copied()
                .filter(|d| d.label == class)
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
                out.push(Hit(image as u32, class, d.score, matched.is_some()));
            }
        }
    }
    out
}

/// Matched detections ready to be read as average precision, over images that may weigh
/// differently (a bootstrap resample).
#[derive(Debug, Clone)]
pub struct ApTable {
    /// Per class: (image, hit) of its counted detections, best first (stable: image order
    /// within a score).
    ranked: Vec<Vec<(usize, bool)>>,
    /// Per class: (image, true boxes of the class in it).
    positives: Vec<Vec<(usize, u32)>>,
    images: usize,
}

impl ApTable {
    /// From the labels of each image's true boxes and the matched detections (a detection of
    /// an image or class out of range is dropped).
    pub fn new(truth_labels: &[Vec<u32>], hits: &[Hit], classes: u32) -> Self {
        let n = classes as usize;
        let mut positives = vec![Vec::new(); n];
        for (image, labels) in truth_labels.iter().enumerate() {
            for (class, per) in positives.iter_mut().enumerate() {
                let k = labels.iter().filter(|&&l| l as usize == class).count() as u32;
                if k > 0 {
                    per.push((image, k));
                }
            }
        }
        let mut scored: Vec<Vec<(usize, f32, bool)>> = vec![Vec::new(); n];
        for &Hit(image, class, score, hit) in hits {
            let image = image as usize;
            if image < truth_labels.len()
                && let Some(v) = scored.get_mut(class as usize)
            {
                v.push((image, score, hit));
            }
        }
        let ranked = scored
            .into_iter()
            .map(|mut v| {
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                v.into_iter().map(|(i, _, h)| (i, h)).collect()
            })
            .collect();
        ApTable {
            ranked,
            positives,
            images: truth_labels.len(),
        }
    }

    /// The number of images.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Average precision per class with image `i` weighing `weights[i]` (as if it occurred
    /// that many times; missing weights are 0): precision made non-increasing and read at the
    /// 101 recall points. `None` for a class with no (weighted) true box.
    pub fn per_class(&self, weights: &[f64]) -> Vec<Option<f64>> {
        let w = |i: usize| weights.get(i).copied().unwrap_or(0.0);
        let points = recall_points();
        self.ranked
            .iter()
            .zip(&self.positives)
            .map(|(ranked, positives)| {
                let positives: f64 = positives.iter().map(|&(i, k)| w(i) * f64::from(k)).sum();
                if positives <= 0.0 {
                    return None;
                }
                let (mut tp, mut fp) = (0.0f64, 0.0f64);
                let mut recall = Vec::with_capacity(ranked.len());
                let mut precision = Vec::with_capacity(ranked.len());
                for &(image, hit) in ranked {
                    let weight = w(image);
                    if weight <= 0.0 {
                        continue;
                    }
                    if hit {
                        tp += weight;
                    } else {
                        fp += weight;
                    }
                    recall.push(tp / positives);
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

    /// The mean of [`ApTable::per_class`] over the classes with true boxes (0 when none has).
    pub fn mean(&self, weights: &[f64]) -> f64 {
        mean(
            &self
                .per_class(weights)
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )
    }

    /// Every image once.
    pub fn unweighted(&self) -> f64 {
        self.mean(&vec![1.0; self.images])
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Average precision per class at one IoU threshold, COCO's way ([`matches`], then
/// [`ApTable::per_class`] with every image once). `None` for a class with no true box.
pub fn average_precision(
    truths: &[Truth],
    detections: &[Detection],
    classes: u32,
    threshold: f64,
) -> Vec<Option<f64>> {
    let images = images_of(truths, detections);
    ApTable::new(
        &truth_labels(truths, images),
        &matches(truths, detections, classes, threshold),
        classes,
    )
    .per_class(&vec![1.0; images])
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

    fn det(image: usize, label: u32, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            image,
            label,
            score,
            bbox,
        }
    }

    fn truth(image: usize, label: u32, bbox: [f32; 4]) -> Truth {
        Truth { image, label, bbox }
    }

    #[test]
    fn matching_takes_the_best_free_box_per_image_and_class() {
        let truths = [
            truth(0, 0, [0.0, 0.0, 10.0, 10.0]),
            truth(0, 0, [20.0, 0.0, 10.0, 10.0]),
            truth(1, 1, [0.0, 0.0, 10.0, 10.0]),
        ];
        let dets = [
            det(0, 0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0, 0.8, [1.0, 0.0, 10.0, 10.0]), // its box is taken: a miss
            det(0, 0, 0.7, [20.0, 0.0, 10.0, 10.0]),
            det(1, 0, 0.6, [0.0, 0.0, 10.0, 10.0]), // wrong class there: a miss
            det(1, 1, 0.5, [0.0, 0.0, 10.0, 10.0]),
        ];
        assert_eq!(
            matches(&truths, &dets, 2, 0.5),
            vec![
                Hit(0, 0, 0.9, true),
                Hit(0, 0, 0.8, false),
                Hit(0, 0, 0.7, true),
                Hit(1, 0, 0.6, false),
                Hit(1, 1, 0.5, true),
            ]
        );
    }

    /// An image weighing 2 gives the AP of the set holding it twice (the bootstrap's reading).
    #[test]
    fn a_weight_counts_an_image_that_many_times() {
        let truths = [
            truth(0, 0, [0.0, 0.0, 10.0, 10.0]),
            truth(1, 0, [0.0, 0.0, 10.0, 10.0]),
            truth(2, 1, [5.0, 5.0, 10.0, 10.0]),
        ];
        let dets = [
            det(0, 0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0, 0.3, [30.0, 0.0, 10.0, 10.0]),
            det(1, 0, 0.7, [4.0, 0.0, 10.0, 10.0]),
            det(1, 0, 0.8, [50.0, 50.0, 10.0, 10.0]),
            det(2, 1, 0.4, [5.0, 5.0, 10.0, 10.0]),
            det(2, 0, 0.95, [5.0, 5.0, 10.0, 10.0]),
        ];
        let table = ApTable::new(
            &truth_labels(&truths, 3),
            &matches(&truths, &dets, 2, 0.5),
            2,
        );
        // Image 1 twice, image 2 never: the same as a set of images 0, 1, 1'.
        let twice: Vec<Truth> = [
            truths[0],
            truths[1],
            Truth {
                image: 2,
                ..truths[1]
            },
        ]
        .to_vec();
        let mut dets2: Vec<Detection> = dets[..4].to_vec();
        dets2.extend(dets[2..4].iter().map(|d| Detection { image: 2, ..*d }));
        let expanded = average_precision(&twice, &dets2, 2, 0.5);
        let weighted = table.per_class(&[1.0, 2.0, 0.0]);
        assert_eq!(weighted.len(), 2);
        assert!((weighted[0].unwrap() - expanded[0].unwrap()).abs() < 1e-12);
        assert_eq!((weighted[1], expanded[1]), (None, None));
        // Every image once: what mean_ap reports.
        assert!((table.unweighted() - mean_ap(&truths, &dets, 2).map50).abs() < 1e-15);
        // No image at all: no class has a true box.
        assert_eq!(table.mean(&[0.0; 3]), 0.0);
    }

    #[test]
    fn hits_are_written_as_arrays() {
        let json = serde_json::to_string(&Hit(3, 1, 0.5, true)).unwrap();
        assert_eq!(json, "[3,1,0.5,true]");
        assert_eq!(
            serde_json::from_str::<Hit>(&json).unwrap(),
            Hit(3, 1, 0.5, true)
        );
    }
}
