//! 1×1 convolutions as one matrix product each, with their bias, ReLU6 and residual add
//! applied while the tile is in cache; swapped into the plans this crate builds, natively
//! (the api's, the trainer's checks) and in browsers.
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
//! one starts. Tiles spread over the run's threads ([`crate::par`], given by
//! [`crate::session::with_threads`]), and each tile is the same arithmetic whatever the
//! thread count.
//!
//! In the wasm build the product is [`quad`]'s (the `gemm` crate has no wasm SIMD kernels),
//! each tile finished in registers; there the op also reads and writes the channel-last
//! tensors tract's wasm declutter puts around depthwise convolutions, and the stem stays
//! tract's. Under node that halved a backbone pass against tract's own kernels
//! (`BENCHMARKS.md`).

use std::sync::Arc;

use crate::depthwise::Geometry as Geometry2d;
use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::*;

mod find;
pub mod quad;
mod tile;
pub use find::install;
use tile::{Input, Job, Out, Tile, View, tiles};

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
    /// `[co, ci]`, or `[ci, co]` when `by_input`: the order in which the product reads it
    /// without packing a copy first.
    weights: Arc<Tensor>,
    /// The weights are `[ci, co]`: natively when the output is channel-last, always in the
    /// wasm build ([`quad`]).
    by_input: bool,
    /// `[co]`, zeros when the graph had none.
    bias: Arc<Tensor>,
    has_bias: bool,
    /// Bounds as bits (the op must hash), `None` for no clamp.
    clip: Option<(u32, u32)>,
    /// A second input of the output's shape, added last.
    residual: bool,
    /// For a convolution with a larger kernel or a stride: its geometry, by which each
    /// image's patches are gathered first (`geo.ci` is then channels × kernel taps,
    /// `geo.inner` the output plane).
    patches: Option<Geometry2d>,
    /// The input is channel-last: each of the `outer` images is `inner` pixels of `ci`
    /// channels (set by `layout::install`).
    in_last: bool,
    /// The same for the output (`co` channels per pixel).
    out_last: bool,
}

/// `src` (`rows × cols` floats, row-major) as a `[cols, rows]` tensor, written in one pass of
/// 16 × 16 tiles (a plain loop writes a cache line per float on the larger layers: building
/// the browsers' session transposes all 3.4 million 1×1 weights).
fn transposed(src: &[f32], rows: usize, cols: usize) -> TractResult<Tensor> {
    const TILE: usize = 16;
    let mut t = Tensor::zero::<f32>(&[cols, rows])?;
    let mut plain = t.try_as_plain_ram_mut()?;
    let dst = plain.as_slice_mut::<f32>()?;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    Ok(t)
}

