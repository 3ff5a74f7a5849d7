//! The channels-first kernel: one channel plane at a time, through a zero-padded scratch.

use tract_nnef::prelude::*;

use super::Geometry;

/// The wide block: 16 outputs of a row (2 AVX registers).
const WIDE: usize = 16;
/// The narrow block, for row tails and the 7- and 14-wide planes of the last stages.
const NARROW: usize = 8;
/// Output rows computed together in wide blocks: 4 × 16 outputs are 8 AVX accumulators,
/// enough independent multiply-add chains to hide their latency.
const BAND: usize = 4;
/// The same for narrow blocks: 8 rows of 8 outputs (a 7×7 plane is one band).
const NARROW_BAND: usize = 8;

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

/// Run `g` on NCHW `input` into `output`: `kernel` is `[c, kh * kw]`, `bias` `[c]`.
pub(super) fn run(
    g: &Geometry,
    kernel: &[f32],
    bias: &[f32],
    clip: Option<(f32, f32)>,
    input: &[f32],
    output: &mut [f32],
) -> TractResult<()> {
    let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
    let offsets = g.tap_offsets();
    let copies = g.phase_copies();
    let job = Job {
        g,
        clip,
        copies: &copies,
        offsets: &offsets,
        kernel,
        bias,
    };
    // Planes are independent: spread over the run's threads ([`crate::par`]; inline with
    // one thread), each piece with its own scratch.
    crate::par::chunks_mut(
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
