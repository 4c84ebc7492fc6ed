//! coro's own timer: one thread, one heap of deadlines, coroutines woken in batches.
//!
//! Every timed wait of a coroutine (a `sleep`, a `*_timeout` call) parks
//! untimed on its own may `Blocker` and puts one entry here: its deadline and
//! the wait node to time out. One thread sleeps until the earliest deadline
//! (a futex wait, exact to the microsecond), pops every entry that is due in
//! one pass under the lock, and then times out their nodes outside it. A
//! timed wait therefore costs an entry, not a coroutine (an earlier design
//! spawned a watchdog coroutine per wait, two memory maps each), and the
//! woken coroutine goes straight to a worker's run queue.
//!
//! The entries are a binary heap in one vector: a new deadline is usually the
//! latest, so a push rarely moves anything, no entry allocates, and a big
//! batch of due entries leaves in one linear pass (an ordered map, the
//! previous design, cost about 800 instructions per timed wait under
//! callgrind against about 170 here, and allocated its nodes). A wait that ends early (notified
//! or killed) leaves its entry behind, already marked as no longer waiting,
//! and counts it as stale; once stale entries are more than [`COMPACT_AT`] and
//! more than half the heap, they are all dropped in one pass. So long
//! timeouts that end early leave a bounded amount of garbage (amortised O(1)
//! per wait), never a growing one.
//!
//! may's own timed park is not used: in may 0.3.51 it keeps whole
//! milliseconds (truncated) and can lose its wake-up under load (it arms the
//! timer before the coroutine is stored).

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use may::sync::Blocker;

use crate::node::{Node, WAITING};
use crate::runtime;

/// Stale entries tolerated before a compaction is considered.
const COMPACT_AT: usize = 64;
/// Due entries popped one by one before the rest of a batch is taken in one pass.
const BATCH: usize = 64;

/// One timed wait: its deadline, a sequence number (earlier waits first at
/// equal deadlines), and the node to time out.
struct Entry {
    at: Instant,
    seq: u64,
    node: Arc<Node>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The heap and its bookkeeping, behind the timer's lock.
#[derive(Default)]
struct Entries {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
    /// Entries whose wait ended early and are still in the heap (an estimate:
    /// a compaction can race with a waiter that has not counted itself yet).
    stale: usize,
}

impl Entries {
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// A due entry leaves the heap: its node to wake if it still waits.
    fn settle(&mut self, entry: Entry, due: &mut Vec<Arc<Node>>) {
        if entry.node.state() == WAITING {
            due.push(entry.node);
        } else {
            // A wait that ended early, counted as stale when it did.
            self.stale = self.stale.saturating_sub(1);
        }
    }

