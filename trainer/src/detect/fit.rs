//! Training the detection head: CenterNet's targets and losses on the frozen feature maps,
//! AdamW, early stopping on the validation split's COCO mAP@0.5.
//!
//! Targets per image, on the `side × side` grid (the image stretched to the input, so a cell
//! is `width / side` by `height / side` pixels): for each box, its centre's cell gets 1 in its
//! class map and a Gaussian around it (σ a sixth of the box's width and height in cells) keeps
//! the neighbours' penalty low (the maximum where objects meet). Every cell whose centre lies
//! inside a box (the smallest one where boxes overlap, and always the centre cell) learns the
//! distances to that box's four edges, weighted by the same Gaussian.
//! Losses: the penalty-reduced focal loss on the class maps (α = 2, β = 4), divided by the
//! number of objects, plus the IoU loss (−log IoU, UnitBox/FCOS) of the boxes, a weighted mean
//! over the cells that learn one.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use contract::detection::{DecodeParams, Detection, HeadShape, MeanAp, Truth, decode, mean_ap};
use rand::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::DetectItem;
use super::model::{DetectHead, log_sigmoid, raw};
use crate::{Error, Result};

/// Detection hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Channels of the head's hidden layers.
    pub hidden: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Share of the feature map's channels zeroed per image and step (whole channels: the
    /// cells of one channel are strongly correlated).
    pub dropout: f32,
    /// Stop after this many epochs without a better validation mAP@0.5.
    pub patience: usize,
    /// Random seed (initialisation, batch order).
    pub seed: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            hidden: 128,
            epochs: 80,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 1e-4,
            dropout: 0.5,
            patience: 15,
            seed: 14,
        }
    }
}

impl DetectConfig {
    /// Reject settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Param(m.into()));
        if self.hidden == 0 || self.hidden > 1024 {
            return bad("hidden must be 1–1024");
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch_size must be ≥ 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.weight_decay < 0.0 {
            return bad("lr must be positive and weight_decay ≥ 0");
        }
        if !(0.0..0.9).contains(&self.dropout) {
            return bad("dropout must be in [0, 0.9)");
        }
        Ok(())
    }
}

/// What the head is trained to give for a batch of images.
#[derive(Debug, Clone)]
pub struct Targets {
    /// `[n, classes, side, side]`: 1 at object centres, a Gaussian around them, else 0.
    pub heat: Tensor,
    /// `[n, classes, side, side]`: 1 exactly at object centres.
    pub centres: Tensor,
    /// `[n, 4, side, side]`: distances from the cell's centre to the left, top, right and
    /// bottom edges of the cell's box, in cells.
    pub edges: Tensor,
    /// `[n, 1, side, side]`: how much the cell's box counts (its Gaussian; 0: no box).
    pub weight: Tensor,
}

impl Targets {
    /// The rows `idx` of every target.
    pub fn select(&self, idx: &Tensor) -> Result<Targets> {
        Ok(Targets {
            heat: self.heat.index_select(idx, 0)?,
            centres: self.centres.index_select(idx, 0)?,
            edges: self.edges.index_select(idx, 0)?,
            weight: self.weight.index_select(idx, 0)?,
        })
    }
}

