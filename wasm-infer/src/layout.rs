//! Channel-last tensors between a 1×1 convolution, a depthwise convolution and the 1×1
//! convolution after it, in the plans this crate builds natively.
//!
//! tract lays the backbone out channels first (NCHW or CHW), where a depthwise kernel works
//! plane by plane: the padding and the strides cost a copy of every plane, and the 7×7 and
//! 14×14 planes of the last stages leave most SIMD lanes empty. Channel-last, a pixel's
//! channels fill the lanes whatever the plane. [`crate::pointwise::PointwiseConv`] reads and
//! writes either layout at the same cost (the matrix product takes any strides), so in each
//! inverted-residual block, expand (or stem) 1×1 → depthwise → project 1×1, the two tensors
//! inside the block can be channel-last with no transpose anywhere: the expand convolution
//! writes its output channel-last, the depthwise op runs channel-last, and the project
//! convolution reads channel-last and writes planes again (its residual input and every
//! tensor outside the block keep tract's layout).

use std::collections::HashSet;

use tract_nnef::prelude::*;

use crate::depthwise::DepthwiseConv;
use crate::pointwise::PointwiseConv;

/// What [`install_kernels`] swapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// 1×1 (and stem) convolutions run by [`crate::pointwise`].
    pub pointwise: usize,
    /// Depthwise convolutions run by [`crate::depthwise`].
    pub depthwise: usize,
    /// Blocks whose inner tensors are channel-last ([`install`]).
    pub channel_last: usize,
}

/// Swap every convolution of a decluttered `model` that this crate's native kernels run for
/// them, then lay out each block's inner tensors channel-last: what the plans of
/// `session` get natively. Run it between `into_decluttered` and `into_optimized`.
pub fn install_kernels(model: &mut TypedModel) -> TractResult<Installed> {
    let pointwise = crate::pointwise::install(model)?;
    let depthwise = crate::depthwise::install(model)?;
    let channel_last = install(model)?;
    Ok(Installed {
        pointwise,
        depthwise,
        channel_last,
    })
}

/// Switch every `PointwiseConv → DepthwiseConv → PointwiseConv` chain of `model` whose two
/// inner tensors feed only the next op of the chain (and are not model outputs) to
/// channel-last inner tensors; returns how many chains were switched. Run it after
/// [`crate::pointwise::install`] and [`crate::depthwise::install`].
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let outputs: HashSet<OutletId> = model.output_outlets()?.iter().copied().collect();
    let mut switched = 0;
    for id in model.eval_order()? {
        let Some(chain) = chain_at(model, id, &outputs)? else {
            continue;
        };
        let Chain {
            expand,
            depthwise,
            project,
        } = chain;
        let dw = model.node(depthwise).op_as::<DepthwiseConv>().cloned();
        let before = model.node(expand).op_as::<PointwiseConv>().cloned();
        let after = model.node(project).op_as::<PointwiseConv>().cloned();
        let (Some(dw), Some(before), Some(after)) = (dw, before, after) else {
            continue;
        };
        let dw = dw.channel_last()?;
        let (inner_in, inner_out) = (dw.shape(false), dw.shape(true));
        let before = before.writing_channel_last(&inner_in)?;
        let after = after.reading_channel_last(&inner_out)?;
        model.node_mut(expand).op = Box::new(before);
        model.node_mut(depthwise).op = Box::new(dw);
        model.node_mut(project).op = Box::new(after);
        model.set_outlet_fact(OutletId::new(expand, 0), f32::fact(&*inner_in))?;
        model.set_outlet_fact(OutletId::new(depthwise, 0), f32::fact(&*inner_out))?;
        switched += 1;
    }
    Ok(switched)
}

/// The three nodes of one chain.
struct Chain {
    expand: usize,
    depthwise: usize,
    project: usize,
}

/// The chain whose depthwise convolution is node `id`, when it can switch.
fn chain_at(
    model: &TypedModel,
    id: usize,
    outputs: &HashSet<OutletId>,
) -> TractResult<Option<Chain>> {
    let node = model.node(id);
    let Some(dw) = node.op_as::<DepthwiseConv>() else {
        return Ok(None);
    };
    if dw.is_channel_last() || node.inputs.len() != 1 {
        return Ok(None);
    }
    let g = dw.geometry();
    // The tensor in: only this op reads it, from the first output of a planar 1×1 (or stem)
    // convolution with no residual, whose output is this op's input image by image.
    let input = node.inputs[0];
    let sole_reader =
        |outlet: OutletId| !outputs.contains(&outlet) && model.outlet_successors(outlet).len() == 1;
    if input.slot != 0 || !sole_reader(input) {
        return Ok(None);
    }
    let Some(before) = model.node(input.node).op_as::<PointwiseConv>() else {
        return Ok(None);
    };
    let b = before.geometry();
    if !before.is_planar()
        || before.has_residual()
        || (b.outer, b.co, b.inner) != (g.n, g.c, g.h * g.w)
    {
        return Ok(None);
    }
    // The tensor out: only the next 1×1 convolution reads it, as its (first) input.
    let out = OutletId::new(id, 0);
    if !sole_reader(out) {
        return Ok(None);
    }
    let next = model.outlet_successors(out)[0];
    let Some(after) = model.node(next.node).op_as::<PointwiseConv>() else {
        return Ok(None);
    };
    let a = after.geometry();
    if next.slot != 0
        || !after.is_planar()
        || after.has_patches()
        || (a.outer, a.ci, a.inner) != (g.n, g.c, g.oh * g.ow)
    {
        return Ok(None);
    }
    Ok(Some(Chain {
        expand: input.node,
        depthwise: id,
        project: next.node,
    }))
}
