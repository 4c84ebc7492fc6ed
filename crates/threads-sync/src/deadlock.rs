//! Deadlock detection in the wait-for graph, and lock-order checking (the idea of Linux's lockdep).
//!
//! **Wait-for graph.** A lock of this crate first tries its raw lock (a `parking_lot` one),
//! with `parking_lot`'s spin-then-yield back-off. Only when that fails does the thread register
//! "I wait for lock L" under one global graph lock and walk the chain *owner of L → the lock
//! that owner waits for → its owner* ... If the chain comes back to the caller, waiting would
//! close a cycle: the call returns [`LockError::Deadlock`](crate::LockError::Deadlock) at once,
//! naming every thread and lock in the cycle, and the other threads proceed once the victim
//! drops what it holds. There is no polling thread: the last thread to join a cycle is the one
//! that sees it, because every thread registers (under the graph lock) before it blocks.
//!
//! Each lock keeps its owner's ident in an atomic next to the raw lock; it is written after the
//! raw lock is taken and cleared before it is released, so a reader sees either the true owner
//! or 0 ("free or changing hands"), never a stale owner that might invent a cycle.
//!
//! **Lock order.** While [`set_lock_order_checking`] is on (the default in debug builds), each
//! thread keeps the list of locks it holds; trying to take L2 while holding L1 records the edge
//! L1 → L2 (before blocking, as lockdep does; once per thread in a local cache, then once
//! globally). The first edge that closes a cycle in that order graph (L2 → L1 seen earlier, or
//! a longer chain) is an *inversion*: a deadlock waiting to happen even if this run got lucky.
//! It is logged with `log::warn!` and kept for [`lock_order_violations`]. A lock that is
//! dropped leaves the graph.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Deadlock, WaitLink};
use crate::identity::{current_ident, current_name};

pub use crate::lock_order::{
    LockOrderViolation, clear_lock_order_history, first_lock_order_violation, lock_order_violations,
};
pub use crate::mode::{
    detection_enabled, lock_order_checking_enabled, set_detection, set_lock_order_checking,
};

// ---------------------------------------------------------------------------------------------
// The wait-for graph.

/// What the wait-for graph needs of a lock: implemented by the lock's meta (`LockMeta`, a
/// layer above), so that this module does not depend on it.
pub(crate) trait WaitTarget: Sync {
    /// Ident of the thread holding the lock, 0 when free or changing hands.
    fn owner(&self) -> u64;
    /// Records that thread `ident` now holds the lock.
    fn set_owner(&self, ident: u64);
    /// The name used in reports.
    fn name(&self) -> String;
}

/// Pointer to the lock (its `LockMeta`) a registered thread waits for.
pub(crate) struct MetaPtr(*const dyn WaitTarget);

// SAFETY: the pointer is only dereferenced under `GRAPH`'s lock while its entry is present.
// The entry belongs to a `WaitRegistration<'lock>`, which borrows the lock, so the compiler
// keeps the `LockMeta` alive while the registration exists; the registration's drop removes
// the entry (under that lock); and a `LockMeta`'s drop removes any entry a leaked
// registration left behind (`forget_waits_for`). A `WaitTarget` is `Sync`.
unsafe impl Send for MetaPtr {}

struct WaitEntry {
    lock: MetaPtr,
    thread: Arc<str>,
}

/// Waiting threads and what each waits for. A plain vector: waiters are few, a linear scan is
/// quick, and it keeps its capacity, so registering a wait does not allocate.
struct WaitGraph {
    waits: Vec<(u64, WaitEntry)>,
}

impl WaitGraph {
    fn get(&self, ident: u64) -> Option<&WaitEntry> {
        self.waits.iter().find(|(t, _)| *t == ident).map(|(_, e)| e)
    }

    fn remove(&mut self, ident: u64) {
        if let Some(pos) = self.waits.iter().position(|(t, _)| *t == ident) {
            self.waits.swap_remove(pos);
        }
    }

    /// Follows owner → waits-for links from `me`: the threads of a cycle back to `me`, if any.
    fn find_cycle(&self, me: u64) -> Option<Vec<u64>> {
        let mut cycle = Vec::new();
        let mut thread = me;
        // A chain longer than the number of waiters loops without passing through `me`.
        for _ in 0..=self.waits.len() {
            let entry = self.get(thread)?;
            // SAFETY: see `MetaPtr`: the entry is present and the caller holds the graph lock.
            let owner = unsafe { &*entry.lock.0 }.owner();
            cycle.push(thread);
            if owner == me {
                return Some(cycle);
            }
            if owner == 0 {
                return None;
            }
            thread = owner;
        }
        None
    }

