//! The channel-last depthwise kernel browsers run: four-lane vectors ([`Quad`]: wasm
//! simd128, or four plain `f32`s natively, so tests check the loops browsers run), with every
//! accumulator a local of its own.
//!
//! The browser module is built for size (`opt-level = "z"`), which does not unroll loops, so
//! the channel-last kernel's generic blocks (accumulators in arrays indexed in loops) stay in
//! memory there: 37.8 ms per pass under node against tract's 9.2 (`BENCHMARKS.md`). Here the
//! blocks are written out:
//! - interior pixels in groups of 4, 8 channels per block: 8 accumulators, and per kernel tap
//!   two weight loads shared by the four pixels;
//! - border pixels (each with its own taps inside the input), the pixels left over from
//!   groups, and channels left over from blocks of 8, one pixel at a time: 16 channels per
//!   block (4 accumulators), then 4, then one channel at a time.
//!
//! The accumulators start at the bias; the clamp is applied before the single store.

// Loads and stores go through raw pointers whose bounds `pixels` asserts first: the
// workspace denies unsafe code, so this module opts in, with a SAFETY comment at each block.
#![allow(unsafe_code)]

use super::last::{Job, Lanes};
use crate::pointwise::quad::{Portable, Quad};

/// [`Lanes`] for a [`Quad`]: its interior pixels go 4 at a time, through [`pixels`].
macro_rules! quad_lanes {
    ($t:ty) => {
        impl Lanes for $t {
            const LANES: usize = 4;
            const GROUP: usize = 4;
            #[inline(always)]
            unsafe fn pixels<const P: usize>(
                job: &Job<'_>,
                image: &[f32],
                bases: [usize; P],
                taps: &[(usize, usize)],
                out: &mut [f32],
            ) {
                pixels::<$t>(job, image, &bases, taps, out);
            }
            #[inline(always)]
            unsafe fn splat(v: f32) -> Self {
                <$t as Quad>::splat(v)
            }
            #[inline(always)]
            unsafe fn load(p: *const f32) -> Self {
                // SAFETY: the caller passes 4 readable floats.
                unsafe { <$t as Quad>::load(p) }
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                // SAFETY: the caller passes 4 writable floats.
                unsafe { <$t as Quad>::store(self, p) }
            }
            #[inline(always)]
            unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                <$t as Quad>::mul_add(a, b, c)
            }
            #[inline(always)]
            unsafe fn clamp(a: Self, bounds: Option<(Self, Self)>) -> Self {
                match bounds {
                    Some((lo, hi)) => <$t as Quad>::clamp(a, lo, hi),
                    None => a,
                }
            }
        }
    };
}

quad_lanes!(Portable);
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
quad_lanes!(core::arch::wasm32::v128);