/// Gather the patches of output pixels `pixels` of one `c × h × w` image, for `kh × kw`
/// kernels, into `cols` (`[c · kh · kw, pixels.len()]`, zeros in the padding): the tile of the
/// convolution is then one product. Each tile gathers its own pixels, on its own thread,
/// while they stay in cache for its product.
fn gather(p: &Geometry2d, image: &[f32], pixels: std::ops::Range<usize>, cols: &mut [f32]) {
    let n = pixels.len();
    let mut rows = cols.chunks_exact_mut(n);
    for c in 0..p.c {
        let src = &image[c * p.h * p.w..][..p.h * p.w];
        for ky in 0..p.kh {
            for kx in 0..p.kw {
                let Some(row) = rows.next() else { return };
                // Output columns whose input column `ox * sw + kx - pad_left` is inside.
                let first = p.pad_left.saturating_sub(kx).div_ceil(p.sw).min(p.ow);
                let end = (p.w + p.pad_left)
                    .checked_sub(kx + 1)
                    .map_or(0, |last| (last / p.sw + 1).min(p.ow))
                    .max(first);
                // One output row's part at a time.
                let mut at = pixels.start;
                while at < pixels.end {
                    let (oy, ox0) = (at / p.ow, at % p.ow);
                    let ox1 = p.ow.min(ox0 + pixels.end - at);
                    let out = &mut row[at - pixels.start..][..ox1 - ox0];
                    at += ox1 - ox0;
                    let iy = (oy * p.sh + ky).checked_sub(p.pad_top).filter(|&y| y < p.h);
                    let (lo, hi) = (first.clamp(ox0, ox1), end.clamp(ox0, ox1));
                    let Some(iy) = iy.filter(|_| hi > lo) else {
                        out.fill(0.0);
                        continue;
                    };
                    out[..lo - ox0].fill(0.0);
                    out[hi - ox0..].fill(0.0);
                    let x0 = lo * p.sw + kx - p.pad_left;
                    let line = &src[iy * p.w + x0..][..(hi - lo - 1) * p.sw + 1];
                    for (o, &v) in out[lo - ox0..hi - ox0]
                        .iter_mut()
                        .zip(line.iter().step_by(p.sw))
                    {
                        *o = v;
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
        let op = Self {
            geo: Geometry {
                outer,
                ci,
                co,
                inner,
            },
            in_shape: in_shape.into(),
            out_shape,
            // Browsers run [`quad`], which reads the weights by input channel.
            weights: Arc::new(if cfg!(target_arch = "wasm32") {
                transposed(weights, co, ci)?
            } else {
                tensor1(weights).into_shape(&[co, ci])?
            }),
            bias: Arc::new(tensor1(bias.unwrap_or(&zeros))),
            has_bias: bias.is_some(),
            clip: clip.map(|(lo, hi)| (lo.to_bits(), hi.to_bits())),
            residual,
            by_input: cfg!(target_arch = "wasm32"),
            patches: None,
            in_last: false,
            out_last: false,
        };
        Ok(op)
    }

    /// The same op with its weights `[ci, co]`.
    fn by_input(mut self) -> TractResult<Self> {
        // (The wasm build's ops are made input-major by `new`.)
        if self.by_input || cfg!(target_arch = "wasm32") {
            return Ok(self);
        }
        let (ci, co) = (self.geo.ci, self.geo.co);
        let weights = self.weights.try_as_plain_ram()?.as_slice::<f32>()?;
        self.weights = Arc::new(transposed(weights, co, ci)?);
        self.by_input = true;
        Ok(self)
    }

    /// A convolution of `p.n` images (`[n, c, h, w]`, or `[c, h, w]` for one when `batch_axis`
    /// is false) by `co` kernels of `c × kh × kw` floats (OIHW), run as one product per image
    /// over its patches.
    pub fn convolution(
        p: Geometry2d,
        batch_axis: bool,
        weights: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        clip: Option<(f32, f32)>,
    ) -> TractResult<Self> {
        let n = p.n;
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

    /// Whether it reads its input as planes (NCHW or CHW), the layout `layout::install`
    /// can switch to channel-last (a tensor tract already laid out channel-last is one image
    /// whose columns are its pixels, and stays so).
    pub fn is_planar(&self) -> bool {
        let g = &self.geo;
        let tract_channel_last = g.inner == 1 && g.outer > 1 && self.patches.is_none();
        !(self.in_last || self.out_last || tract_channel_last)
    }

    /// Whether it has a residual input.
    pub fn has_residual(&self) -> bool {
        self.residual
    }

    /// Whether it gathers patches first (a larger kernel or a stride).
    pub fn has_patches(&self) -> bool {
        self.patches.is_some()
    }

    /// The same op reading its input channel-last, as `shape` (`outer` images of `inner`
    /// pixels of `ci` channels, in that order).
    pub fn reading_channel_last(mut self, shape: &[usize]) -> TractResult<Self> {
        let g = &self.geo;
        ensure!(
            self.patches.is_none() && !self.in_last,
            "only a plain 1×1 convolution reads channel-last"
        );
        ensure!(
            shape.last() == Some(&g.ci)
                && shape.iter().product::<usize>() == g.outer * g.inner * g.ci,
            "channel-last input {shape:?} for {g:?}"
        );
        self.in_last = true;
        self.in_shape = shape.into();
        Ok(self)
    }

    /// The same op writing its output channel-last, as `shape` (its residual input, if any,
    /// must then be channel-last too, of the same shape).
    pub fn writing_channel_last(self, shape: &[usize]) -> TractResult<Self> {
        let g = &self.geo;
        ensure!(!self.out_last, "already channel-last");
        ensure!(
            shape.last() == Some(&g.co)
                && shape.iter().product::<usize>() == g.outer * g.inner * g.co,
            "channel-last output {shape:?} for {g:?}"
        );
        let mut op = self.by_input()?;
        op.out_last = true;
        op.out_shape = shape.into();
        Ok(op)
    }

    /// The same op with its outputs clamped to `[lo, hi]`.
    pub fn with_clip(mut self, lo: f32, hi: f32) -> TractResult<Self> {
        ensure!(lo <= hi, "clamp to [{lo}, {hi}]");
        self.clip = Some((lo.to_bits(), hi.to_bits()));
        Ok(self)
    }

    /// The shape of its output.
    pub fn output_shape(&self) -> &[usize] {
        &self.out_shape
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
        if self.in_last || self.out_last {
            View {
                images: g.outer,
                cols: g.inner,
                x: if self.in_last {
                    (1, g.ci)
                } else {
                    (g.inner, 1)
                },
                y: if self.out_last {
                    (1, g.co)
                } else {
                    (g.inner, 1)
                },
            }
        } else if g.inner == 1 && g.outer > 1 && self.patches.is_none() {
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
        let tiles = tiles(g.co, view.cols, g.ci, crate::par::threads());
        let job = Job {
            op: self,
            view,
            weights: self.weights.try_as_plain_ram()?.as_slice::<f32>()?,
            bias: self.bias.try_as_plain_ram()?.as_slice::<f32>()?,
            clip: self.clip(),
        };
        // What one image of the view reads and writes (a channel-last tensor is one image).
        let (per_in, per_out) = (len_in / view.images, len_out / view.images);
        for image in 0..view.images {
            let input = &input[image * per_in..][..per_in];
            let res = residual.map(|r| &r[image * per_out..][..per_out]);
            let y = Out(output[image * per_out..][..per_out].as_mut_ptr());
            let y = &y;
            let one = |t: &Tile| {
                let mut cols = Vec::new();
                let x = match &self.patches {
                    Some(p) => {
                        cols.resize(g.ci * t.c.len(), 0f32);
                        gather(p, input, t.c.clone(), &mut cols);
                        Input {
                            data: &cols,
                            from: t.c.start,
                            strides: (t.c.len(), 1),
                        }
                    }
                    None => Input {
                        data: input,
                        from: 0,
                        strides: view.x,
                    },
                };
                job.tile(t, x, res, y)
            };
            crate::par::for_each(tiles.len(), |i| one(&tiles[i]));
        }
        Ok(())
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
        let layout = match (self.in_last, self.out_last) {
            (true, true) => ", channel-last",
            (true, false) => ", channel-last in",
            (false, true) => ", channel-last out",
            (false, false) => "",
        };
        let kernel = match &self.patches {
            Some(p) => format!(
                "{}×{} stride {}×{} over {}×{}, ",
                p.kh, p.kw, p.sh, p.sw, p.h, p.w
            ),
            None => String::new(),
        };
        Ok(vec![format!(
            "{kernel}{} → {} channels × {} × {}{layout}{}",
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
