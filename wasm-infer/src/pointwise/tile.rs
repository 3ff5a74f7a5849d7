//! How [`PointwiseConv::run`] cuts its output into tiles and computes one: the product (the
//! `gemm` crate natively, [`super::quad`] in wasm) and the epilogue while the tile is in cache.

#[cfg(not(target_arch = "wasm32"))]
use crate::epilogue::{finish_pixels, finish_row};

use super::PointwiseConv;

/// The narrowest column tile a split for threads makes before it splits rows instead.
const MIN_SPLIT_COLS: usize = 32;

/// Column tiles made for threads are whole blocks of this many columns.
const SPLIT_COL_BLOCK: usize = 8;

/// Floats of output per tile: 64 K (256 KB) stays in this machine's 2 MB L2 with its inputs.
const TILE_FLOATS: usize = 64 * 1024;

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
/// `2 × threads` even column tiles while each keeps at least [`MIN_SPLIT_COLS`] columns, else
/// rows split too (in multiples of 16, the kernels' row block: a split into fewer rows than
/// the product's 64-row block runs its narrower, slower kernels). Splitting columns first
/// matters on the 14 × 14 layers: split by rows, each of four tiles packed all 196 columns of
/// the input again, and two threads ran those layers no faster than one.
///
/// Whatever the threads, every output value is summed in the same order: each tile takes the
/// same path through the `gemm` crate ([`gemm_path`]) as the tiles of one thread, and a split
/// that would change it is not made.
pub(super) fn tiles(rows: usize, cols: usize, k: usize, threads: usize) -> Vec<Tile> {
    let width = (TILE_FLOATS / rows).max(64).div_ceil(16) * 16;
    let mut col_tiles = cut(cols, width);
    let path = gemm_path(rows, col_tiles[0].len(), k);
    let same = |m: usize, n: usize| gemm_path(m, n, k) == path;
    merge_last(&mut col_tiles, |c| !same(rows, c.len()));
    if threads > 1 && col_tiles.len() < 2 * threads && cols / (2 * threads) >= MIN_SPLIT_COLS {
        let split = even(cols, 2 * threads);
        if split.iter().all(|c| same(rows, c.len())) {
            col_tiles = split;
        }
    }
    let row_tiles = if threads > 1 && col_tiles.len() < 2 * threads {
        (2 * threads)
            .div_ceil(col_tiles.len())
            .min(rows.div_ceil(16))
            .max(1)
    } else {
        1
    };
    let height = rows.div_ceil(row_tiles).div_ceil(16) * 16;
    // The narrowest row split whose tiles all take the path of one thread's.
    // Tiles of more than 64 rows take the general path whatever their width.
    let general = rows.div_ceil((rows / 80).max(1)).div_ceil(16) * 16;
    let row_tiles = [height, height.max(general), rows]
        .into_iter()
        .map(|h| {
            let mut r = cut(rows, h);
            merge_last(&mut r, |r| {
                col_tiles.iter().any(|c| !same(r.len(), c.len()))
            });
            r
        })
        .find(|r| {
            r.iter()
                .all(|r| col_tiles.iter().all(|c| same(r.len(), c.len())))
        })
        .unwrap_or_else(|| cut(rows, rows));
    let mut out = Vec::with_capacity(row_tiles.len() * col_tiles.len());
    for r in &row_tiles {
        for c in &col_tiles {
            out.push(Tile {
                r: r.clone(),
                c: c.clone(),
            });
        }
    }
    out
}

/// Which way the `gemm` crate (0.19) sums a product of `m × n` outputs over `k` terms, as far
/// as the order of the sums goes: by horizontal dot-product kernels when `m · n ≤ 256`; as
/// matrix-vector products when `m` or `n` is 1; in blocks of `k.min(512)` when `m` and `n` are
/// at most 64 (and `k` is over 512, else in one block like the general path); otherwise in
/// even blocks of its own choosing.
fn gemm_path(m: usize, n: usize, k: usize) -> (bool, bool, bool) {
    (
        m * n <= 256,
        m <= 1 || n <= 1,
        k > 512 && m <= 64 && n <= 64,
    )
}

/// `0..len` in ranges of `step` (the last one shorter).
fn cut(len: usize, step: usize) -> Vec<std::ops::Range<usize>> {
    (0..len)
        .step_by(step)
        .map(|a| a..(a + step).min(len))
        .collect()
}

/// Join the last range to the one before it when it is `bad`.
fn merge_last(
    ranges: &mut Vec<std::ops::Range<usize>>,
    bad: impl Fn(&std::ops::Range<usize>) -> bool,
) {
    if let [.., before, last] = &ranges[..]
        && bad(last)
    {
        let merged = before.start..last.end;
        ranges.truncate(ranges.len() - 2);
        ranges.push(merged);
    }
}

/// `cols` columns as `parts` ranges of whole [`SPLIT_COL_BLOCK`]s (the last may be partial),
/// their sizes differing by at most one block.
fn even(cols: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let blocks = cols.div_ceil(SPLIT_COL_BLOCK);
    let (per, extra) = (blocks / parts, blocks % parts);
    let mut at = 0;
    (0..parts)
        .map(|i| {
            let end = (at + (per + usize::from(i >= parts - extra)) * SPLIT_COL_BLOCK).min(cols);
            let r = at..end;
            at = end;
            r
        })
        .filter(|r| !r.is_empty())
        .collect()
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
