//! [`Timer`]: Python's `threading.Timer(interval, f, args)`, a thread that runs its target
//! after a delay unless cancelled first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ThreadError;
use crate::thread::{Target, Thread, ThreadHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Cancelled,
    Fired,
}

#[derive(Debug)]
struct Shared {
    phase: parking_lot::Mutex<Phase>,
    changed: parking_lot::Condvar,
}

/// A thread that calls `target(args...)` once `interval` has passed, unless
/// [`cancel`](TimerHandle::cancel) comes first (Python: `threading.Timer`).
///
/// ```python
/// t = threading.Timer(30.0, remind, args=("tea",)); t.start(); t.cancel()
/// ```
/// ```
/// use std::time::Duration;
/// use threads_sync::Timer;
/// fn remind(what: &'static str) -> String { format!("time for {what}") }
///
/// let soon = Timer::new(Duration::from_millis(1), remind, ("tea",)).start()?;
/// assert_eq!(soon.join()?, Some("time for tea".to_owned()));
///
/// let mut late = Timer::new(Duration::from_secs(3600), remind, ("bed",)).start()?;
/// assert!(late.cancel()); // cancelled before it fired: the target never runs
/// assert_eq!(late.join_timeout(Duration::from_secs(10))?, None);
/// # Ok::<(), threads_sync::ThreadError>(())
/// ```
#[derive(Debug)]
pub struct Timer<R> {
    thread: Thread<Option<R>>,
    shared: Arc<Shared>,
}

impl<R: Send + 'static> Timer<R> {
    /// A timer (not started) that will call `target` with `args` after `interval`.
    pub fn new<Args, F>(interval: Duration, target: F, args: Args) -> Self
    where
        F: Target<Args, Output = R>,
        Args: Send + 'static,
    {
        let shared = Arc::new(Shared {
            phase: parking_lot::Mutex::new(Phase::Waiting),
            changed: parking_lot::Condvar::new(),
        });
        let mine = Arc::clone(&shared);
        let thread = Thread::new(
            move || {
                // The deadline counts from the start of the thread, as Python's does.
                let deadline = Instant::now().checked_add(interval);
                let mut phase = mine.phase.lock();
                while *phase == Phase::Waiting {
                    let timed_out = match deadline {
                        Some(deadline) => mine.changed.wait_until(&mut phase, deadline).timed_out(),
                        // An interval too long to represent: wait for a cancel only.
                        None => {
                            mine.changed.wait(&mut phase);
                            false
                        }
                    };
                    if timed_out && *phase == Phase::Waiting {
                        *phase = Phase::Fired;
                    }
                }
                let fire = *phase == Phase::Fired;
                drop(phase);
                fire.then(|| target.call(args))
            },
            (),
        );
        Timer { thread, shared }
    }

    /// Sets the timer thread's name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.thread = self.thread.named(name);
        self
    }

    /// Sets whether the timer thread is a daemon.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.thread = self.thread.daemon(daemon);
        self
    }

    /// Starts the countdown on a new thread; [`ThreadError::Spawn`] if the OS refuses one.
    pub fn start(self) -> Result<TimerHandle<R>, ThreadError> {
        Ok(TimerHandle {
            thread: self.thread.start()?,
            shared: self.shared,
        })
    }
}

/// A started [`Timer`].
#[derive(Debug)]
pub struct TimerHandle<R> {
    thread: ThreadHandle<Option<R>>,
    shared: Arc<Shared>,
}

impl<R> TimerHandle<R> {
    /// Stops the timer if it has not fired yet (Python: `cancel()`); returns whether it
    /// did, i.e. whether the target will never run. `false` once the target has started.
    pub fn cancel(&self) -> bool {
        let mut phase = self.shared.phase.lock();
        match *phase {
            Phase::Waiting => {
                *phase = Phase::Cancelled;
                self.shared.changed.notify_all();
                true
            }
            Phase::Cancelled => true,
            Phase::Fired => false,
        }
    }

    /// Waits for the timer: `Some(value)` if the target ran, `None` if it was cancelled.
    pub fn join(self) -> Result<Option<R>, ThreadError> {
        self.thread.join()
    }

    /// Like [`join`](TimerHandle::join), giving up after `timeout` with [`ThreadError::Timeout`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<R>, ThreadError> {
        self.thread.join_timeout(timeout)
    }

    /// Whether the timer thread is still waiting or running the target.
    pub fn is_alive(&self) -> bool {
        self.thread.is_alive()
    }

    /// The timer thread's name.
    pub fn name(&self) -> &str {
        self.thread.name()
    }

    /// The timer thread's ident.
    pub fn ident(&self) -> u64 {
        self.thread.ident()
    }
}
