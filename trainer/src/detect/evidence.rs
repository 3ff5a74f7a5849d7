//! What a detection run hands the registry's gate: mAP@0.5 on the test images, with every
//! model's detections matched to the true boxes once (COCO's matching at IoU 0.5), so the gate
//! recomputes mAP on each bootstrap resample of the images
//! ([`contract::evidence::Statistic::Map50`]).
//!
//! The trivial baseline is one box over the whole image labelled with the label that has the
//! most training boxes (the detector's "majority class"): a detector that cannot beat it has
//! learnt nothing about where objects are.

use candle_core::Tensor;
use contract::detection::{DecodeParams, Detection, HeadShape, matches, truth_labels};
use contract::evidence::{ChampionOutcomes, Evidence, Method, Outcomes, Statistic};

use super::data::DetectItem;
use super::fit::{decode_rows, truths};
use crate::Result;

/// The gate's metric for detectors.
pub const METRIC: &str = "map50";

/// The IoU at which a detection takes a true box for the gate.
pub const IOU: f64 = 0.5;

/// A detector's outcomes on `items` from its detections (`image`: the index in `items`).
pub fn outcomes(
    name: &str,
    items: &[&DetectItem],
    detections: &[Detection],
    classes: u32,
) -> Outcomes {
    let truths = truths(items);
    Outcomes::from_hits(
        name,
        matches(&truths, detections, classes, IOU),
        &truth_labels(&truths, items.len()),
    )
}

/// A detector's outcomes from its head's maps (one row per item of `items`), decoded as the
/// evaluation decodes them: how a champion is scored on a candidate's test images.
pub fn outcomes_from_maps(
    name: &str,
    items: &[&DetectItem],
    maps: &[Vec<f32>],
    shape: HeadShape,
) -> Result<Outcomes> {
    let found = decode_rows(maps, items, shape, &DecodeParams::evaluation())?;
    Ok(outcomes(name, items, &found, shape.classes as u32))
}

/// The label with the most boxes in `train` (the lowest index among equals; 0 when there is
/// no box).
pub fn most_boxed_label(train: &[&DetectItem], classes: usize) -> usize {
    let mut counts = vec![0usize; classes.max(1)];
    for b in train.iter().flat_map(|i| &i.boxes) {
        if let Some(c) = counts.get_mut(b.label) {
            *c += 1;
        }
    }
    let best = counts.iter().copied().max().unwrap_or(0);
    counts.iter().position(|&c| c == best).unwrap_or(0)
}

/// The trivial baseline's detections on `test`: one whole-image box per image, of `label`,
/// score 1.
pub fn whole_image_boxes(test: &[&DetectItem], label: usize) -> Vec<Detection> {
    test.iter()
        .enumerate()
        .map(|(image, item)| Detection {
            image,
            label: label as u32,
            score: 1.0,
            bbox: [0.0, 0.0, item.width as f32, item.height as f32],
        })
        .collect()
}

/// The evidence of a run: the candidate's `detections` on the `test` images, and the trivial
/// baseline (labelled from the `train` images' boxes).
pub fn evidence(
    train: &[&DetectItem],
    test: &[&DetectItem],
    detections: &[Detection],
    classes: usize,
) -> Evidence {
    let truths = truths(test);
    let baseline = whole_image_boxes(test, most_boxed_label(train, classes));
    Evidence {
        metric: METRIC.into(),
        statistic: Statistic::Map50,
        method: Method::TestSplit,
        items: test.iter().map(|i| i.sha256.clone()).collect(),
        truth: None,
        boxes: Some(truth_labels(&truths, test.len())),
        candidate: outcomes("candidate", test, detections, classes as u32),
        baselines: vec![
            outcomes(
                "whole image, most boxed label",
                test,
                &baseline,
                classes as u32,
            )
            .trivial(),
        ],
        champion: None,
    }
}

/// A champion's outcomes on a run's test images from the run's test feature maps
/// (`[images, c, side, side]`, in the order of `items`): `head` gives the champion's maps for
/// one image's feature map, flattened.
pub fn champion_on_maps(
    test_maps: &Tensor,
    items: &[&DetectItem],
    shape: HeadShape,
    mut head: impl FnMut(&[f32]) -> Result<Vec<f32>>,
) -> Result<Outcomes> {
    let rows = test_maps.flatten_from(1)?.to_vec2::<f32>()?;
    let maps = rows.iter().map(|r| head(r)).collect::<Result<Vec<_>>>()?;
    outcomes_from_maps("champion", items, &maps, shape)
}

/// The champion's outcomes, for [`Evidence::champion`].
pub fn champion(id: &str, how: &str, outcomes: Outcomes) -> ChampionOutcomes {
    ChampionOutcomes {
        id: id.to_string(),
        how: how.to_string(),
        outcomes: Outcomes {
            name: "champion".into(),
            ..outcomes
        },
    }
}
