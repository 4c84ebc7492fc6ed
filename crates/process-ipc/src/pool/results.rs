//! What the Pool hands back: [`AsyncResult`] (one task's or one map's value, with done
//! callbacks) and [`IMap`] (a map's values one by one, in order or as they complete).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::error::PoolError;

type Callback<R> = Box<dyn FnOnce(&Result<R, PoolError>) + Send>;

enum SlotState<R> {
    /// Not done; the callbacks to run when it is.
    Pending(Vec<Callback<R>>),
    /// Done, and the value is lent to callbacks running now, outside the lock; callbacks added
    /// meanwhile wait in `late` and run next.
    Firing {
        ok: bool,
        late: Vec<Callback<R>>,
    },
    Ready(Result<R, PoolError>),
    /// The value was taken by a get; whether it was a success stays known.
    Taken {
        ok: bool,
    },
}

/// The shared result slot of one task (or one whole map).
pub(super) struct ResultSlot<R> {
    state: Mutex<SlotState<R>>,
    ready: Condvar,
    /// Threads blocked on `ready` (changed under `state`'s lock): `set` wakes only if any.
    waiters: AtomicUsize,
}

impl<R> ResultSlot<R> {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(ResultSlot {
            state: Mutex::new(SlotState::Pending(Vec::new())),
            ready: Condvar::new(),
            waiters: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes the slot (once: later calls are ignored) and runs its callbacks.
    pub(super) fn set(&self, value: Result<R, PoolError>) {
        let mut st = self.lock();
        let callbacks = match &mut *st {
            SlotState::Pending(callbacks) => std::mem::take(callbacks),
            _ => return,
        };
        if callbacks.is_empty() {
            *st = SlotState::Ready(value);
            self.wake();
            return;
        }
        *st = SlotState::Firing {
            ok: value.is_ok(),
            late: Vec::new(),
        };
        drop(st);
        self.fire(value, callbacks);
    }

    /// Runs `callbacks` (and any added meanwhile) with the value, then makes it ready.
    fn fire(&self, value: Result<R, PoolError>, mut callbacks: Vec<Callback<R>>) {
        loop {
            for callback in callbacks.drain(..) {
                // A panicking callback must not take the pool's result thread down with it.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| callback(&value)));
            }
            let mut st = self.lock();
            if let SlotState::Firing { late, .. } = &mut *st {
                if !late.is_empty() {
                    callbacks = std::mem::take(late);
                    continue;
                }
            }
            *st = SlotState::Ready(value);
            self.wake();
            return;
        }
    }

    fn wake(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.ready.notify_all();
        }
    }

    fn add_callback(&self, callback: Callback<R>) {
        let mut st = self.lock();
        match &mut *st {
            SlotState::Pending(callbacks) => callbacks.push(callback),
            SlotState::Firing { late, .. } => late.push(callback),
            SlotState::Ready(value) => {
                let ok = value.is_ok();
                let SlotState::Ready(value) = std::mem::replace(
                    &mut *st,
                    SlotState::Firing {
                        ok,
                        late: Vec::new(),
                    },
                ) else {
                    unreachable!("matched Ready above")
                };
                drop(st);
                self.fire(value, vec![callback]);
            }
            SlotState::Taken { .. } => {
                drop(st);
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    callback(&Err(PoolError::ResultTaken))
                }));
            }
        }
    }

    /// Waits until the value is at hand (not pending, no callback holding it), at most until
    /// `deadline`; false if the deadline came first.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut st = self.lock();
        while matches!(*st, SlotState::Pending(_) | SlotState::Firing { .. }) {
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // The deadline bounds the task, not its done-callbacks: a result whose callbacks
            // are running is ready (so `as_completed` yields it), and a get waits for them to
            // finish rather than time out on a finished task.
            let firing = matches!(*st, SlotState::Firing { .. });
            st = match deadline {
                _ if firing => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                None => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        self.waiters.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                    self.ready
                        .wait_timeout(st, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }

    fn take(&self) -> Result<R, PoolError> {
        let mut st = self.lock();
        let ok = match &*st {
            SlotState::Ready(r) => r.is_ok(),
            SlotState::Taken { ok } => *ok,
            SlotState::Pending(_) | SlotState::Firing { .. } => unreachable!("take after wait"),
        };
        match std::mem::replace(&mut *st, SlotState::Taken { ok }) {
            SlotState::Ready(r) => r,
            _ => Err(PoolError::ResultTaken),
        }
    }
}

/// `multiprocessing.pool.AsyncResult`: the pending result of `apply_async` / `map_async`.
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use process_ipc::{Pool, PoolError};
///
/// fn halve(x: u32) -> u32 {
///     assert!(x % 2 == 0, "{x} is odd");
///     x / 2
/// }
///
/// let pool = Pool::new(1).unwrap();
/// let result = pool.apply_async(halve, (3,)).unwrap();
/// // Python's `error_callback`: runs once, when the result is ready.
/// let (tx, rx) = mpsc::channel();
/// result.add_done_callback(move |r: &Result<u32, PoolError>| tx.send(r.is_ok()).unwrap());
/// assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(false));
/// assert!(matches!(result.get_timeout(Duration::from_secs(30)), Err(PoolError::Panicked { .. })));
/// assert_eq!(result.successful(), Some(false)); // still known after the error was taken
/// ```
pub struct AsyncResult<R> {
    slot: Arc<ResultSlot<R>>,
    /// Withdraws the task(s) if no worker holds them yet.
    cancel: Option<Canceller>,
}

/// Withdraws a result's tasks if no worker holds them yet; true if it did.
pub(super) type Canceller = Box<dyn Fn() -> bool + Send + Sync>;

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    pub(super) fn new(slot: Arc<ResultSlot<R>>, cancel: Option<Canceller>) -> Self {
        Self { slot, cancel }
    }

    /// `concurrent.futures.Future.cancel`: withdraws a task that has not started; it then
    /// fails with [`PoolError::Cancelled`] and this returns true. False once a worker holds
    /// the task (running it, or with it queued in the worker's channel, up to 32 per worker),
    /// and once it is done. A map's result is cancelled whole or not at all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use process_ipc::{Pool, PoolError};
    ///
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let running = pool.apply_async(nap, (300,)).unwrap();
    /// let queued = pool.apply_async(nap, (1,)).unwrap(); // waits: the only worker is busy
    /// assert!(queued.cancel());
    /// assert_eq!(queued.get_timeout(Duration::from_secs(30)), Err(PoolError::Cancelled));
    /// assert_eq!(running.get_timeout(Duration::from_secs(30)), Ok(300));
    /// assert!(!running.cancel(), "done");
    /// ```
    pub fn cancel(&self) -> bool {
        !self.ready() && self.cancel.as_ref().is_some_and(|cancel| cancel())
    }

    /// True once the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        !matches!(*self.slot.lock(), SlotState::Pending(_))
    }

    /// `Some(true)` if it finished without error, `Some(false)` if it failed, `None` while
    /// running (Python raises `ValueError` there). Unchanged after the value is taken.
    pub fn successful(&self) -> Option<bool> {
        match &*self.slot.lock() {
            SlotState::Pending(_) => None,
            SlotState::Firing { ok, .. } | SlotState::Taken { ok } => Some(*ok),
            SlotState::Ready(r) => Some(r.is_ok()),
        }
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        self.slot.wait_until(None);
    }

    /// Waits at most `timeout`; returns whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.slot.wait_until(Some(deadline)),
            None => self.slot.wait_until(None),
        }
    }

    /// Waits for and returns the task's value or its error.
    pub fn get(self) -> Result<R, PoolError> {
        self.wait();
        self.slot.take()
    }

    /// Like [`get`](Self::get), giving up after `timeout` with [`PoolError::Timeout`]; the
    /// task keeps running and a later call can still collect it. Once taken, the value is
    /// gone: a second call is [`PoolError::ResultTaken`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        if !self.wait_timeout(timeout) {
            return Err(PoolError::Timeout { timeout });
        }
        self.slot.take()
    }

    /// `concurrent.futures.Future.add_done_callback` (and Python's `callback` /
    /// `error_callback` of `apply_async`): `f` runs once, with the result, when it is ready; at
    /// once, on this thread, if it already is. Otherwise it runs on the pool's result thread:
    /// keep it short, and do not wait on the pool or on this result from inside it. If the
    /// value was already taken by a get, `f` sees [`PoolError::ResultTaken`].
    pub fn add_done_callback<F>(&self, f: F)
    where
        F: FnOnce(&Result<R, PoolError>) + Send + 'static,
    {
        self.slot.add_callback(Box::new(f));
    }
}

