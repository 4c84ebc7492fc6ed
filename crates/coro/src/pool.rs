//! `Pool(n)`: spawn greenlets with at most `n` of them running at once.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{CoroError, Result};
use crate::greenlet::{Builder, Greenlet};
use crate::wait::Signal;

/// Bounds how many greenlets run at once (gevent's `pool.Pool(size)`).
///
/// [`spawn`](Pool::spawn) waits for a free slot when `size` greenlets are
/// already running: inside a coroutine it yields, in a thread it blocks. A
/// slot is freed when its greenlet finishes, however it finishes.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    size: usize,
    /// Free slots.
    free: Arc<Signal<usize>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .field("free", &self.free_count())
            .finish()
    }
}

impl Pool {
    /// A pool of `size` slots.
    ///
    /// # Errors
    /// [`CoroError::InvalidArgument`] if `size` is 0.
    pub fn new(size: usize) -> Result<Pool> {
        if size == 0 {
            return Err(CoroError::InvalidArgument(
                "Pool size must be at least 1".into(),
            ));
        }
        Ok(Pool {
            inner: Arc::new(Inner {
                size,
                free: Arc::new(Signal::new(size)),
            }),
        })
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Slots free right now.
    pub fn free_count(&self) -> usize {
        *self.inner.free.lock()
    }

    /// Greenlets of this pool running right now.
    pub fn running(&self) -> usize {
        self.size() - self.free_count()
    }

    /// Waits for a free slot, then spawns `f` in it.
    ///
    /// # Errors
    /// As [`crate::spawn`].
    pub fn spawn<F, T>(&self, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.acquire(None);
        self.spawn_in_slot(Builder::new(), f)
    }

    /// Like [`spawn`](Pool::spawn), waiting at most `timeout` for a slot.
    ///
    /// # Errors
    /// [`CoroError::Timeout`] if no slot freed in time.
    pub fn spawn_timeout<F, T>(&self, timeout: Duration, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if !self.acquire(Some(timeout)) {
            return Err(CoroError::Timeout {
                what: format!("Pool({}) spawn waiting for a free slot", self.size()),
                timeout,
            });
        }
        self.spawn_in_slot(Builder::new(), f)
    }

    /// Spawns `f` with a builder (name, stack size), waiting for a free slot.
    ///
    /// # Errors
    /// As [`crate::spawn`].
    pub fn spawn_builder<F, T>(&self, builder: Builder, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.acquire(None);
        self.spawn_in_slot(builder, f)
    }

    /// Like [`spawn_builder`](Pool::spawn_builder), waiting at most `timeout` for a slot.
    ///
    /// # Errors
    /// [`CoroError::Timeout`] if no slot freed in time.
    pub fn spawn_builder_timeout<F, T>(
        &self,
        builder: Builder,
        timeout: Duration,
        f: F,
    ) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if !self.acquire(Some(timeout)) {
            return Err(CoroError::Timeout {
                what: format!("Pool({}) spawn waiting for a free slot", self.size()),
                timeout,
            });
        }
        self.spawn_in_slot(builder, f)
    }

    fn spawn_in_slot<F, T>(&self, builder: Builder, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let free = self.inner.free.clone();
        // The slot is released by the greenlet's end (or by a failed spawn dropping it).
        let release = move || {
            *free.lock() += 1;
            free.notify_all();
        };
        builder.spawn_with(None, Some(Box::new(release)), f)
    }

    /// Takes a free slot, waiting at most `timeout` (`None`: as long as it takes).
    fn acquire(&self, timeout: Option<Duration>) -> bool {
        let free = &self.inner.free;
        let (mut n, got) = free.wait_until(timeout, |n| *n > 0, || free.waker());
        if got {
            *n -= 1;
        }
        got
    }

    /// Waits until no greenlet of this pool is running (gevent's `Pool.join()`).
    pub fn join(&self) {
        let free = &self.inner.free;
        let size = self.inner.size;
        free.wait_until(None, |n| *n == size, || free.waker());
    }

    /// Like [`join`](Pool::join), waiting at most `timeout`; returns whether the pool emptied.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let free = &self.inner.free;
        let size = self.inner.size;
        free.wait_until(Some(timeout), |n| *n == size, || free.waker())
            .1
    }
}