/// The targets of `items` on a `side × side` grid.
pub fn targets(items: &[&DetectItem], classes: usize, side: usize) -> Result<Targets> {
    let n = items.len();
    let cells = side * side;
    let mut heat = vec![0f32; n * classes * cells];
    let mut centres = vec![0f32; n * classes * cells];
    // Cells without a box keep a unit box: their weight is 0, and the IoU stays finite.
    let mut edges = vec![1f32; n * 4 * cells];
    let mut weight = vec![0f32; n * cells];
    for (i, item) in items.iter().enumerate() {
        let (cw, ch) = (
            item.width as f32 / side as f32,
            item.height as f32 / side as f32,
        );
        // Per cell: the area of the box it regresses (smallest wins), and whether that was
        // its centre cell (which no other box takes).
        let mut owner = vec![(f32::INFINITY, false); cells];
        for b in &item.boxes {
            if b.label >= classes {
                return Err(Error::Dataset(format!(
                    "{}: box label {} of {classes} classes",
                    item.source, b.label
                )));
            }
            // The box in cells.
            let (x0, y0) = (b.rect.x / cw, b.rect.y / ch);
            let (x1, y1) = (x0 + b.rect.w / cw, y0 + b.rect.h / ch);
            let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let col = (cx.floor() as usize).min(side - 1);
            let row = (cy.floor() as usize).min(side - 1);
            let (sx, sy) = (((x1 - x0) / 6.0).max(1e-3), ((y1 - y0) / 6.0).max(1e-3));
            let area = (x1 - x0) * (y1 - y0);
            let plane = (i * classes + b.label) * cells;
            for r in 0..side {
                for c in 0..side {
                    let (dx, dy) = (c as f32 - col as f32, r as f32 - row as f32);
                    let g = (-(dx * dx) / (2.0 * sx * sx) - (dy * dy) / (2.0 * sy * sy)).exp();
                    let at = r * side + c;
                    heat[plane + at] = heat[plane + at].max(g);
                    let (px, py) = (c as f32 + 0.5, r as f32 + 0.5);
                    let centre = (r, c) == (row, col);
                    let inside = px > x0 && px < x1 && py > y0 && py < y1;
                    let (taken_area, taken_centre) = owner[at];
                    let wins = if centre {
                        !taken_centre || area < taken_area
                    } else {
                        inside && !taken_centre && area < taken_area
                    };
                    if !wins {
                        continue;
                    }
                    owner[at] = (area, centre);
                    let e = i * 4 * cells + at;
                    // At least a hundredth of a cell: a centre cell whose middle falls
                    // outside a tiny box still has a box to learn.
                    for (k, d) in [px - x0, py - y0, x1 - px, y1 - py].into_iter().enumerate() {
                        edges[e + k * cells] = d.max(0.01);
                    }
                    weight[i * cells + at] = if centre { 1.0 } else { g };
                }
            }
            heat[plane + row * side + col] = 1.0;
            centres[plane + row * side + col] = 1.0;
        }
    }
    let cpu = &Device::Cpu;
    Ok(Targets {
        heat: Tensor::from_vec(heat, (n, classes, side, side), cpu)?,
        centres: Tensor::from_vec(centres, (n, classes, side, side), cpu)?,
        edges: Tensor::from_vec(edges, (n, 4, side, side), cpu)?,
        weight: Tensor::from_vec(weight, (n, 1, side, side), cpu)?,
    })
}

/// The losses of raw scores `[n, classes + 4, side, side]` against `t`: the focal loss
/// (summed, divided by the objects) and the IoU loss (the weighted mean over cells with a box).
pub fn losses(raw: &Tensor, t: &Targets, classes: usize) -> Result<(Tensor, Tensor)> {
    let objects = t.centres.sum_all()?.to_scalar::<f32>()?.max(1.0);
    let scores = raw.narrow(1, 0, classes)?;
    let log_p = log_sigmoid(&scores)?;
    let log_q = log_sigmoid(&scores.neg()?)?;
    let p = log_p.exp()?;
    let q = log_q.exp()?;
    let pos = (q.sqr()? * &log_p)?.mul(&t.centres)?;
    let reduce = (t.heat.affine(-1.0, 1.0)?.powf(4.0)?).mul(&t.centres.affine(-1.0, 1.0)?)?;
    let neg = (p.sqr()? * &log_q)?.mul(&reduce)?;
    let focal = ((pos + neg)?.sum_all()?.neg()? / f64::from(objects))?;
    // IoU of boxes sharing the cell's centre: the overlap is the smaller distance each way.
    let d = raw.narrow(1, classes, 4)?.exp()?;
    let g = &t.edges;
    let side = |x: &Tensor, a: usize, b: usize| -> Result<Tensor> {
        Ok((x.narrow(1, a, 1)? + x.narrow(1, b, 1)?)?)
    };
    let area = |x: &Tensor| -> Result<Tensor> { Ok((side(x, 0, 2)? * side(x, 1, 3)?)?) };
    let near = d.minimum(g)?;
    let inter = (side(&near, 0, 2)? * side(&near, 1, 3)?)?;
    let union = ((area(&d)? + area(g)?)? - &inter)?;
    let iou = (inter / union)?;
    let total = t.weight.sum_all()?.to_scalar::<f32>()?.max(1e-6);
    let iou_loss = ((iou.log()?.neg()? * &t.weight)?.sum_all()? / f64::from(total))?;
    Ok((focal, iou_loss))
}

