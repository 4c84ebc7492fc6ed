//! Waiting in the ring: how long a call may wait, sleeping on a futex word with a count of
//! sleepers, taking a robust lock within a deadline, and whether a process still runs.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{SLICE, Wake};
use crate::shared::{Lock, LockGuard, SharedError};

/// How long a call may wait.
#[derive(Clone, Copy)]
pub(crate) enum WaitLimit {
    Forever,
    Until(Instant),
    No,
}

impl WaitLimit {
    /// The deadline: none for `Forever`, now for `No`.
    #[inline]
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            WaitLimit::Forever => None,
            WaitLimit::Until(at) => Some(at),
            WaitLimit::No => Some(Instant::now()),
        }
    }

    pub(super) fn passed(self) -> bool {
        match self {
            WaitLimit::Forever => false,
            WaitLimit::Until(at) => Instant::now() >= at,
            WaitLimit::No => true,
        }
    }

    /// The end of the next sleep: the deadline or one slice from now, whichever is first.
    pub(super) fn slice_end(self) -> Instant {
        let slice = Instant::now() + SLICE;
        match self {
            WaitLimit::Until(at) => at.min(slice),
            _ => slice,
        }
    }
}

/// This thread's kernel id (cached).
pub(super) fn my_tid() -> u32 {
    thread_local! {
        static TID: u32 = crate::sys::futex::gettid();
    }
    TID.with(|t| *t)
}

/// Whether thread or process `id` still runs (a zombie does not).
pub(crate) fn alive(id: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{id}/stat")) else {
        return false;
    };
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2).copied());
    !matches!(state, None | Some(b'Z' | b'X' | b'x'))
}

impl Wake {
    /// Wakes every sleeper, if there is one.
    pub(super) fn wake(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake_always();
        }
    }

    pub(super) fn wake_always(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        crate::shared::futex_wake(&self.word, i32::MAX);
    }

    /// Registers a sleeper and reads the word: call `sleep` with what it returns, after
    /// checking the condition again (a wake-up in between makes the sleep return at once).
    pub(super) fn prepare(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        self.word.load(Ordering::SeqCst)
    }

    /// Sleeps (see `prepare`); false if it woke by time.
    pub(super) fn sleep(&self, seen: u32, until: Instant) -> bool {
        let woke = crate::shared::futex_wait(&self.word, seen, Some(until));
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        woke
    }

    pub(super) fn cancel(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes `lock`, carrying on past a holder that died (the ring's own state needs no repair:
/// see the module notes). `None` when `wait` ran out.
#[inline]
pub(super) fn take(lock: &Lock, wait: WaitLimit) -> Result<Option<LockGuard<'_>>, SharedError> {
    if let Some(guard) = lock.acquire_free() {
        return Ok(Some(guard));
    }
    loop {
        let got = match wait {
            WaitLimit::Forever => lock.acquire().map(Some),
            // A free lock is taken without reading the clock.
            WaitLimit::Until(at) => match lock.try_acquire() {
                Ok(None) => lock
                    .acquire_timeout(at.saturating_duration_since(Instant::now()))
                    .map(Some),
                other => other,
            },
            WaitLimit::No => lock.try_acquire(),
        };
        match got {
            Err(SharedError::OwnerDied { .. }) => continue,
            Err(SharedError::Timeout(_)) => return Ok(None),
            other => return other,
        }
    }
}
