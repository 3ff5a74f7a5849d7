//! Channel-last tensors between this crate's convolution ops, in the plans it builds
//! natively.
//!
//! tract lays the backbone out channels first (NCHW or CHW), where a depthwise kernel works
//! plane by plane: the padding and the strides cost a copy of every plane, and the 7×7 and
//! 14×14 planes of the last stages leave most SIMD lanes empty. Channel-last, a pixel's
//! channels fill the lanes whatever the plane. [`crate::pointwise::PointwiseConv`] reads and
//! writes either layout through the matrix product's strides, with no transpose, and a
//! channel-last output lets the product read its weights stored input-major as they are
//! (`[ci, co]`) instead of packing a copy on every run. So [`install`] lays out channel-last
//! every tensor that only these ops write and read: on EfficientNet-Lite0, everything from
//! the stem's output to the head convolution's input. The stem reads the image's planes and
//! writes pixels; the head convolution reads pixels and writes planes for tract's pooling;
//! model outputs and tensors tract's own ops read keep tract's layout.

use std::collections::{HashMap, HashSet};

use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::bail;

use crate::depthwise::DepthwiseConv;
use crate::pointwise::PointwiseConv;

/// What [`install_kernels`] swapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// 1×1 (and stem) convolutions run by [`crate::pointwise`].
    pub pointwise: usize,
    /// Depthwise convolutions run by [`crate::depthwise`].
    pub depthwise: usize,
    /// Depthwise layers that run channel-last ([`install`]).
    pub channel_last: usize,
}

/// Swap every convolution of a decluttered `model` that this crate's kernels run for them,
/// then lay out channel-last the tensors between them ([`install`]): what the plans of
/// `session` get. In wasm the stem stays tract's, and the layout is tract's own (see
/// below). Run it between `into_decluttered` and `into_optimized`.
pub fn install_kernels(model: &mut TypedModel) -> TractResult<Installed> {
    let pointwise = crate::pointwise::install(model)?;
    let depthwise = crate::depthwise::install(model)?;
    if cfg!(target_arch = "wasm32") {
        // In wasm tract's declutter has already moved the depthwise convolutions
        // channel-last (for tract-linalg's simd128 kernel), so the 1×1 ops read and write
        // that layout around them, and `depthwise::install` put the channel-last op in.
        return Ok(Installed {
            pointwise,
            depthwise,
            channel_last: depthwise,
        });
    }
    let channel_last = install(model)?;
    Ok(Installed {
        pointwise,
        depthwise,
        channel_last,
    })
}

/// Lay out channel-last every tensor of `model` that only this crate's convolution ops
/// produce and read (and that is not a model output); returns how many depthwise layers run
/// channel-last. Run it after [`crate::pointwise::install`] and [`crate::depthwise::install`].
///
/// A depthwise op reads and writes one layout, and a 1×1 op adds its residual in its
/// output's layout, so tensors tied that way switch together or not at all; a tensor read by
/// tract's own ops, or the stem's input, keeps tract's layout. On EfficientNet-Lite0 that is
/// every tensor from the stem's output to the head convolution's input: the stem writes
/// pixels, the head convolution reads pixels and writes planes for the pooling.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let Some(plan) = Plan::of(model)? else {
        return Ok(0);
    };
    let mut switched = model.clone();
    let mut count = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let last = |outlet: OutletId| plan.last.contains(&outlet);
        let out = OutletId::new(id, 0);
        if let Some(op) = node.op_as::<DepthwiseConv>() {
            if !last(out) {
                continue;
            }
            let op = op.clone().channel_last()?;
            let shape = op.shape(true);
            switched.node_mut(id).op = Box::new(op);
            switched.set_outlet_fact(out, f32::fact(&*shape))?;
            count += 1;
        } else if let Some(op) = node.op_as::<PointwiseConv>() {
            let mut op = op.clone();
            if last(node.inputs[0]) {
                let shape = switched
                    .outlet_fact(node.inputs[0])?
                    .shape
                    .as_concrete()
                    .map(TVec::from);
                let Some(shape) = shape else { return Ok(0) };
                op = op.reading_channel_last(&shape)?;
            }
            if last(out) {
                op = op.writing_channel_last(&plan.shape(&switched, model, id)?)?;
                let shape: TVec<usize> = op.output_shape().into();
                switched.set_outlet_fact(out, f32::fact(&*shape))?;
            }
            switched.node_mut(id).op = Box::new(op);
        }
    }
    // Every op must accept the facts it is now given (a graph this pass did not foresee keeps
    // tract's layout rather than fail to load).
    for id in switched.eval_order()? {
        let node = switched.node(id);
        let inputs: TVec<TypedFact> = node
            .inputs
            .iter()
            .map(|&i| switched.outlet_fact(i).cloned())
            .collect::<TractResult<_>>()?;
        let refs: TVec<&TypedFact> = inputs.iter().collect();
        let agrees = match (node.op.output_facts(&refs), node.outputs.first()) {
            (Ok(facts), Some(out)) => facts
                .first()
                .is_some_and(|f| f.datum_type == out.fact.datum_type && f.shape == out.fact.shape),
            (Ok(facts), None) => facts.is_empty(),
            (Err(_), _) => false,
        };
        if !agrees {
            return Ok(0);
        }
    }
    *model = switched;
    Ok(count)
}