/// The true boxes of `items` (item `i` is image `i`).
pub fn truths(items: &[&DetectItem]) -> Vec<Truth> {
    items
        .iter()
        .enumerate()
        .flat_map(|(image, item)| {
            item.boxes.iter().map(move |b| Truth {
                image,
                label: b.label as u32,
                bbox: [b.rect.x, b.rect.y, b.rect.w, b.rect.h],
            })
        })
        .collect()
}

/// Decode head outputs (one row per item) into the items' pixels.
pub fn detections(
    outputs: &[Vec<f32>],
    items: &[&DetectItem],
    head: &DetectHead,
    side: usize,
    params: &DecodeParams,
) -> Result<Vec<Detection>> {
    decode_rows(outputs, items, head.shape(side)?, params)
}

/// Decode maps of a head of `shape` (one row per item) into the items' pixels (`image`: the
/// item's index).
pub fn decode_rows(
    outputs: &[Vec<f32>],
    items: &[&DetectItem],
    shape: HeadShape,
    params: &DecodeParams,
) -> Result<Vec<Detection>> {
    let mut all = Vec::new();
    for (image, (row, item)) in outputs.iter().zip(items).enumerate() {
        all.extend(decode(
            row,
            shape,
            (item.width, item.height),
            image,
            params,
        )?);
    }
    Ok(all)
}

/// COCO mAP of `head` on feature maps `maps` of `items`.
pub fn score(head: &DetectHead, maps: &Tensor, items: &[&DetectItem]) -> Result<MeanAp> {
    let side = maps.dim(3)?;
    let outputs = head.outputs(maps, 64)?;
    let found = detections(&outputs, items, head, side, &DecodeParams::evaluation())?;
    Ok(mean_ap(&truths(items), &found, head.classes()? as u32))
}

/// Boxes of `found` that hit a true box of their label at IoU ≥ 0.5 (each true box taken
/// once, best-scored detections first).
pub fn hits(truths: &[Truth], found: &[Detection]) -> usize {
    let mut order: Vec<&Detection> = found.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; truths.len()];
    let mut hits = 0;
    for d in order {
        let best = truths
            .iter()
            .enumerate()
            .filter(|(k, t)| !taken[*k] && t.image == d.image && t.label == d.label)
            .map(|(k, t)| (k, contract::detection::iou(&t.bbox, &d.bbox)))
            .filter(|(_, v)| *v >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((k, _)) = best {
            taken[k] = true;
            hits += 1;
        }
    }
    hits
}

/// The score from which clients show boxes: of 0.05, 0.10, …, 0.95, the one whose boxes
/// (suppressed at IoU 0.5) reach the best F1 against the true boxes of `items` (a box counts
/// when it hits one of its label at IoU ≥ 0.5); ties go to the higher score. With the F1.
pub fn shown_threshold(
    head: &DetectHead,
    maps: &Tensor,
    items: &[&DetectItem],
) -> Result<(f32, f64)> {
    let side = maps.dim(3)?;
    let outputs = head.outputs(maps, 64)?;
    let truth = truths(items);
    let all = detections(&outputs, items, head, side, &DecodeParams::evaluation())?;
    let mut best = (0.5f32, -1.0f64);
    for step in 1..20 {
        let t = step as f32 * 0.05;
        let shown: Vec<Detection> = all.iter().filter(|d| d.score >= t).copied().collect();
        let tp = hits(&truth, &shown) as f64;
        let denominator = (shown.len() + truth.len()) as f64;
        let f1 = if denominator > 0.0 {
            2.0 * tp / denominator
        } else {
            0.0
        };
        if f1 >= best.1 {
            best = (t, f1);
        }
    }
    Ok((best.0, best.1.max(0.0)))
}

/// One epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (focal per object + IoU loss per box cell).
    pub train_loss: f64,
    /// Validation mAP@0.5.
    pub val_map50: f64,
    /// Validation mAP@[.5:.95].
    pub val_map50_95: f64,
}

/// The best-validation head and the curves.
#[derive(Debug, Clone)]
pub struct DetectFit {
    /// Weights of the best epoch.
    pub head: DetectHead,
    /// Per-epoch curves.
    pub history: Vec<DetectEpoch>,
    /// Epoch kept.
    pub best_epoch: usize,
}

