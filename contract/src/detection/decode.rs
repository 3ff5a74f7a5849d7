//! From a detection head's output maps to boxes: the one decoding the trainer's evaluation,
//! the api's server fallback and the browser all run, so they report the same boxes.
//!
//! The head (a CenterNet-style head on the backbone's `side × side` feature map) gives, for
//! one image, `classes + 4` maps of `side × side` cells, channel-major:
//! - `0 .. classes`: the probability that an object of that class has its centre in the cell;
//! - `classes .. classes + 4`: the distances from the cell's centre to the object's left, top,
//!   right and bottom edges, in cells (FCOS's box encoding: every cell inside an object can
//!   say where its edges are, not only the centre cell).
//!
//! A cell is a detection of class `k` when its probability is at least the threshold and no
//! neighbour (the 3 × 3 around it, same class) is higher: the local maxima CenterNet keeps in
//! place of anchors and most of the suppression. Boxes are scaled back to the image
//! (`width / side` pixels per cell across, `height / side` down: the input was the whole
//! image stretched), clipped to it, then put through class-wise [`nms`] (two peaks of one
//! object in neighbouring cells at equal scores) and cut to the best
//! [`DecodeParams::max_detections`].

use serde::{Deserialize, Serialize};

use super::{Detection, nms};
use crate::{Error, Result};

/// Numbers of a detection head's output: what its maps hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadShape {
    /// Classes (the first `classes` maps).
    pub classes: usize,
    /// Cells per side of each map.
    pub side: usize,
}

impl HeadShape {
    /// Maps per image: one per class, then the left, top, right and bottom distances.
    pub fn channels(&self) -> usize {
        self.classes + 4
    }

    /// Floats per image.
    pub fn len(&self) -> usize {
        self.channels() * self.side * self.side
    }

    /// Whether an image's output is empty (no class or no cell).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How maps become boxes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecodeParams {
    /// Lowest probability reported.
    pub min_score: f32,
    /// Class-wise suppression: a box overlapping a better one of its class by more than this
    /// IoU is dropped.
    pub nms_iou: f64,
    /// Most boxes per image, best first.
    pub max_detections: usize,
}

impl DecodeParams {
    /// What evaluation uses: every peak down to 0.001 (COCO scores the ranking), at most 100
    /// per image.
    pub fn evaluation() -> Self {
        DecodeParams {
            min_score: 0.001,
            nms_iou: 0.5,
            max_detections: super::MAX_DETECTIONS,
        }
    }
}

