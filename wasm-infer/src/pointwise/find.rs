//! Finding the convolutions [`PointwiseConv`] runs in a decluttered graph, and swapping them
//! (with the elementwise chain after each) for it.

use std::sync::Arc;

use tract_nnef::prelude::*;
use tract_nnef::tract_core::ops::cnn::Conv;
use tract_nnef::tract_core::ops::einsum::EinSum;

use super::PointwiseConv;
use crate::depthwise::{ConvParts, conv_geometry};
use crate::epilogue::{Accept, follow, replace};

/// Replace every 1×1 convolution of a decluttered model that [`PointwiseConv`] can run (an
/// `f32` `EinSum` of a tensor and constant `[co, ci]` weights over the channel axis, concrete
/// shapes), with the elementwise chain after it; returns how many were replaced. Run it
/// between `into_decluttered` and `into_optimized`.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let (op, x_slot, tail) = if let Some(einsum) = node.op_as::<EinSum>() {
            let Some(found) = pointwise_of(model, node, einsum)? else {
                continue;
            };
            let tail = follow(
                model,
                OutletId::new(id, 0),
                Accept {
                    channels: found.co,
                    c_axis: found.o_axis,
                    bias: true,
                    residual: true,
                },
            )?;
            (found.op(&tail)?, found.x_slot, tail)
        } else if let Some(conv) = node.op_as::<Conv>() {
            // In wasm tract's own plan for the stem (its lazy im2col and matrix kernels) ran
            // faster than gathering patches for `quad` (4.9 against 7.7 ms under node).
            if cfg!(target_arch = "wasm32") {
                continue;
            }
            let Some((op, c_axis)) = convolution_of(model, node, conv)? else {
                continue;
            };
            // Its bias is its own input; the ReLU6 after it is folded.
            let tail = follow(
                model,
                OutletId::new(id, 0),
                Accept {
                    channels: op.geo.co,
                    c_axis,
                    bias: false,
                    residual: false,
                },
            )?;
            let op = match tail.clip {
                Some((lo, hi)) => op.with_clip(lo, hi)?,
                None => op,
            };
            (op, 0, tail)
        } else {
            continue;
        };
        let input = node.inputs[x_slot];
        replace(model, id, &[input], op, tail)?;
        replaced += 1;
    }
    if replaced > 0 {
        model.compact()?;
    }
    Ok(replaced)
}

