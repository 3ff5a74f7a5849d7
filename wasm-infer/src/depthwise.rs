//! A vectorised depthwise convolution that replaces tract's own in the plans this crate builds
//! natively (the api's, the trainer's checks).
//!
//! tract's `DepthWiseConv` vectorises only the stride-1 interior zones of a plane and walks
//! every border and every stride-2 layer one output at a time: EfficientNet-Lite0's 3×3 and 5×5
//! depthwise layers are 9 % of the backbone's multiply-adds but took 42 % of its time
//! (`scripts/profile-tract.sh`, see BENCHMARKS.md). [`install`] walks a decluttered model and
//! swaps every `f32` NCHW (or CHW) depthwise `Conv` with concrete shapes for
//! [`DepthwiseConv`], which tract's optimiser then leaves alone; any other convolution keeps
//! tract's path.
//!
//! The kernel works one channel plane at a time. The plane is copied once into a zero-padded
//! scratch, split by column phase when the stride is above one, so every kernel tap reads a
//! contiguous run of the scratch whatever the stride and whatever the border (the padding is
//! zeroed once per run, not per plane). Outputs are computed in blocks of several columns ×
//! rows, held in accumulators across all the taps: independent multiply-add chains, one load
//! and one multiply-add per output and tap, one store per output. The loops are plain Rust
//! that the compiler vectorises, with an AVX2 + FMA copy chosen at run time on x86-64 (SSE2
//! otherwise). `examples/bench_depthwise.rs` times it against tract's op on every layer of the
//! backbone (`scripts/bench-depthwise.sh`).
//!
//! Not in the wasm build: there tract's declutter lays the backbone out channel-last for its
//! own wasm SIMD depthwise kernels, and measured in the plan browsers build (the wasm profile
//! of `scripts/profile-tract.sh`), tract's kernels were faster than this one on the one layer
//! left channels-first, so browsers run tract's.

use std::sync::Arc;

use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_nnef::tract_core::ops::nn::DataFormat;
use tract_nnef::tract_core::tract_linalg;

/// The wide block: 16 outputs of a row (2 AVX registers).
const WIDE: usize = 16;
/// The narrow block, for row tails and the 7- and 14-wide planes of the last stages.
const NARROW: usize = 8;
/// Output rows computed together in wide blocks: 4 × 16 outputs are 8 AVX accumulators,
/// enough independent multiply-add chains to hide their latency.
const BAND: usize = 4;
/// The same for narrow blocks: 8 rows of 8 outputs (a 7×7 plane is one band).
const NARROW_BAND: usize = 8;

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

impl Geometry {
    /// Rows of the padded scratch the output reads.
    fn rows(&self) -> usize {
        (self.oh - 1) * self.sh + self.kh
    }

    /// Output width rounded up to the narrow block.
    fn ow_padded(&self) -> usize {
        self.ow.div_ceil(NARROW) * NARROW
    }

    /// Columns of one phase of the padded scratch.
    fn phase_width(&self) -> usize {
        self.ow_padded() + (self.kw - 1) / self.sw
    }

    /// Scratch floats for one plane.
    fn scratch_len(&self) -> usize {
        self.sw * self.rows() * self.phase_width()
    }

    /// Offset in the scratch of tap `(ky, kx)` for output row 0, column 0.
    fn tap_offsets(&self) -> Vec<usize> {
        let (rows, pw) = (self.rows(), self.phase_width());
        let mut offsets = Vec::with_capacity(self.kh * self.kw);
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                offsets.push((kx % self.sw) * rows * pw + ky * pw + kx / self.sw);
            }
        }
        offsets
    }
}

