//! 1×1 convolutions as one matrix product each, with their bias, ReLU6 and residual add
//! applied while the tile is in cache; swapped into the plans this crate builds natively (the
//! api's, the trainer's checks).
//!
//! tract's declutter turns a 1×1 convolution into an `EinSum` (`IHW,OI->OHW`) followed by a
//! bias `Add`, and EfficientNet follows it with ReLU6 (`Max`, `Min`) or a residual `Add`.
//! On this machine's CPU tract's plan ran those matrix products at about 14 GMAC/s, 62 % of a
//! backbone pass (`scripts/profile-tract.sh`). [`install`] replaces each such `EinSum` whose
//! weights are constant and whose shapes are concrete by [`PointwiseConv`], which runs the
//! product with the `gemm` crate (AVX-512 kernels where the CPU has them, AVX2 + FMA
//! otherwise, chosen at run time) and folds the elementwise chain after it
//! ([`crate::epilogue`]). The output is cut into column tiles of about 256 KB; each tile is
//! set to the bias, multiplied into, then clamped and added to the residual before the next
//! one starts. Tiles run on tract's thread pool when the plan runs inside one
//! ([`crate::session::with_threads`]), and each tile is the same arithmetic whatever the
//! thread count.
//!
//! Not in the wasm build: the `gemm` crate has no wasm SIMD kernels, and browsers run
//! tract's.

use std::sync::Arc;

use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_nnef::tract_core::ops::einsum::EinSum;
use tract_nnef::tract_core::ops::nn::DataFormat;
use tract_nnef::tract_core::tract_linalg::multithread::{Executor, current_tract_executor};

use crate::epilogue::{Accept, finish_row, follow};

/// Floats of output per tile: 64 K (256 KB) stays in this machine's 2 MB L2 with its inputs.
const TILE_FLOATS: usize = 64 * 1024;

/// Shapes of one 1×1 convolution: `outer` images of `ci` channels of `inner` values in, the
/// same with `co` channels out (NCHW or CHW: `outer` is the batch, `inner` the plane; a
/// channel-last tensor has `inner` 1 and its pixels in `outer`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Geometry {
    /// Images (or, channel-last, pixels).
    pub outer: usize,
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// Values per channel of one image (1 for channel-last).
    pub inner: usize,
}

/// A 1×1 convolution with its epilogue: `clamp(W · x + bias, lo, hi) + residual`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct PointwiseConv {
    geo: Geometry,
    in_shape: TVec<usize>,
    out_shape: TVec<usize>,
    /// `[co, ci]`.
    weights: Arc<Tensor>,
    /// `[co]`, zeros when the graph had none.
    bias: Arc<Tensor>,
    has_bias: bool,
    /// Bounds as bits (the op must hash), `None` for no clamp.
    clip: Option<(u32, u32)>,
    /// A second input of the output's shape, added last.
    residual: bool,
    /// For a convolution with a larger kernel or a stride: how each image's columns of
    /// patches are gathered first (`geo.ci` is then channels × kernel taps, `geo.inner` the
    /// output plane).
    patches: Option<Patches>,
}

