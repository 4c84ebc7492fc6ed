//! [`JoinableQueue`]: a [`Queue`] that counts unfinished work.

use std::sync::Arc;
use std::time::Duration;

use super::Queue;
use crate::error::{CoroError, GetError, PutError, Result, ShutDown};
use crate::wait::Signal;

/// A [`Queue`] that counts unfinished work (gevent's `queue.JoinableQueue`).
///
/// Each `put` adds one unfinished task; a consumer calls
/// [`task_done`](JoinableQueue::task_done) when it has finished one, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// ```
/// use std::time::Duration;
/// let q = coro::JoinableQueue::new();
/// let worker = {
///     let q = q.clone();
///     coro::spawn(move || {
///         for _ in 0..3 {
///             let _job: u32 = q.get().unwrap();
///             q.task_done().unwrap();
///         }
///     })?
/// };
/// (0..3).for_each(|i| q.put(i).unwrap());
/// assert!(q.join_timeout(Duration::from_secs(5)));
/// assert!(q.task_done().is_err()); // more task_done than puts
/// worker.join();
/// # Ok::<(), coro::CoroError>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    unfinished: Arc<Signal<usize>>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
            unfinished: self.unfinished.clone(),
        }
    }
}

impl<T> Default for JoinableQueue<T> {
    fn default() -> Self {
        Self::from_queue(Queue::new())
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.maxsize())
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A joinable queue holding at most `maxsize` items.
    ///
    /// # Errors
    /// [`CoroError::InvalidArgument`] if `maxsize` is 0.
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Queue::bounded(maxsize).map(Self::from_queue)
    }

    fn from_queue(queue: Queue<T>) -> Self {
        JoinableQueue {
            queue,
            unfinished: Arc::new(Signal::new(0)),
        }
    }

    /// The bound, `None` when unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        self.queue.maxsize()
    }

    /// Items in the queue now.
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Whether the queue is full now.
    pub fn full(&self) -> bool {
        self.queue.full()
    }

    /// Tasks put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        *self.unfinished.lock()
    }

    fn add_task(&self) {
        *self.unfinished.lock() += 1;
    }

    /// Counts `n` tasks done (a put that failed, or items an immediate shutdown dropped).
    fn undo_tasks(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut left = self.unfinished.lock();
        *left = left.saturating_sub(n);
        if *left == 0 {
            left.notify_all();
        }
    }

    fn undo_task(&self) {
        self.undo_tasks(1);
    }

    /// Puts `item` (one more unfinished task), waiting while the queue is full.
    ///
    /// # Errors
    /// [`ShutDown`] with the item once the queue is shut down.
    pub fn put(&self, item: T) -> Result<(), ShutDown<T>> {
        self.add_task();
        self.queue.put(item).inspect_err(|_| self.undo_task())
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutError`] with the item.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.add_task();
        self.queue
            .put_timeout(item, timeout)
            .inspect_err(|_| self.undo_task())
    }

    /// Puts `item` only if there is room now.
    ///
    /// # Errors
    /// [`PutError`] with the item.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.add_task();
        self.queue
            .put_nowait(item)
            .inspect_err(|_| self.undo_task())
    }

    /// Takes the oldest item, waiting while the queue is empty.
    ///
    /// # Errors
    /// [`ShutDown`] once the queue is shut down and empty.
    pub fn get(&self) -> Result<T, ShutDown> {
        self.queue.get()
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetError`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.queue.get_timeout(timeout)
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// [`GetError`].
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.queue.get_nowait()
    }

    /// A copy of the oldest item, left in the queue (see [`Queue::peek`]).
    ///
    /// # Errors
    /// [`ShutDown`] once the queue is shut down and empty.
    pub fn peek(&self) -> Result<T, ShutDown>
    where
        T: Clone,
    {
        self.queue.peek()
    }

    /// Tests only: how many gets and peeks are parked waiting for an item now.
    #[doc(hidden)]
    pub fn __getters_waiting(&self) -> usize {
        self.queue.__getters_waiting()
    }

    /// Like [`peek`](Self::peek), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetError`].
    pub fn peek_timeout(&self, timeout: Duration) -> Result<T, GetError>
    where
        T: Clone,
    {
        self.queue.peek_timeout(timeout)
    }

    /// A copy of the oldest item if there is one now.
    ///
    /// # Errors
    /// [`GetError`].
    pub fn peek_nowait(&self) -> Result<T, GetError>
    where
        T: Clone,
    {
        self.queue.peek_nowait()
    }

    /// Shuts the queue down as [`Queue::shutdown`] does; with `immediate`, the items it
    /// drops are counted done, so [`join`](Self::join) returns once every item taken
    /// before was marked done (Python 3.13's `shutdown(immediate=True)`).
    ///
    /// ```
    /// let q = coro::JoinableQueue::new();
    /// q.put("a").unwrap();
    /// q.put("b").unwrap();
    /// assert_eq!(q.get(), Ok("a"));
    /// q.shutdown(true); // "b" is dropped and counted done
    /// assert_eq!(q.unfinished_tasks(), 1); // "a" was taken, not yet done
    /// q.task_done().unwrap();
    /// q.join();
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        let dropped = self.queue.shut(immediate);
        self.undo_tasks(dropped);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.queue.is_shutdown()
    }

    /// Marks one task finished (Python's `task_done`).
    ///
    /// # Errors
    /// [`CoroError::InvalidArgument`] if called more times than items were put
    /// (Python's `ValueError: task_done() called too many times`).
    pub fn task_done(&self) -> Result<()> {
        let mut n = self.unfinished.lock();
        if *n == 0 {
            return Err(CoroError::InvalidArgument(
                "task_done() called more times than items were put".into(),
            ));
        }
        *n -= 1;
        if *n == 0 {
            n.notify_all();
        }
        Ok(())
    }

    /// Waits until every task put has been marked done.
    pub fn join(&self) {
        self.unfinished.wait_until(None, |n| *n == 0);
    }

    /// Like [`join`](Self::join), waiting at most `timeout`; whether all were done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.unfinished.wait_until(Some(timeout), |n| *n == 0).1
    }
}
