//! [`Barrier`]: Python's `threading.Barrier`, with timeouts and the broken state.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::error::BarrierError;

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
#[derive(Debug)]
pub struct Barrier {
    parties: usize,
    state: parking_lot::Mutex<State>,
    changed: parking_lot::Condvar,
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
        })
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

    /// Waits until all parties have arrived. Returns this thread's arrival index
    /// (0 to `parties - 1`; exactly one thread gets `parties - 1`, the last to arrive).
    pub fn wait(&self) -> Result<usize, BarrierError> {
        self.wait_inner(None)
    }

    /// Like [`wait`](Barrier::wait), giving up after `timeout`, which breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierError> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<usize, BarrierError> {
        let deadline = timeout.map(|t| Instant::now() + t);
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