/// A convolution of one `c × h × w` image by `kh × kw` kernels, as a product: the input
/// gathered into a `[c · kh · kw, oh · ow]` matrix of patches (zeros in the padding).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Patches {
    /// Input channels, height and width.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height and width.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical and horizontal stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero rows above and columns left of the input.
    pub pad_top: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
    /// Output height and width.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Patches {
    /// Gather one image's patches into `cols` (`[c · kh · kw, oh · ow]`).
    fn gather(&self, image: &[f32], cols: &mut [f32]) {
        let p = self;
        let plane = p.oh * p.ow;
        let mut rows = cols.chunks_exact_mut(plane);
        for c in 0..p.c {
            let src = &image[c * p.h * p.w..][..p.h * p.w];
            for ky in 0..p.kh {
                for kx in 0..p.kw {
                    let Some(row) = rows.next() else { return };
                    for oy in 0..p.oh {
                        let out = &mut row[oy * p.ow..][..p.ow];
                        let iy = (oy * p.sh + ky).checked_sub(p.pad_top).filter(|&y| y < p.h);
                        let Some(iy) = iy else {
                            out.fill(0.0);
                            continue;
                        };
                        let line = &src[iy * p.w..][..p.w];
                        for (ox, o) in out.iter_mut().enumerate() {
                            let ix = (ox * p.sw + kx).checked_sub(p.pad_left);
                            *o = ix.and_then(|x| line.get(x)).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
        }
    }
}

impl PointwiseConv {
    /// A 1×1 convolution of a tensor of `in_shape`, whose channels are on axis `c_axis`;
    /// `weights` holds `co × ci` floats, `bias` `co` of them or none.
    pub fn new(
        in_shape: &[usize],
        c_axis: usize,
        weights: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        clip: Option<(f32, f32)>,
        residual: bool,
    ) -> TractResult<Self> {
        ensure!(
            c_axis < in_shape.len(),
            "channel axis {c_axis} of {in_shape:?}"
        );
        let ci = in_shape[c_axis];
        let outer: usize = in_shape[..c_axis].iter().product();
        let inner: usize = in_shape[c_axis + 1..].iter().product();
        ensure!(
            ci > 0 && co > 0 && outer > 0 && inner > 0,
            "empty 1×1 convolution {in_shape:?} → {co} channels"
        );
        ensure!(
            weights.len() == co * ci,
            "1×1 weights have {} values for {ci} → {co} channels",
            weights.len()
        );
        if let Some(b) = bias {
            ensure!(
                b.len() == co,
                "bias has {} values for {co} channels",
                b.len()
            );
        }
        if let Some((lo, hi)) = clip {
            ensure!(lo <= hi, "clamp to [{lo}, {hi}]");
        }
        let mut out_shape: TVec<usize> = in_shape.into();
        out_shape[c_axis] = co;
        let zeros = vec![0f32; co];
        Ok(Self {
            geo: Geometry {
                outer,
                ci,
                co,
                inner,
            },
            in_shape: in_shape.into(),
            out_shape,
            weights: Arc::new(tensor1(weights).into_shape(&[co, ci])?),
            bias: Arc::new(tensor1(bias.unwrap_or(&zeros))),
            has_bias: bias.is_some(),
            clip: clip.map(|(lo, hi)| (lo.to_bits(), hi.to_bits())),
            residual,
            patches: None,
        })
    }

    /// A convolution of `n` images (`[n, c, h, w]`, or `[c, h, w]` for one when `batch_axis`
    /// is false) by `co` kernels of `c × kh × kw` floats (OIHW), run as one product per image
    /// over its patches.
    pub fn convolution(
        n: usize,
        batch_axis: bool,
        p: Patches,
        weights: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        clip: Option<(f32, f32)>,
    ) -> TractResult<Self> {
        ensure!(
            batch_axis || n == 1,
            "a CHW convolution runs one image, not {n}"
        );
        ensure!(
            p.kh > 0 && p.kw > 0 && p.sh > 0 && p.sw > 0 && p.oh > 0 && p.ow > 0 && p.c > 0,
            "degenerate convolution {p:?}"
        );
        let taps = p.c * p.kh * p.kw;
        let plane = [n, taps, p.oh * p.ow];
        let mut op = Self::new(&plane, 1, weights, co, bias, clip, false)?;
        op.in_shape = if batch_axis {
            tvec!(n, p.c, p.h, p.w)
        } else {
            tvec!(p.c, p.h, p.w)
        };
        op.out_shape = if batch_axis {
            tvec!(n, co, p.oh, p.ow)
        } else {
            tvec!(co, p.oh, p.ow)
        };
        op.patches = Some(p);
        Ok(op)
    }

    /// The same op giving its output as `shape`: the same values in the same order, with
    /// unit axes inserted or dropped.
    pub fn with_output_shape(mut self, shape: &[usize]) -> TractResult<Self> {
        let g = &self.geo;
        ensure!(
            shape.iter().product::<usize>() == g.outer * g.co * g.inner
                && shape
                    .iter()
                    .filter(|&&d| d > 1)
                    .eq(self.out_shape.iter().filter(|&&d| d > 1)),
            "1×1 output {shape:?} is not {:?} up to unit axes",
            self.out_shape
        );
        self.out_shape = shape.into();
        Ok(self)
    }

    /// The same op with its outputs clamped to `[lo, hi]`.
    pub fn with_clip(mut self, lo: f32, hi: f32) -> TractResult<Self> {
        ensure!(lo <= hi, "clamp to [{lo}, {hi}]");
        self.clip = Some((lo.to_bits(), hi.to_bits()));
        Ok(self)
    }

    /// The convolution's shapes.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    fn clip(&self) -> Option<(f32, f32)> {
        self.clip
            .map(|(lo, hi)| (f32::from_bits(lo), f32::from_bits(hi)))
    }

    /// The matrix view of one image: columns, and the (row, column) strides of the input and
    /// of the output. CHW planes are rows; a channel-last tensor is one image whose columns
    /// are its pixels.
    fn view(&self) -> View {
        let g = &self.geo;
        if g.inner == 1 && g.outer > 1 && self.patches.is_none() {
            View {
                images: 1,
                cols: g.outer,
                x: (1, g.ci),
                y: (1, g.co),
            }
        } else {
            View {
                images: g.outer,
                cols: g.inner,
                x: (g.inner, 1),
                y: (g.inner, 1),
            }
        }
    }

    /// Run on contiguous `input` (`in_shape`) into `output` (`out_shape`), `residual` of the
    /// output's shape when the op has one.
    pub fn run(
        &self,
        input: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) -> TractResult<()> {
        let g = &self.geo;
        let len_in = match &self.patches {
            Some(p) => g.outer * p.c * p.h * p.w,
            None => g.outer * g.ci * g.inner,
        };
        let len_out = g.outer * g.co * g.inner;
        ensure!(input.len() == len_in, "1×1 input size");
        ensure!(output.len() == len_out, "1×1 output size");
        ensure!(
            residual.map(<[f32]>::len) == self.residual.then_some(len_out),
            "1×1 residual input"
        );
        let view = self.view();
        let threads = match current_tract_executor() {
            Executor::MultiThread(pool) if pool.current_num_threads() > 1 => Some(pool),
            _ => None,
        };
        let tiles = tiles(
            g.co,
            view.cols,
            threads.as_ref().map_or(1, |p| p.current_num_threads()),
        );
        let job = Job {
            op: self,
            view,
            weights: self.weights.try_as_plain_ram()?.as_slice::<f32>()?,
            bias: self.bias.try_as_plain_ram()?.as_slice::<f32>()?,
            clip: self.clip(),
        };
        let mut cols = vec![
            0f32;
            if self.patches.is_some() {
                g.ci * g.inner
            } else {
                0
            }
        ];
        for image in 0..view.images {
            let x = match &self.patches {
                Some(p) => {
                    let size = p.c * p.h * p.w;
                    p.gather(&input[image * size..][..size], &mut cols);
                    &cols[..]
                }
                None => &input[image * g.ci * g.inner..][..g.ci * g.inner],
            };
            let res = residual.map(|r| &r[image * g.co * g.inner..][..g.co * g.inner]);
            let y = Out(output[image * g.co * g.inner..][..g.co * g.inner].as_mut_ptr());
            let y = &y;
            let one = |t: &Tile| job.tile(t, x, res, y);
            match &threads {
                Some(pool) if tiles.len() > 1 => {
                    use rayon::prelude::*;
                    pool.install(|| tiles.par_iter().for_each(one));
                }
                _ => tiles.iter().for_each(one),
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct View {
    images: usize,
    cols: usize,
    /// (row stride, column stride) of the input.
    x: (usize, usize),
    /// The same for the output (and the residual).
    y: (usize, usize),
}

/// Rows `r` × columns `c` of the output.
#[derive(Debug, Clone)]
struct Tile {
    r: std::ops::Range<usize>,
    c: std::ops::Range<usize>,
}

/// Column tiles of about [`TILE_FLOATS`]; with several threads and too few of them to share,
/// rows are split too (in multiples of 16, the kernels' row block).
fn tiles(rows: usize, cols: usize, threads: usize) -> Vec<Tile> {
    let width = (TILE_FLOATS / rows).max(64).div_ceil(16) * 16;
    let width = width.min(cols);
    let col_tiles = cols.div_ceil(width);
    let row_tiles = if threads > 1 && col_tiles < 2 * threads {
        (2 * threads)
            .div_ceil(col_tiles)
            .min(rows.div_ceil(16))
            .max(1)
    } else {
        1
    };
    let height = rows.div_ceil(row_tiles).div_ceil(16) * 16;
    let mut out = Vec::with_capacity(row_tiles * col_tiles);
    for r in (0..rows).step_by(height) {
        for c in (0..cols).step_by(width) {
            out.push(Tile {
                r: r..(r + height).min(rows),
                c: c..(c + width).min(cols),
            });
        }
    }
    out
}

/// The output's base pointer, shared by tiles that write disjoint elements.
struct Out(*mut f32);
// SAFETY: tiles write disjoint parts of one buffer that outlives the parallel loop.
#[allow(unsafe_code)]
unsafe impl Sync for Out {}

struct Job<'a> {
    op: &'a PointwiseConv,
    view: View,
    weights: &'a [f32],
    bias: &'a [f32],
    clip: Option<(f32, f32)>,
}

impl Job<'_> {
    /// One tile: the product, then bias, clamp and residual in one pass while it is in cache.
    fn tile(&self, t: &Tile, x: &[f32], res: Option<&[f32]>, y: &Out) {
        let g = &self.op.geo;
        let v = self.view;
        let n = t.c.len();
        let at = |row: usize, col: usize| row * v.y.0 + col * v.y.1;
        #[allow(unsafe_code)]
        // SAFETY: every index below is inside the image's output (rows < co, columns < cols,
        // strides of `view`), the tiles of one image are disjoint, and no one else reads or
        // writes the output while `run` holds it mutably. The product does not read the
        // output (`read_dst` false): it writes every element of the tile.
        unsafe {
            gemm::gemm(
                t.r.len(),
                n,
                g.ci,
                y.0.add(at(t.r.start, t.c.start)),
                v.y.1 as isize,
                v.y.0 as isize,
                false,
                self.weights.as_ptr().add(t.r.start * g.ci),
                1,
                g.ci as isize,
                x.as_ptr().add(t.c.start * v.x.1),
                v.x.1 as isize,
                v.x.0 as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
            if !self.op.has_bias && self.clip.is_none() && res.is_none() {
                return;
            }
            for row in t.r.clone() {
                let bias = self.bias[row];
                if v.y.1 == 1 {
                    let start = at(row, t.c.start);
                    let out = std::slice::from_raw_parts_mut(y.0.add(start), n);
                    finish_row(out, bias, self.clip, res.map(|r| &r[start..start + n]));
                } else {
                    for col in t.c.clone() {
                        let i = at(row, col);
                        let out = std::slice::from_raw_parts_mut(y.0.add(i), 1);
                        finish_row(out, bias, self.clip, res.map(|r| &r[i..i + 1]));
                    }
                }
            }
        }
    }
}

impl Op for PointwiseConv {
    fn name(&self) -> StaticName {
        "EdgePointwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        let mut tail = Vec::new();
        if self.has_bias {
            tail.push("bias".to_string());
        }
        if let Some((lo, hi)) = self.clip() {
            tail.push(format!("clamp [{lo}, {hi}]"));
        }
        if self.residual {
            tail.push("residual".to_string());
        }
        let kernel = match &self.patches {
            Some(p) => format!(
                "{}×{} stride {}×{} over {}×{}, ",
                p.kh, p.kw, p.sh, p.sw, p.h, p.w
            ),
            None => String::new(),
        };
        Ok(vec![format!(
            "{kernel}{} → {} channels × {} × {}{}",
            g.ci,
            g.co,
            g.outer,
            g.inner,
            if tail.is_empty() {
                String::new()
            } else {
                format!(", then {}", tail.join(", "))
            }
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

/// A value's floats (tensors are stored contiguous, in row-major order).
fn plain(v: &TValue) -> TractResult<&[f32]> {
    v.try_as_plain_ram()?.as_slice::<f32>()
}

impl EvalOp for PointwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1 + self.residual as usize,
            "EdgePointwiseConv inputs"
        );
        let input = plain(&inputs[0])?;
        let residual = inputs.get(1).map(plain).transpose()?;
        #[allow(unsafe_code)]
        // SAFETY: `run` writes every element (the tiles cover the output, and the product
        // writes its tile without reading it) before anything reads them.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.out_shape)? };
        self.run(
            input,
            residual,
            output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for PointwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 1 + self.residual as usize,
            "EdgePointwiseConv takes {} inputs",
            1 + self.residual as usize
        );
        ensure!(
            inputs.iter().all(|f| f.datum_type == f32::datum_type()),
            "EdgePointwiseConv runs f32 only"
        );
        ensure!(
            inputs[0].shape.as_concrete() == Some(&self.in_shape[..]),
            "EdgePointwiseConv planned for {:?}, given {:?}",
            self.in_shape,
            inputs[0].shape
        );
        if let Some(r) = inputs.get(1) {
            ensure!(
                r.shape.as_concrete() == Some(&self.out_shape[..]),
                "EdgePointwiseConv residual must be {:?}, given {:?}",
                self.out_shape,
                r.shape
            );
        }
        Ok(tvec!(f32::fact(&self.out_shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geo;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (g.outer * g.inner * g.ci * g.co).into()
        )))
    }

    as_op!();
}

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
        let mut patch = TypedModelPatch::default();
        let mut taps = tvec![patch.tap_model(model, node.inputs[x_slot])?];
        if let Some(r) = tail.residual {
            taps.push(patch.tap_model(model, r)?);
        }
        let name = model.node(tail.last.node).name.clone();
        let out = patch.wire_node(name, op, &taps)?;
        patch.shunt_outside(model, tail.last, out[0])?;
        patch.obliterate(id)?;
        for n in tail.nodes {
            patch.obliterate(n)?;
        }
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        model.compact()?;
    }
    Ok(replaced)
}

/// A convolution that is not depthwise nor 1×1 (EfficientNet's stem: 3×3, stride 2, three
/// channels in) as [`PointwiseConv::convolution`]: `f32`, NCHW or CHW, one group, OIHW kernel
/// and bias constant, no dilation, concrete shapes. With the output's channel axis.
fn convolution_of(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<(PointwiseConv, usize)>> {
    let spec = &conv.pool_spec;
    if conv.q_params.is_some()
        || conv.kernel_fmt != KernelFormat::OIHW
        || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        || spec.kernel_shape.len() != 2
        || spec.dilations().iter().any(|&d| d != 1)
        || conv.group != 1
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
    if [input.datum_type, kernel.datum_type(), bias.datum_type()]
        .iter()
        .any(|&t| t != f32::datum_type())
    {
        return Ok(None);
    }
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    let co = spec.output_channels;
    if kernel.shape() != [co, c, kh, kw] || !(bias.len() == 1 || bias.len() == co) {
        return Ok(None);
    }
    let padding = spec.computed_padding(&[h, w]);
    let p = Patches {
        c,
        h,
        w,
        kh,
        kw,
        sh: spec.stride(0),
        sw: spec.stride(1),
        pad_top: padding[0].pad_before,
        pad_left: padding[1].pad_before,
        oh: padding[0].convoluted,
        ow: padding[1].convoluted,
    };
    if p.oh == 0 || p.ow == 0 {
        return Ok(None);
    }
    let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
    let bias: Vec<f32> = if bias.len() == 1 {
        vec![bias[0]; co]
    } else {
        bias.to_vec()
    };
    let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
    let op = PointwiseConv::convolution(n, batch_axis, p, kernel, co, Some(&bias), None)?;
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
