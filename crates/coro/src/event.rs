//! `Event` (set/clear/wait, reusable) and `AsyncResult` (a value delivered once).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{CoroError, Result};
use crate::wait::Signal;

/// Callbacks run once when an event is set or a result delivered.
type Links = Vec<Box<dyn FnOnce() + Send>>;

/// An event's flag and the callbacks waiting for it.
#[derive(Default)]
struct Flag {
    set: bool,
    links: Links,
}

fn run(links: Links) {
    links.into_iter().for_each(|f| f());
}

/// A flag coroutines and threads can wait on (gevent's `event.Event`).
///
/// Unlike may's one-shot `SyncFlag`, it can be cleared and set again.
/// Cloning shares the same event.
#[derive(Clone, Default)]
pub struct Event {
    inner: Arc<Signal<Flag>>,
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
        let mut flag = self.inner.lock();
        flag.set = true;
        flag.notify_all();
        let links = std::mem::take(&mut flag.links);
        drop(flag);
        run(links);
    }

    /// Clears the flag; later `wait`s block until the next `set`.
    pub fn clear(&self) {
        self.inner.lock().set = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.lock().set
    }

    /// Runs `f` once the flag is set (at once if it is).
    pub(crate) fn rawlink(&self, f: Box<dyn FnOnce() + Send>) {
        let mut flag = self.inner.lock();
        if flag.set {
            drop(flag);
            f();
        } else {
            flag.links.push(f);
        }
    }

    /// Waits until the flag is set (returns at once if it is).
    pub fn wait(&self) {
        self.inner.wait_until(None, |f| f.set);
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner.wait_until(Some(timeout), |f| f.set).1
    }
}

/// A value (or a failure) delivered once to any number of waiters
/// (gevent's `event.AsyncResult`).
///
/// Waiters get a clone of the value. A second `set` replaces the first, as in gevent.
pub struct AsyncResult<T> {
    inner: Arc<Signal<Slot<T>>>,
}

/// A result's value once delivered, and the callbacks waiting for it.
struct Slot<T> {
    value: Option<std::result::Result<T, String>>,
    links: Links,
}

impl<T> Slot<T> {
    fn delivered(&self) -> bool {
        self.value.is_some()
    }
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
            inner: Arc::new(Signal::new(Slot {
                value: None,
                links: Vec::new(),
            })),
        }
    }
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.is_delivered())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// Whether a value (not a failure) was delivered: `None` until something is.
    pub fn successful(&self) -> Option<bool> {
        self.inner.lock().value.as_ref().map(|r| r.is_ok())
    }

    pub(crate) fn is_delivered(&self) -> bool {
        self.inner.lock().delivered()
    }

    /// Runs `f` once something is delivered (at once if it was).
    pub(crate) fn rawlink(&self, f: Box<dyn FnOnce() + Send>) {
        let mut slot = self.inner.lock();
        if slot.delivered() {
            drop(slot);
            f();
        } else {
            slot.links.push(f);
        }
    }

    /// Runs `f` once something is delivered (at once, in the caller, if it was);
    /// `f` runs on whoever delivers, so it must be short and must not block.
    ///
    /// ```
    /// let r: coro::AsyncResult<u8> = coro::AsyncResult::new();
    /// let seen = coro::Queue::new();
    /// let tx = seen.clone();
    /// r.add_done_callback(move |r| tx.put(r.successful()).unwrap());
    /// r.set(1);
    /// assert_eq!(seen.get_nowait(), Ok(Some(true)));
    /// ```
    pub fn add_done_callback(&self, f: impl FnOnce(&AsyncResult<T>) + Send + 'static)
    where
        T: Send + 'static,
    {
        let me = self.clone();
        self.rawlink(Box::new(move || f(&me)));
    }

    fn deliver(&self, value: std::result::Result<T, String>) {
        let mut slot = self.inner.lock();
        slot.value = Some(value);
        slot.notify_all();
        let links = std::mem::take(&mut slot.links);
        drop(slot);
        run(links);
    }
}

impl<T: Clone + Send + 'static> AsyncResult<T> {
    /// An empty result.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers `value` and wakes every waiter.
    pub fn set(&self, value: T) {
        self.deliver(Ok(value));
    }

    /// Delivers a failure (gevent's `set_exception`); `get` returns it as an error.
    pub fn set_exception(&self, message: impl Into<String>) {
        self.deliver(Err(message.into()));
    }

    /// Whether a value or a failure was delivered.
    pub fn ready(&self) -> bool {
        self.is_delivered()
    }

    /// Waits until something is delivered.
    pub fn wait(&self) {
        self.inner.wait_until(None, Slot::delivered);
    }

    /// Waits at most `timeout`; returns whether something was delivered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner.wait_until(Some(timeout), Slot::delivered).1
    }

    /// Waits and returns (a clone of) the value.
    ///
    /// # Errors
    /// [`CoroError::Exception`] carrying the `set_exception` message.
    pub fn get(&self) -> Result<T> {
        let (state, _) = self.inner.wait_until(None, Slot::delivered);
        Self::outcome(&state)
    }

    /// Like [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`CoroError::Timeout`] if nothing was delivered in time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        let (state, ready) = self.inner.wait_until(Some(timeout), Slot::delivered);
        if !ready {
            return Err(CoroError::Timeout {
                what: "AsyncResult get".into(),
                timeout,
            });
        }
        Self::outcome(&state)
    }

    fn outcome(state: &Slot<T>) -> Result<T> {
        match &state.value {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(message)) => Err(CoroError::Exception {
                message: message.clone(),
            }),
            None => unreachable!("outcome is read only once something was delivered"),
        }
    }
}
