//! Sleeping and waking on futex words in shared memory, and the process-wide memory barrier
//! the robust lock's plain-store release relies on (see `robust`). Thin wrappers over
//! `sys::futex` that add what the crate's layers above want: a deadline as an `Instant`, the
//! `trace` feature's timer of long waits, and the tests' switch that makes `membarrier` look
//! refused.

use std::sync::atomic::AtomicU32;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::sys;

/// Tests only: makes `membarrier` look refused to threads that look it up from now on.
#[cfg(test)]
pub(super) static REFUSE_BARRIERS: AtomicBool = AtomicBool::new(false);

/// Registers this process for `membarrier`'s global expedited barrier (idempotent; a process
/// keeps it across `fork` and loses it at `exec`). `false` if the kernel refuses.
pub(super) fn register_for_barriers() -> bool {
    #[cfg(test)]
    if REFUSE_BARRIERS.load(Ordering::Relaxed) {
        return false;
    }
    sys::futex::register_for_barriers()
}

/// A full memory barrier on every CPU that runs a thread of a registered process; `false` if
/// the kernel refuses it.
#[inline]
pub(super) fn global_barrier() -> bool {
    #[cfg(test)]
    if REFUSE_BARRIERS.load(Ordering::Relaxed) {
        return false;
    }
    sys::futex::global_barrier()
}

/// Sleeps while `word` still holds `seen`, at most until `deadline`; `false` on timeout.
#[inline]
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>) -> bool {
    let timeout = deadline.map(|at| at.saturating_duration_since(Instant::now()));
    if timeout.is_some_and(|t| t.is_zero()) {
        return false;
    }
    #[cfg(feature = "trace")]
    let _wait = crate::trace_wait::WaitTimer::new();
    sys::futex::futex_wait(word, seen, timeout)
}

/// Wakes up to `n` sleepers on `word`.
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    sys::futex::futex_wake(word, n)
}
