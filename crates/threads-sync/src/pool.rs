//! [`ThreadPool`] and [`AsyncResult`]: Python's `multiprocessing.pool.ThreadPool`, on the `threadpool` crate.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::error::{PoolError, panic_message};
use crate::thread::Target;

/// A one-shot slot a worker fills with a task's outcome: one allocation per task, and no
/// wake-up call unless the caller is already waiting.
struct OneShot<R> {
    state: parking_lot::Mutex<Slot<R>>,
    filled: parking_lot::Condvar,
}

enum Slot<R> {
    Pending,
    Ready(Result<R, PoolError>),
    /// The value was taken; whether it was a success.
    Taken(bool),
}

impl<R> OneShot<R> {
    fn fill(&self, outcome: Result<R, PoolError>) {
        *self.state.lock() = Slot::Ready(outcome);
        self.filled.notify_all();
    }
}

/// Fills the slot with [`PoolError::WorkerLost`] if a job is dropped without running
/// (it cannot be once queued; this keeps `get` from waiting forever if that ever changes).
struct FillOnDrop<R> {
    slot: Option<Arc<OneShot<R>>>,
    task: u64,
}

impl<R> Drop for FillOnDrop<R> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.fill(Err(PoolError::WorkerLost { task: self.task }));
        }
    }
}

/// Python's `multiprocessing.pool.ThreadPool(n)`: `n` worker threads running submitted tasks.
///
/// A task that panics is an `Err` for that task only ([`PoolError::TaskPanicked`]); the pool
/// goes on. Dropping the pool lets queued tasks finish on the workers, then they exit.
///
/// ```python
/// with ThreadPool(2) as pool:
///     assert pool.map(square, range(4)) == [0, 1, 4, 9]
///     assert pool.apply_async(add, (2, 3)).get() == 5
/// ```
/// ```
/// use threads_sync::ThreadPool;
/// fn add(a: u64, b: u64) -> u64 { a + b }
/// let pool = ThreadPool::new(2)?;
/// assert_eq!(pool.map(|x: u64| x * x, 0..4)?, vec![0, 1, 4, 9]);
/// assert_eq!(pool.apply_async(add, (2, 3))?.get()?, 5);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), threads_sync::PoolError>(())
/// ```
pub struct ThreadPool {
    pool: threadpool::ThreadPool,
    threads: usize,
    closed: AtomicBool,
    next_task: AtomicU64,
}

impl ThreadPool {
    /// A pool of `threads` workers; [`PoolError::NoThreads`] for 0.
    pub fn new(threads: usize) -> Result<Self, PoolError> {
        Self::build(None, threads)
    }

    /// Like [`new`](ThreadPool::new), naming the worker threads `name`.
    pub fn named(name: impl Into<String>, threads: usize) -> Result<Self, PoolError> {
        Self::build(Some(name.into()), threads)
    }

