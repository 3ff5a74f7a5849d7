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
            let weights = found.weights.try_as_plain_ram()?.as_slice::<f32>()?;
            let op = PointwiseConv::new(
                &found.in_shape,
                found.c_axis,
                weights,
                found.co,
                tail.bias.as_deref(),
                tail.clip,
                tail.residual.is_some(),
            )?
            .with_output_shape(&found.out_shape)?;
            (op, found.x_slot, tail)
        } else if let Some(conv) = node.op_as::<Conv>() {
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
}

/// `node` as a 1×1 convolution: one input a tensor, the other constant `[co, ci]` weights;
/// the channel axis of the input contracted with the weights' second axis and replaced, at
/// the same position, by their first; every other axis passed through in place.
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
    lands[c_axis] = Some(o_pos);
    // The output keeps the input's order of axes, so its memory is `[outer, co, inner]`.
    let order: Vec<usize> = lands
        .iter()
        .enumerate()
        .filter(|&(i, _)| i == c_axis || in_shape[i] > 1)
        .filter_map(|(_, o)| *o)
        .collect();
    let (co, ci) = (weights.shape()[0], weights.shape()[1]);
    if order.windows(2).any(|w| w[0] >= w[1]) || in_shape[c_axis] != ci || out_shape[o_pos] != co {
        return Ok(None);
    }
    Ok(Some(Found {
        x_slot,
        in_shape: in_shape.into(),
        c_axis,
        out_shape: out_shape.into(),
        o_axis: o_pos,
        co,
        weights,
    }))
}