/// Which outlets switch.
struct Plan {
    last: HashSet<OutletId>,
}

impl Plan {
    fn of(model: &TypedModel) -> TractResult<Option<Plan>> {
        let outputs: HashSet<OutletId> = model.output_outlets()?.iter().copied().collect();
        // Outlets an op of ours writes, that only ops of ours read, each in a way that can
        // take pixels: a 1×1 op's input (not the stem's patches) or residual, a depthwise
        // op's input. The writer must be able to write pixels: a depthwise op, or a 1×1 op
        // reading planes of its own (not a tensor tract already laid out channel-last).
        let mut can = HashSet::new();
        for id in model.eval_order()? {
            let out = OutletId::new(id, 0);
            let node = model.node(id);
            let writer_can = node.op_as::<DepthwiseConv>().is_some()
                || node.op_as::<PointwiseConv>().is_some_and(|p| p.is_planar());
            if !writer_can || outputs.contains(&out) {
                continue;
            }
            let readers = model.outlet_successors(out);
            let readers_can = !readers.is_empty()
                && readers.iter().all(|r| {
                    let n = model.node(r.node);
                    match (n.op_as::<PointwiseConv>(), n.op_as::<DepthwiseConv>()) {
                        (Some(p), _) => {
                            (r.slot == 0 && p.is_planar() && !p.has_patches())
                                || (r.slot == 1 && p.has_residual())
                        }
                        (_, Some(_)) => r.slot == 0,
                        _ => false,
                    }
                });
            if readers_can {
                can.insert(out);
            }
        }
        // Tied outlets: a depthwise op's input and output, a 1×1 op's residual and output.
        let mut group: HashMap<OutletId, OutletId> = HashMap::new();
        fn root(group: &HashMap<OutletId, OutletId>, mut o: OutletId) -> OutletId {
            while let Some(&p) = group.get(&o) {
                if p == o {
                    break;
                }
                o = p;
            }
            o
        }
        for id in model.eval_order()? {
            let node = model.node(id);
            let tied = if node.op_as::<DepthwiseConv>().is_some() {
                Some(node.inputs[0])
            } else if node
                .op_as::<PointwiseConv>()
                .is_some_and(|p| p.has_residual())
            {
                Some(node.inputs[1])
            } else {
                None
            };
            if let Some(other) = tied {
                let (a, b) = (root(&group, OutletId::new(id, 0)), root(&group, other));
                if a != b {
                    group.insert(a, b);
                }
            }
        }
        // A group switches only if every outlet in it can.
        let mut mentioned: Vec<OutletId> = can.iter().copied().collect();
        mentioned.extend(group.iter().flat_map(|(&a, &b)| [a, b]));
        let blocked: HashSet<OutletId> = mentioned
            .iter()
            .filter(|o| !can.contains(o))
            .map(|&o| root(&group, o))
            .collect();
        let last: HashSet<OutletId> = can
            .into_iter()
            .filter(|&o| !blocked.contains(&root(&group, o)))
            .collect();
        Ok((!last.is_empty()).then_some(Plan { last }))
    }

    /// The channel-last shape the 1×1 op `id` writes: its residual's, when it has one; a
    /// depthwise reader's input shape, when it has one; else `[images, pixels, channels]`.
    fn shape(
        &self,
        switched: &TypedModel,
        model: &TypedModel,
        id: usize,
    ) -> TractResult<TVec<usize>> {
        let node = model.node(id);
        let Some(op) = node.op_as::<PointwiseConv>() else {
            bail!("node {id} is not a 1×1 convolution");
        };
        if op.has_residual()
            && let Some(s) = switched.outlet_fact(node.inputs[1])?.shape.as_concrete()
        {
            return Ok(s.into());
        }
        for r in model.outlet_successors(OutletId::new(id, 0)) {
            if let Some(dw) = model.node(r.node).op_as::<DepthwiseConv>() {
                return Ok(dw.clone().channel_last()?.shape(false));
            }
        }
        let g = op.geometry();
        Ok(tvec!(g.outer, g.inner, g.co))
    }
}
