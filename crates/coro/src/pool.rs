//! `Pool(n)`: spawn greenlets with at most `n` of them running at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{CoroError, Result};
use crate::greenlet::{Builder, Greenlet, GreenletRef};
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
            let mut n = free.lock();
            *n += 1;
            n.notify_all();
        };
        builder.spawn_with(None, Some(Box::new(release)), f)
    }

    /// Takes a free slot, waiting at most `timeout` (`None`: as long as it takes).
    fn acquire(&self, timeout: Option<Duration>) -> bool {
        let free = &self.inner.free;
        let (mut n, got) = free.wait_until(timeout, |n| *n > 0);
        if got {
            *n -= 1;
        }
        got
    }

    /// Runs `f` in the pool and waits for its value (gevent's `Pool.apply`).
    ///
    /// # Errors
    /// `f`'s panic as [`CoroError::Panicked`], or a spawn error.
    pub fn apply<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f)?.into_value()
    }

    /// Starts `f` in the pool and returns its greenlet at once, or as soon as
    /// a slot is free (gevent's `Pool.apply_async`).
    ///
    /// # Errors
    /// As [`crate::spawn`].
    pub fn apply_async<F, T>(&self, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f)
    }

    /// Runs `f` on every item, at most `size` at once; the values in order (gevent's `Pool.map`).
    ///
    /// ```
    /// let pool = coro::Pool::new(2)?;
    /// assert_eq!(pool.map(|x: u64| x * x, 0..5)?, [0, 1, 4, 9, 16]);
    /// # Ok::<(), coro::CoroError>(())
    /// ```
    ///
    /// # Errors
    /// The first failure in item order.
    pub fn map<F, I, R>(&self, f: F, items: impl IntoIterator<Item = I>) -> Result<Vec<R>>
    where
        F: Fn(I) -> R + Clone + Send + 'static,
        I: Send + 'static,
        R: Send + 'static,
    {
        self.imap(f, items).collect()
    }

    /// Like [`map`](Self::map), lazily: values in item order as they are asked for,
    /// with at most `size` items running ahead (gevent's `Pool.imap`).
    pub fn imap<F, I, R, It>(&self, f: F, items: It) -> IMap<F, It::IntoIter, R>
    where
        It: IntoIterator<Item = I>,
        F: Fn(I) -> R + Clone + Send + 'static,
        I: Send + 'static,
        R: Send + 'static,
    {
        IMap::new(self.clone(), f, items.into_iter(), true)
    }

    /// Like [`imap`](Self::imap), values in the order they finish (gevent's `Pool.imap_unordered`).
    ///
    /// ```
    /// let pool = coro::Pool::new(3)?;
    /// let mut got: Vec<u64> = pool.imap_unordered(|x: u64| x + 1, 0..6).collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    /// # Ok::<(), coro::CoroError>(())
    /// ```
    pub fn imap_unordered<F, I, R, It>(&self, f: F, items: It) -> IMap<F, It::IntoIter, R>
    where
        It: IntoIterator<Item = I>,
        F: Fn(I) -> R + Clone + Send + 'static,
        I: Send + 'static,
        R: Send + 'static,
    {
        IMap::new(self.clone(), f, items.into_iter(), false)
    }

    /// Waits until no greenlet of this pool is running (gevent's `Pool.join()`).
    pub fn join(&self) {
        let free = &self.inner.free;
        let size = self.inner.size;
        free.wait_until(None, |n| *n == size);
    }

    /// Like [`join`](Pool::join), waiting at most `timeout`; returns whether the pool emptied.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let free = &self.inner.free;
        let size = self.inner.size;
        free.wait_until(Some(timeout), |n| *n == size).1
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`].
pub struct IMap<F, It, R> {
    pool: Pool,
    f: F,
    items: It,
    ordered: bool,
    running: VecDeque<Greenlet<R>>,
    /// Finished greenlets, by their place in `running` (unordered mode).
    finished: crate::Queue<GreenletRef>,
}

impl<F, It, R> std::fmt::Debug for IMap<F, It, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl<F, I, It, R> IMap<F, It, R>
where
    It: Iterator<Item = I>,
    F: Fn(I) -> R + Clone + Send + 'static,
    I: Send + 'static,
    R: Send + 'static,
{
    fn new(pool: Pool, f: F, items: It, ordered: bool) -> Self {
        IMap {
            pool,
            f,
            items,
            ordered,
            running: VecDeque::new(),
            finished: crate::Queue::new(),
        }
    }

    /// Starts items until `size` are running; a spawn error is returned as the next value.
    fn fill(&mut self) -> Option<CoroError> {
        while self.running.len() < self.pool.size() {
            let Some(item) = self.items.next() else { break };
            let f = self.f.clone();
            match self.pool.spawn(move || f(item)) {
                Ok(g) => {
                    if !self.ordered {
                        let done = self.finished.clone();
                        g.link(move |me| done.put(me.clone()));
                    }
                    self.running.push_back(g);
                }
                Err(e) => return Some(e),
            }
        }
        None
    }
}

impl<F, I, It, R> Iterator for IMap<F, It, R>
where
    It: Iterator<Item = I>,
    F: Fn(I) -> R + Clone + Send + 'static,
    I: Send + 'static,
    R: Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if let Some(e) = self.fill() {
            return Some(Err(e));
        }
        if self.running.is_empty() {
            return None;
        }
        let at = if self.ordered {
            0
        } else {
            let done = self.finished.get();
            self.running.iter().position(|g| g.as_ref() == done)?
        };
        let g = self.running.remove(at)?;
        Some(g.into_value())
    }
}
