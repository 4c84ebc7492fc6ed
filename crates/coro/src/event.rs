//! `Event` (set/clear/wait, reusable) and `AsyncResult` (a value delivered once).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{CoroError, Result};
use crate::wait::Signal;

/// A flag coroutines and threads can wait on (gevent's `event.Event`).
///
/// Unlike may's one-shot `SyncFlag`, it can be cleared and set again.
/// Cloning shares the same event.
#[derive(Clone, Default)]
pub struct Event {
    inner: Arc<Signal<bool>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *self.inner.lock() = true;
        self.inner.notify_all();
    }

    /// Clears the flag; later `wait`s block until the next `set`.
    pub fn clear(&self) {
        *self.inner.lock() = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *self.inner.lock()
    }

    /// Waits until the flag is set (returns at once if it is).
    pub fn wait(&self) {
        self.inner
            .wait_until(None, |set| *set, || self.inner.waker());
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner
            .wait_until(Some(timeout), |set| *set, || self.inner.waker())
            .1
    }
}

/// A value (or a failure) delivered once to any number of waiters
/// (gevent's `event.AsyncResult`).
///
/// Waiters get a clone of the value. A second `set` replaces the first, as in gevent.
pub struct AsyncResult<T> {
    inner: Arc<Signal<Option<std::result::Result<T, String>>>>,
}

impl<T> Clone for AsyncResult<T> {
    fn clone(&self) -> Self {
        AsyncResult {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for AsyncResult<T> {
    fn default() -> Self {
        AsyncResult {
            inner: Arc::new(Signal::new(None)),
        }
    }
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.inner.lock().is_some())
            .finish()
    }
}

impl<T: Clone + Send + 'static> AsyncResult<T> {
    /// An empty result.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers `value` and wakes every waiter.
    pub fn set(&self, value: T) {
        *self.inner.lock() = Some(Ok(value));
        self.inner.notify_all();
    }

    /// Delivers a failure (gevent's `set_exception`); `get` returns it as an error.
    pub fn set_exception(&self, message: impl Into<String>) {
        *self.inner.lock() = Some(Err(message.into()));
        self.inner.notify_all();
    }

    /// Whether a value or a failure was delivered.
    pub fn ready(&self) -> bool {
        self.inner.lock().is_some()
    }

    /// Whether a value (not a failure) was delivered.
    pub fn successful(&self) -> bool {
        matches!(*self.inner.lock(), Some(Ok(_)))
    }

    /// Waits until something is delivered.
    pub fn wait(&self) {
        self.inner
            .wait_until(None, Option::is_some, || self.inner.waker());
    }

    /// Waits at most `timeout`; returns whether something was delivered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner
            .wait_until(Some(timeout), Option::is_some, || self.inner.waker())
            .1
    }

    /// Waits and returns (a clone of) the value.
    ///
    /// # Errors
    /// [`CoroError::Exception`] carrying the `set_exception` message.
    pub fn get(&self) -> Result<T> {
        let (state, _) = self
            .inner
            .wait_until(None, Option::is_some, || self.inner.waker());
        Self::outcome(&state)
    }

    /// Like [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`CoroError::Timeout`] if nothing was delivered in time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        let (state, ready) = self
            .inner
            .wait_until(Some(timeout), Option::is_some, || self.inner.waker());
        if !ready {
            return Err(CoroError::Timeout {
                what: "AsyncResult get".into(),
                timeout,
            });
        }
        Self::outcome(&state)
    }

    fn outcome(state: &Option<std::result::Result<T, String>>) -> Result<T> {
        match state {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(message)) => Err(CoroError::Exception {
                message: message.clone(),
            }),
            None => unreachable!("outcome is read only once something was delivered"),
        }
    }
}