    fn build(name: Option<String>, threads: usize) -> Result<Self, PoolError> {
        if threads == 0 {
            return Err(PoolError::NoThreads { threads });
        }
        let mut builder = threadpool::Builder::new().num_threads(threads);
        if let Some(name) = name {
            builder = builder.thread_name(name);
        }
        Ok(ThreadPool {
            pool: builder.build(),
            threads,
            closed: AtomicBool::new(false),
            next_task: AtomicU64::new(0),
        })
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The next task number; [`PoolError::Closed`] after `close`.
    fn next_task(&self) -> Result<u64, PoolError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        Ok(self.next_task.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `job` on a worker as task number `task`; its outcome (value or panic) goes to `report`.
    fn submit<R: Send + 'static>(
        &self,
        task: u64,
        job: impl FnOnce() -> R + Send + 'static,
        report: impl FnOnce(Result<R, PoolError>) + Send + 'static,
    ) {
        self.pool.execute(move || {
            let outcome =
                catch_unwind(AssertUnwindSafe(job)).map_err(|p| PoolError::TaskPanicked {
                    task,
                    message: panic_message(&*p),
                });
            report(outcome);
        });
    }

    /// Runs `target(args...)` on a worker and returns at once (Python: `apply_async(f, args)`).
    pub fn apply_async<Args, F>(
        &self,
        target: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Send + 'static,
    {
        let slot = Arc::new(OneShot {
            state: parking_lot::Mutex::new(Slot::Pending),
            filled: parking_lot::Condvar::new(),
        });
        let task = self.next_task()?;
        let mut guard = FillOnDrop {
            slot: Some(Arc::clone(&slot)),
            task,
        };
        self.submit(
            task,
            move || target.call(args),
            move |outcome| {
                if let Some(slot) = guard.slot.take() {
                    slot.fill(outcome);
                }
            },
        );
        Ok(AsyncResult { task, slot })
    }

    /// Runs `target(args...)` on a worker and waits for its value (Python: `apply(f, args)`).
    pub fn apply<Args, F>(&self, target: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: Target<Args>,
        Args: Send + 'static,
    {
        self.apply_async(target, args)?.get()
    }

    /// Applies `f` to every item, in chunks spread over the workers, and returns the results
    /// in input order; the first panicking chunk makes it an `Err` (Python: `map`).
    pub fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let items: Vec<T> = items.into_iter().collect();
        // Python's default: about four chunks per worker.
        let chunksize = items.len().div_ceil(4 * self.threads).max(1);
        self.map_chunked(f, items, chunksize)
    }

    /// Like [`map`](ThreadPool::map) with an explicit chunk size (0 counts as 1).
    pub fn map_chunked<T, R, F>(
        &self,
        f: F,
        items: Vec<T>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let total = items.len();
        let mut pending = Vec::new();
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<T> = items.by_ref().take(chunksize.max(1)).collect();
            if chunk.is_empty() {
                break;
            }
            let f = Arc::clone(&f);
            pending.push(self.apply_async(
                move |chunk: Vec<T>| chunk.into_iter().map(|x| f(x)).collect::<Vec<R>>(),
                (chunk,),
            )?);
        }
        let mut out = Vec::with_capacity(total);
        for result in pending {
            out.extend(result.get()?);
        }
        Ok(out)
    }

    /// Calls `target(args...)` for every argument tuple, on the workers, and returns the
    /// values in input order (Python: `starmap(f, [(a, b), ...])`).
    pub fn starmap<Args, F, I>(&self, target: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<Args> + Clone,
        Args: Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        let pending = items
            .into_iter()
            .map(|args| self.apply_async(target.clone(), args))
            .collect::<Result<Vec<_>, _>>()?;
        pending.into_iter().map(AsyncResult::get).collect()
    }

    /// Submits `f(item)` for every item and returns an iterator over the results in input
    /// order, each as soon as it (and those before it) are done (Python: `imap`).
    pub fn imap<T, R, F, I>(&self, f: F, items: I) -> Result<IMap<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let pending = items
            .into_iter()
            .map(|item| {
                let f = Arc::clone(&f);
                self.apply_async(move |x: T| f(x), (item,))
            })
            .collect::<Result<VecDeque<_>, _>>()?;
        Ok(IMap { pending })
    }

    /// Like [`imap`](ThreadPool::imap), yielding results in completion order (Python: `imap_unordered`).
    pub fn imap_unordered<T, R, F, I>(&self, f: F, items: I) -> Result<IMapUnordered<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut left = 0;
        for item in items {
            let f = Arc::clone(&f);
            let tx = tx.clone();
            let task = self.next_task()?;
            self.submit(
                task,
                move || f(item),
                move |outcome| {
                    let _ = tx.send(outcome);
                },
            );
            left += 1;
        }
        Ok(IMapUnordered { rx, left })
    }

    /// Refuses new tasks from now on (Python: `close`); queued tasks still run.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Waits for every submitted task to finish; [`PoolError::StillRunning`] before `close`.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_inner(None)
    }

    /// Like [`join`](ThreadPool::join) for at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_inner(Some(timeout))
    }

    fn join_inner(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        if !self.closed.load(Ordering::Acquire) {
            return Err(PoolError::StillRunning);
        }
        let Some(timeout) = timeout else {
            self.pool.join();
            return Ok(());
        };
        if self.pool.queued_count() + self.pool.active_count() == 0 {
            return Ok(());
        }
        // `threadpool` has no timed join: a helper thread joins and reports; after a timeout
        // it ends on its own once the pool drains.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let pool = self.pool.clone();
        std::thread::Builder::new()
            .name("ThreadPool-join".into())
            .spawn(move || {
                pool.join();
                let _ = tx.send(());
            })
            .map_err(|_| PoolError::Timeout { timeout })?;
        rx.recv_timeout(timeout)
            .map_err(|_| PoolError::Timeout { timeout })
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("queued", &self.pool.queued_count())
            .field("active", &self.pool.active_count())
            .finish()
    }
}

