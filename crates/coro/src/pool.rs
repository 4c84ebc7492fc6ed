//! `Pool(n)`: spawn greenlets with at most `n` of them running at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use may::sync::Semphore;

use crate::error::{CoroError, Result};
use crate::greenlet::{Builder, Greenlet};
use crate::monitor;

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
    slots: Semphore,
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
                slots: Semphore::new(size),
            }),
        })
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Slots free right now.
    pub fn free_count(&self) -> usize {
        self.inner.slots.get_value()
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
        self.inner.slots.wait();
        monitor::resumed();
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
        let got = self.inner.slots.try_wait()
            || (!timeout.is_zero()
                && self
                    .inner
                    .slots
                    .wait_timeout(crate::runtime::park_duration(timeout)));
        if !got {
            crate::runtime::back_to_worker();
        }
        monitor::resumed();
        if !got {
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
        self.inner.slots.wait();
        monitor::resumed();
        self.spawn_in_slot(builder, f)
    }

    fn spawn_in_slot<F, T>(&self, builder: Builder, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        // The slot is released by the greenlet's end (or by a failed spawn dropping it).
        builder.spawn_with(None, Some(Box::new(move || inner.slots.post())), f)
    }

    /// Waits until no greenlet of this pool is running (gevent's `Pool.join()`).
    pub fn join(&self) {
        for _ in 0..self.inner.size {
            self.inner.slots.wait();
        }
        for _ in 0..self.inner.size {
            self.inner.slots.post();
        }
        monitor::resumed();
    }

    /// Like [`join`](Pool::join), waiting at most `timeout`; returns whether the pool emptied.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut taken = 0;
        while taken < self.inner.size {
            if self.inner.slots.try_wait() {
                taken += 1;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || !self
                    .inner
                    .slots
                    .wait_timeout(crate::runtime::park_duration(left))
            {
                crate::runtime::back_to_worker();
                break;
            }
            taken += 1;
        }
        for _ in 0..taken {
            self.inner.slots.post();
        }
        monitor::resumed();
        taken == self.inner.size
    }
}
