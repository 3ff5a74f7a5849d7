//! The 1×1 product browsers run: four-lane `f32` vectors (wasm simd128), with no packing
//! and the epilogue applied in registers.
//!
//! The op keeps its weights `[ci, co]` in the wasm build, so the weights of 8 output
//! channels for one input channel are two contiguous vector loads, and the next input
//! channel's are `co` floats further on. Each block of 8 output channels × 4 pixels keeps its
//! 8 accumulators in registers (V8 gives wasm 15 of x86-64's 16 vector registers; 8 + 2
//! weights + 1 input leaves room), starting at the bias. Per input channel it takes one
//! broadcast input float per pixel, from any strides, so channel-last tensors, planes and
//! gathered patches are all read in place. The clamp and the residual are applied before the
//! single store. Output channels left over from blocks of 8 go one at a time (EfficientNet's
//! are all multiples of 8); a group of fewer than 4 pixels runs the same block.
//!
//! tract's own wasm kernels (8×8 tiles) pack the input of every product first and finish the
//! tile in separate passes: 9 % of a pass in packing alone (`BENCHMARKS.md`).
//!
//! The kernel is generic over [`Quad`]: [`Portable`] (four `f32`s, any target) lets native
//! tests check the exact loops the browser runs; `v128` is what runs there.

// Loads and stores go through raw pointers whose bounds the caller guarantees (see
// `Product`): the workspace denies unsafe code, so this module opts in, with a SAFETY
// comment at each block.
#![allow(unsafe_code)]

use std::array::from_fn;
use std::ops::Range;

/// Four `f32` lanes.
pub trait Quad: Copy {
    /// Four copies of `v`.
    fn splat(v: f32) -> Self;
    /// Four floats from `p`.
    ///
    /// # Safety
    /// `p` points to 4 readable floats.
    unsafe fn load(p: *const f32) -> Self;
    /// Four copies of the float at `p`.
    ///
    /// # Safety
    /// `p` points to a readable float.
    unsafe fn load_splat(p: *const f32) -> Self;
    /// Four floats to `p`.
    ///
    /// # Safety
    /// `p` points to 4 writable floats.
    unsafe fn store(self, p: *mut f32);
    /// `a * b + c`, rounded twice (as wasm's `f32x4.mul` then `f32x4.add`).
    fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// `a + b`.
    fn add(a: Self, b: Self) -> Self;
    /// Clamped to `[lo, hi]` as `epilogue::clamp` does.
    fn clamp(a: Self, lo: Self, hi: Self) -> Self;
    /// The lanes, in order.
    fn lanes(self) -> [f32; 4];
}

/// Four `f32`s in plain Rust: the kernel's loops on any target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Portable(pub [f32; 4]);

