//! coro's own timer: one thread, one ordered map of deadlines, coroutines woken in batches.
//!
//! Every timed wait of a coroutine (a `sleep`, a `*_timeout` call) parks
//! untimed on its own may `Blocker` and puts one entry here: its deadline and
//! the wait node to time out. One thread sleeps until the earliest deadline
//! (a futex wait, exact to the microsecond), takes every entry that is due in
//! one pass under the lock, and then times out their nodes outside it. A wait
//! that ends early removes its entry (O(log n)), so long timeouts leave no
//! garbage behind. A timed wait therefore costs an entry, not a coroutine (the
//! previous design spawned a watchdog coroutine per wait, two memory maps
//! each), and the woken coroutine goes straight to a worker's run queue.
//!
//! may's own timed park is not used: in may 0.3.51 it keeps whole
//! milliseconds (truncated) and can lose its wake-up under load (it arms the
//! timer before the coroutine is stored).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use may::sync::Blocker;

use crate::node::Node;
use crate::runtime;

/// Identifies one entry, to remove it when its wait ends first.
pub(crate) type Key = (Instant, u64);

struct Timer {
    entries: Mutex<BTreeMap<Key, Arc<Node>>>,
    /// Signalled when an entry becomes the earliest.
    earlier: Condvar,
    next_seq: AtomicU64,
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
            entries: Mutex::new(BTreeMap::new()),
            earlier: Condvar::new(),
            next_seq: AtomicU64::new(0),
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
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Arc<Node>>> {
        // Nothing panics while holding it; poison would only mean a bug elsewhere.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut entries = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = entries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(entries);
                self.hand_over(&mut due, true);
                entries = self.lock();
                continue;
            }
            entries = match entries.first_key_value() {
                Some((&(at, _), _)) => {
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

/// Times `node` out at `at` (unless it is notified first); keep the key to [`cancel`].
pub(crate) fn insert(at: Instant, node: Arc<Node>) -> Key {
    let timer = timer();
    let key = (at, timer.next_seq.fetch_add(1, Ordering::Relaxed));
    let mut entries = timer.lock();
    let earliest = entries
        .first_key_value()
        .is_none_or(|(first, _)| key < *first);
    entries.insert(key, node);
    drop(entries);
    if earliest {
        timer.earlier.notify_one();
    }
    key
}

/// Removes the entry of a wait that ended before its deadline.
pub(crate) fn cancel(key: Key) {
    timer().lock().remove(&key);
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
    fn a_wait_that_ends_early_leaves_no_timer_entry() {
        let ev = crate::Event::new();
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let ev = ev.clone();
                crate::spawn(move || ev.wait_timeout(Duration::from_secs(120))).unwrap()
            })
            .collect();
        // Every waiter is parked with a 120 s entry before the event is set.
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while super::timer().lock().len() < 100 {
            assert!(std::time::Instant::now() < give_up, "waiters never parked");
            std::thread::yield_now();
        }
        ev.set();
        for g in waiters {
            assert!(g.into_value().unwrap());
        }
        assert_eq!(super::timer().lock().len(), 0);
    }
}
