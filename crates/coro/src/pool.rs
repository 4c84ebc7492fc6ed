//! `Pool(n)`: spawn greenlets with at most `n` of them running at once.

use std::collections::{HashMap, VecDeque};
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
    slots: Arc<Signal<Slots>>,
}

/// Free slots, and the greenlets holding the others (by id).
struct Slots {
    free: usize,
    members: HashMap<u64, GreenletRef>,
}

impl Slots {
    /// Frees the slot of greenlet `id` if it holds one; whether it did.
    fn discard(&mut self, id: u64) -> bool {
        if self.members.remove(&id).is_none() {
            return false;
        }
        self.free += 1;
        true
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .field("free", &self.free_count())
            .field("members", &self.inner.slots.lock().members.len())
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
                slots: Arc::new(Signal::new(Slots {
                    free: size,
                    members: HashMap::new(),
                })),
            }),
        })
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Slots free right now (gevent's `free_count()`).
    pub fn free_count(&self) -> usize {
        self.inner.slots.lock().free
    }

    /// Waits until a slot is free, and returns how many are (gevent's `wait_available()`).
    pub fn wait_available(&self) -> usize {
        self.inner.slots.wait_until(None, |s| s.free > 0).0.free
    }

    /// Like [`wait_available`](Pool::wait_available), waiting at most
    /// `timeout`; 0 if no slot freed in time (gevent's `wait_available(timeout)`).
    pub fn wait_available_timeout(&self, timeout: Duration) -> usize {
        self.inner
            .slots
            .wait_until(Some(timeout), |s| s.free > 0)
            .0
            .free
    }

    /// Adds a greenlet spawned elsewhere, waiting for a free slot (gevent's
    /// `Pool.add`); it holds the slot until it ends or is
    /// [`discard`](Pool::discard)ed. Adding a member again does nothing; a
    /// greenlet that already ended takes its slot and gives it back at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = coro::Pool::new(1)?;
    /// let gate = coro::Event::new();
    /// let g = { let gate = gate.clone(); coro::spawn(move || gate.wait())? };
    /// pool.add(&g.as_ref());
    /// assert_eq!(pool.free_count(), 0);
    /// assert!(pool.discard(&g.as_ref())); // the slot is free again, g runs on
    /// assert_eq!(pool.free_count(), 1);
    /// gate.set();
    /// assert!(g.join_timeout(Duration::from_secs(5)));
    /// # Ok::<(), coro::CoroError>(())
    /// ```
    pub fn add(&self, greenlet: &GreenletRef) {
        let _ = self.add_until(greenlet, None);
    }

    /// Like [`add`](Pool::add), waiting at most `timeout` for a slot.
    ///
    /// # Errors
    /// [`CoroError::Timeout`] if no slot freed in time; the greenlet is not added.
    pub fn add_timeout(&self, greenlet: &GreenletRef, timeout: Duration) -> Result<()> {
        self.add_until(greenlet, Some(timeout))
    }

    fn add_until(&self, greenlet: &GreenletRef, timeout: Option<Duration>) -> Result<()> {
        let id = greenlet.id();
        {
            let slots = &self.inner.slots;
            let (mut s, got) =
                slots.wait_until(timeout, |s| s.members.contains_key(&id) || s.free > 0);
            if s.members.contains_key(&id) {
                return Ok(());
            }
            if !got {
                return Err(CoroError::Timeout {
                    what: format!("Pool({}) add waiting for a free slot", self.size()),
                    timeout: timeout.unwrap_or_default(),
                });
            }
            s.free -= 1;
            s.members.insert(id, greenlet.clone());
        }
        let slots = self.inner.slots.clone();
        // At once if it already ended.
        greenlet.on_end(Box::new(move |id| release(&slots, id)));
        Ok(())
    }

    /// Takes a greenlet out of the pool, freeing its slot; it runs on
    /// (gevent's `Pool.discard`). Whether it was a member.
    pub fn discard(&self, greenlet: &GreenletRef) -> bool {
        let mut s = self.inner.slots.lock();
        let was = s.discard(greenlet.id());
        if was {
            s.notify_all();
        }
        was
    }

    /// The greenlets holding a slot now.
    pub fn greenlets(&self) -> Vec<GreenletRef> {
        self.inner.slots.lock().members.values().cloned().collect()
    }

    /// Kills every greenlet of the pool and waits until they stopped and
    /// gave back their slots (gevent's `Pool.kill()`).
    pub fn kill(&self) {
        self.kill_until(None);
    }

    /// Like [`kill`](Pool::kill), waiting at most `timeout`; whether all stopped.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.kill_until(Some(timeout))
    }

    fn kill_until(&self, timeout: Option<Duration>) -> bool {
        let members = self.greenlets();
        members.iter().for_each(GreenletRef::kill_nowait);
        let ids: Vec<u64> = members.iter().map(GreenletRef::id).collect();
        let gone = |s: &Slots| ids.iter().all(|id| !s.members.contains_key(id));
        self.inner.slots.wait_until(timeout, gone).1
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
        let slots = self.inner.slots.clone();
        // The slot is released by the greenlet's end (or by a failed spawn
        // dropping it), unless it was discarded first.
        let on_finish = Box::new(move |id| release(&slots, id));
        // A member before it can end, so that its end finds it.
        let mut join = |g: &GreenletRef| {
            self.inner.slots.lock().members.insert(g.id(), g.clone());
        };
        builder.spawn_with(None, Some(on_finish), Some(&mut join), f)
    }

    /// Takes a free slot, waiting at most `timeout` (`None`: as long as it takes).
    fn acquire(&self, timeout: Option<Duration>) -> bool {
        let slots = &self.inner.slots;
        let (mut s, got) = slots.wait_until(timeout, |s| s.free > 0);
        if got {
            s.free -= 1;
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
        let size = self.inner.size;
        self.inner.slots.wait_until(None, |s| s.free == size);
    }

    /// Like [`join`](Pool::join), waiting at most `timeout`; returns whether the pool emptied.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let size = self.inner.size;
        self.inner
            .slots
            .wait_until(Some(timeout), |s| s.free == size)
            .1
    }
}

/// Frees greenlet `id`'s slot if it still holds one, waking the waiters.
fn release(slots: &Signal<Slots>, id: u64) {
    let mut s = slots.lock();
    if s.discard(id) {
        s.notify_all();
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
    finished: crate::queue::Queue<GreenletRef>,
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
            finished: crate::queue::Queue::new(),
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
                        g.link(move |me| {
                            // This queue is never shut down: a put always succeeds.
                            let _ = done.put(me.clone());
                        });
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
            let done = self.finished.get().ok()?;
            self.running.iter().position(|g| g.as_ref() == done)?
        };
        let g = self.running.remove(at)?;
        Some(g.into_value())
    }
}
