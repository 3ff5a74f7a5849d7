//! The channel-last kernel: tensors laid out pixel by pixel (`[n, h, w, c]`), the channels of
//! one pixel in SIMD lanes.
//!
//! Each output pixel is computed in channel blocks of four registers (64 channels with
//! AVX-512, 32 with AVX2), then one register, then one channel at a time: the accumulators
//! start at the bias, take one multiply-add per kernel tap that falls inside the input (the
//! padding is skipped, not read), and are clamped and stored once. Strides and borders change
//! only which taps a pixel has, so every layer runs the same loop with contiguous loads:
//! there is no scratch and no copy. The kernel is `[kh * kw, c]` so a tap's weights are one
//! contiguous run too.
//!
//! The vector code is one generic loop over [`Lanes`], compiled per instruction set and
//! chosen at run time: AVX-512, AVX2 + FMA, or one lane (any CPU). The wasm build runs
//! simd128 through `depthwise::quad`, whose blocks are written out for the size-built module.

// The loads and stores below read and write through raw pointers, checked once per pixel
// (see `pixel`): the workspace denies unsafe code, so this module opts in, with a SAFETY
// comment at each block.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};

use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::*;

use super::Geometry;
use crate::epilogue::clamp;

/// The instruction sets the channel-last kernel is compiled for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// One lane, any CPU.
    Portable = 0,
    /// The browsers' kernel (`depthwise::quad`) on four plain `f32` lanes: its loops,
    /// natively, for tests. Taken only when asked for ([`limit_simd`]).
    Quad = 1,
    /// AVX2 + FMA (8 lanes).
    Avx2 = 2,
    /// AVX-512 (16 lanes).
    Avx512 = 3,
}

/// The widest instruction set [`run`] may use (it also needs the CPU to have it).
static WIDEST: AtomicU8 = AtomicU8::new(Simd::Avx512 as u8);

/// Let the channel-last kernel use at most `widest`, process-wide (tests run every copy of
/// the kernel on one CPU this way; benchmarks can show what a CPU without AVX-512 gets).
pub fn limit_simd(widest: Simd) {
    WIDEST.store(widest as u8, Ordering::Relaxed);
}

/// One run's constants.
pub(super) struct Job<'a> {
    pub(super) g: &'a Geometry,
    /// `[kh * kw, c]`.
    pub(super) kernel: &'a [f32],
    /// `[c]`.
    pub(super) bias: &'a [f32],
    pub(super) clip: Option<(f32, f32)>,
}

/// Run `g` on channel-last `input` (`[n, h, w, c]`) into `output` (`[n, oh, ow, c]`);
/// `kernel` is `[kh * kw, c]`, `bias` `[c]`.
pub(super) fn run(
    g: &Geometry,
    kernel: &[f32],
    bias: &[f32],
    clip: Option<(f32, f32)>,
    input: &[f32],
    output: &mut [f32],
) -> TractResult<()> {
    ensure!(
        kernel.len() == g.kh * g.kw * g.c && bias.len() == g.c,
        "channel-last depthwise weights"
    );
    let job = Job {
        g,
        kernel,
        bias,
        clip,
    };
    let row_out = g.ow * g.c;
    let image_in = g.h * g.w * g.c;
    // Output rows are independent: spread over the run's threads ([`crate::par`]).
    crate::par::chunks_mut(output, row_out, input.len() + output.len(), |first, out| {
        for (i, row) in out.chunks_exact_mut(row_out).enumerate() {
            let (n, oy) = ((first + i) / g.oh, (first + i) % g.oh);
            job.row(&input[n * image_in..][..image_in], oy, row);
        }
        Ok(())
    })
}

