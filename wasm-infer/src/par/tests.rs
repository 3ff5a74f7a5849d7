//! The team under load: every piece runs once, results do not depend on who ran them, runs
//! on many threads at once neither deadlock nor mix their sections, and a panicking piece
//! reaches the caller without leaving the team broken.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{chunks_mut, for_each, lend, team, threads};

/// Tests run one at a time: a test that counts on a team must not find them all lent to
/// another test's runs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// `for_each(n)` under a team of `threads`: how many times each piece ran.
fn runs_per_piece(threads: usize, n: usize) -> Vec<usize> {
    let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    lend(threads, || {
        for_each(n, |i| {
            counts[i].fetch_add(1, Relaxed);
        })
    });
    counts.into_iter().map(AtomicUsize::into_inner).collect()
}

#[test]
fn every_piece_runs_once() {
    let _one = serial();
    for threads in [1, 2, 3, 4] {
        for n in [0, 1, 2, 3, 7, 64, 1000] {
            assert_eq!(
                runs_per_piece(threads, n),
                vec![1; n],
                "{threads} threads, {n}"
            );
        }
    }
}

#[test]
fn a_run_has_its_team_and_nothing_outside() {
    let _one = serial();
    assert_eq!(threads(), 1);
    lend(3, || {
        assert_eq!(threads(), 3);
        // A nested lend keeps the run's team.
        lend(2, || assert_eq!(threads(), 3));
        // Pieces run on helpers see no team of their own: a section inside a piece runs
        // where it is.
        for_each(8, |_| {
            if team::current().is_none() {
                assert_eq!(threads(), 1);
            }
        });
    });
    assert_eq!(threads(), 1);
}

/// Rows of `out` written as a function of their index and `salt`, in pieces.
fn fill(out: &mut [f32], row: usize, salt: usize) {
    chunks_mut(out, row, 1 << 20, |first, rows| {
        for (i, r) in rows.chunks_exact_mut(row).enumerate() {
            for (j, v) in r.iter_mut().enumerate() {
                *v = ((first + i) * 31 + j * 7 + salt) as f32;
            }
        }
        Ok(())
    })
    .expect("every piece succeeds");
}

#[test]
fn many_runs_at_once_keep_their_sections_apart() {
    let _one = serial();
    // More runs at once than there are teams: some run with a team, some alone; all must
    // give the same rows as a run on one thread, and none may hang.
    let (rows, row) = (97, 13);
    std::thread::scope(|s| {
        for t in 0..10 {
            s.spawn(move || {
                for k in 0..100 {
                    let salt = t * 1000 + k;
                    let mut expect = vec![0f32; rows * row];
                    fill(&mut expect, row, salt);
                    let mut got = vec![0f32; rows * row];
                    lend(2 + t % 3, || fill(&mut got, row, salt));
                    assert_eq!(got, expect, "run {t}/{k}");
                }
            });
        }
    });
}

#[test]
fn a_piece_that_fails_or_panics_reaches_the_caller() {
    let _one = serial();
    let mut out = vec![0f32; 64 * 8];
    let failed = lend(2, || {
        chunks_mut(&mut out, 8, 1 << 20, |first, _| {
            tract_nnef::tract_core::internal::ensure!(first == 0, "piece at row {first} failed");
            Ok(())
        })
    });
    assert!(failed.is_err());
    for at in [0, 63] {
        let caught = std::panic::catch_unwind(|| {
            lend(2, || {
                for_each(64, |i| {
                    if i == at {
                        panic!("piece {i}");
                    }
                })
            })
        });
        assert!(caught.is_err(), "the panic of piece {at} was lost");
    }
    // The teams are still whole afterwards.
    assert_eq!(runs_per_piece(2, 500), vec![1; 500]);
}

#[test]
fn a_section_inside_a_piece_runs_where_it_is() {
    let _one = serial();
    // Pieces on the caller's thread and on the helper both start sections of their own.
    let counts: Vec<AtomicUsize> = (0..8 * 16).map(|_| AtomicUsize::new(0)).collect();
    lend(2, || {
        for_each(8, |i| {
            for_each(16, |j| {
                counts[i * 16 + j].fetch_add(1, Relaxed);
            })
        })
    });
    let counts: Vec<usize> = counts.into_iter().map(AtomicUsize::into_inner).collect();
    assert_eq!(counts, vec![1; 8 * 16]);
    // The team is whole afterwards.
    assert_eq!(runs_per_piece(2, 300), vec![1; 300]);
}