/// Depthwise convolution of an `f32` NCHW or CHW tensor, kernel and bias folded in.
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
        })
    }

    /// The same convolution with its outputs clamped to `[lo, hi]` (the ReLU6 after it, folded
    /// in by [`install`]).
    pub fn with_clip(mut self, lo: f32, hi: f32) -> TractResult<Self> {
        ensure!(lo <= hi, "clamp to [{lo}, {hi}]");
        self.clip = Some((lo.to_bits(), hi.to_bits()));
        Ok(self)
    }

    /// The geometry it runs.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Shape of the input, or with `output` of the output.
    fn shape(&self, output: bool) -> TVec<usize> {
        let g = &self.geo;
        let (h, w) = if output { (g.oh, g.ow) } else { (g.h, g.w) };
        if self.batch_axis {
            tvec!(g.n, g.c, h, w)
        } else {
            tvec!(g.c, h, w)
        }
    }

    /// Run on `input` (`n × c × h × w` floats), writing `output` (`n × c × oh × ow`).
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let g = &self.geo;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        ensure!(input.len() == g.n * g.c * plane_in, "depthwise input size");
        ensure!(
            output.len() == g.n * g.c * plane_out,
            "depthwise output size"
        );
        let kernel = self.kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = self.bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let offsets = g.tap_offsets();
        let copies = g.phase_copies();
        let job = Job {
            g,
            clip: self
                .clip
                .map(|(lo, hi)| (f32::from_bits(lo), f32::from_bits(hi))),
            copies: &copies,
            offsets: &offsets,
            kernel,
            bias,
        };
        // Planes are independent: spread over the executor of the current tract scope (inline
        // with one thread), each chunk with its own scratch.
        tract_linalg::multithread::par_chunks_mut(
            output,
            plane_out,
            input.len() + output.len(),
            |first, out| {
                let planes = out.len() / plane_out;
                let input = &input[first * plane_in..(first + planes) * plane_in];
                job.run(first, input, out);
                Ok(())
            },
        )
    }
}

/// One run's constants.
struct Job<'a> {
    g: &'a Geometry,
    clip: Option<(f32, f32)>,
    copies: &'a [PhaseCopy],
    offsets: &'a [usize],
    kernel: &'a [f32],
    bias: &'a [f32],
}

impl Job<'_> {
    /// Planes `first..` (as many as `output` holds) from `input`.
    fn run(&self, first: usize, input: &[f32], output: &mut [f32]) {
        let mut scratch = vec![0f32; self.g.scratch_len()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[allow(unsafe_code)]
            // SAFETY: the CPU was just checked for both features the function is compiled for.
            unsafe {
                self.planes_avx2_fma(first, input, output, &mut scratch)
            };
            return;
        }
        self.planes::<false>(first, input, output, &mut scratch);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn planes_avx2_fma(
        &self,
        first: usize,
        input: &[f32],
        output: &mut [f32],
        scratch: &mut [f32],
    ) {
        self.planes::<true>(first, input, output, scratch);
    }

    /// Every channel plane of every image: fill the scratch, then compute the output plane.
    #[inline(always)]
    fn planes<const FMA: bool>(
        &self,
        first: usize,
        input: &[f32],
        output: &mut [f32],
        scratch: &mut [f32],
    ) {
        let g = self.g;
        let taps = g.kh * g.kw;
        let planes = input
            .chunks_exact(g.h * g.w)
            .zip(output.chunks_exact_mut(g.oh * g.ow));
        for (p, (plane, out)) in planes.enumerate() {
            let ch = (first + p) % g.c;
            fill(g, self.copies, plane, scratch);
            let plane = Plane {
                g,
                scratch,
                offsets: self.offsets,
                weights: &self.kernel[ch * taps..][..taps],
                bias: self.bias[ch],
            };
            plane.rows::<FMA>(out);
            if self.clip.is_some() {
                crate::epilogue::finish_row(out, 0.0, self.clip, None);
            }
        }
    }
}

/// Where one phase of the scratch takes input columns: scratch columns `first..first + count`
/// of every input row hold input columns `x0, x0 + sw, ...`; the rest stays zero.
#[derive(Debug, Clone, Copy)]
struct PhaseCopy {
    first: usize,
    x0: usize,
    count: usize,
}

