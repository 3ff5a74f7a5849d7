//! How [`PointwiseConv::run`] cuts its output into tiles and computes one: the product (the
//! `gemm` crate natively, [`super::quad`] in wasm) and the epilogue while the tile is in cache.

#[cfg(not(target_arch = "wasm32"))]
use crate::epilogue::{finish_pixels, finish_row};

use super::PointwiseConv;

/// The narrowest column tile a split for threads makes before it splits rows instead.
const MIN_SPLIT_COLS: usize = 128;

/// Floats of output per tile: 64 K (256 KB) stays in this machine's 2 MB L2 with its inputs.
const TILE_FLOATS: usize = 64 * 1024;

/// tract's thread pool, when the plan runs inside one of more than one thread.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn pool() -> Option<std::sync::Arc<rayon::ThreadPool>> {
    use tract_nnef::tract_core::tract_linalg::multithread::{Executor, current_tract_executor};
    match current_tract_executor() {
        Executor::MultiThread(pool) if pool.current_num_threads() > 1 => Some(pool),
        _ => None,
    }
}

/// Browsers without threads run one.
#[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
pub(super) fn pool() -> Option<NoPool> {
    None
}

/// What [`pool`] gives in the single-thread wasm build: never a pool.
#[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
pub(super) enum NoPool {}

#[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
impl NoPool {
    pub(super) fn current_num_threads(&self) -> usize {
        match *self {}
    }
}

/// In a threaded browser module the pool is rayon's global one, over Web Workers
/// (`initThreadPool`), when the plan runs under `session::browser_threads`.
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub(super) fn pool() -> Option<Global> {
    use tract_nnef::tract_core::tract_linalg::multithread::{Executor, current_tract_executor};
    match current_tract_executor() {
        Executor::RayonGlobal if rayon::current_num_threads() > 1 => Some(Global),
        _ => None,
    }
}

/// rayon's global pool (the one Web Workers run).
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub(super) struct Global;

#[cfg(all(target_arch = "wasm32", feature = "threads"))]
impl Global {
    pub(super) fn current_num_threads(&self) -> usize {
        rayon::current_num_threads()
    }

    /// Parallel iterators reach the global pool from anywhere.
    pub(super) fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    pub(super) images: usize,
    pub(super) cols: usize,
    /// (row stride, column stride) of the input.
    pub(super) x: (usize, usize),
    /// The same for the output (and the residual).
    pub(super) y: (usize, usize),
}

/// Rows `r` × columns `c` of the output.
#[derive(Debug, Clone)]
pub(super) struct Tile {
    pub(super) r: std::ops::Range<usize>,
    pub(super) c: std::ops::Range<usize>,
}

/// Column tiles of about [`TILE_FLOATS`]; with several threads and too few of them to share,
/// narrower column tiles while each keeps at least [`MIN_SPLIT_COLS`] columns, else rows split
/// too (in multiples of 16, the kernels' row block: a split into fewer rows than the
/// product's 64-row block runs its narrower, slower kernels).
pub(super) fn tiles(rows: usize, cols: usize, threads: usize) -> Vec<Tile> {
    let mut width = (TILE_FLOATS / rows).max(64).div_ceil(16) * 16;
    if threads > 1 && cols.div_ceil(width) < 2 * threads {
        let narrower = cols.div_ceil(2 * threads).div_ceil(16) * 16;
        if narrower >= MIN_SPLIT_COLS {
            width = width.min(narrower);
        }
    }
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

/// A tile's input: `data`, whose first column is the image's column `from`, with (row, column)
/// strides `strides`: the whole image (`from` 0), or a tile's gathered patches.
#[derive(Clone, Copy)]
pub(super) struct Input<'a> {
    pub(super) data: &'a [f32],
    pub(super) from: usize,
    pub(super) strides: (usize, usize),
}

/// The output's base pointer, shared by tiles that write disjoint elements.
pub(super) struct Out(pub(super) *mut f32);
// SAFETY: tiles write disjoint parts of one buffer that outlives the parallel loop.
#[allow(unsafe_code)]
unsafe impl Sync for Out {}

pub(super) struct Job<'a> {
    pub(super) op: &'a PointwiseConv,
    pub(super) view: View,
    pub(super) weights: &'a [f32],
    pub(super) bias: &'a [f32],
    pub(super) clip: Option<(f32, f32)>,
}