/// A convolution that is not depthwise nor 1×1 (EfficientNet's stem: 3×3, stride 2, three
/// channels in) as [`PointwiseConv::convolution`]: one group, and what
/// [`crate::depthwise::conv_geometry`] takes. With the output's channel axis.
fn convolution_of(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<(PointwiseConv, usize)>> {
    let Some(ConvParts {
        geo,
        batch_axis,
        kernel,
        bias,
        last: false,
    }) = conv_geometry(model, node, conv)?
    else {
        return Ok(None);
    };
    let co = conv.pool_spec.output_channels;
    if conv.group != 1 || kernel.shape() != [co, geo.c, geo.kh, geo.kw] {
        return Ok(None);
    }
    let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
    let bias: Vec<f32> = if bias.len() == 1 {
        vec![bias[0]; co]
    } else {
        bias.to_vec()
    };
    let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
    let op = PointwiseConv::convolution(geo, batch_axis, kernel, co, Some(&bias), None)?;
    Ok(Some((op, usize::from(batch_axis))))
}

/// A 1×1 convolution found in an `EinSum`.
struct Found {
    x_slot: usize,
    in_shape: TVec<usize>,
    c_axis: usize,
    out_shape: TVec<usize>,
    /// The channel axis of the output.
    o_axis: usize,
    co: usize,
    weights: Arc<Tensor>,
    /// The input is channel-last and the output is not.
    in_last: bool,
    /// The output is channel-last and the input is not.
    out_last: bool,
}

impl Found {
    /// The op, with its epilogue.
    fn op(&self, tail: &crate::epilogue::Tail) -> TractResult<PointwiseConv> {
        let weights = self.weights.try_as_plain_ram()?.as_slice::<f32>()?;
        // A channel-last input is built as the planar input it stands for (the output's
        // order of axes), then read channel-last.
        let (planar, c_axis): (TVec<usize>, usize) = if self.in_last {
            let mut shape = self.out_shape.clone();
            shape[self.o_axis] = self.in_shape[self.c_axis];
            (shape, self.o_axis)
        } else {
            (self.in_shape.clone(), self.c_axis)
        };
        let op = PointwiseConv::new(
            &planar,
            c_axis,
            weights,
            self.co,
            tail.bias.as_deref(),
            tail.clip,
            tail.residual.is_some(),
        )?;
        let op = if self.in_last {
            op.reading_channel_last(&self.in_shape)?
        } else {
            op
        };
        if self.out_last {
            op.writing_channel_last(&self.out_shape)
        } else {
            op.with_output_shape(&self.out_shape)
        }
    }
}

/// `node` as a 1×1 convolution: one input a tensor, the other constant `[co, ci]` weights;
/// the channel axis of the input contracted with the weights' second axis and replaced by
/// their first, at the same position or last; every other axis passed through in order.
fn pointwise_of(
    model: &TypedModel,
    node: &TypedNode,
    einsum: &EinSum,
) -> TractResult<Option<Found>> {
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
        || node.outputs.len() != 1
    {
        return Ok(None);
    }
    let facts = [
        model.outlet_fact(node.inputs[0])?,
        model.outlet_fact(node.inputs[1])?,
    ];
    let Some(w_slot) = (0..2).find(|&s| facts[s].konst.is_some() && facts[s].rank() == 2) else {
        return Ok(None);
    };
    let x_slot = 1 - w_slot;
    let (x, w) = (facts[x_slot], facts[w_slot]);
    let Some(weights) = w.konst.clone() else {
        return Ok(None);
    };
    let out = &node.outputs[0].fact;
    let (Some(in_shape), Some(out_shape)) = (x.shape.as_concrete(), out.shape.as_concrete()) else {
        return Ok(None);
    };
    if x.konst.is_some()
        || [x.datum_type, weights.datum_type(), out.datum_type]
            .iter()
            .any(|&t| t != f32::datum_type())
    {
        return Ok(None);
    }
    // Axes of the input, each with where it lands in the output (None: a unit axis dropped).
    let mut lands: Vec<Option<usize>> = vec![None; in_shape.len()];
    let (mut o_pos, mut i_pos) = (None, None);
    for axis in einsum.axes.iter_all_axes() {
        let (xs, ws, os) = (&axis.inputs[x_slot], &axis.inputs[w_slot], &axis.outputs[0]);
        match (xs.as_slice(), ws.as_slice(), os.as_slice()) {
            ([], [0], [o]) if o_pos.is_none() => o_pos = Some(*o),
            ([i], [1], []) if i_pos.is_none() => i_pos = Some(*i),
            ([i], [], [o]) if in_shape[*i] == out_shape[*o] => lands[*i] = Some(*o),
            // A unit axis inserted (tract puts the batch axis back on the last convolution)
            // or dropped: the layout in memory is the same.
            ([], [], [o]) if out_shape[*o] == 1 => {}
            ([i], [], []) if in_shape[*i] == 1 => {}
            _ => return Ok(None),
        }
    }
    let (Some(o_pos), Some(c_axis)) = (o_pos, i_pos) else {
        return Ok(None);
    };
    // The other axes that hold more than one value, with where each lands: they must keep
    // their order, so the memory of input and output is `[outer, c, inner]` each, the channel
    // axis between the same axes (`same`) or moved last (tract's wasm declutter moves the
    // channels of depthwise convolutions last, and the 1×1 convolutions around them read or
    // write that layout).
    let Some(others) = lands
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != c_axis && in_shape[i] > 1)
        .map(|(i, o)| o.map(|o| (i, o)))
        .collect::<Option<Vec<(usize, usize)>>>()
    else {
        return Ok(None);
    };
    let kept = others.len();
    let (co, ci) = (weights.shape()[0], weights.shape()[1]);
    if others.windows(2).any(|w| w[0].1 >= w[1].1)
        || in_shape[c_axis] != ci
        || out_shape[o_pos] != co
    {
        return Ok(None);
    }
    let in_before = others.iter().filter(|&&(i, _)| i < c_axis).count();
    let out_before = others.iter().filter(|&&(_, o)| o < o_pos).count();
    let (in_last, out_last) = if in_before == out_before {
        (false, false)
    } else if out_before == kept && out_shape.last() == Some(&co) {
        (false, true)
    } else if in_before == kept && in_shape.last() == Some(&ci) {
        (true, false)
    } else {
        return Ok(None);
    };
    Ok(Some(Found {
        x_slot,
        in_shape: in_shape.into(),
        c_axis,
        out_shape: out_shape.into(),
        o_axis: o_pos,
        co,
        weights,
        in_last,
        out_last,
    }))
}