/// How a map's results are delivered.
pub(super) enum MapMode<R> {
    Collect(Arc<ResultSlot<Vec<R>>>),
    Ordered,
    Unordered(Sender<Result<R, PoolError>>),
}

enum ChunkSlot<R> {
    Pending,
    Ready(std::vec::IntoIter<R>),
    Failed(PoolError),
}

struct MapState<R> {
    chunks: Vec<ChunkSlot<R>>,
    chunk_size: usize,
    chunks_left: usize,
    mode: MapMode<R>,
}

/// One map's chunks as they complete.
pub(super) struct MapShared<R> {
    state: Mutex<MapState<R>>,
    filled: Condvar,
}

impl<R> MapShared<R> {
    pub(super) fn new(chunks: usize, chunk_size: usize, mode: MapMode<R>) -> Arc<Self> {
        let shared = Arc::new(MapShared {
            state: Mutex::new(MapState {
                chunks: (0..chunks).map(|_| ChunkSlot::Pending).collect(),
                chunk_size,
                chunks_left: chunks,
                mode,
            }),
            filled: Condvar::new(),
        });
        if chunks == 0 {
            if let MapMode::Collect(slot) = &shared.lock().mode {
                slot.set(Ok(Vec::new()));
            }
        }
        shared
    }

    fn lock(&self) -> MutexGuard<'_, MapState<R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn complete_chunk(
        &self,
        index: usize,
        len: usize,
        result: Result<Vec<R>, PoolError>,
    ) {
        let result = match result {
            Ok(values) if values.len() != len => Err(PoolError::Serde(format!(
                "chunk returned {} values for {len} items",
                values.len()
            ))),
            other => other,
        };
        let mut st = self.lock();
        match (&st.mode, result) {
            (MapMode::Unordered(tx), Ok(values)) => {
                for v in values {
                    let _ = tx.send(Ok(v));
                }
            }
            (MapMode::Unordered(tx), Err(e)) => {
                for _ in 0..len {
                    let _ = tx.send(Err(e.clone()));
                }
            }
            (_, Ok(values)) => st.chunks[index] = ChunkSlot::Ready(values.into_iter()),
            (_, Err(e)) => st.chunks[index] = ChunkSlot::Failed(e),
        }
        st.chunks_left -= 1;
        let mut collected = None;
        if st.chunks_left == 0 {
            if let MapMode::Collect(slot) = &st.mode {
                let slot = Arc::clone(slot);
                let chunks = std::mem::take(&mut st.chunks);
                let mut all = Vec::with_capacity(chunks.len() * st.chunk_size);
                let mut failed = None;
                for chunk in chunks {
                    match chunk {
                        ChunkSlot::Ready(values) => all.extend(values),
                        ChunkSlot::Failed(e) => {
                            failed = Some(e);
                            break;
                        }
                        ChunkSlot::Pending => unreachable!("every chunk completed"),
                    }
                }
                collected = Some((slot, failed.map_or(Ok(all), Err)));
            }
        }
        self.filled.notify_all();
        drop(st);
        // Outside the map's lock: the slot's callbacks may run now.
        if let Some((slot, value)) = collected {
            slot.set(value);
        }
    }
}

