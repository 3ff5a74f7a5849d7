//! Elementwise tails folded into the convolution ops this crate swaps into native plans
//! ([`crate::pointwise`], [`crate::depthwise`]).
//!
//! After tract's declutter a convolution of EfficientNet is followed by a chain of binary ops:
//! its bias (`Add` of a per-channel constant), ReLU6 (`Max` with 0, then `Min` with 6) and, on
//! the last convolution of a residual block, the block's input (`Add` of a tensor of the same
//! shape). Left as separate nodes, each is one more pass over a feature map that no longer sits
//! in cache. [`follow`] walks that chain from a convolution's output and says what the op can
//! apply to each tile while it is still in cache: bias, then clamp, then residual, in the
//! graph's order. It stops at the first node that is anything else, that is an output of the
//! model, or whose input has another consumer, so the fused graph computes exactly what the
//! chain did. [`replace`] then swaps the convolution and its chain for the op in one patch.

use tract_nnef::prelude::*;
use tract_nnef::tract_core::ops::binary::TypedBinOp;
use tract_nnef::tract_core::ops::math::{Add, Max, Min};

/// What a convolution can apply to its output: `clamp(x + bias, lo, hi) + residual`.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// One value per output channel.
    pub bias: Option<Vec<f32>>,
    /// Lower and upper bound (infinite when absent).
    pub clip: Option<(f32, f32)>,
    /// A tensor of the output's shape added last.
    pub residual: Option<OutletId>,
    /// The chain's last outlet: its consumers are rewired to the fused op.
    pub last: OutletId,
    /// Nodes of the chain, to remove with the convolution.
    pub nodes: Vec<usize>,
}

impl Tail {
    /// Nothing absorbed after `from`.
    fn at(from: OutletId) -> Self {
        Self {
            bias: None,
            clip: None,
            residual: None,
            last: from,
            nodes: Vec::new(),
        }
    }
}

/// What [`follow`] may absorb.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accept {
    /// Output channels, and the axis they are on.
    pub channels: usize,
    pub c_axis: usize,
    /// Whether a per-channel bias may be absorbed (ops that fold their own bias say no).
    pub bias: bool,
    /// Whether a residual add may be absorbed (a second input of the op).
    pub residual: bool,
}

/// Walk the elementwise chain after `from` (see the module docs).
pub(crate) fn follow(model: &TypedModel, from: OutletId, accept: Accept) -> TractResult<Tail> {
    let out_fact = model.outlet_fact(from)?.clone();
    let rank = out_fact.rank();
    let mut tail = Tail::at(from);
    let (mut lo, mut hi) = (None::<f32>, None::<f32>);
    loop {
        let at = tail.last;
        if model.outputs.contains(&at) {
            break;
        }
        let succs = &model.node(at.node).outputs[at.slot].successors;
        let [succ] = succs.as_slice() else { break };
        let next = model.node(succ.node);
        let Some(bin) = next.op_as::<TypedBinOp>() else {
            break;
        };
        if next.inputs.len() != 2 || next.outputs.len() != 1 || succ.slot > 1 {
            break;
        }
        if next.outputs[0].fact.shape != out_fact.shape
            || next.outputs[0].fact.datum_type != f32::datum_type()
        {
            break;
        }
        let other = next.inputs[1 - succ.slot];
        let fact = model.outlet_fact(other)?;
        if fact.datum_type != f32::datum_type() {
            break;
        }
        let konst = fact.konst.clone();
        let taken = if bin.0.is::<Add>() {
            match konst {
                Some(k) => {
                    if !accept.bias || tail.bias.is_some() || lo.is_some() || hi.is_some() {
                        false
                    } else if let Some(b) = per_channel(&k, rank, accept)? {
                        tail.bias = Some(b);
                        true
                    } else {
                        false
                    }
                }
                None => {
                    let fits = accept.residual
                        && tail.residual.is_none()
                        && fact.shape == out_fact.shape
                        && !depends_on(model, other.node, from.node);
                    if fits {
                        tail.residual = Some(other);
                    }
                    fits
                }
            }
        } else if (bin.0.is::<Max>() || bin.0.is::<Min>()) && tail.residual.is_none() {
            match konst
                .as_deref()
                .map(|k| scalar(k, rank))
                .transpose()?
                .flatten()
            {
                Some(v) if bin.0.is::<Max>() && lo.is_none() => {
                    lo = Some(v);
                    true
                }
                Some(v) if bin.0.is::<Min>() && hi.is_none() => {
                    hi = Some(v);
                    true
                }
                _ => false,
            }
        } else {
            false
        };
        if !taken {
            break;
        }
        tail.nodes.push(next.id);
        tail.last = OutletId::new(next.id, 0);
    }
    if lo.is_some() || hi.is_some() {
        let (lo, hi) = (lo.unwrap_or(f32::NEG_INFINITY), hi.unwrap_or(f32::INFINITY));
        // min(max(x, lo), hi) is a clamp, whichever came first, only when lo ≤ hi: otherwise
        // leave the whole chain to tract.
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Ok(Tail::at(from));
        }
        tail.clip = Some((lo, hi));
    }
    Ok(tail)
}

