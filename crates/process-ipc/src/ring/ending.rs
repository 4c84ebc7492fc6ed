//! The counts a queue keeps beside its records, and how it ends: items counted at `put` (for
//! `qsize` and a `JoinableQueue`'s unfinished work), `task_done` and `join`, and Python 3.13's
//! `shutdown(immediate)`.
//!
//! Every word here is untrusted like the rest of the block: the shutdown word holds one of
//! three values, and any other breaks the ring (naming the check); the counts are only ever
//! compared and subtracted with saturation, so a scribbled count makes `qsize` or `join` wrong
//! for that queue, never a panic or an out-of-bounds access, and `join_timeout` still returns
//! on time.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::parse::BREAKING;
use super::{Next, Ring, RingError, WaitLimit, Wake};

/// Written by putters at every put, on a line of its own.
#[repr(C, align(64))]
pub(super) struct Accepted {
    /// Items accepted by `put` (counted before the feeder moves them, as Python counts them),
    /// less those put back or dropped unread. `qsize` is this less the items taken (see
    /// `Ring::queued`); a `JoinableQueue`'s unfinished tasks are this less `done`.
    pub(super) count: AtomicU64,
}

/// Written once, by `shutdown`; read at every put and get (so on a line nobody writes
/// otherwise).
#[repr(C, align(64))]
pub(super) struct Ending {
    /// [`OPEN`], [`SHUT`] or [`SHUT_IMMEDIATE`]; any other value is damage.
    pub(super) state: AtomicU32,
}

/// A `JoinableQueue`'s finished work, written by `task_done`.
#[repr(C, align(64))]
pub(super) struct Tasks {
    /// `task_done` calls, and items an immediate shutdown dropped.
    pub(super) done: AtomicU64,
    /// Joiners sleep here until `done` reaches `Accepted::count`.
    pub(super) joined: Wake,
}

/// The shutdown word of a queue that was not shut down.
const OPEN: u32 = 0;
/// `shutdown(immediate=false)`: puts refused, gets drain what is left.
const SHUT: u32 = 1;
/// `shutdown(immediate=true)`: puts refused, what is left dropped.
const SHUT_IMMEDIATE: u32 = 2;

/// Whether, and how, a queue was shut down (Python 3.13's `Queue.shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Open,
    Shut,
    Immediate,
}

/// What one `task_done` came to.
pub(crate) enum TaskDone {
    Done,
    /// Every item put is already marked done (Python's `ValueError`).
    TooManyCalls,
}

impl Ring {
    /// Whether (and how) the queue was shut down; a value no queue writes breaks the ring.
    #[inline]
    pub(crate) fn shutdown_state(&self) -> Result<Shutdown, RingError> {
        match self.hdr().ending.state.load(Ordering::SeqCst) {
            OPEN => Ok(Shutdown::Open),
            SHUT => Ok(Shutdown::Shut),
            SHUT_IMMEDIATE => Ok(Shutdown::Immediate),
            _ => Err(self.break_ring(BREAKING[8])),
        }
    }

    /// `Err(ShutDown)` once the queue is shut down (or the error reading the word).
    #[inline]
    pub(crate) fn ensure_open(&self) -> Result<(), RingError> {
        match self.shutdown_state()? {
            Shutdown::Open => Ok(()),
            _ => Err(RingError::ShutDown),
        }
    }

