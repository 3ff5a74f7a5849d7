//! A vectorised depthwise convolution that replaces tract's own in the plans this crate builds,
//! natively (the api's, the trainer's checks) and in browsers.
//!
//! tract's `DepthWiseConv` vectorises only the stride-1 interior zones of a plane and walks
//! every border and every stride-2 layer one output at a time: EfficientNet-Lite0's 3×3 and 5×5
//! depthwise layers are 9 % of the backbone's multiply-adds but took 42 % of its time
//! (`scripts/profile-tract.sh`, see BENCHMARKS.md). [`install`] walks a decluttered model and
//! swaps every `f32` depthwise `Conv` with concrete shapes for [`DepthwiseConv`], with the
//! ReLU6 after it, which tract's optimiser then leaves alone; any other convolution keeps
//! tract's path.
//!
//! Two kernels, one per layout:
//! - channels first (`planar`, for NCHW or CHW layers): one channel plane at a time,
//!   copied into a zero-padded, phase-split scratch so every tap reads a contiguous run,
//!   outputs in blocks of columns × rows held in accumulators across the taps;
//! - channel-last (`last`, for NHWC or HWC layers, and what `layout::install` switches each
//!   block's depthwise layer to natively, between two of this crate's 1×1 convolutions): a
//!   pixel's channels in SIMD lanes, the padding skipped rather than copied, interior pixels
//!   in groups that share each weight load. On this backbone it takes about half the
//!   channels-first time (`examples/bench_depthwise.rs`, `scripts/bench-depthwise.sh`, which
//!   time both against tract's op on every layer).
//!
//! In wasm, tract's declutter has already laid the depthwise layers out channel-last (for its
//! own simd128 kernel), so the wasm build installs the channel-last kernel only, with its
//! four-lane blocks (`quad`), and leaves a layer that stayed channels-first to tract: there is
//! no `planar` in the module.

use std::sync::Arc;

use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_nnef::tract_core::ops::nn::DataFormat;

mod last;
// The wasm build installs channel-last depthwise convolutions only (`depthwise_of`).
#[cfg(not(target_arch = "wasm32"))]
mod planar;
mod quad;

pub use last::{Simd, limit_simd};

/// Shapes and steps of one depthwise convolution, all concrete.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Geometry {
    /// Images per run.
    pub n: usize,
    /// Channels (input = output).
    pub c: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero rows above the input.
    pub pad_top: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
}

/// Depthwise convolution of an `f32` tensor, channels first (NCHW or CHW) or channel-last
/// (NHWC or HWC), kernel and bias folded in.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DepthwiseConv {
    geo: Geometry,
    /// Whether tensors carry the batch axis (NCHW), or not (CHW, one image: tract's declutter
    /// drops a batch axis of 1).
    batch_axis: bool,
    /// `[c, kh * kw]`.
    kernel: Arc<Tensor>,
    /// `[c]`.
    bias: Arc<Tensor>,
    /// ReLU6 (or any clamp) applied to the outputs, as bits (the op must hash).
    clip: Option<(u32, u32)>,
    /// Channel-last tensors (`[n, h, w, c]` or `[h, w, c]`), the kernel then `[kh * kw, c]`.
    last: bool,
}

impl DepthwiseConv {
    /// A depthwise convolution on NCHW tensors; `kernel` holds `c × kh × kw` floats (OIHW
    /// order) and `bias` one per channel or a single one for all.
    pub fn new(geo: Geometry, kernel: &[f32], bias: &[f32]) -> TractResult<Self> {
        Self::with_layout(geo, true, kernel, bias)
    }

