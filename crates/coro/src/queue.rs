//! A bounded (or unbounded) FIFO queue for coroutines and threads (gevent's `queue.Queue`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use may::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{CoroError, GetError, PutError, Result};
use crate::monitor;
use crate::wait::{Deadline, Waker};

/// A FIFO queue shared by cloning (gevent's `queue.Queue(maxsize)`).
///
/// `put` waits while the queue is full and `get` while it is empty: inside a
/// coroutine they yield, in a thread they block. Each has a `_timeout` and a
/// `_nowait` form; a failed put hands the item back.
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    items: Mutex<VecDeque<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    maxsize: usize,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("maxsize", &self.maxsize())
            .finish()
    }
}

impl<T> Queue<T> {
    /// A queue holding at most `maxsize` items.
    ///
    /// # Errors
    /// [`CoroError::InvalidArgument`] if `maxsize` is 0 (use [`Queue::unbounded`]).
    pub fn bounded(maxsize: usize) -> Result<Self> {
        if maxsize == 0 {
            return Err(CoroError::InvalidArgument(
                "Queue maxsize must be at least 1; use Queue::unbounded() for no bound".into(),
            ));
        }
        Ok(Self::with_max(maxsize))
    }

    /// A queue without a bound (gevent's `Queue()`).
    pub fn unbounded() -> Self {
        Self::with_max(usize::MAX)
    }

    fn with_max(maxsize: usize) -> Self {
        Queue {
            inner: Arc::new(Inner {
                items: Mutex::new(VecDeque::new()),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                maxsize,
            }),
        }
    }

    /// The bound (`usize::MAX` when unbounded).
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// Items in the queue now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether the queue is full now.
    pub fn is_full(&self) -> bool {
        self.lock().len() >= self.inner.maxsize
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A coroutine killed while waiting unwinds without poisoning (may
        // unlocks first); any other poison only means a panic elsewhere, and
        // the deque itself is always consistent between operations.
        self.inner.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the waiters of one of the two condvars, under the lock (for a watchdog).
    fn waker(&self, not_full: bool) -> Waker
    where
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        Box::new(move || {
            let _items = inner.items.lock();
            if not_full {
                inner.not_full.notify_all();
            } else {
                inner.not_empty.notify_all();
            }
        })
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) {
        let mut items = self.lock();
        while items.len() >= self.inner.maxsize {
            items = self
                .inner
                .not_full
                .wait(items)
                .unwrap_or_else(|e| e.into_inner());
        }
        items.push_back(item);
        drop(items);
        self.inner.not_empty.notify_one();
        monitor::resumed();
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutError::Timeout`] with the item.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>>
    where
        T: Send + 'static,
    {
        let mut deadline = Deadline::after(timeout);
        let mut items = self.lock();
        while items.len() >= self.inner.maxsize {
            if deadline.expired() {
                drop(items);
                monitor::resumed();
                return Err(PutError::Timeout {
                    item,
                    maxsize: self.inner.maxsize,
                    timeout,
                });
            }
            items = deadline.wait(&self.inner.not_full, items, || self.waker(true));
        }
        items.push_back(item);
        drop(items);
        self.inner.not_empty.notify_one();
        monitor::resumed();
        Ok(())
    }

    /// Puts `item` only if there is room now.
    ///
    /// # Errors
    /// [`PutError::Full`] with the item.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        let mut items = self.lock();
        if items.len() >= self.inner.maxsize {
            return Err(PutError::Full {
                item,
                maxsize: self.inner.maxsize,
            });
        }
        items.push_back(item);
        drop(items);
        self.inner.not_empty.notify_one();
        Ok(())
    }

    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        let mut items = self.lock();
        let item = loop {
            if let Some(item) = items.pop_front() {
                break item;
            }
            items = self
                .inner
                .not_empty
                .wait(items)
                .unwrap_or_else(|e| e.into_inner());
        };
        drop(items);
        self.inner.not_full.notify_one();
        monitor::resumed();
        item
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetError::Timeout`] if it stayed empty.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError>
    where
        T: Send + 'static,
    {
        let mut deadline = Deadline::after(timeout);
        let mut items = self.lock();
        let item = loop {
            if let Some(item) = items.pop_front() {
                break item;
            }
            if deadline.expired() {
                drop(items);
                monitor::resumed();
                return Err(GetError::Timeout(timeout));
            }
            items = deadline.wait(&self.inner.not_empty, items, || self.waker(false));
        };
        drop(items);
        self.inner.not_full.notify_one();
        monitor::resumed();
        Ok(item)
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// [`GetError::Empty`].
    pub fn get_nowait(&self) -> Result<T, GetError> {
        let item = self.lock().pop_front().ok_or(GetError::Empty)?;
        self.inner.not_full.notify_one();
        Ok(item)
    }
}
