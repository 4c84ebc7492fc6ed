//! FIFO queues for coroutines and threads: `Queue` (gevent's `queue.Queue`) and `JoinableQueue`,
//! with Python 3.13's `shutdown(immediate)`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{CoroError, Empty, Full, GetError, PutError, Result, ShutDown};
use crate::timer;
use crate::wait::{Guard, Signal};

mod joinable;

pub use joinable::JoinableQueue;

/// Waiters for an item.
const GETTERS: usize = 0;
/// Waiters for room.
const PUTTERS: usize = 1;

/// A FIFO queue shared by cloning (gevent's `queue.Queue(maxsize)`).
///
/// `put` waits while the queue is full and `get` while it is empty: inside a
/// coroutine they yield, in a thread they block. Each has a `_timeout` and a
/// `_nowait` form; a failed put hands the item back ([`PutError`]). After
/// [`shutdown`](Queue::shutdown) (Python 3.13) a put fails with [`ShutDown`] and a get
/// takes what is left, then fails with [`ShutDown`]. The shapes are `threads::Queue`'s.
///
/// ```
/// use std::time::Duration;
/// use coro::{Empty, GetError};
/// let q = coro::Queue::bounded(1)?;
/// q.put_nowait("a").unwrap();
/// assert!(q.full());
/// assert_eq!(q.put_nowait("b").unwrap_err().into_inner(), "b");
/// assert_eq!(q.get_timeout(Duration::from_secs(1)), Ok("a"));
/// assert_eq!(q.get_nowait(), Err(GetError::Empty(Empty)));
/// assert_eq!((q.qsize(), q.empty(), q.maxsize()), (0, true, Some(1)));
/// # Ok::<(), coro::CoroError>(())
/// ```
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    state: Signal<State<T>>,
    maxsize: Option<usize>,
}

/// What the lock guards: the items, and whether `shutdown` was called.
struct State<T> {
    items: VecDeque<T>,
    shut_down: bool,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::with_max(None)
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.maxsize())
            .field("is_shutdown", &self.is_shutdown())
            .finish()
    }
}

impl<T> Queue<T> {
    /// A queue without a bound (gevent's `Queue()`).
    pub fn new() -> Self {
        Self::with_max(None)
    }

    /// A queue holding at most `maxsize` items.
    ///
    /// # Errors
    /// [`CoroError::InvalidArgument`] if `maxsize` is 0 (use [`Queue::new`] for no bound).
    pub fn bounded(maxsize: usize) -> Result<Self> {
        if maxsize == 0 {
            return Err(CoroError::InvalidArgument(
                "Queue maxsize must be at least 1; use Queue::new() for no bound".into(),
            ));
        }
        Ok(Self::with_max(Some(maxsize)))
    }

    fn with_max(maxsize: Option<usize>) -> Self {
        Queue {
            inner: Arc::new(Inner {
                state: Signal::new(State {
                    items: VecDeque::new(),
                    shut_down: false,
                }),
                maxsize,
            }),
        }
    }

