//! The parallel sections of wasm-infer's kernels (the 1×1 tiles, the depthwise rows): one
//! place that says how many threads a section has and spreads its pieces over them.
//!
//! - Natively, a run given several threads by [`crate::session::with_threads`] has a team of
//!   helpers that stay awake for the run ([`team`]).
//! - In the threaded browser module, rayon's global pool of Web Workers, when the plan runs
//!   under `session::browser_threads`.
//! - Otherwise (the browsers' one-thread module, or natively outside `with_threads`) every
//!   section runs on the caller.
//!
//! Every piece computes the same values whoever runs it, so results do not depend on which
//! thread took which piece.

use tract_nnef::prelude::TractResult;

#[cfg(not(target_arch = "wasm32"))]
mod team;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use team::lend;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

/// Below this many elements (read and written) a section runs on one thread: handing it out
/// costs more than the second thread gains. tract's own row-parallel ops get the same bound
/// (`session::thread_thresholds`).
pub(crate) const MIN_ELEMENTS: usize = 1 << 13;

/// Pieces per thread a [`chunks_mut`] section is cut into, so that a thread that starts late
/// or is slowed down leaves its share to the others.
const PIECES_PER_THREAD: usize = 4;

/// Threads the sections of the current run spread over (1 when it has none).
pub(crate) fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        team::current().map_or(1, team::Team::threads)
    }
    #[cfg(all(target_arch = "wasm32", feature = "threads"))]
    {
        use tract_nnef::tract_core::tract_linalg::multithread::{Executor, current_tract_executor};
        match current_tract_executor() {
            Executor::RayonGlobal => rayon::current_num_threads(),
            _ => 1,
        }
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    {
        1
    }
}

/// `f(i)` for every `i < n`, spread over the current run's threads; returns when all are done.
pub(crate) fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    if n < 2 || threads() < 2 {
        (0..n).for_each(f);
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    match team::current() {
        Some(team) => team.run(n, &f),
        None => (0..n).for_each(f),
    }
    #[cfg(all(target_arch = "wasm32", feature = "threads"))]
    {
        use rayon::prelude::*;
        let f = &f;
        (0..n).into_par_iter().for_each(f);
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    (0..n).for_each(f);
}

/// `out` as rows of `row` elements, in pieces of whole rows spread over the current run's
/// threads: `f(first_row, rows)` for each piece. A section of fewer than [`MIN_ELEMENTS`]
/// (`work`: the elements it reads and writes), or on one thread, is one piece.
pub(crate) fn chunks_mut(
    out: &mut [f32],
    row: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) -> TractResult<()> + Sync,
) -> TractResult<()> {
    let rows = out.len() / row.max(1);
    let threads = threads();
    if rows < 2 || threads < 2 || work < MIN_ELEMENTS {
        return f(0, out);
    }
    let pieces = (PIECES_PER_THREAD * threads).min(rows);
    let per = rows.div_ceil(pieces);
    let pieces = rows.div_ceil(per);
    let len = out.len();
    let base = &Base(out.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    for_each(pieces, |i| {
        let (start, end) = (i * per * row, ((i + 1) * per * row).min(len));
        #[allow(unsafe_code)]
        // SAFETY: pieces are disjoint ranges of `out`, which this call borrows mutably until
        // every piece is done.
        let rows = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), end - start) };
        if let Err(e) = f(i * per, rows) {
            failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `out`'s first element, shared by pieces that write disjoint parts of it.
struct Base(*mut f32);
// SAFETY: pieces write disjoint parts of one buffer that outlives the section.
#[allow(unsafe_code)]
unsafe impl Sync for Base {}