/// Output pixels of `job` (`out`, `c` floats per base): pixel `p` reads the input at
/// `bases[p]` plus each tap's input offset, and the kernel at the tap's kernel offset (each
/// offset is the start of `c` floats). One copy for every group size (the module is built
/// for size).
fn pixels<Q: Quad>(
    job: &Job<'_>,
    image: &[f32],
    bases: &[usize],
    taps: &[(usize, usize)],
    out: &mut [f32],
) {
    let c = job.g.c;
    let reach = taps.iter().map(|&(i, _)| i).max().unwrap_or(0);
    assert!(
        out.len() == bases.len() * c
            && bases.iter().all(|&b| b + reach + c <= image.len())
            && taps.iter().all(|&(_, k)| k + c <= job.kernel.len())
            && job.bias.len() == c,
        "depthwise tap out of bounds"
    );
    let clip = job.clip.map(|(lo, hi)| (Q::splat(lo), Q::splat(hi)));
    let finish = |a: Q| match clip {
        Some((lo, hi)) => Q::clamp(a, lo, hi),
        None => a,
    };
    let (src, ker, bias, dst) = (
        image.as_ptr(),
        job.kernel.as_ptr(),
        job.bias.as_ptr(),
        out.as_mut_ptr(),
    );
    let mut c0 = 0;
    if let &[b0, b1, b2, b3] = bases {
        // SAFETY (the block): channels `c0..c0 + 8` of each pixel's taps, of the kernel's
        // taps, of the bias and of each output pixel are inside the slices (asserted above,
        // with `c0 + 8 <= c`).
        while c0 + 8 <= c {
            unsafe {
                let (w0, w1) = (Q::load(bias.add(c0)), Q::load(bias.add(c0 + 4)));
                let (mut a0, mut a1, mut a2, mut a3) = (w0, w1, w0, w1);
                let (mut a4, mut a5, mut a6, mut a7) = (w0, w1, w0, w1);
                for &(i, k) in taps {
                    let (w0, w1) = (Q::load(ker.add(k + c0)), Q::load(ker.add(k + c0 + 4)));
                    let x = src.add(i + c0);
                    let (x0, x1, x2, x3) = (x.add(b0), x.add(b1), x.add(b2), x.add(b3));
                    a0 = Q::mul_add(Q::load(x0), w0, a0);
                    a1 = Q::mul_add(Q::load(x0.add(4)), w1, a1);
                    a2 = Q::mul_add(Q::load(x1), w0, a2);
                    a3 = Q::mul_add(Q::load(x1.add(4)), w1, a3);
                    a4 = Q::mul_add(Q::load(x2), w0, a4);
                    a5 = Q::mul_add(Q::load(x2.add(4)), w1, a5);
                    a6 = Q::mul_add(Q::load(x3), w0, a6);
                    a7 = Q::mul_add(Q::load(x3.add(4)), w1, a7);
                }
                let d = dst.add(c0);
                finish(a0).store(d);
                finish(a1).store(d.add(4));
                finish(a2).store(d.add(c));
                finish(a3).store(d.add(c + 4));
                finish(a4).store(d.add(2 * c));
                finish(a5).store(d.add(2 * c + 4));
                finish(a6).store(d.add(3 * c));
                finish(a7).store(d.add(3 * c + 4));
            }
            c0 += 8;
        }
    }
    for (p, &at) in bases.iter().enumerate() {
        let mut ch = c0;
        let (x, d) = (src.wrapping_add(at), dst.wrapping_add(p * c));
        // SAFETY (both blocks): as above, channels `ch..ch + 16` (then `ch..ch + 4`) of this
        // pixel, with `ch + 16 <= c` (then `ch + 4 <= c`).
        while ch + 16 <= c {
            unsafe {
                let mut a0 = Q::load(bias.add(ch));
                let mut a1 = Q::load(bias.add(ch + 4));
                let mut a2 = Q::load(bias.add(ch + 8));
                let mut a3 = Q::load(bias.add(ch + 12));
                for &(i, k) in taps {
                    let (s, w) = (x.add(i + ch), ker.add(k + ch));
                    a0 = Q::mul_add(Q::load(s), Q::load(w), a0);
                    a1 = Q::mul_add(Q::load(s.add(4)), Q::load(w.add(4)), a1);
                    a2 = Q::mul_add(Q::load(s.add(8)), Q::load(w.add(8)), a2);
                    a3 = Q::mul_add(Q::load(s.add(12)), Q::load(w.add(12)), a3);
                }
                let d = d.add(ch);
                finish(a0).store(d);
                finish(a1).store(d.add(4));
                finish(a2).store(d.add(8));
                finish(a3).store(d.add(12));
            }
            ch += 16;
        }
        while ch + 4 <= c {
            unsafe {
                let mut a = Q::load(bias.add(ch));
                for &(i, k) in taps {
                    a = Q::mul_add(Q::load(x.add(i + ch)), Q::load(ker.add(k + ch)), a);
                }
                finish(a).store(d.add(ch));
            }
            ch += 4;
        }
        for ch in ch..c {
            let mut a = job.bias[ch];
            for &(i, k) in taps {
                a += image[at + i + ch] * job.kernel[k + ch];
            }
            if let Some((lo, hi)) = job.clip {
                a = crate::epilogue::clamp(a, lo, hi);
            }
            out[p * c + ch] = a;
        }
    }
}