    /// [`DepthwiseConv::new`] on CHW tensors (one image, no batch axis) when `batch_axis` is
    /// false.
    pub fn with_layout(
        geo: Geometry,
        batch_axis: bool,
        kernel: &[f32],
        bias: &[f32],
    ) -> TractResult<Self> {
        ensure!(
            batch_axis || geo.n == 1,
            "a CHW depthwise convolution runs one image, not {}",
            geo.n
        );
        ensure!(
            geo.n > 0 && geo.c > 0 && geo.oh > 0 && geo.ow > 0 && geo.sh > 0 && geo.sw > 0,
            "degenerate depthwise geometry {geo:?}"
        );
        ensure!(
            geo.kh > 0 && geo.kw > 0,
            "depthwise kernel is empty in {geo:?}"
        );
        ensure!(
            kernel.len() == geo.c * geo.kh * geo.kw,
            "depthwise kernel has {} values for {geo:?}",
            kernel.len()
        );
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias[0]; geo.c],
            n if n == geo.c => bias.to_vec(),
            n => bail!("depthwise bias has {n} values for {} channels", geo.c),
        };
        let kernel = tensor1(kernel).into_shape(&[geo.c, geo.kh * geo.kw])?;
        Ok(Self {
            geo,
            batch_axis,
            kernel: Arc::new(kernel),
            bias: Arc::new(tensor1(&bias)),
            clip: None,
            last: false,
        })
    }

    /// The same convolution with its outputs clamped to `[lo, hi]` (the ReLU6 after it, folded
    /// in by [`install`]).
    pub fn with_clip(mut self, lo: f32, hi: f32) -> TractResult<Self> {
        ensure!(lo <= hi, "clamp to [{lo}, {hi}]");
        self.clip = Some((lo.to_bits(), hi.to_bits()));
        Ok(self)
    }

    /// The same convolution on channel-last tensors: `[n, h, w, c]` in, `[n, oh, ow, c]`
    /// out (without the batch axis when the op has none). Between two of this crate's 1×1
    /// convolutions, which read and write either layout at the same cost, this layout puts
    /// the channels in SIMD lanes (see `layout::install`).
    pub fn channel_last(mut self) -> TractResult<Self> {
        if self.last {
            return Ok(self);
        }
        let (c, taps) = (self.geo.c, self.geo.kh * self.geo.kw);
        let kernel = self.kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut by_tap = vec![0f32; c * taps];
        for (ch, row) in kernel.chunks_exact(taps).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                by_tap[t * c + ch] = v;
            }
        }
        self.kernel = Arc::new(tensor1(&by_tap).into_shape(&[taps, c])?);
        self.last = true;
        Ok(self)
    }

    /// Whether it runs on channel-last tensors.
    pub fn is_channel_last(&self) -> bool {
        self.last
    }

    /// The geometry it runs.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Shape of the input, or with `output` of the output.
    pub fn shape(&self, output: bool) -> TVec<usize> {
        let g = &self.geo;
        let (h, w) = if output { (g.oh, g.ow) } else { (g.h, g.w) };
        match (self.batch_axis, self.last) {
            (true, false) => tvec!(g.n, g.c, h, w),
            (false, false) => tvec!(g.c, h, w),
            (true, true) => tvec!(g.n, h, w, g.c),
            (false, true) => tvec!(h, w, g.c),
        }
    }

    /// Run on `input` (`n × c × h × w` floats, or `n × h × w × c` channel-last), writing
    /// `output` (`n × c × oh × ow`, or `n × oh × ow × c`).
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let g = &self.geo;
        ensure!(input.len() == g.n * g.c * g.h * g.w, "depthwise input size");
        ensure!(
            output.len() == g.n * g.c * g.oh * g.ow,
            "depthwise output size"
        );
        let kernel = self.kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = self.bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let clip = self
            .clip
            .map(|(lo, hi)| (f32::from_bits(lo), f32::from_bits(hi)));
        if self.last {
            return last::run(g, kernel, bias, clip, input, output);
        }
        #[cfg(not(target_arch = "wasm32"))]
        return planar::run(g, kernel, bias, clip, input, output);
        #[cfg(target_arch = "wasm32")]
        bail!("the wasm build runs channel-last depthwise convolutions only")
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "EdgeDepthwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        Ok(vec![format!(
            "{}×{} stride {}×{}, {} channels, {}×{} → {}×{}{}{}",
            g.kh,
            g.kw,
            g.sh,
            g.sw,
            g.c,
            g.h,
            g.w,
            g.oh,
            g.ow,
            match self.clip {
                Some((lo, hi)) =>
                    format!(", clamp [{}, {}]", f32::from_bits(lo), f32::from_bits(hi)),
                None => String::new(),
            },
            if self.last { ", channel-last" } else { "" }
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        #[allow(unsafe_code)]
        // SAFETY: `run` writes every output (each plane's wide blocks and narrow tail cover
        // all its rows and columns) before anything reads them.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.shape(true))? };
        let view = input.to_plain_array_view::<f32>()?;
        let contiguous;
        let input = match view.as_slice() {
            Some(s) => s,
            None => {
                contiguous = view.iter().copied().collect::<Vec<f32>>();
                &contiguous
            }
        };
        self.run(input, output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?)?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "EdgeDepthwiseConv takes one input");
        ensure!(
            inputs[0].datum_type == f32::datum_type(),
            "EdgeDepthwiseConv runs f32 only"
        );
        let want = self.shape(false);
        ensure!(
            inputs[0].shape.as_concrete() == Some(&want[..]),
            "EdgeDepthwiseConv planned for {want:?}, given {:?}",
            inputs[0].shape
        );
        Ok(tvec!(f32::fact(self.shape(true))))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geo;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (g.n * g.c * g.oh * g.ow * g.kh * g.kw).into()
        )))
    }

    as_op!();
}

