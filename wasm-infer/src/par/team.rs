//! A team of helper threads that stay awake for one plan run (native builds).
//!
//! [`crate::session::with_threads`] gives a run `n` threads: the caller plus `n - 1` helpers of
//! a [`Team`] taken from a small free list. While the run lasts, the helpers spin on one atomic
//! word between the run's parallel sections (the 1×1 and depthwise convolutions, about 50 per
//! image), so each section starts on both cores within nanoseconds instead of waking a sleeping
//! pool thread (rayon's workers sleep between sections: about 13 sleeps per backbone pass, each
//! a futex round trip). A helper that finds nothing to do for [`SPIN`] parks until the next
//! section, and every helper parks when the run ends.
//!
//! A section is `n` pieces. The caller takes them from the front, helpers from the back, so on
//! two cores each keeps its own end of the tensor from one op to the next (its own L2), and a
//! late or descheduled helper only takes fewer pieces. The caller returns when every piece it
//! did not take itself is done: the pieces borrow its stack.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins without work before it parks (while its run lasts).
const SPIN: Duration = Duration::from_millis(1);

/// At most this many teams exist at once; a run that finds none free runs its sections on the
/// caller alone (its cores are busy with the other runs anyway).
const MAX_TEAMS: usize = 4;

/// The most helpers a team has (the api gives a lone request at most 4 threads).
const MAX_HELPERS: usize = 7;

/// A helper's state, for parking and unparking it.
const AWAKE: u8 = 0;
const PARKED: u8 = 1;

/// One section's piece of work: `f(i)` for the claimed piece `i`.
type Piece<'a> = &'a (dyn Fn(usize) + Sync);

/// What the caller and its helpers share.
struct Shared {
    /// The current section as `epoch << 32 | front << 16 | back`: pieces `front..back` are
    /// still unclaimed. A claim is one compare-and-swap of the whole word, so a helper that
    /// read an earlier section's word can never claim in a later one.
    ticket: AtomicU64,
    /// Pieces of the current section finished (by anyone).
    done: AtomicU32,
    /// The current section's work, valid while it has unfinished pieces (see [`Team::run`]).
    work: Mutex<Option<Piece<'static>>>,
    /// The caller is inside a section: a section that a piece starts on the caller's thread
    /// runs there, inline (posting it would replace the section whose pieces are running).
    in_section: AtomicBool,
    /// A helper's piece panicked: the caller panics too, after the section.
    panicked: AtomicBool,
    /// A run holds the team: helpers spin (up to [`SPIN`]) instead of parking.
    active: AtomicBool,
    /// Helpers exit (the team is dropped).
    exit: AtomicBool,
    /// Each helper's [`AWAKE`] / [`PARKED`].
    state: Vec<AtomicU8>,
}

impl Shared {
    /// Claim a piece from the back (helpers) or the front (the caller).
    fn claim(&self, from_back: bool) -> Option<usize> {
        let mut t = self.ticket.load(Acquire);
        loop {
            let (front, back) = ((t >> 16) & 0xffff, t & 0xffff);
            if front >= back {
                return None;
            }
            let (next, piece) = if from_back {
                (t - 1, back - 1)
            } else {
                (t + (1 << 16), front)
            };
            match self.ticket.compare_exchange_weak(t, next, AcqRel, Acquire) {
                Ok(_) => return Some(piece as usize),
                Err(now) => t = now,
            }
        }
    }

    fn has_work(&self) -> bool {
        let t = self.ticket.load(Acquire);
        (t >> 16) & 0xffff < t & 0xffff
    }
}

/// Helper threads that serve one run at a time.
pub(crate) struct Team {
    shared: Arc<Shared>,
    helpers: Vec<Thread>,
}