/// The boxes in one image's head output `maps` (`[classes + 4, side, side]`, row-major), in
/// the pixels of the `width × height` image, labelled `image`; best first.
pub fn decode(
    maps: &[f32],
    shape: HeadShape,
    (width, height): (u32, u32),
    image: usize,
    params: &DecodeParams,
) -> Result<Vec<Detection>> {
    let HeadShape { classes, side } = shape;
    if maps.len() != shape.len() {
        return Err(Error::Detections(format!(
            "{} values, expected {} ({classes} classes + 4 maps of {side} × {side})",
            maps.len(),
            shape.len()
        )));
    }
    if width == 0 || height == 0 {
        return Err(Error::Detections(format!(
            "image size {width} × {height} has no area"
        )));
    }
    let cells = side * side;
    let at = |channel: usize, row: usize, col: usize| maps[channel * cells + row * side + col];
    let (cell_w, cell_h) = (width as f32 / side as f32, height as f32 / side as f32);
    let mut found = Vec::new();
    for class in 0..classes {
        for row in 0..side {
            for col in 0..side {
                let score = at(class, row, col);
                // NaN is never reported.
                if score.is_nan() || score < params.min_score {
                    continue;
                }
                let rows = row.saturating_sub(1)..=(row + 1).min(side - 1);
                let peak = rows.into_iter().all(|r| {
                    (col.saturating_sub(1)..=(col + 1).min(side - 1))
                        .all(|c| at(class, r, c) <= score)
                });
                if !peak {
                    continue;
                }
                let (cx, cy) = (col as f32 + 0.5, row as f32 + 0.5);
                let edge = |k: usize| at(classes + k, row, col);
                let x0 = ((cx - edge(0)) * cell_w).clamp(0.0, width as f32);
                let y0 = ((cy - edge(1)) * cell_h).clamp(0.0, height as f32);
                let x1 = ((cx + edge(2)) * cell_w).clamp(0.0, width as f32);
                let y1 = ((cy + edge(3)) * cell_h).clamp(0.0, height as f32);
                let (w, h) = (x1 - x0, y1 - y0);
                // No area, or a NaN edge: nothing to show.
                if w.is_nan() || h.is_nan() || w <= 0.0 || h <= 0.0 {
                    continue;
                }
                found.push(Detection {
                    image,
                    label: class as u32,
                    score,
                    bbox: [x0, y0, w, h],
                });
            }
        }
    }
    let mut kept = nms(&found, params.nms_iou);
    kept.truncate(params.max_detections);
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: HeadShape = HeadShape {
        classes: 2,
        side: 4,
    };

    /// Empty maps: every probability 0, every box the cell itself (half a cell each way).
    fn blank() -> Vec<f32> {
        let mut m = vec![0.0; SHAPE.len()];
        m[SHAPE.classes * 16..].fill(0.5);
        m
    }

    /// The box at (row, col) of channel class..: left, top, right, bottom distances.
    fn edges(m: &mut [f32], row: usize, col: usize, ltrb: [f32; 4]) {
        for (k, v) in ltrb.into_iter().enumerate() {
            set(m, SHAPE.classes + k, row, col, v);
        }
    }

    fn set(m: &mut [f32], channel: usize, row: usize, col: usize, v: f32) {
        m[channel * 16 + row * 4 + col] = v;
    }

    #[test]
    fn a_peak_becomes_its_box_in_image_pixels() {
        let mut m = blank();
        // Class 1 at cell (row 1, col 2), whose centre is (2.5, 1.5) cells: edges 1.25 left,
        // 0.25 up, 0.75 right, 0.75 down.
        set(&mut m, 1, 1, 2, 0.9);
        edges(&mut m, 1, 2, [1.25, 0.25, 0.75, 0.75]);
        // A lower neighbour of the same class is not a peak; the other class is its own.
        set(&mut m, 1, 1, 3, 0.5);
        set(&mut m, 0, 1, 3, 0.4);
        let params = DecodeParams {
            min_score: 0.3,
            nms_iou: 0.5,
            max_detections: 10,
        };
        // 400 × 200 image: cells are 100 × 50 pixels.
        let d = decode(&m, SHAPE, (400, 200), 7, &params).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].image, d[0].label, d[0].score), (7, 1, 0.9));
        // x from 1.25 to 3.25 cells (125 to 325 px), y from 1.25 to 2.25 (62.5 to 112.5).
        assert_eq!(d[0].bbox, [125.0, 62.5, 200.0, 50.0]);
        // The other class's peak at (1, 3) is its own cell.
        assert_eq!((d[1].label, d[1].score), (0, 0.4));
        assert_eq!(d[1].bbox, [300.0, 50.0, 100.0, 50.0]);
        // Below the threshold: nothing.
        let strict = DecodeParams {
            min_score: 0.95,
            ..params
        };
        assert!(
            decode(&m, SHAPE, (400, 200), 0, &strict)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn boxes_are_clipped_to_the_image_and_ties_suppressed() {
        let mut m = blank();
        // A corner object reaching 1.5 cells left of the image: clipped at 0.
        set(&mut m, 0, 0, 0, 0.8);
        edges(&mut m, 0, 0, [2.0, 0.5, 1.5, 0.5]);
        // Two equal neighbouring peaks describing the same box (x 2 to 4 cells): one
        // survives.
        set(&mut m, 1, 3, 2, 0.7);
        edges(&mut m, 3, 2, [0.5, 0.5, 1.5, 0.5]);
        set(&mut m, 1, 3, 3, 0.7);
        edges(&mut m, 3, 3, [1.5, 0.5, 0.5, 0.5]);
        let d = decode(&m, SHAPE, (40, 40), 0, &DecodeParams::evaluation()).unwrap();
        assert_eq!(d.len(), 2, "{d:?}");
        // x from −1.5 to 2 cells: [−15, 20] px clipped to [0, 20].
        assert_eq!(d[0].bbox, [0.0, 0.0, 20.0, 10.0]);
        assert_eq!(d[1].bbox, [20.0, 30.0, 20.0, 10.0]);
    }

    #[test]
    fn best_first_capped_and_bad_input_refused() {
        let mut m = blank();
        for (i, (r, c)) in [(0, 0), (0, 2), (2, 0), (2, 2)].into_iter().enumerate() {
            set(&mut m, 0, r, c, 0.5 + i as f32 * 0.1);
        }
        set(&mut m, 1, 3, 3, f32::NAN);
        // A peak whose box has a NaN edge is not shown either.
        set(&mut m, 1, 0, 3, 0.99);
        set(&mut m, SHAPE.classes, 0, 3, f32::NAN);
        let params = DecodeParams {
            max_detections: 3,
            ..DecodeParams::evaluation()
        };
        let d = decode(&m, SHAPE, (8, 8), 0, &params).unwrap();
        let scores: Vec<f32> = d.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.8, 0.7, 0.6]);
        let short = decode(&m[1..], SHAPE, (8, 8), 0, &params).map_err(|e| e.to_string());
        assert_eq!(
            short,
            Err(
                "cannot decode detections: 95 values, expected 96 (2 classes + 4 maps of 4 × 4)"
                    .into()
            )
        );
        let flat = decode(&m, SHAPE, (0, 8), 0, &params).map_err(|e| e.to_string());
        assert_eq!(
            flat,
            Err("cannot decode detections: image size 0 × 8 has no area".into())
        );
    }
}