impl Quad for Portable {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Self([v; 4])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes 4 readable floats.
        Self(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_splat(p: *const f32) -> Self {
        // SAFETY: the caller passes a readable float.
        Self([unsafe { *p }; 4])
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes 4 writable floats.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Self(from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        Self(from_fn(|i| a.0[i] + b.0[i]))
    }
    #[inline(always)]
    fn clamp(a: Self, lo: Self, hi: Self) -> Self {
        Self(from_fn(|i| {
            crate::epilogue::clamp(a.0[i], lo.0[i], hi.0[i])
        }))
    }
    #[inline(always)]
    fn lanes(self) -> [f32; 4] {
        self.0
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl Quad for core::arch::wasm32::v128 {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        core::arch::wasm32::f32x4_splat(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes 4 readable floats (wasm loads need no alignment).
        unsafe { core::arch::wasm32::v128_load(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_splat(p: *const f32) -> Self {
        // SAFETY: the caller passes a readable float.
        unsafe { core::arch::wasm32::v128_load32_splat(p.cast()) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes 4 writable floats.
        unsafe { core::arch::wasm32::v128_store(p.cast(), self) }
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        use core::arch::wasm32::{f32x4_add, f32x4_mul};
        f32x4_add(f32x4_mul(a, b), c)
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        core::arch::wasm32::f32x4_add(a, b)
    }
    #[inline(always)]
    fn clamp(a: Self, lo: Self, hi: Self) -> Self {
        // `pmax(a, lo)` is `a < lo ? lo : a`, `pmin(a, hi)` is `hi < a ? hi : a`: the
        // scalar clamp's comparisons, NaN kept.
        use core::arch::wasm32::{f32x4_pmax, f32x4_pmin};
        f32x4_pmin(f32x4_pmax(a, lo), hi)
    }
    #[inline(always)]
    fn lanes(self) -> [f32; 4] {
        use core::arch::wasm32::f32x4_extract_lane;
        [
            f32x4_extract_lane::<0>(self),
            f32x4_extract_lane::<1>(self),
            f32x4_extract_lane::<2>(self),
            f32x4_extract_lane::<3>(self),
        ]
    }
}

/// A tensor's base pointer and strides as the product reads or writes it: `rows` between
/// channels, `cols` between pixels.
#[derive(Debug, Clone, Copy)]
pub struct Strided<P> {
    /// Channel 0 of pixel 0.
    pub at: P,
    /// Floats from one channel to the next.
    pub rows: usize,
    /// Floats from one pixel to the next.
    pub cols: usize,
}

/// One tile of `y = clamp(W · x + bias, lo, hi) + residual`: output channels `rows` × pixels
/// `cols`.
#[derive(Debug, Clone)]
pub struct Product<'a> {
    /// `[k, co]`: input channel by output channel.
    pub weights: &'a [f32],
    /// Output channels of the whole op (the weights' row length).
    pub co: usize,
    /// Input channels (taps, for gathered patches).
    pub k: usize,
    /// `[co]`.
    pub bias: &'a [f32],
    /// Bounds of the clamp, if any.
    pub clip: Option<(f32, f32)>,
    /// The input: `rows` between input channels, `cols` between pixels.
    pub x: Strided<*const f32>,
    /// The output.
    pub y: Strided<*mut f32>,
    /// A tensor added last, read with the output's strides.
    pub residual: Option<*const f32>,
    /// The tile's output channels.
    pub rows: Range<usize>,
    /// The tile's pixels.
    pub cols: Range<usize>,
}

impl Product<'_> {
    /// Compute the tile with `V`'s lanes.
    ///
    /// # Safety
    /// `rows` ⊆ `0..co`, the weights hold `k × co` floats and the bias `co`; every
    /// `x.at + l * x.rows + j * x.cols` (`l < k`, `j` in `cols`) is readable, every
    /// `y.at + i * y.rows + j * y.cols` (`i` in `rows`, `j` in `cols`) writable and, with a
    /// residual, readable at the same offset from it; nothing else reads or writes those
    /// outputs meanwhile.
    pub unsafe fn run<V: Quad>(&self) {
        assert!(
            self.rows.end <= self.co
                && self.weights.len() >= self.k * self.co
                && self.bias.len() >= self.co,
            "1×1 product tile outside its weights"
        );
        let (rows, cols) = (self.rows.clone(), self.cols.clone());
        let mut i = rows.start;
        while i + 8 <= rows.end {
            for j in cols.clone().step_by(4) {
                // SAFETY: the caller's contract covers the tile; the block reads and writes
                // channels `i..i + 8` of pixels `j..j + n`, inside it.
                unsafe { self.block_4x8::<V>(i, j, (cols.end - j).min(4)) };
            }
            i += 8;
        }
        for i in i..rows.end {
            // SAFETY: as above, for channel `i`.
            unsafe { self.one_channel(i, cols.clone()) };
        }
    }

    /// Channels `i..i + 8` of pixels `j..j + n` (`n` from 1 to 4), 8 accumulators as 8
    /// locals: the browsers' module is built for size (`opt-level = "z"`), which does not
    /// unroll loops, and a block written as loops over arrays kept its accumulators in memory
    /// and ran at a third of this speed. With fewer than 4 pixels the last one is computed
    /// again in the missing places (its inputs are readable) and not stored.
    #[inline(always)]
    unsafe fn block_4x8<V: Quad>(&self, i: usize, j: usize, n: usize) {
        let (x, co, k) = (self.x, self.co, self.k);
        // Input offsets of the four pixels, the last valid one repeated.
        let [p1, p2, p3] = [1, 2, 3].map(|q| q.min(n - 1) * x.cols);
        // SAFETY: channels `i..i + 8` are below `co`, so the bias and each weight row have
        // them; pixels `j..j + n` are in the tile, so their `k` inputs are readable; outputs
        // are finished only for those pixels.
        unsafe {
            let b0 = V::load(self.bias.as_ptr().add(i));
            let b1 = V::load(self.bias.as_ptr().add(i + 4));
            let (mut c00, mut c01, mut c10, mut c11) = (b0, b1, b0, b1);
            let (mut c20, mut c21, mut c30, mut c31) = (b0, b1, b0, b1);
            let mut w = self.weights.as_ptr().add(i);
            let mut a = x.at.add(j * x.cols);
            for _ in 0..k {
                let w0 = V::load(w);
                let w1 = V::load(w.add(4));
                let v = V::load_splat(a);
                c00 = V::mul_add(v, w0, c00);
                c01 = V::mul_add(v, w1, c01);
                let v = V::load_splat(a.add(p1));
                c10 = V::mul_add(v, w0, c10);
                c11 = V::mul_add(v, w1, c11);
                let v = V::load_splat(a.add(p2));
                c20 = V::mul_add(v, w0, c20);
                c21 = V::mul_add(v, w1, c21);
                let v = V::load_splat(a.add(p3));
                c30 = V::mul_add(v, w0, c30);
                c31 = V::mul_add(v, w1, c31);
                w = w.add(co);
                a = a.add(x.rows);
            }
            self.finish(c00, i, j);
            self.finish(c01, i + 4, j);
            if n > 1 {
                self.finish(c10, i, j + 1);
                self.finish(c11, i + 4, j + 1);
            }
            if n > 2 {
                self.finish(c20, i, j + 2);
                self.finish(c21, i + 4, j + 2);
            }
            if n > 3 {
                self.finish(c30, i, j + 3);
                self.finish(c31, i + 4, j + 3);
            }
        }
    }

    /// Clamp `v` (channels `i..i + 4` of pixel `j`), add the residual, store.
    ///
    /// # Safety
    /// As `run`, for those four outputs.
    #[inline(always)]
    unsafe fn finish<V: Quad>(&self, mut v: V, i: usize, j: usize) {
        let y = self.y;
        if let Some((lo, hi)) = self.clip {
            v = V::clamp(v, V::splat(lo), V::splat(hi));
        }
        let at = j * y.cols + i * y.rows;
        // SAFETY: the caller's.
        unsafe {
            if y.rows == 1 {
                if let Some(res) = self.residual {
                    v = V::add(v, V::load(res.add(at)));
                }
                v.store(y.at.add(at));
            } else {
                for (lane, v) in v.lanes().into_iter().enumerate() {
                    let at = at + lane * y.rows;
                    let res = self.residual.map_or(0.0, |res| *res.add(at));
                    *y.at.add(at) = v + res;
                }
            }
        }
    }

    /// Output channel `i` over the tile's pixels, one float at a time.
    unsafe fn one_channel(&self, i: usize, cols: Range<usize>) {
        let (x, y) = (self.x, self.y);
        for j in cols {
            let mut acc = self.bias[i];
            for l in 0..self.k {
                // SAFETY: as `run`: input channel `l < k` of pixel `j` in the tile.
                acc +=
                    unsafe { *x.at.add(l * x.rows + j * x.cols) } * self.weights[l * self.co + i];
            }
            if let Some((lo, hi)) = self.clip {
                acc = crate::epilogue::clamp(acc, lo, hi);
            }
            let at = j * y.cols + i * y.rows;
            // SAFETY: output channel `i` of pixel `j` is in the tile.
            unsafe {
                let res = self.residual.map_or(0.0, |res| *res.add(at));
                *y.at.add(at) = acc + res;
            }
        }
    }
}
