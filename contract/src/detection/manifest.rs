//! What a detection model's manifest says besides the fields every model has: the layout of
//! its head's output ([`DetectionSpec`]) and its test figures ([`DetectionMetrics`]), and the
//! checks a detection manifest must pass.

use serde::{Deserialize, Serialize};

use super::{DecodeParams, HeadShape};
use crate::manifest::{Dim, Fit, ModelManifest};
use crate::{Error, Result, Task};

/// How a detection head's output becomes boxes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectionSpec {
    /// Cells per side of the head's maps (the backbone's feature map's side).
    pub side: usize,
    /// What clients show: boxes scoring at least `min_score`, after suppression, at most
    /// `max_detections` ([`super::decode`]). Evaluation reads every peak instead
    /// ([`DecodeParams::evaluation`]).
    pub decode: DecodeParams,
}

/// A detector's COCO figures on its test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionMetrics {
    /// Test images.
    pub images: usize,
    /// True boxes in them.
    pub boxes: usize,
    /// mAP@0.5 (what the gate compares).
    pub map50: f64,
    /// mAP@[.5:.95].
    pub map50_95: f64,
    /// AP@0.5 per label, in label order (`None`: no true box of that label in the test split).
    pub per_class_ap50: Vec<Option<f64>>,
}

impl ModelManifest {
    /// The output layout of a detection model's head (`None` for other tasks).
    pub fn head_shape(&self) -> Option<HeadShape> {
        self.detection.map(|d| HeadShape {
            classes: self.labels.len(),
            side: d.side,
        })
    }

    /// A detector: ≥ 1 distinct label, a backbone's feature map in, `[batch, labels + 4, side,
    /// side]` out, the whole image stretched (boxes map back by scaling), a usable decoding.
    pub(crate) fn validate_detector(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Manifest(msg));
        if self.text.is_some() || self.rank_metrics.is_some() || self.gallery.is_some() {
            return bad("a detector has no text tower, recall or gallery".into());
        }
        if self.labels.is_empty() {
            return bad("a detector needs ≥ 1 label".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return bad(format!("label {dup:?} appears twice"));
        }
        if self.backbone.is_none() {
            return bad("a detector's head runs on a backbone's feature map (`backbone`)".into());
        }
        if self.preprocess.fit != Fit::Stretch {
            return bad(
                "a detector reads the whole image: preprocess.fit must be \"stretch\"".into(),
            );
        }
        let Some(spec) = &self.detection else {
            return bad("a detector needs its output layout (`detection`)".into());
        };
        let d = &spec.decode;
        if !(0.0..=1.0).contains(&d.min_score)
            || !(0.0..=1.0).contains(&d.nms_iou)
            || d.max_detections == 0
        {
            return bad(format!(
                "detection.decode {d:?} needs min_score and nms_iou in [0, 1] and max_detections ≥ 1"
            ));
        }
        let channels = self.labels.len() + 4;
        let side = spec.side;
        let out_ok = side > 0
            && matches!(
                self.output.shape.as_slice(),
                [Dim::Symbol(_), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)]
                    if *c == channels && *h == side && *w == side
            );
        if !out_ok {
            return bad(format!(
                "output shape {} must be [batch, {channels}, {side}, {side}] (a map per label, then 4 box edges)",
                self.output.shape_string()
            ));
        }
        if let Some(m) = &self.detection_metrics
            && m.per_class_ap50.len() != self.labels.len()
        {
            return bad(format!(
                "detection_metrics has {} per-label figures for {} labels",
                m.per_class_ap50.len(),
                self.labels.len()
            ));
        }
        debug_assert_eq!(self.task, Task::Detect);
        Ok(())
    }
}