    /// The bound, `None` when unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        self.inner.maxsize
    }

    /// Items in the queue now.
    pub fn qsize(&self) -> usize {
        self.inner.state.lock().items.len()
    }

    /// Tests only: how many gets and peeks are parked waiting for an item now.
    #[doc(hidden)]
    pub fn __getters_waiting(&self) -> usize {
        self.inner.state.lock().waiting_on(GETTERS)
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.inner.state.lock().items.is_empty()
    }

    /// Whether the queue is full now (never, when unbounded).
    pub fn full(&self) -> bool {
        self.has_no_room(&self.inner.state.lock())
    }

    fn has_no_room(&self, state: &State<T>) -> bool {
        self.inner
            .maxsize
            .is_some_and(|max| state.items.len() >= max)
    }

    fn push(mut state: Guard<'_, State<T>>, item: T) {
        state.items.push_back(item);
        state.notify_one_on(GETTERS);
    }

    fn pop(mut state: Guard<'_, State<T>>) -> Result<T, GetError> {
        match state.items.pop_front() {
            Some(item) => {
                state.notify_one_on(PUTTERS);
                Ok(item)
            }
            None if state.shut_down => Err(GetError::ShutDown(ShutDown::default())),
            None => Err(GetError::Empty(Empty)),
        }
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        let signal = &self.inner.state;
        let (state, _) = signal.wait_locked(PUTTERS, signal.lock(), deadline, |s| {
            s.shut_down || !self.has_no_room(s)
        });
        if state.shut_down {
            return Err(PutError::ShutDown(ShutDown::new(item)));
        }
        if self.has_no_room(&state) {
            return Err(PutError::Full(Full::new(item)));
        }
        Self::push(state, item);
        Ok(())
    }

    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Errors
    /// [`ShutDown`] with the item once the queue is shut down (also to a put that was
    /// waiting when it was).
    pub fn put(&self, item: T) -> Result<(), ShutDown<T>> {
        let mut item = item;
        loop {
            match self.put_until(item, None) {
                Ok(()) => return Ok(()),
                Err(PutError::ShutDown(shut)) => return Err(shut),
                // An unbounded wait only ends with room or shutdown; look again if not.
                Err(PutError::Full(full)) => item = full.into_inner(),
            }
        }
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutError::Full`] if the queue stayed full, [`PutError::ShutDown`] once it is shut
    /// down; either hands the item back.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Some(timer::deadline_after(timeout)))
    }

    /// Puts `item` only if there is room now.
    ///
    /// # Errors
    /// [`PutError::Full`] or [`PutError::ShutDown`], with the item.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        let state = self.inner.state.lock();
        if state.shut_down {
            return Err(PutError::ShutDown(ShutDown::new(item)));
        }
        if self.has_no_room(&state) {
            return Err(PutError::Full(Full::new(item)));
        }
        Self::push(state, item);
        Ok(())
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        let signal = &self.inner.state;
        let (state, _) = signal.wait_locked(GETTERS, signal.lock(), deadline, |s| {
            s.shut_down || !s.items.is_empty()
        });
        Self::pop(state)
    }

    /// Takes the oldest item, waiting while the queue is empty.
    ///
    /// # Errors
    /// [`ShutDown`] once the queue is shut down and empty (also to a get that was waiting).
    pub fn get(&self) -> Result<T, ShutDown> {
        loop {
            match self.get_until(None) {
                Ok(item) => return Ok(item),
                Err(GetError::ShutDown(shut)) => return Err(shut),
                Err(GetError::Empty(_)) => {}
            }
        }
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetError::Empty`] if it stayed empty, [`GetError::ShutDown`] once it is shut down
    /// and empty.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Some(timer::deadline_after(timeout)))
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// [`GetError::Empty`] or [`GetError::ShutDown`].
    pub fn get_nowait(&self) -> Result<T, GetError> {
        Self::pop(self.inner.state.lock())
    }

    /// Shuts the queue down (Python 3.13's `shutdown(immediate=False)`): from now on `put`
    /// fails with [`ShutDown`] (handing the item back) and `get` takes what is left, then
    /// fails with [`ShutDown`]. With `immediate`, what is left is dropped at once (a
    /// [`JoinableQueue`] counts it done, so `join` returns). Every waiting `get`, `put` and
    /// `peek` wakes, in coroutines and threads alike. Calling it again is harmless; a later
    /// `shutdown(true)` still drops what is left.
    ///
    /// ```
    /// use coro::{GetError, ShutDown};
    /// let q = coro::Queue::new();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// q.shutdown(false);
    /// assert_eq!(q.put(3).unwrap_err().into_inner(), 3);
    /// assert_eq!(q.get(), Ok(1)); // what is left can still be taken
    /// q.shutdown(true); // drops the rest
    /// assert_eq!(q.get(), Err(ShutDown::default()));
    /// assert_eq!(q.get_nowait(), Err(GetError::ShutDown(ShutDown::default())));
    /// assert!(q.is_shutdown());
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        self.shut(immediate);
    }

    /// Shuts the queue down; how many items an immediate shutdown dropped.
    fn shut(&self, immediate: bool) -> usize {
        let mut state = self.inner.state.lock();
        state.shut_down = true;
        let dropped = if immediate {
            std::mem::take(&mut state.items)
        } else {
            VecDeque::new()
        };
        state.notify_all();
        drop(state);
        // The items drop outside the lock: their `Drop` may use this queue.
        dropped.len()
    }

    /// Whether [`shutdown`](Queue::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.state.lock().shut_down
    }
}

impl<T: Clone> Queue<T> {
    fn peek_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        let signal = &self.inner.state;
        let (mut state, _) = signal.wait_locked(GETTERS, signal.lock(), deadline, |s| {
            s.shut_down || !s.items.is_empty()
        });
        let Some(item) = state.items.front().cloned() else {
            return Err(if state.shut_down {
                GetError::ShutDown(ShutDown::default())
            } else {
                GetError::Empty(Empty)
            });
        };
        // A peek leaves the item: the wake-up it may have taken goes on to
        // the next waiter (a getter must not sleep beside an item).
        state.notify_one_on(GETTERS);
        Ok(item)
    }

    /// A copy of the oldest item, left in the queue; waits while it is empty
    /// (gevent's `Queue.peek()`).
    ///
    /// ```
    /// let q = coro::Queue::new();
    /// q.put("hi").unwrap();
    /// assert_eq!(q.peek(), Ok("hi"));
    /// assert_eq!(q.get(), Ok("hi")); // still there for get
    /// ```
    ///
    /// # Errors
    /// [`ShutDown`] once the queue is shut down and empty.
    pub fn peek(&self) -> Result<T, ShutDown> {
        loop {
            match self.peek_until(None) {
                Ok(item) => return Ok(item),
                Err(GetError::ShutDown(shut)) => return Err(shut),
                Err(GetError::Empty(_)) => {}
            }
        }
    }

    /// Like [`peek`](Self::peek), waiting at most `timeout` (gevent's `peek(timeout=t)`).
    ///
    /// # Errors
    /// [`GetError::Empty`] if it stayed empty, [`GetError::ShutDown`] once shut down and empty.
    pub fn peek_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.peek_until(Some(timer::deadline_after(timeout)))
    }

    /// A copy of the oldest item if there is one now (gevent's `peek_nowait()`).
    ///
    /// # Errors
    /// [`GetError::Empty`] or [`GetError::ShutDown`].
    pub fn peek_nowait(&self) -> Result<T, GetError> {
        self.peek_until(Some(Instant::now()))
    }
}