    /// The report for a cycle found by `find_cycle`.
    fn describe(&self, cycle: &[u64]) -> Deadlock {
        let cycle = cycle
            .iter()
            .filter_map(|&ident| {
                let entry = self.get(ident)?;
                // SAFETY: as in `find_cycle`.
                let lock = unsafe { &*entry.lock.0 };
                Some(WaitLink {
                    thread: entry.thread.to_string(),
                    ident,
                    lock: lock.name(),
                })
            })
            .collect();
        Deadlock { cycle }
    }
}

static GRAPH: parking_lot::Mutex<WaitGraph> =
    parking_lot::const_mutex(WaitGraph { waits: Vec::new() });

/// Entries in [`GRAPH`], read without its lock by [`forget_waits_for`].
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Removes any wait entry for `lock`, which is being dropped (call from its drop). None can be
/// left, since a registration borrows its lock, unless one was leaked with `mem::forget`; then
/// its entry goes here, before the pointer dangles.
#[inline]
pub(crate) fn forget_waits_for(lock: &dyn WaitTarget) {
    if WAITERS.load(Ordering::Acquire) != 0 {
        let me = (lock as *const dyn WaitTarget).cast::<()>();
        GRAPH
            .lock()
            .waits
            .retain(|(_, e)| !std::ptr::eq(e.lock.0.cast::<()>(), me));
    }
}

/// The caller's registration as a waiter for one lock; dropping it (also on unwind) removes
/// the wait edge. It borrows the lock for `'lock`, so the compiler refuses any use of it,
/// and so any graph entry, after the lock is gone:
/// ```compile_fail,E0505
/// let lock = threads_sync::Mutex::new(0);
/// let waiting = lock.__register_wait().unwrap();
/// drop(lock); // refused: `lock` is still borrowed by the registration
/// drop(waiting);
/// ```
/// (`__register_wait` is a hidden hook for this check; the same shape without `drop(lock)`
/// compiles.)
/// ```
/// let lock = threads_sync::Mutex::new(0);
/// let waiting = lock.__register_wait().unwrap();
/// drop(waiting);
/// drop(lock);
/// ```
#[doc(hidden)]
#[must_use = "the wait edge is removed as soon as the registration is dropped"]
pub struct WaitRegistration<'lock> {
    ident: u64,
    lock: PhantomData<&'lock ()>,
}

impl fmt::Debug for WaitRegistration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitRegistration")
            .field("ident", &self.ident)
            .finish_non_exhaustive()
    }
}

impl Drop for WaitRegistration<'_> {
    fn drop(&mut self) {
        let mut graph = GRAPH.lock();
        graph.remove(self.ident);
        WAITERS.store(graph.waits.len(), Ordering::Release);
    }
}

impl<'lock> WaitRegistration<'lock> {
    /// Ends the wait after the raw lock was taken: sets the owner, then removes the edge.
    pub(crate) fn acquired(self, meta: &'lock impl WaitTarget) {
        meta.set_owner(self.ident);
        // Dropping `self` removes the edge.
    }
}

/// Registers "the current thread waits for `meta`" and refuses if that closes a cycle.
///
/// Returns `Ok(None)` when detection is off (nothing registered).
pub(crate) fn register_wait<L: WaitTarget + 'static>(
    meta: &L,
) -> Result<Option<WaitRegistration<'_>>, Deadlock> {
    if !detection_enabled() {
        return Ok(None);
    }
    let me = current_ident();
    let thread = current_name();
    let mut graph = GRAPH.lock();
    graph.waits.push((
        me,
        WaitEntry {
            lock: MetaPtr(meta as &dyn WaitTarget),
            thread,
        },
    ));
    WAITERS.store(graph.waits.len(), Ordering::Release);
    match graph.find_cycle(me) {
        None => Ok(Some(WaitRegistration {
            ident: me,
            lock: PhantomData,
        })),
        Some(cycle) => {
            let report = graph.describe(&cycle);
            graph.remove(me);
            WAITERS.store(graph.waits.len(), Ordering::Release);
            drop(graph);
            log::warn!("{report}");
            #[cfg(feature = "trace")]
            crate::trace::deadlock_refused(&report);
            Err(report)
        }
    }
}
