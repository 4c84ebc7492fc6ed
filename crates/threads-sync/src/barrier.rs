//! [`Barrier`]: Python's `threading.Barrier`, with timeouts and the broken state.

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::error::{BarrierError, panic_message};

type Action = Box<dyn Fn() + Send + Sync + 'static>;

#[derive(Debug)]
struct State {
    /// Threads waiting in the current generation.
    waiting: usize,
    /// Incremented each time a generation ends (all parties arrived, or `reset`).
    generation: u64,
    /// Set by a timeout or `abort`; cleared by `reset`.
    broken: bool,
    /// Generations ended by `reset` rather than by all parties arriving.
    reset_generations: BTreeSet<u64>,
}

/// Python's `threading.Barrier`: `parties` threads wait until all have arrived.
///
/// A waiter that times out breaks the barrier: it gets [`BarrierError::Timeout`] and every
/// other waiter, now and until [`reset`](Barrier::reset), gets [`BarrierError::Broken`].
///
/// ```
/// use threads_sync::Barrier;
/// use std::time::Duration;
/// let barrier = Barrier::new(2)?;
/// // Alone at a barrier of two: the wait times out and breaks it.
/// assert!(barrier.wait_timeout(Duration::from_millis(5)).is_err());
/// assert!(barrier.broken());
/// barrier.reset();
/// assert!(!barrier.broken());
/// # Ok::<(), threads_sync::BarrierError>(())
/// ```
///
/// Python's `Barrier(parties, action=None, timeout=None)` is
/// `Barrier::new(parties)?.with_action(f).with_timeout(t)`:
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use threads_sync::{Barrier, Thread};
/// let rounds = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&rounds);
/// let barrier = Arc::new(Barrier::new(2)?.with_action(move || {
///     counter.fetch_add(1, Ordering::SeqCst); // run once per round, by the last to arrive
/// }));
/// let other = Arc::clone(&barrier);
/// let t = Thread::new(move || other.wait(), ()).start().unwrap();
/// barrier.wait()?;
/// t.join().unwrap()?;
/// assert_eq!(rounds.load(Ordering::SeqCst), 1);
/// # Ok::<(), threads_sync::BarrierError>(())
/// ```
pub struct Barrier {
    parties: usize,
    state: parking_lot::Mutex<State>,
    changed: parking_lot::Condvar,
    /// Run by the last party to arrive, before any is released.
    action: Option<Action>,
    /// What `wait` waits at most (Python's `timeout=`); `None`: forever.
    timeout: Option<Duration>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("state", &self.state)
            .field("action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` threads; [`BarrierError::InvalidParties`] for 0 (a `const fn`).
    pub const fn new(parties: usize) -> Result<Self, BarrierError> {
        if parties == 0 {
            return Err(BarrierError::InvalidParties { parties });
        }
        Ok(Barrier {
            parties,
            state: parking_lot::const_mutex(State {
                waiting: 0,
                generation: 0,
                broken: false,
                reset_generations: BTreeSet::new(),
            }),
            changed: parking_lot::Condvar::new(),
            action: None,
            timeout: None,
        })
    }

    /// Runs `action` once per round, in the last thread to arrive, before any thread is
    /// released (Python's `action=`). A panicking action breaks the barrier: that thread gets
    /// [`BarrierError::ActionPanicked`], the others [`BarrierError::Broken`]. The action runs
    /// under the barrier's lock, as Python's does: it must not call this barrier.
    pub fn with_action(mut self, action: impl Fn() + Send + Sync + 'static) -> Self {
        self.action = Some(Box::new(action));
        self
    }

    /// The timeout of every [`wait`](Barrier::wait) (Python's `timeout=`); a wait that runs
    /// out of it breaks the barrier as [`wait_timeout`](Barrier::wait_timeout) does.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The default timeout given by [`with_timeout`](Barrier::with_timeout).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The number of threads required to pass.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Threads currently waiting.
    pub fn n_waiting(&self) -> usize {
        self.state.lock().waiting
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.lock().broken
    }

    /// Waits until all parties have arrived (for at most the default timeout, if one was
    /// given). Returns this thread's arrival index (0 to `parties - 1`; exactly one thread
    /// gets `parties - 1`, the last to arrive).
    pub fn wait(&self) -> Result<usize, BarrierError> {
        self.wait_inner(self.timeout)
    }

    /// Like [`wait`](Barrier::wait), giving up after `timeout`, which breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierError> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<usize, BarrierError> {
        // A timeout too long to represent waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = self.state.lock();
        let broken = BarrierError::Broken {
            parties: self.parties,
        };
        if state.broken {
            return Err(broken);
        }
        let index = state.waiting;
        state.waiting += 1;
        if state.waiting == self.parties {
            if let Some(action) = &self.action {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(action)) {
                    // Python: the action's exception breaks the barrier for everyone.
                    state.waiting -= 1;
                    state.broken = true;
                    drop(state);
                    self.changed.notify_all();
                    return Err(BarrierError::ActionPanicked {
                        parties: self.parties,
                        message: panic_message(&*payload),
                    });
                }
            }
            state.waiting = 0;
            state.generation += 1;
            drop(state);
            self.changed.notify_all();
            return Ok(index);
        }
        let generation = state.generation;
        loop {
            if state.generation != generation {
                return if state.reset_generations.contains(&generation) {
                    Err(broken)
                } else {
                    Ok(index)
                };
            }
            if state.broken {
                state.waiting -= 1;
                return Err(broken);
            }
            match deadline {
                None => self.changed.wait(&mut state),
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out()
                        && state.generation == generation
                        && !state.broken
                    {
                        let waiting = state.waiting;
                        state.waiting -= 1;
                        state.broken = true;
                        drop(state);
                        self.changed.notify_all();
                        return Err(BarrierError::Timeout {
                            parties: self.parties,
                            waiting,
                            timeout: timeout.unwrap_or_default(),
                        });
                    }
                }
            }
        }
    }

    /// Breaks the barrier: current and future waiters get [`BarrierError::Broken`] until `reset`.
    pub fn abort(&self) {
        self.state.lock().broken = true;
        self.changed.notify_all();
    }

    /// Returns the barrier to its empty, unbroken state; threads waiting now get
    /// [`BarrierError::Broken`].
    pub fn reset(&self) {
        let mut state = self.state.lock();
        if state.waiting > 0 {
            let generation = state.generation;
            state.reset_generations.insert(generation);
        }
        state.waiting = 0;
        state.broken = false;
        state.generation += 1;
        drop(state);
        self.changed.notify_all();
    }
}