    /// Counts one item at `put`, unless the queue is shut down. Give it back with
    /// [`unaccept`](Self::unaccept) if the item is not put after all.
    #[inline]
    pub(crate) fn accept(&self) -> Result<(), RingError> {
        self.ensure_open()?;
        self.hdr().accepted.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Takes back `n` items counted by [`accept`](Self::accept) that never reached the ring
    /// (a put that failed, or items a feeder dropped); joiners may now be done.
    pub(crate) fn unaccept(&self, n: u64) {
        let h = self.hdr();
        let _ = h
            .accepted
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some(c.saturating_sub(n))
            });
        h.tasks.joined.wake();
    }

    /// `n` items accepted (and, in a bounded queue, given a place) that a feeder dropped
    /// without moving them into the ring: an immediate shutdown, or a ring it could not write.
    pub(crate) fn forget(&self, n: u64) {
        if n == 0 {
            return;
        }
        if self.maxsize > 0 {
            let h = self.hdr();
            let _ = h
                .counts
                .reserved
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                    Some(r.saturating_sub(n))
                });
            h.room.wake();
        }
        self.unaccept(n);
    }

    /// Items accepted by `put` and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        let h = self.hdr();
        let done = h.tasks.done.load(Ordering::SeqCst);
        h.accepted.count.load(Ordering::SeqCst).saturating_sub(done)
    }

    /// Marks one item done; wakes the joiners when it was the last.
    pub(crate) fn task_done(&self) -> TaskDone {
        let h = self.hdr();
        let mut done = h.tasks.done.load(Ordering::SeqCst);
        loop {
            let accepted = h.accepted.count.load(Ordering::SeqCst);
            if done >= accepted {
                return TaskDone::TooManyCalls;
            }
            match h.tasks.done.compare_exchange_weak(
                done,
                done + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    if done + 1 >= accepted {
                        h.tasks.joined.wake();
                    }
                    return TaskDone::Done;
                }
                Err(now) => done = now,
            }
        }
    }

    /// Waits until every item accepted is marked done; false if `wait` ran out first. After an
    /// immediate shutdown, items that reach the ring later (a feeder was moving them) are
    /// dropped here and counted done.
    pub(crate) fn join(&self, wait: WaitLimit) -> Result<bool, RingError> {
        let h = self.hdr();
        loop {
            self.check_broken()?;
            if self.shutdown_state()? == Shutdown::Immediate {
                self.drain()?;
            }
            let seen = h.tasks.joined.prepare();
            if self.unfinished() == 0 {
                h.tasks.joined.cancel();
                return Ok(true);
            }
            if wait.passed() {
                h.tasks.joined.cancel();
                return Ok(false);
            }
            h.tasks.joined.sleep(seen, wait.slice_end());
        }
    }

    /// Shuts the queue down (Python 3.13's `shutdown`), in every process: puts fail from now
    /// on; with `immediate` what is in the ring is dropped and counted done. Wakes every
    /// sleeper (getters, bounded putters, writers, joiners), who then see it.
    pub(crate) fn shut_down(&self, immediate: bool) -> Result<(), RingError> {
        let h = self.hdr();
        let want = if immediate { SHUT_IMMEDIATE } else { SHUT };
        let word = &h.ending.state;
        let mut cur = word.load(Ordering::SeqCst);
        loop {
            if !matches!(cur, OPEN | SHUT | SHUT_IMMEDIATE) {
                return Err(self.break_ring(BREAKING[8]));
            }
            if cur >= want {
                break;
            }
            match word.compare_exchange(cur, want, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        h.data.wake_always();
        h.room.wake_always();
        h.tasks.joined.wake_always();
        if immediate {
            self.drain()?;
        }
        Ok(())
    }

    /// Drops every item in the ring now, counting each done; how many. Readers elsewhere may
    /// take some at the same time: each item goes to one of them either way.
    pub(crate) fn drain(&self) -> Result<u64, RingError> {
        let mut dropped = 0;
        loop {
            match self.next(WaitLimit::No, |_| ()) {
                Ok(Next::One(()) | Next::Lost(_)) => dropped += 1,
                Ok(Next::Damaged(_)) => {}
                Ok(Next::Empty | Next::Timeout | Next::Disconnected) | Err(RingError::ShutDown) => {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if dropped > 0 {
            let h = self.hdr();
            h.tasks.done.fetch_add(dropped, Ordering::SeqCst);
            h.tasks.joined.wake();
        }
        Ok(dropped)
    }
}