/// Replace the convolution node `conv` and the chain `tail` after it by `op`, which reads
/// `inputs` (and the residual, when the tail has one) and gives what the chain's last node gave.
pub(crate) fn replace(
    model: &mut TypedModel,
    conv: usize,
    inputs: &[OutletId],
    op: impl Into<Box<dyn TypedOp>>,
    tail: Tail,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::default();
    let mut taps = TVec::new();
    for &input in inputs.iter().chain(&tail.residual) {
        taps.push(patch.tap_model(model, input)?);
    }
    let name = model.node(tail.last.node).name.clone();
    let out = patch.wire_node(name, op, &taps)?;
    patch.shunt_outside(model, tail.last, out[0])?;
    patch.obliterate(conv)?;
    for n in tail.nodes {
        patch.obliterate(n)?;
    }
    patch.apply(model)
}

/// Whether `node` is `ancestor` or computed from it (a residual computed from the
/// convolution's own output cannot be an input of the fused op).
fn depends_on(model: &TypedModel, node: usize, ancestor: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        if n == ancestor {
            return true;
        }
        if seen.insert(n) {
            todo.extend(model.node(n).inputs.iter().map(|i| i.node));
        }
    }
    false
}

/// A constant broadcast along the channel axis only: one value per channel.
fn per_channel(k: &Tensor, rank: usize, accept: Accept) -> TractResult<Option<Vec<f32>>> {
    if k.rank() > rank {
        return Ok(None);
    }
    let pad = rank - k.rank();
    let mut along = None;
    for (axis, &d) in k.shape().iter().enumerate() {
        if d == 1 {
            continue;
        }
        if axis + pad != accept.c_axis || d != accept.channels {
            return Ok(None);
        }
        along = Some(d);
    }
    let values = k.cast_to::<f32>()?;
    let values = values.try_as_plain_ram()?.as_slice::<f32>()?;
    Ok(Some(match along {
        Some(_) => values.to_vec(),
        None => vec![values[0]; accept.channels],
    }))
}

/// A one-value constant that broadcasts to any tensor of `rank`.
fn scalar(k: &Tensor, rank: usize) -> TractResult<Option<f32>> {
    if k.len() != 1 || k.rank() > rank {
        return Ok(None);
    }
    let v = k.cast_to::<f32>()?;
    Ok(Some(v.try_as_plain_ram()?.as_slice::<f32>()?[0]))
}

/// Finish one row of outputs of one channel: add `bias`, clamp, add the residual. On x86-64
/// with AVX-512 the loop runs 16 floats an instruction.
#[cfg(not(target_arch = "wasm32"))]
#[inline]
pub(crate) fn finish_row(
    row: &mut [f32],
    bias: f32,
    clip: Option<(f32, f32)>,
    residual: Option<&[f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just checked for the feature the function is compiled for.
        unsafe {
            finish_row_avx512(row, bias, clip, residual)
        };
        return;
    }
    finish(row, bias, clip, residual);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn finish_row_avx512(
    row: &mut [f32],
    bias: f32,
    clip: Option<(f32, f32)>,
    residual: Option<&[f32]>,
) {
    finish(row, bias, clip, residual);
}

/// [`finish_row`] for channel-last pixels: `out` holds pixels `stride` floats apart (the
/// last one may end early), each starting with `bias.len()` channels to finish (`bias` one
/// value for each), and `residual` the same layout.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn finish_pixels(
    out: &mut [f32],
    stride: usize,
    bias: &[f32],
    clip: Option<(f32, f32)>,
    residual: Option<&[f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just checked for the feature the function is compiled for.
        unsafe {
            finish_pixels_avx512(out, stride, bias, clip, residual)
        };
        return;
    }
    each_pixel(out, stride, bias, clip, residual);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn finish_pixels_avx512(
    out: &mut [f32],
    stride: usize,
    bias: &[f32],
    clip: Option<(f32, f32)>,
    residual: Option<&[f32]>,
) {
    each_pixel(out, stride, bias, clip, residual);
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn each_pixel(
    out: &mut [f32],
    stride: usize,
    bias: &[f32],
    clip: Option<(f32, f32)>,
    residual: Option<&[f32]>,
) {
    let n = bias.len();
    for (p, pixel) in out.chunks_mut(stride).enumerate() {
        let res = residual.map(|r| &r[p * stride..][..n]);
        finish_channels(&mut pixel[..n], bias, clip, res);
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn finish_channels(
    row: &mut [f32],
    bias: &[f32],
    clip: Option<(f32, f32)>,
    residual: Option<&[f32]>,
) {
    let row = &mut row[..bias.len()];
    match (clip, residual) {
        (Some((lo, hi)), Some(res)) => {
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v = clamp(*v + b, lo, hi) + r;
            }
        }
        (Some((lo, hi)), None) => {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = clamp(*v + b, lo, hi);
            }
        }
        (None, Some(res)) => {
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v = *v + b + r;
            }
        }
        (None, None) => {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

/// The clamp as comparisons (one `max` and one `min` instruction each; a NaN stays NaN).
#[inline(always)]
pub(crate) fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn finish(row: &mut [f32], bias: f32, clip: Option<(f32, f32)>, residual: Option<&[f32]>) {
    match (clip, residual) {
        (Some((lo, hi)), Some(res)) => {
            for (v, r) in row.iter_mut().zip(res) {
                *v = clamp(*v + bias, lo, hi) + r;
            }
        }
        (Some((lo, hi)), None) => {
            for v in row.iter_mut() {
                *v = clamp(*v + bias, lo, hi);
            }
        }
        (None, Some(res)) => {
            for (v, r) in row.iter_mut().zip(res) {
                *v = *v + bias + r;
            }
        }
        (None, None) => {
            for v in row.iter_mut() {
                *v += bias;
            }
        }
    }
}
