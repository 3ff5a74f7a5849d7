//! The detection head as tensors: a small CenterNet-style head on the frozen backbone's
//! feature map (`[1280, 7, 7]` for a 224-pixel input: one cell per 32 pixels).
//!
//! `map → 1×1 conv (hidden) → ReLU → 3×3 conv (hidden, padding 1) → ReLU → 1×1 conv
//! (classes + 4)`, then a sigmoid on the class maps (the probability that an object of the
//! class is centred in the cell) and an exponential on the four distances from the cell's
//! centre to the object's edges (in cells, predicted as logs). The result is the layout
//! [`contract::detection::decode`] reads, so candle's evaluation, the ONNX and NNEF heads and
//! every client decode the same numbers.
//!
//! Why this head: the backbone is frozen and ends at stride 32, so a 224-pixel input gives a
//! 7 × 7 grid. Anchors on so coarse a grid need many shapes per cell and a matching step;
//! a centre heatmap with a box per cell (CenterNet, Zhou et al. 2019) needs neither, its
//! decoding is a 3 × 3 local-maximum test plus a suppression that rarely fires, and its
//! outputs are all per-cell maps — one small graph that runs anywhere tract runs. The box is
//! FCOS's (Tian et al. 2019): distances to the four edges, learnt with an IoU loss at every
//! cell inside the object, not only at its centre. With a width/height and a centre offset
//! learnt at centre cells alone, boxes were found (class-agnostic AP 0.71 at IoU 0.1) but
//! placed badly (0.25 at IoU 0.5). The 3×3 layer lets a cell see its neighbours (objects span
//! 2–4 cells). Its limit: two objects of one class centred in the same 32-pixel cell are one
//! detection.

use candle_core::Tensor;
use contract::detection::HeadShape;

use crate::Result;

/// The trained weights (convolutions as `[out, in, k, k]`, biases as `[out]`).
#[derive(Debug, Clone)]
pub struct DetectHead {
    /// 1×1, `[hidden, 1280, 1, 1]`.
    pub reduce_w: Tensor,
    /// `[hidden]`.
    pub reduce_b: Tensor,
    /// 3×3, `[hidden, hidden, 3, 3]`.
    pub mix_w: Tensor,
    /// `[hidden]`.
    pub mix_b: Tensor,
    /// 1×1, `[classes + 4, hidden, 1, 1]`.
    pub out_w: Tensor,
    /// `[classes + 4]`.
    pub out_b: Tensor,
}

/// A conv with bias, `x [n, c, h, w]`.
pub(crate) fn conv(x: &Tensor, w: &Tensor, b: &Tensor, padding: usize) -> Result<Tensor> {
    let y = x.conv2d(w, padding, 1, 1, 1)?;
    Ok(y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?)
}

/// The raw scores `[n, classes + 4, side, side]` (before the sigmoids and exponential) of
/// weights `w` (as [`DetectHead::tensors`] orders them) on feature maps `map`.
pub fn raw(w: [&Tensor; 6], map: &Tensor) -> Result<Tensor> {
    let x = conv(map, w[0], w[1], 0)?.relu()?;
    let x = conv(&x, w[2], w[3], 1)?.relu()?;
    conv(&x, w[4], w[5], 0)
}

/// `log σ(x)`, stably: `−softplus(−x)`.
pub(crate) fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    // softplus(y) = max(y, 0) + log(1 + exp(−|y|))
    let y = x.neg()?;
    let soft = (y.relu()? + (y.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(soft.neg()?)
}

/// The output layout from raw scores: σ on the class maps, exp on the edge distances.
pub fn activate(raw: &Tensor, classes: usize) -> Result<Tensor> {
    let probs = log_sigmoid(&raw.narrow(1, 0, classes)?)?.exp()?;
    let edges = raw.narrow(1, classes, 4)?.exp()?;
    Ok(Tensor::cat(&[probs, edges], 1)?)
}

impl DetectHead {
    /// The weights stored in 8 bits by the NNEF head (`wasm_infer::nnef::export_map_head`):
    /// the 1×1 reduction and the 3×3 layer, nearly all of the head's bytes.
    pub fn quantised_sizes(&self) -> [usize; 2] {
        [self.reduce_w.elem_count(), self.mix_w.elem_count()]
    }

    /// The head as its NNEF file computes: the reduction's and the 3×3 layer's weights through
    /// the 8-bit round trip (one scale per output channel), the rest as they are.
    pub fn shipped(self) -> Result<DetectHead> {
        let trip = |t: Tensor| -> Result<Tensor> {
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            let back = wasm_infer::quant::round_trip(&values, t.dims())?;
            Ok(Tensor::from_vec(back, t.dims(), t.device())?)
        };
        Ok(DetectHead {
            reduce_w: trip(self.reduce_w)?,
            mix_w: trip(self.mix_w)?,
            ..self
        })
    }

    /// The weights: reduction, 3×3 layer, output; each weight then its bias (the order
    /// [`raw`] reads them in).
    pub fn tensors(&self) -> [&Tensor; 6] {
        [
            &self.reduce_w,
            &self.reduce_b,
            &self.mix_w,
            &self.mix_b,
            &self.out_w,
            &self.out_b,
        ]
    }

    /// Classes it detects.
    pub fn classes(&self) -> Result<usize> {
        Ok(self.out_b.dim(0)? - 4)
    }

    /// The head's output (the layout [`contract::detection::decode`] reads) for feature maps
    /// `[n, 1280, side, side]`: `[n, classes + 4, side, side]`.
    pub fn forward(&self, map: &Tensor) -> Result<Tensor> {
        activate(&raw(self.tensors(), map)?, self.classes()?)
    }

    /// The output's shape for one image.
    pub fn shape(&self, side: usize) -> Result<HeadShape> {
        Ok(HeadShape {
            classes: self.classes()?,
            side,
        })
    }

    /// [`DetectHead::forward`] in batches, one flat `[classes + 4, side, side]` row per image.
    pub fn outputs(&self, maps: &Tensor, batch: usize) -> Result<Vec<Vec<f32>>> {
        let n = maps.dim(0)?;
        let mut rows = Vec::with_capacity(n);
        for start in (0..n).step_by(batch.max(1)) {
            let part = maps.narrow(0, start, batch.min(n - start))?;
            rows.extend(self.forward(&part)?.flatten_from(1)?.to_vec2::<f32>()?);
        }
        Ok(rows)
    }
}