impl Job<'_> {
    /// One tile in the browser: [`super::quad`]'s product with the epilogue in registers.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn tile(&self, t: &Tile, x: Input<'_>, res: Option<&[f32]>, y: &Out) {
        let g = &self.op.geo;
        let v = self.view;
        // Pixels counted from the input's first one: the output and the residual move there.
        let shift = x.from * v.y.1;
        #[allow(unsafe_code)]
        // SAFETY: the weights are `[ci, co]` (`by_input`, always in this build), the tile's
        // rows and columns are inside the image's view, whose strides address the output and
        // the residual (pixel `x.from` is inside both), and `x` holds the tile's inputs at
        // its strides; the tiles of one image are disjoint, and `run` holds the output
        // mutably.
        unsafe {
            let product = super::quad::Product {
                weights: self.weights,
                co: g.co,
                k: g.ci,
                bias: self.bias,
                clip: self.clip,
                x: super::quad::Strided {
                    at: x.data.as_ptr(),
                    rows: x.strides.0,
                    cols: x.strides.1,
                },
                y: super::quad::Strided {
                    at: y.0.add(shift),
                    rows: v.y.0,
                    cols: v.y.1,
                },
                residual: res.map(|r| r.as_ptr().add(shift)),
                rows: t.r.clone(),
                cols: t.c.start - x.from..t.c.end - x.from,
            };
            #[cfg(target_feature = "simd128")]
            product.run::<core::arch::wasm32::v128>();
            #[cfg(not(target_feature = "simd128"))]
            product.run::<super::quad::Portable>();
        }
    }

    /// One tile: the product, then bias, clamp and residual in one pass while it is in cache.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn tile(&self, t: &Tile, x: Input<'_>, res: Option<&[f32]>, y: &Out) {
        let g = &self.op.geo;
        let v = self.view;
        let n = t.c.len();
        let at = |row: usize, col: usize| row * v.y.0 + col * v.y.1;
        // The weights of the tile's rows, and their (column, row) strides: `[co, ci]`, or
        // `[ci, co]` (`by_input`).
        let (w, w_cs, w_rs) = if self.op.by_input {
            (self.weights[t.r.start..].as_ptr(), g.co as isize, 1)
        } else {
            (self.weights[t.r.start * g.ci..].as_ptr(), 1, g.ci as isize)
        };
        #[allow(unsafe_code)]
        // SAFETY: every index below is inside the image's output (rows < co, columns < cols,
        // strides of `view`) or inside `x` (its strides, from its first column), the tiles of
        // one image are disjoint, and no one else reads or
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
                w,
                w_cs,
                w_rs,
                x.data.as_ptr().add((t.c.start - x.from) * x.strides.1),
                x.strides.1 as isize,
                x.strides.0 as isize,
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
            if v.y.0 == 1 && v.y.1 > 1 {
                // Channel-last: each pixel's channels are contiguous, pixels `v.y.1` apart (a
                // single pixel, `[c, 1, 1]`, has both strides 1 and is finished row by row).
                // A tile of every row is one run (finished in one call); a tile of some rows
                // shares each pixel with other tiles, so only its own part is borrowed.
                let bias = &self.bias[t.r.clone()];
                let rows = t.r.len();
                let runs: Vec<(usize, usize)> = if rows == g.co {
                    vec![(at(0, t.c.start), at(rows - 1, t.c.end - 1) + 1)]
                } else {
                    t.c.clone()
                        .map(|col| (at(t.r.start, col), at(t.r.start, col) + rows))
                        .collect()
                };
                for (start, end) in runs {
                    let out = std::slice::from_raw_parts_mut(y.0.add(start), end - start);
                    let res = res.map(|r| &r[start..end]);
                    finish_pixels(out, v.y.1, bias, self.clip, res);
                }
                return;
            }
            // Planes (every view but channel-last has column stride 1): each row's columns
            // are contiguous.
            for row in t.r.clone() {
                let start = at(row, t.c.start);
                let out = std::slice::from_raw_parts_mut(y.0.add(start), n);
                let res = res.map(|r| &r[start..start + n]);
                finish_row(out, self.bias[row], self.clip, res);
            }
        }
    }
}