impl Geometry {
    /// The copy of each phase (scratch column `j` of phase `p` is padded column `j * sw + p`,
    /// input column `j * sw + p - pad_left`).
    fn phase_copies(&self) -> Vec<PhaseCopy> {
        let pw = self.phase_width();
        (0..self.sw)
            .map(|phase| {
                let first = self
                    .pad_left
                    .saturating_sub(phase)
                    .div_ceil(self.sw)
                    .min(pw);
                let x0 = (first * self.sw + phase).saturating_sub(self.pad_left);
                let count = self.w.saturating_sub(x0).div_ceil(self.sw).min(pw - first);
                PhaseCopy { first, x0, count }
            })
            .collect()
    }
}

/// Copy one input plane into the zero-padded, phase-split scratch: phase `p`, row `r`,
/// column `j` holds padded column `j * sw + p` of padded row `r`. Only the cells that hold
/// input are written: the padding was zeroed once, with the scratch, and stays zero.
#[inline(always)]
fn fill(g: &Geometry, copies: &[PhaseCopy], plane: &[f32], scratch: &mut [f32]) {
    let (rows, pw) = (g.rows(), g.phase_width());
    let ys = g.pad_top.min(rows)..(g.pad_top + g.h).min(rows);
    for (phase, copy) in copies.iter().enumerate() {
        for r in ys.clone() {
            let src = &plane[(r - g.pad_top) * g.w..][..g.w];
            let src = &src[copy.x0.min(g.w)..];
            let dst = &mut scratch[(phase * rows + r) * pw + copy.first..][..copy.count];
            match g.sw {
                1 => dst.copy_from_slice(&src[..copy.count]),
                2 => {
                    // Every other column: pairs, so the copy vectorises (a shuffle).
                    let pairs = src.chunks_exact(2);
                    let last = pairs.remainder().first().copied();
                    let n = pairs.len();
                    for (d, pair) in dst.iter_mut().zip(pairs) {
                        *d = pair[0];
                    }
                    if let (Some(v), Some(d)) = (last, dst.get_mut(n)) {
                        *d = v;
                    }
                }
                _ => {
                    for (d, &v) in dst.iter_mut().zip(src.iter().step_by(g.sw)) {
                        *d = v;
                    }
                }
            }
        }
    }
}

/// One channel plane ready to compute.
struct Plane<'a> {
    g: &'a Geometry,
    scratch: &'a [f32],
    offsets: &'a [usize],
    weights: &'a [f32],
    bias: f32,
}