/// `Pool.imap` and `Pool.imap_unordered`: a map's results one by one, in input order (each as
/// soon as it and those before it are ready) or in completion order. A failed item (its
/// chunk's worker died, or it panicked) is an `Err` in its place; the iteration goes on with
/// the next items.
pub struct IMap<R> {
    inner: Inner<R>,
}

/// Python's `IMapUnorderedIterator`: the same type as [`IMap`], yielding in completion order.
pub type IMapUnordered<R> = IMap<R>;

enum Inner<R> {
    Ordered {
        shared: Arc<MapShared<R>>,
        next: usize,
        len: usize,
    },
    Unordered {
        rx: Receiver<Result<R, PoolError>>,
        left: usize,
    },
}

impl<R> std::fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &matches!(self.inner, Inner::Ordered { .. }))
            .field("left", &self.len())
            .finish()
    }
}

impl<R> IMap<R> {
    pub(super) fn ordered(shared: Arc<MapShared<R>>, len: usize) -> Self {
        Self {
            inner: Inner::Ordered {
                shared,
                next: 0,
                len,
            },
        }
    }

    pub(super) fn unordered(rx: Receiver<Result<R, PoolError>>, len: usize) -> Self {
        Self {
            inner: Inner::Unordered { rx, left: len },
        }
    }