impl Team {
    fn new(helpers: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            ticket: AtomicU64::new(0),
            done: AtomicU32::new(0),
            work: Mutex::new(None),
            in_section: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            active: AtomicBool::new(false),
            exit: AtomicBool::new(false),
            state: (0..helpers).map(|_| AtomicU8::new(AWAKE)).collect(),
        });
        let mut threads = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("edgeml-team-{i}"))
                .spawn(move || serve(&shared, i))?;
            threads.push(handle.thread().clone());
        }
        Ok(Team {
            shared,
            helpers: threads,
        })
    }

    /// Threads of a run on this team (the caller and its helpers).
    pub(crate) fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Wake every parked helper.
    fn wake(&self) {
        for (state, thread) in self.shared.state.iter().zip(&self.helpers) {
            if state.swap(AWAKE, SeqCst) == PARKED {
                thread.unpark();
            }
        }
    }

    /// Run `f(i)` for every `i < n` on the caller and the helpers; returns when all are done.
    /// A piece that panics makes this panic once every piece is done.
    pub(crate) fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        // Sections are cut into far fewer pieces than the ticket can count (see
        // `super::chunks_mut`); one started inside a piece runs inline.
        if n > 0xffff || s.in_section.swap(true, Acquire) {
            (0..n).for_each(f);
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: the reference is only used while this call waits for every piece of this
        // section (below), and it is taken back before the call returns.
        let f: Piece<'static> = unsafe { std::mem::transmute::<Piece<'_>, Piece<'static>>(f) };
        *s.work.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
        s.done.store(0, Relaxed);
        let epoch = (s.ticket.load(Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        s.ticket.store(epoch << 32 | n as u64, SeqCst);
        self.wake();
        let mut mine = 0;
        let mut panic = None;
        while let Some(i) = s.claim(false) {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                panic.get_or_insert(p);
            }
            mine += 1;
        }
        // Pieces the helpers claimed: wait for them (they borrow this frame).
        let mut spins = 0u32;
        while (s.done.load(Acquire) as usize) + mine < n {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *s.work.lock().unwrap_or_else(|p| p.into_inner()) = None;
        s.in_section.store(false, Release);
        if let Some(p) = panic {
            resume_unwind(p);
        }
        if s.panicked.swap(false, AcqRel) {
            panic!("a piece of a parallel section panicked on a team helper");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.exit.store(true, SeqCst);
        self.shared.active.store(false, SeqCst);
        self.wake();
    }
}

/// A helper's loop: take pieces from the back while the team is active, spin briefly between
/// sections, park otherwise.
fn serve(s: &Shared, me: usize) {
    let mut idle = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(i) = s.claim(true) {
            let f = *s.work.lock().unwrap_or_else(|p| p.into_inner());
            // The piece is claimed and not done, so the caller is still in `run` and `work`
            // is this section's.
            if let Some(f) = f
                && catch_unwind(AssertUnwindSafe(|| f(i))).is_err()
            {
                s.panicked.store(true, Release);
            }
            s.done.fetch_add(1, Release);
            idle = Instant::now();
            spins = 0;
            continue;
        }
        if s.exit.load(Acquire) {
            return;
        }
        spins = spins.wrapping_add(1);
        let active = s.active.load(Acquire);
        if active && (!spins.is_multiple_of(256) || idle.elapsed() < SPIN) {
            std::hint::spin_loop();
            continue;
        }
        // Park: announce it, then look once more (a caller that posted work before seeing
        // the announcement does not unpark).
        s.state[me].store(PARKED, SeqCst);
        if s.has_work() || s.exit.load(SeqCst) {
            s.state[me].store(AWAKE, SeqCst);
            continue;
        }
        while s.state[me].load(SeqCst) == PARKED && !s.exit.load(SeqCst) {
            std::thread::park();
        }
        idle = Instant::now();
        spins = 0;
    }
}

/// Teams not lent to a run now.
static FREE: Mutex<Vec<Team>> = Mutex::new(Vec::new());
/// Teams that exist (lent or free).
static MADE: Mutex<usize> = Mutex::new(0);

thread_local! {
    /// The team lent to the run on this thread, if any.
    static CURRENT: Cell<Option<&'static Team>> = const { Cell::new(None) };
}

/// The team of the run on this thread (`None` on helpers, and outside [`lend`]).
pub(crate) fn current() -> Option<&'static Team> {
    CURRENT.with(Cell::get)
}

/// Run `f` with a team of `threads - 1` helpers lent to this thread: the parallel sections
/// of the kernels it runs ([`super::for_each`]) spread over them. With no team to spare (more
/// than [`MAX_TEAMS`] runs at once, or a thread that cannot be spawned), `f` runs its sections
/// alone.
pub(crate) fn lend<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let helpers = threads.saturating_sub(1).min(MAX_HELPERS);
    if helpers == 0 || current().is_some() {
        return f();
    }
    let Some(team) = take(helpers) else {
        return f();
    };
    team.shared.active.store(true, SeqCst);
    team.wake();
    /// Gives the team back (and its helpers to sleep) however `f` ends.
    struct Lent(Option<Box<Team>>);
    impl Drop for Lent {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(None));
            if let Some(team) = self.0.take() {
                team.shared.active.store(false, SeqCst);
                FREE.lock().unwrap_or_else(|p| p.into_inner()).push(*team);
            }
        }
    }
    let lent = Lent(Some(Box::new(team)));
    if let Some(team) = lent.0.as_deref() {
        #[allow(unsafe_code)]
        // SAFETY: the box lives in `lent` until the end of this function, whose guard clears
        // `CURRENT` before it moves the team out: no reference outlives it.
        let team: &'static Team = unsafe { &*std::ptr::from_ref(team) };
        CURRENT.with(|c| c.set(Some(team)));
    }
    f()
}

/// A free team of `helpers` helpers, made if there is room for one more.
fn take(helpers: usize) -> Option<Team> {
    let mut free = FREE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(at) = free.iter().position(|t| t.helpers.len() == helpers) {
        return Some(free.swap_remove(at));
    }
    drop(free);
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if *made >= MAX_TEAMS {
        // A free team of another size makes room for this one.
        let mut free = FREE.lock().unwrap_or_else(|p| p.into_inner());
        free.pop()?;
        *made -= 1;
    }
    let team = Team::new(helpers).ok()?;
    *made += 1;
    Some(team)
}