    /// Removes every entry due at `now` in one pass and rebuilds the heap.
    fn take_all_due(&mut self, now: Instant, due: &mut Vec<Arc<Node>>) {
        let mut all = std::mem::take(&mut self.heap).into_vec();
        let mut i = 0;
        while i < all.len() {
            if all[i].at <= now {
                let entry = all.swap_remove(i);
                self.settle(entry, due);
            } else {
                i += 1;
            }
        }
        self.heap = BinaryHeap::from(all);
    }
}

struct Timer {
    entries: Mutex<Entries>,
    /// Signalled when an entry becomes the earliest.
    earlier: Condvar,
    /// Nodes to wake, handed from the timer and poller threads to the hub
    /// coroutine, each with whether it timed out (else it was notified).
    due: Mutex<Vec<(Arc<Node>, bool)>>,
    /// The hub coroutine's parker, once it runs.
    hub: OnceLock<Arc<Blocker>>,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            entries: Mutex::new(Entries::default()),
            earlier: Condvar::new(),
            due: Mutex::new(Vec::new()),
            hub: OnceLock::new(),
        }));
        timer.start_hub();
        std::thread::Builder::new()
            .name("coro-timer".into())
            .spawn(move || timer.run())
            .expect("coro cannot start its timer thread");
        timer
    })
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Nothing panics while holding it; poison would only mean a bug elsewhere.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut entries = self.lock();
        loop {
            let now = Instant::now();
            let mut popped = 0;
            while entries.earliest().is_some_and(|at| at <= now) {
                if popped == BATCH {
                    // Many due at once: take them all in one pass over the
                    // vector and rebuild the heap, O(n) rather than O(k log n).
                    entries.take_all_due(now, &mut due);
                    break;
                }
                if let Some(entry) = entries.heap.pop() {
                    entries.settle(entry, &mut due);
                }
                popped += 1;
            }
            if !due.is_empty() {
                drop(entries);
                self.hand_over(&mut due, true);
                entries = self.lock();
                continue;
            }
            entries = match entries.earliest() {
                Some(at) => {
                    let left = at.saturating_duration_since(now);
                    self.earlier
                        .wait_timeout(entries, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .earlier
                    .wait(entries)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

impl Timer {
    /// Wakes the due waiters: through the hub coroutine if it runs (one
    /// cross-thread wake-up for the whole batch, after which the hub wakes
    /// each from inside a worker, without a system call), else one by one.
    fn hand_over(&self, due: &mut Vec<Arc<Node>>, timed_out: bool) {
        match self.hub.get() {
            Some(hub) => {
                self.due
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(due.drain(..).map(|node| (node, timed_out)));
                hub.unpark();
            }
            None => due.drain(..).for_each(|node| wake(&node, timed_out)),
        }
    }

    /// The hub: a coroutine that times out the batches the timer thread hands over.
    fn start_hub(&'static self) {
        {
            let hub = move || {
                let me = Blocker::current();
                // Until this runs (or if the hub cannot start) the timer thread
                // wakes waiters itself.
                let _ = self.hub.set(me.clone());
                let mut batch = Vec::new();
                loop {
                    let _ = me.park(None);
                    std::mem::swap(
                        &mut batch,
                        &mut *self.due.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    batch
                        .drain(..)
                        .for_each(|(node, timed_out)| wake(&node, timed_out));
                }
            };
            let builder = may::coroutine::Builder::new().name("coro-timer-hub".into());
            let _ = runtime::spawn_on_may(builder, hub);
        }
    }
}

fn wake(node: &Node, timed_out: bool) {
    if timed_out {
        node.time_out();
    } else {
        node.notify();
    }
}

/// Notifies a batch of waiters from a thread that is not a worker (the
/// poller) through the hub: one cross-thread wake-up for the whole batch.
#[cfg(all(feature = "patch", target_os = "linux", target_env = "gnu"))]
pub(crate) fn notify_batch(nodes: &mut Vec<Arc<Node>>) {
    timer().hand_over(nodes, false);
}

/// Times `node` out at `at`, unless its wait ends first; then call [`ended_early`].
pub(crate) fn insert(at: Instant, node: Arc<Node>) {
    let timer = timer();
    let mut entries = timer.lock();
    let earliest = entries.earliest().is_none_or(|first| at < first);
    let seq = entries.next_seq;
    entries.next_seq += 1;
    entries.heap.push(Entry { at, seq, node });
    drop(entries);
    if earliest {
        timer.earlier.notify_one();
    }
}

/// Counts the entry of a wait that ended before its deadline as stale, and
/// drops every stale entry once they are many (see the module docs).
pub(crate) fn ended_early() {
    let mut entries = timer().lock();
    entries.stale += 1;
    if entries.stale > COMPACT_AT && entries.stale * 2 > entries.len() {
        entries.heap.retain(|e| e.node.state() == WAITING);
        entries.stale = 0;
    }
}

/// `now + d`, or a deadline far enough away to mean "never" when that overflows.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn waits_that_end_early_leave_a_bounded_number_of_timer_entries() {
        let ev = crate::event::Event::new();
        let n = 1000;
        let waiters: Vec<_> = (0..n)
            .map(|_| {
                let ev = ev.clone();
                crate::greenlet::spawn(move || ev.wait_timeout(Duration::from_secs(120))).unwrap()
            })
            .collect();
        // Every waiter is parked with a 120 s entry before the event is set.
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while super::timer().lock().len() < n {
            assert!(std::time::Instant::now() < give_up, "waiters never parked");
            std::thread::yield_now();
        }
        ev.set();
        for g in waiters {
            assert!(g.into_value().unwrap());
        }
        let left = super::timer().lock().len();
        assert!(
            left <= super::COMPACT_AT,
            "{left} entries left behind by {n} waits that ended early"
        );
    }
}