/// The pending outcome of [`ThreadPool::apply_async`] (Python: `AsyncResult`).
pub struct AsyncResult<R> {
    task: u64,
    slot: Arc<OneShot<R>>,
}

impl<R> AsyncResult<R> {
    /// The task's submission number within its pool.
    pub fn task(&self) -> u64 {
        self.task
    }

    /// Waits up to `timeout` (forever for `None`) for the outcome; returns whether it is in
    /// (or was already taken).
    fn poll(&self, timeout: Option<Duration>) -> bool {
        let mut state = self.slot.state.lock();
        let deadline = timeout.map(|t| Instant::now() + t);
        while matches!(*state, Slot::Pending) {
            match deadline {
                None => self.slot.filled.wait(&mut state),
                Some(deadline) => {
                    if self
                        .slot
                        .filled
                        .wait_until(&mut state, deadline)
                        .timed_out()
                    {
                        break;
                    }
                }
            }
        }
        !matches!(*state, Slot::Pending)
    }

    fn take(&self) -> Result<R, PoolError> {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, Slot::Pending) {
            Slot::Ready(outcome) => {
                *state = Slot::Taken(outcome.is_ok());
                outcome
            }
            Slot::Taken(ok) => {
                *state = Slot::Taken(ok);
                Err(PoolError::AlreadyTaken)
            }
            Slot::Pending => Err(PoolError::NotReady),
        }
    }

    /// Waits for the task and returns its value, or [`PoolError::TaskPanicked`].
    pub fn get(self) -> Result<R, PoolError> {
        self.poll(None);
        self.take()
    }

    /// Like [`get`](AsyncResult::get) for at most `timeout`; after [`PoolError::Timeout`] it can
    /// be asked again, after a value was returned it is [`PoolError::AlreadyTaken`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        if self.poll(Some(timeout)) {
            self.take()
        } else {
            Err(PoolError::Timeout { timeout })
        }
    }

    /// Whether the task has finished.
    pub fn ready(&self) -> bool {
        self.poll(Some(Duration::ZERO))
    }

    /// Whether the task finished without panicking; [`PoolError::NotReady`] while it runs.
    pub fn successful(&self) -> Result<bool, PoolError> {
        match &*self.slot.state.lock() {
            Slot::Pending => Err(PoolError::NotReady),
            Slot::Ready(outcome) => Ok(outcome.is_ok()),
            Slot::Taken(ok) => Ok(*ok),
        }
    }

    /// Waits until the task has finished.
    pub fn wait(&self) {
        self.poll(None);
    }

    /// Waits at most `timeout` for the task; returns whether it has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.poll(Some(timeout))
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("task", &self.task)
            .field("ready", &self.ready())
            .finish()
    }
}

/// Results of [`ThreadPool::imap`], in input order.
#[derive(Debug)]
pub struct IMap<R> {
    pending: VecDeque<AsyncResult<R>>,
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.pending.pop_front().map(AsyncResult::get)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

impl<R> ExactSizeIterator for IMap<R> {}

/// Results of [`ThreadPool::imap_unordered`], in completion order.
#[derive(Debug)]
pub struct IMapUnordered<R> {
    rx: Receiver<Result<R, PoolError>>,
    left: usize,
}

impl<R> Iterator for IMapUnordered<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Every task reports exactly once (panics are caught), so this receives `left` times.
        Some(
            self.rx
                .recv()
                .unwrap_or(Err(PoolError::WorkerLost { task: u64::MAX })),
        )
    }
}