impl Plane<'_> {
    /// Every output: the columns that fill wide blocks in bands of up to [`BAND`] rows, the
    /// rest in narrow blocks in bands of up to [`NARROW_BAND`] rows.
    #[inline(always)]
    fn rows<const FMA: bool>(&self, out: &mut [f32]) {
        let wide_end = self.g.ow / WIDE * WIDE;
        let mut oy = 0;
        while wide_end > 0 && oy < self.g.oh {
            oy += match (self.g.oh - oy).min(BAND) {
                4 => self.band::<WIDE, 4, FMA>(out, oy, 0..wide_end),
                2 | 3 => self.band::<WIDE, 2, FMA>(out, oy, 0..wide_end),
                _ => self.band::<WIDE, 1, FMA>(out, oy, 0..wide_end),
            };
        }
        let mut oy = 0;
        while wide_end < self.g.ow && oy < self.g.oh {
            let cols = wide_end..self.g.ow;
            oy += match (self.g.oh - oy).min(NARROW_BAND) {
                8 => self.band::<NARROW, 8, FMA>(out, oy, cols),
                7 => self.band::<NARROW, 7, FMA>(out, oy, cols),
                6 => self.band::<NARROW, 6, FMA>(out, oy, cols),
                5 => self.band::<NARROW, 5, FMA>(out, oy, cols),
                4 => self.band::<NARROW, 4, FMA>(out, oy, cols),
                3 => self.band::<NARROW, 3, FMA>(out, oy, cols),
                2 => self.band::<NARROW, 2, FMA>(out, oy, cols),
                _ => self.band::<NARROW, 1, FMA>(out, oy, cols),
            };
        }
    }

    /// Output rows `oy..oy + R`, columns `cols`, in blocks of `B`; returns `R`.
    #[inline(always)]
    fn band<const B: usize, const R: usize, const FMA: bool>(
        &self,
        out: &mut [f32],
        oy: usize,
        cols: std::ops::Range<usize>,
    ) -> usize {
        let g = self.g;
        let step = g.sh * g.phase_width();
        let base = oy * step;
        for x in cols.clone().step_by(B) {
            let acc = self.block::<B, R, FMA>(base + x, step);
            let n = B.min(cols.end - x);
            for (r, acc) in acc.iter().enumerate() {
                out[(oy + r) * g.ow + x..][..n].copy_from_slice(&acc[..n]);
            }
        }
        R
    }

    /// `B` consecutive outputs of `R` consecutive rows, the first at scratch offset `at` and
    /// each next one `step` further, accumulated over every tap. The `R × B / lanes`
    /// accumulators are independent chains, so the multiply-adds overlap instead of waiting on
    /// each other.
    #[inline(always)]
    fn block<const B: usize, const R: usize, const FMA: bool>(
        &self,
        at: usize,
        step: usize,
    ) -> [[f32; B]; R] {
        let mut acc = [[self.bias; B]; R];
        for (&offset, &w) in self.offsets.iter().zip(self.weights) {
            for (r, acc) in acc.iter_mut().enumerate() {
                // In bounds by construction of the scratch (see `Geometry::phase_width`).
                let start = at + offset + r * step;
                let src = &self.scratch[start..start + B];
                axpy::<B, FMA>(acc, src, w);
            }
        }
        acc
    }
}

/// `acc += w * src`, lane by lane; the compiler vectorises it (AVX2 + FMA where the CPU has
/// them).
#[inline(always)]
fn axpy<const B: usize, const FMA: bool>(acc: &mut [f32; B], src: &[f32], w: f32) {
    for (a, &s) in acc.iter_mut().zip(src) {
        *a = if FMA { s.mul_add(w, *a) } else { *a + s * w };
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "EdgeDepthwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        Ok(vec![format!(
            "{}×{} stride {}×{}, {} channels, {}×{} → {}×{}{}",
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
            }
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
/// (f32, NCHW or CHW, OIHW kernel and bias constant, no dilation, concrete shapes) by it,
/// with the ReLU6 after it; returns how many were replaced. Run it between `into_decluttered`
/// and `into_optimized`.
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
                c_axis: usize::from(op.batch_axis),
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
}

/// `conv` as [`ConvParts`] when it is `f32`, NCHW or CHW, with OIHW kernel and bias constant,
/// a 2-D kernel, no dilation and concrete shapes.
pub(crate) fn conv_geometry(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<ConvParts>> {
    let spec = &conv.pool_spec;
    if conv.q_params.is_some()
        || conv.kernel_fmt != KernelFormat::OIHW
        || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
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
    let batch_axis = spec.data_format == DataFormat::NCHW;
    let (n, c, h, w) = match (batch_axis, input.shape.as_concrete()) {
        (true, Some(&[n, c, h, w])) => (n, c, h, w),
        (false, Some(&[c, h, w])) => (1, c, h, w),
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
    }) = conv_geometry(model, node, conv)?
    else {
        return Ok(None);
    };
    let c = geo.c;
    if conv.group != c
        || conv.pool_spec.output_channels != c
        || kernel.shape() != [c, 1, geo.kh, geo.kw]
    {
        return Ok(None);
    }
    let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
    let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
    DepthwiseConv::with_layout(geo, batch_axis, kernel, bias).map(Some)
}
