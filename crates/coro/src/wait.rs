//! Timed waits on may's `Condvar` that cannot hang: a watchdog coroutine instead of may's park timer.
//!
//! may 0.3.51's coroutine park timeout is racy and coarse: it arms the timer
//! before it stores the parked coroutine, so a timer that fires in between
//! (a worker preempted for a millisecond under load) finds nobody to wake and
//! the wait never ends; it also keeps the timeout in whole milliseconds
//! (truncated: under 1 ms means "no timeout"). may's `sleep` has neither
//! problem. So inside a coroutine a timed wait here is an *untimed* condvar
//! wait plus a watchdog coroutine that sleeps until the deadline and then
//! notifies the condvar under its mutex. In a plain thread may's own timed
//! wait (a parking_lot condvar) is exact and is used directly.

use std::time::{Duration, Instant};

use may::coroutine::JoinHandle;
use may::sync::{Condvar, MutexGuard};

use crate::runtime;

/// Wakes the waiters of one condvar; must lock the condvar's mutex first.
pub(crate) type Waker = Box<dyn FnOnce() + Send + 'static>;

/// The deadline of one timed wait, and its watchdog once armed.
pub(crate) struct Deadline {
    at: Instant,
    watchdog: Option<JoinHandle<()>>,
    /// The watchdog could not be spawned; fall back to may's park timeout.
    fallback: bool,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now()
                .checked_add(timeout)
                .unwrap_or_else(far_future),
            watchdog: None,
            fallback: false,
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Waits once on `cv` (a wake-up, a spurious return or the deadline);
    /// the caller re-checks its condition and [`expired`](Self::expired).
    pub(crate) fn wait<'a, T>(
        &mut self,
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        waker: impl FnOnce() -> Waker,
    ) -> MutexGuard<'a, T> {
        let left = self.at.saturating_duration_since(Instant::now());
        if !may::coroutine::is_coroutine() {
            return cv
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if self.watchdog.is_none() && !self.fallback {
            let at = self.at;
            let wake = waker();
            // The watchdog takes the condvar's mutex before it notifies, and
            // we hold it until `wait` releases it, so its wake-up cannot be lost.
            let watch = move || {
                loop {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    may::coroutine::sleep(left);
                }
                wake();
            };
            match runtime::spawn_on_may(may::coroutine::Builder::new(), watch) {
                Ok(h) => self.watchdog = Some(h),
                Err(_) => self.fallback = true,
            }
        }
        if self.fallback {
            // Rare (no memory for a watchdog stack): may's own, coarser timed wait.
            return cv
                .wait_timeout(guard, runtime::park_duration(left))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        cv.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(h) = self.watchdog.take() {
            if !h.is_done() {
                // SAFETY: the watchdog owns only its deadline and its waker (an
                // Arc of the primitive); unwinding it from its sleep drops them,
                // exactly as a panic would.
                unsafe { h.coroutine().cancel() };
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// A state behind may's `Mutex`, with one `Condvar` to wait for it to change.
#[derive(Default)]
pub(crate) struct Signal<S> {
    state: may::sync::Mutex<S>,
    changed: Condvar,
}

impl<S> Signal<S> {
    pub(crate) fn new(state: S) -> Self {
        Signal {
            state: may::sync::Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    /// Locks the state. Poison is ignored: every writer leaves the state
    /// consistent, and a killed waiter unwinds without poisoning (may unlocks first).
    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter; call it after changing the state (with or without the lock).
    pub(crate) fn notify_all(&self) {
        self.changed.notify_all();
    }

    /// Wakes the waiters under the lock (what a watchdog must do).
    pub(crate) fn wake_locked(&self) {
        let _guard = self.lock();
        self.changed.notify_all();
    }

    /// Waits until `ready(state)` or until `timeout` passes (`None`: no timeout).
    /// Returns the locked state and whether it became ready.
    pub(crate) fn wait_until(
        &self,
        timeout: Option<Duration>,
        ready: impl Fn(&S) -> bool,
        waker: impl FnOnce() -> Waker,
    ) -> (MutexGuard<'_, S>, bool) {
        let mut state = self.lock();
        let outcome = if ready(&state) {
            true
        } else if let Some(timeout) = timeout {
            let mut deadline = Deadline::after(timeout);
            let mut waker = Some(waker);
            loop {
                if deadline.expired() {
                    break false;
                }
                let make = waker.take();
                state = deadline.wait(&self.changed, state, || {
                    make.expect("the waker is used once")()
                });
                if ready(&state) {
                    break true;
                }
            }
        } else {
            loop {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                if ready(&state) {
                    break true;
                }
            }
        };
        crate::monitor::resumed();
        (state, outcome)
    }
}

impl<S: Send + 'static> Signal<S> {
    /// A waker for a `Signal` kept in an `Arc`.
    pub(crate) fn waker(self: &std::sync::Arc<Self>) -> Waker {
        let me = self.clone();
        Box::new(move || me.wake_locked())
    }
}