/// `n` draws from `U(-bound, bound)`.
fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Fit on `train` (feature maps `[n, 1280, side, side]` and their items), select on `val`;
/// `epoch_done` is called after each epoch and stops the run by returning false.
pub fn fit(
    config: &DetectConfig,
    classes: usize,
    (train, train_items): (&Tensor, &[&DetectItem]),
    (val, val_items): (&Tensor, &[&DetectItem]),
    epoch_done: &mut dyn FnMut(&DetectEpoch) -> bool,
) -> Result<DetectFit> {
    config.validate()?;
    let n = train_items.len();
    if n == 0 || val_items.is_empty() {
        return Err(Error::Dataset(
            "detection training needs images in the train and val splits".into(),
        ));
    }
    let (_, channels, side, _) = train.dims4()?;
    let cpu = &Device::Cpu;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let h = config.hidden;
    let conv = |rng: &mut StdRng, out: usize, inp: usize, k: usize| -> Result<Var> {
        let fan_in = (inp * k * k) as f32;
        Ok(Var::from_vec(
            uniform(rng, out * inp * k * k, (3.0 / fan_in).sqrt()),
            (out, inp, k, k),
            cpu,
        )?)
    };
    let reduce_w = conv(&mut rng, h, channels, 1)?;
    let reduce_b = Var::zeros(h, DType::F32, cpu)?;
    let mix_w = conv(&mut rng, h, h, 3)?;
    let mix_b = Var::zeros(h, DType::F32, cpu)?;
    let out_w = conv(&mut rng, classes + 4, h, 1)?;
    // CenterNet's prior: class maps start near 0.1 % so the many empty cells do not swamp the
    // first steps; boxes start as the cell itself (e⁰ = 1 cell each way).
    let mut bias = vec![0f32; classes + 4];
    bias[..classes].fill(-(0.999f32 / 0.001).ln());
    let out_b = Var::from_vec(bias, classes + 4, cpu)?;
    let vars = [&reduce_w, &reduce_b, &mix_w, &mix_b, &out_w, &out_b];
    let mut opt = AdamW::new(
        vars.iter().map(|v| (*v).clone()).collect(),
        ParamsAdamW {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    )?;
    let snapshot = || -> Result<DetectHead> {
        Ok(DetectHead {
            reduce_w: reduce_w.as_tensor().copy()?,
            reduce_b: reduce_b.as_tensor().copy()?,
            mix_w: mix_w.as_tensor().copy()?,
            mix_b: mix_b.as_tensor().copy()?,
            out_w: out_w.as_tensor().copy()?,
            out_b: out_b.as_tensor().copy()?,
        })
    };
    let all = targets(train_items, classes, side)?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best: Option<(f64, usize, DetectHead)> = None;
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let idx = Tensor::new(chunk, cpu)?;
            let t = all.select(&idx)?;
            let weights = vars.map(|v| v.as_tensor());
            let mut x = train.index_select(&idx, 0)?;
            if config.dropout > 0.0 {
                let keep = 1.0 - config.dropout;
                let mask: Vec<f32> = (0..chunk.len() * channels)
                    .map(|_| {
                        if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, (chunk.len(), channels, 1, 1), cpu)?;
                x = x.broadcast_mul(&mask)?;
            }
            let z = raw(weights, &x)?;
            let (focal, iou) = losses(&z, &t, classes)?;
            let loss = (focal + iou)?;
            opt.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
        }
        let head = snapshot()?;
        let m = score(&head, val, val_items)?;
        let record = DetectEpoch {
            epoch,
            train_loss: loss_sum / n as f64,
            val_map50: m.map50,
            val_map50_95: m.map50_95,
        };
        if best.as_ref().is_none_or(|b| m.map50 > b.0) {
            best = Some((m.map50, epoch, head));
        }
        let go_on = epoch_done(&record);
        history.push(record);
        if !go_on {
            return Err(Error::Cancelled);
        }
        if best
            .as_ref()
            .is_some_and(|b| epoch - b.1 >= config.patience)
        {
            break;
        }
    }
    let (_, best_epoch, head) = best.ok_or_else(|| Error::Dataset("no epoch ran".into()))?;
    Ok(DetectFit {
        head,
        history,
        best_epoch,
    })
}