/// Replace every depthwise convolution of a decluttered model that [`DepthwiseConv`] can run
/// (f32, OIHW kernel and bias constant, no dilation, concrete shapes; in wasm channel-last
/// only) by it, with the ReLU6 after it; returns how many were replaced. Run it between
/// `into_decluttered` and `into_optimized`.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = depthwise_of(model, node, conv)? else {
            continue;
        };
        // The ReLU6 after it, if any (its bias is already the op's).
        let tail = crate::epilogue::follow(
            model,
            OutletId::new(id, 0),
            crate::epilogue::Accept {
                channels: op.geo.c,
                c_axis: if op.last {
                    usize::from(op.batch_axis) + 2
                } else {
                    usize::from(op.batch_axis)
                },
                bias: false,
                residual: false,
            },
        )?;
        let op = match tail.clip {
            Some((lo, hi)) => op.with_clip(lo, hi)?,
            None => op,
        };
        let input = node.inputs[0];
        crate::epilogue::replace(model, id, &[input], op, tail)?;
        replaced += 1;
    }
    if replaced > 0 {
        model.compact()?;
    }
    Ok(replaced)
}

/// A convolution of tract's as this crate's ops take it.
pub(crate) struct ConvParts {
    /// Its geometry (`c` the input channels).
    pub geo: Geometry,
    /// Whether tensors carry the batch axis (NCHW) or not (CHW).
    pub batch_axis: bool,
    /// OIHW.
    pub kernel: Arc<Tensor>,
    /// One value per output channel, or one for all.
    pub bias: Arc<Tensor>,
    /// Whether tensors are channel-last (NHWC or HWC: what tract's declutter makes of a
    /// depthwise layer where tract-linalg has a channel-inner kernel, as in wasm).
    pub last: bool,
}

/// `conv` as [`ConvParts`] when it is `f32`, NCHW, CHW, NHWC or HWC, with OIHW kernel and
/// bias constant, a 2-D kernel, no dilation and concrete shapes.
pub(crate) fn conv_geometry(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<ConvParts>> {
    let spec = &conv.pool_spec;
    if conv.q_params.is_some()
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.kernel_shape.len() != 2
        || spec.dilations().iter().any(|&d| d != 1)
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let input = model.outlet_fact(node.inputs[0])?;
    let (Some(kernel), Some(bias)) = (
        model.outlet_fact(node.inputs[1])?.konst.clone(),
        model.outlet_fact(node.inputs[2])?.konst.clone(),
    ) else {
        return Ok(None);
    };
    let format = spec.data_format;
    let (batch_axis, last) = (format.has_n(), format.c_is_last());
    let (n, c, h, w) = match (format, input.shape.as_concrete()) {
        (DataFormat::NCHW, Some(&[n, c, h, w])) => (n, c, h, w),
        (DataFormat::CHW, Some(&[c, h, w])) => (1, c, h, w),
        (DataFormat::NHWC, Some(&[n, h, w, c])) => (n, c, h, w),
        (DataFormat::HWC, Some(&[h, w, c])) => (1, c, h, w),
        _ => return Ok(None),
    };
    let co = spec.output_channels;
    if [input.datum_type, kernel.datum_type(), bias.datum_type()]
        .iter()
        .any(|&t| t != f32::datum_type())
        || !(bias.len() == 1 || bias.len() == co)
    {
        return Ok(None);
    }
    let padding = spec.computed_padding(&[h, w]);
    let geo = Geometry {
        n,
        c,
        h,
        w,
        oh: padding[0].convoluted,
        ow: padding[1].convoluted,
        kh: spec.kernel_shape[0],
        kw: spec.kernel_shape[1],
        sh: spec.stride(0),
        sw: spec.stride(1),
        pad_top: padding[0].pad_before,
        pad_left: padding[1].pad_before,
    };
    if geo.oh == 0 || geo.ow == 0 {
        return Ok(None);
    }
    Ok(Some(ConvParts {
        geo,
        batch_axis,
        kernel,
        bias,
        last,
    }))
}

/// The replacement of `node` if it is a depthwise convolution this op runs.
fn depthwise_of(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<DepthwiseConv>> {
    let Some(ConvParts {
        geo,
        batch_axis,
        kernel,
        bias,
        last,
    }) = conv_geometry(model, node, conv)?
    else {
        return Ok(None);
    };
    let c = geo.c;
    // The wasm build has the channel-last kernel only.
    if (cfg!(target_arch = "wasm32") && !last)
        || conv.group != c
        || conv.pool_spec.output_channels != c
        || kernel.shape() != [c, 1, geo.kh, geo.kw]
    {
        return Ok(None);
    }
    let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
    let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
    let op = DepthwiseConv::with_layout(geo, batch_axis, kernel, bias)?;
    if last {
        op.channel_last().map(Some)
    } else {
        Ok(Some(op))
    }
}