    fn len(&self) -> usize {
        match &self.inner {
            Inner::Ordered { next, len, .. } => len - next,
            Inner::Unordered { left, .. } => *left,
        }
    }

    /// Like `next()`, waiting at most `timeout`: `Some(Err(Timeout { .. }))` if the next item is not
    /// ready in time (the position does not advance), `None` at the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, PoolError>> {
        self.next_until(Instant::now().checked_add(timeout), timeout)
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Option<Result<R, PoolError>> {
        match &mut self.inner {
            Inner::Unordered { rx, left } => {
                if *left == 0 {
                    return None;
                }
                let got = match deadline {
                    None => rx.recv().ok()?,
                    Some(at) => match rx.recv_deadline(at) {
                        Ok(v) => v,
                        Err(_) => return Some(Err(PoolError::Timeout { timeout })),
                    },
                };
                *left -= 1;
                Some(got)
            }
            Inner::Ordered { shared, next, len } => {
                if *next >= *len {
                    return None;
                }
                let mut st = shared.lock();
                loop {
                    let chunk = *next / st.chunk_size;
                    let got = match &mut st.chunks[chunk] {
                        ChunkSlot::Pending => None,
                        ChunkSlot::Ready(values) => values.next().map(Ok),
                        ChunkSlot::Failed(e) => Some(Err(e.clone())),
                    };
                    if let Some(v) = got {
                        *next += 1;
                        return Some(v);
                    }
                    st = match deadline {
                        None => shared.filled.wait(st).unwrap_or_else(|p| p.into_inner()),
                        Some(at) => {
                            let now = Instant::now();
                            if now >= at {
                                return Some(Err(PoolError::Timeout { timeout }));
                            }
                            shared
                                .filled
                                .wait_timeout(st, at - now)
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                    };
                }
            }
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None, Duration::ZERO)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len();
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_runs_once_whether_added_before_or_after_the_value() {
        let slot = ResultSlot::<u32>::new();
        let result = AsyncResult::new(Arc::clone(&slot), None);
        let (tx, rx) = crossbeam_channel::unbounded();
        let early = tx.clone();
        result.add_done_callback(move |r| early.send(("early", r.clone())).unwrap());
        assert!(rx.try_recv().is_err());
        slot.set(Ok(7));
        slot.set(Ok(8));
        assert_eq!(rx.try_recv(), Ok(("early", Ok(7))));
        result.add_done_callback(move |r| tx.send(("late", r.clone())).unwrap());
        assert_eq!(rx.try_recv(), Ok(("late", Ok(7))));
        assert!(rx.try_recv().is_err());
        assert_eq!(result.get_timeout(Duration::ZERO), Ok(7));
    }

    #[test]
    fn successful_stays_false_after_the_error_is_taken() {
        let slot = ResultSlot::<u32>::new();
        let result = AsyncResult::new(Arc::clone(&slot), None);
        assert_eq!(result.successful(), None);
        slot.set(Err(PoolError::Terminated));
        assert_eq!(result.successful(), Some(false));
        assert_eq!(
            result.get_timeout(Duration::ZERO),
            Err(PoolError::Terminated)
        );
        assert_eq!(result.successful(), Some(false));
        assert_eq!(
            result.get_timeout(Duration::ZERO),
            Err(PoolError::ResultTaken)
        );
        assert_eq!(result.successful(), Some(false));
    }
}