impl Job<'_> {
    /// Output row `oy` of one image.
    fn row(&self, image: &[f32], oy: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let widest = WIDEST.load(Ordering::Relaxed);
            if widest >= Simd::Avx512 as u8 && std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU was just checked for the feature the function is compiled
                // for.
                unsafe { self.row_avx512(image, oy, out) };
                return;
            }
            if widest >= Simd::Avx2 as u8
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above, for both features.
                unsafe { self.row_avx2(image, oy, out) };
                return;
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            // SAFETY: the module is built with simd128, so every engine that runs it has it.
            unsafe { self.row_with::<core::arch::wasm32::v128>(image, oy, out) };
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        {
            if WIDEST.load(Ordering::Relaxed) == Simd::Quad as u8 {
                // SAFETY: plain `f32` lanes need no instruction set.
                unsafe { self.row_with::<crate::pointwise::quad::Portable>(image, oy, out) };
                return;
            }
            // SAFETY: one `f32` lane needs no instruction set.
            unsafe { self.row_with::<f32>(image, oy, out) };
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn row_avx512(&self, image: &[f32], oy: usize, out: &mut [f32]) {
        // SAFETY: this function runs with AVX-512 (its callers check).
        unsafe { self.row_with::<std::arch::x86_64::__m512>(image, oy, out) };
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2(&self, image: &[f32], oy: usize, out: &mut [f32]) {
        // SAFETY: this function runs with AVX2 and FMA (its callers check).
        unsafe { self.row_with::<std::arch::x86_64::__m256>(image, oy, out) };
    }

    /// Every pixel of output row `oy`: the interior ones (every kernel column inside the
    /// input) in groups of `P` that share each weight load, the border ones one at a time
    /// with only their taps inside the input.
    ///
    /// # Safety
    /// The CPU has `V`'s instruction set.
    #[inline(always)]
    unsafe fn row_with<V: Lanes>(&self, image: &[f32], oy: usize, out: &mut [f32]) {
        let g = self.g;
        let c = g.c;
        // Kernel rows whose input row `oy * sh + ky - pad_top` is inside the image.
        let top = oy * g.sh;
        let ky = g.pad_top.saturating_sub(top)..(g.h + g.pad_top).saturating_sub(top).min(g.kh);
        let Some(iy0) = (top + ky.start)
            .checked_sub(g.pad_top)
            .filter(|_| !ky.is_empty())
        else {
            // No input row under this output row (only with padding larger than the kernel).
            self.bias_only(out);
            return;
        };
        // The interior taps, relative to the input pixel under the pixel's first tap.
        let mut inner = Vec::with_capacity(ky.len() * g.kw);
        for y in ky.clone() {
            for x in 0..g.kw {
                inner.push((((y - ky.start) * g.w + x) * c, (y * g.kw + x) * c));
            }
        }
        // Output columns whose kernel columns are all inside the input.
        let first = g.pad_left.div_ceil(g.sw).min(g.ow);
        let end = match (g.w + g.pad_left).checked_sub(g.kw) {
            Some(last) => (last / g.sw + 1).clamp(first, g.ow),
            None => first,
        };
        let base = |ox: usize| (iy0 * g.w + ox * g.sw - g.pad_left) * c;
        let mut border = Vec::with_capacity(g.kh * g.kw);
        for ox in (0..first).chain(end..g.ow) {
            let left = ox * g.sw;
            let kx =
                g.pad_left.saturating_sub(left)..(g.w + g.pad_left).saturating_sub(left).min(g.kw);
            border.clear();
            for y in ky.clone() {
                let iy = top + y - g.pad_top;
                for x in kx.clone() {
                    let ix = left + x - g.pad_left;
                    border.push(((iy * g.w + ix) * c, (y * g.kw + x) * c));
                }
            }
            // SAFETY: the caller's CPU has `V`'s instruction set.
            unsafe { V::pixels::<1>(self, image, [0], &border, &mut out[ox * c..][..c]) };
        }
        let mut ox = first;
        while ox < end {
            let n = (end - ox).min(V::GROUP);
            let run = &mut out[ox * c..(ox + n) * c];
            // SAFETY: as above.
            unsafe {
                match n {
                    4 => {
                        V::pixels::<4>(self, image, [0, 1, 2, 3].map(|p| base(ox + p)), &inner, run)
                    }
                    2 | 3 => V::pixels::<2>(
                        self,
                        image,
                        [base(ox), base(ox + 1)],
                        &inner,
                        &mut run[..2 * c],
                    ),
                    _ => V::pixels::<1>(self, image, [base(ox)], &inner, &mut run[..c]),
                }
            }
            ox += if n == 3 { 2 } else { n };
        }
    }

    /// Outputs with no tap inside the input: the bias, clamped.
    fn bias_only(&self, out: &mut [f32]) {
        for pixel in out.chunks_exact_mut(self.g.c) {
            for (o, &b) in pixel.iter_mut().zip(self.bias) {
                *o = match self.clip {
                    Some((lo, hi)) => clamp(b, lo, hi),
                    None => b,
                };
            }
        }
    }

    /// `P` output pixels (`out`, `P × c` floats), pixel `p` from the input at `bases[p]` plus
    /// each tap's input offset, by the kernel at the tap's kernel offset; each offset is the
    /// start of `c` floats. The pixels share each weight load, and the `P × K` accumulators
    /// are independent multiply-add chains.
    ///
    /// # Safety
    /// The CPU has `V`'s instruction set.
    #[inline(always)]
    unsafe fn pixels<V: Lanes, const P: usize>(
        &self,
        image: &[f32],
        bases: [usize; P],
        taps: &[(usize, usize)],
        out: &mut [f32],
    ) {
        let c = self.g.c;
        let reach = taps.iter().map(|&(i, _)| i).max().unwrap_or(0);
        assert!(
            out.len() == P * c
                && bases.iter().all(|&b| b + reach + c <= image.len())
                && taps.iter().all(|&(_, k)| k + c <= self.kernel.len())
                && self.bias.len() == c,
            "depthwise tap out of bounds"
        );
        let l = V::LANES;
        let mut c0 = 0;
        // SAFETY (every call below): the CPU has `V`'s instruction set (the caller's
        // contract); every pixel's taps are followed by `c` floats (asserted above), and each
        // call covers channels `c0..c0 + K * LANES` with `c0 + K * LANES <= c`.
        while c0 + 4 * l <= c {
            unsafe { self.chunk::<V, P, 4>(image, bases, taps, c0, out) };
            c0 += 4 * l;
        }
        while c0 + 2 * l <= c {
            unsafe { self.chunk::<V, P, 2>(image, bases, taps, c0, out) };
            c0 += 2 * l;
        }
        while c0 + l <= c {
            unsafe { self.chunk::<V, P, 1>(image, bases, taps, c0, out) };
            c0 += l;
        }
        for (p, &at) in bases.iter().enumerate() {
            for ch in c0..c {
                let mut a = self.bias[ch];
                for &(i, k) in taps {
                    a = image[at + i + ch].mul_add(self.kernel[k + ch], a);
                }
                if let Some((lo, hi)) = self.clip {
                    a = clamp(a, lo, hi);
                }
                out[p * c + ch] = a;
            }
        }
    }

    /// Channels `c0..c0 + K * LANES` of [`Job::pixels`]' `P` pixels.
    ///
    /// # Safety
    /// The CPU has `V`'s instruction set, and every read and write is in bounds (see
    /// [`Job::pixels`]).
    #[inline(always)]
    unsafe fn chunk<V: Lanes, const P: usize, const K: usize>(
        &self,
        image: &[f32],
        bases: [usize; P],
        taps: &[(usize, usize)],
        c0: usize,
        out: &mut [f32],
    ) {
        let (l, c) = (V::LANES, self.g.c);
        let (src, ker, bias, dst) = (
            image.as_ptr(),
            self.kernel.as_ptr(),
            self.bias.as_ptr(),
            out.as_mut_ptr(),
        );
        // SAFETY: the caller's contract.
        unsafe {
            let start: [V; K] = std::array::from_fn(|j| V::load(bias.add(c0 + j * l)));
            let mut acc = [start; P];
            for &(i, k) in taps {
                let w: [V; K] = std::array::from_fn(|j| V::load(ker.add(k + c0 + j * l)));
                for (a, &at) in acc.iter_mut().zip(&bases) {
                    let s = src.add(at + i + c0);
                    for (j, a) in a.iter_mut().enumerate() {
                        *a = V::fma(V::load(s.add(j * l)), w[j], *a);
                    }
                }
            }
            let clip = self.clip.map(|(lo, hi)| (V::splat(lo), V::splat(hi)));
            for (p, a) in acc.into_iter().enumerate() {
                for (j, a) in a.into_iter().enumerate() {
                    V::clamp(a, clip).store(dst.add(p * c + c0 + j * l));
                }
            }
        }
    }
}

/// A SIMD register of `f32` lanes, as the kernel uses it.
///
/// # Safety
/// Every method may only run on a CPU with the register's instruction set; `load` and `store`
/// take pointers to `LANES` readable (or writable) floats.
pub(super) trait Lanes: Copy {
    const LANES: usize;
    /// Interior pixels computed together (sharing each weight load).
    const GROUP: usize = if Self::LANES >= 16 { 4 } else { 2 };
    /// [`Job::pixels`]: `P` output pixels, every channel.
    ///
    /// # Safety
    /// The CPU has the register's instruction set.
    #[inline(always)]
    unsafe fn pixels<const P: usize>(
        job: &Job<'_>,
        image: &[f32],
        bases: [usize; P],
        taps: &[(usize, usize)],
        out: &mut [f32],
    ) {
        // SAFETY: the caller's contract.
        unsafe { job.pixels::<Self, P>(image, bases, taps, out) }
    }
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `a * b + c`.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// Clamped to the bounds as `epilogue::clamp` does (a NaN stays NaN: `max` and `min`
    /// return their second operand when one is NaN).
    unsafe fn clamp(a: Self, bounds: Option<(Self, Self)>) -> Self;
}

/// One lane: the portable fallback.
impl Lanes for f32 {
    const LANES: usize = 1;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes a readable float.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes a writable float.
        unsafe { *p = self }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn clamp(a: Self, bounds: Option<(Self, Self)>) -> Self {
        match bounds {
            Some((lo, hi)) => clamp(a, lo, hi),
            None => a,
        }
    }
}

// The intrinsics below are only reached from `row_avx512` and `row_avx2` (the trait's
// contract), whose callers checked the CPU; `#[inline(always)]` puts them inside those
// functions' instruction sets.
#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: AVX-512 (the trait's contract).
        unsafe { std::arch::x86_64::_mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: AVX-512 (the trait's contract); the caller passes 16 readable floats.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: AVX-512 (the trait's contract); the caller passes 16 writable floats.
        unsafe { std::arch::x86_64::_mm512_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512 (the trait's contract).
        unsafe { std::arch::x86_64::_mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn clamp(a: Self, bounds: Option<(Self, Self)>) -> Self {
        use std::arch::x86_64::{_mm512_max_ps, _mm512_min_ps};
        match bounds {
            // SAFETY: AVX-512 (the trait's contract).
            Some((lo, hi)) => unsafe { _mm512_min_ps(hi, _mm512_max_ps(lo, a)) },
            None => a,
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: AVX2 + FMA (the trait's contract).
        unsafe { std::arch::x86_64::_mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: AVX2 + FMA (the trait's contract); the caller passes 8 readable floats.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: AVX2 + FMA (the trait's contract); the caller passes 8 writable floats.
        unsafe { std::arch::x86_64::_mm256_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: AVX2 + FMA (the trait's contract).
        unsafe { std::arch::x86_64::_mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn clamp(a: Self, bounds: Option<(Self, Self)>) -> Self {
        use std::arch::x86_64::{_mm256_max_ps, _mm256_min_ps};
        match bounds {
            // SAFETY: AVX2 + FMA (the trait's contract).
            Some((lo, hi)) => unsafe { _mm256_min_ps(hi, _mm256_max_ps(lo, a)) },
            None => a,
        }
    }
}
