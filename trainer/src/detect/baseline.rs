//! The trivial detector every detection model must beat (issue 14): one box covering the
//! whole image, labelled with an image classifier's top class, scored by its probability.

use contract::detection::{Detection, Truth};

use super::data::DetectSet;
use crate::{Error, Result};

impl DetectSet {
    /// Every true box, for [`contract::detection::mean_ap`] (`image`: the item's index).
    pub fn truths(&self) -> Vec<Truth> {
        super::fit::truths(&self.items.iter().collect::<Vec<_>>())
    }
}

/// The baseline's detections on `set`: for each image, one full-image box of the class
/// `classify` ranks first. `classify` gives a classifier's probabilities over its own
/// `classifier_labels`, which must all be among the set's labels (matched by name).
pub fn full_image_boxes(
    set: &DetectSet,
    classifier_labels: &[String],
    mut classify: impl FnMut(usize) -> Result<Vec<f32>>,
) -> Result<Vec<Detection>> {
    let to_set: Vec<u32> = classifier_labels
        .iter()
        .map(|l| {
            set.labels
                .iter()
                .position(|s| s == l)
                .map(|i| i as u32)
                .ok_or_else(|| {
                    Error::Dataset(format!(
                        "the classifier's label {l:?} is not among the set's {:?}",
                        set.labels
                    ))
                })
        })
        .collect::<Result<_>>()?;
    set.items
        .iter()
        .enumerate()
        .map(|(image, item)| {
            let probs = classify(image)?;
            let (best, score) = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .ok_or_else(|| Error::Dataset("the classifier gave no scores".into()))?;
            let label = *to_set.get(best).ok_or_else(|| {
                Error::Dataset(format!(
                    "{} scores for {} labels",
                    probs.len(),
                    to_set.len()
                ))
            })?;
            Ok(Detection {
                image,
                label,
                score: *score,
                bbox: [0.0, 0.0, item.width as f32, item.height as f32],
            })
        })
        .collect()
}
