//! FIFO queues for coroutines and threads: `Queue` (gevent's `queue.Queue`) and `JoinableQueue`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{CoroError, Empty, Full, Result};
use crate::timer;
use crate::wait::{Guard, Signal};

/// Waiters for an item.
const GETTERS: usize = 0;
/// Waiters for room.
const PUTTERS: usize = 1;

/// A FIFO queue shared by cloning (gevent's `queue.Queue(maxsize)`).
///
/// `put` waits while the queue is full and `get` while it is empty: inside a
/// coroutine they yield, in a thread they block. Each has a `_timeout` and a
/// `_nowait` form; a failed put hands the item back in [`Full`].
///
/// ```
/// use std::time::Duration;
/// let q = coro::Queue::bounded(1)?;
/// q.put_nowait("a").unwrap();
/// assert!(q.full());
/// assert_eq!(q.put_nowait("b").unwrap_err().into_inner(), "b");
/// assert_eq!(q.get_timeout(Duration::from_secs(1)), Ok("a"));
/// assert_eq!(q.get_nowait(), Err(coro::Empty));
/// assert_eq!((q.qsize(), q.empty(), q.maxsize()), (0, true, Some(1)));
/// # Ok::<(), coro::CoroError>(())
/// ```
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    items: Signal<VecDeque<T>>,
    maxsize: Option<usize>,
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
                items: Signal::new(VecDeque::new()),
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
        self.inner.items.lock().len()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.inner.items.lock().is_empty()
    }

    /// Whether the queue is full now (never, when unbounded).
    pub fn full(&self) -> bool {
        self.has_no_room(&self.inner.items.lock())
    }

    fn has_no_room(&self, items: &VecDeque<T>) -> bool {
        self.inner.maxsize.is_some_and(|max| items.len() >= max)
    }

    fn push(mut items: Guard<'_, VecDeque<T>>, item: T) {
        items.push_back(item);
        items.notify_one_on(GETTERS);
    }

    fn pop(mut items: Guard<'_, VecDeque<T>>) -> Option<T> {
        let item = items.pop_front()?;
        items.notify_one_on(PUTTERS);
        Some(item)
    }

    fn put_until(&self, item: T, deadline: Option<std::time::Instant>) -> Result<(), Full<T>> {
        let signal = &self.inner.items;
        let (items, room) =
            signal.wait_locked(PUTTERS, signal.lock(), deadline, |q| !self.has_no_room(q));
        if !room {
            return Err(Full::new(item));
        }
        Self::push(items, item);
        Ok(())
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) {
        // An unbounded wait only ends with room.
        let _ = self.put_until(item, None);
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Full`] with the item if the queue stayed full.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.put_until(item, Some(timer::deadline_after(timeout)))
    }

    /// Puts `item` only if there is room now.
    ///
    /// # Errors
    /// [`Full`] with the item.
    pub fn put_nowait(&self, item: T) -> Result<(), Full<T>> {
        let items = self.inner.items.lock();
        if self.has_no_room(&items) {
            return Err(Full::new(item));
        }
        Self::push(items, item);
        Ok(())
    }

    fn get_until(&self, deadline: Option<std::time::Instant>) -> Result<T, Empty> {
        let signal = &self.inner.items;
        let (items, _) = signal.wait_locked(GETTERS, signal.lock(), deadline, |q| !q.is_empty());
        Self::pop(items).ok_or(Empty)
    }

    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        loop {
            if let Ok(item) = self.get_until(None) {
                return item;
            }
        }
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Empty`] if it stayed empty.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.get_until(Some(timer::deadline_after(timeout)))
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// [`Empty`].
    pub fn get_nowait(&self) -> Result<T, Empty> {
        Self::pop(self.inner.items.lock()).ok_or(Empty)
    }
}

impl<T: Clone> Queue<T> {
    fn peek_until(&self, deadline: Option<std::time::Instant>) -> Result<T, Empty> {
        let signal = &self.inner.items;
        let (mut items, _) =
            signal.wait_locked(GETTERS, signal.lock(), deadline, |q| !q.is_empty());
        let item = items.front().cloned().ok_or(Empty)?;
        // A peek leaves the item: the wake-up it may have taken goes on to
        // the next waiter (a getter must not sleep beside an item).
        items.notify_one_on(GETTERS);
        Ok(item)
    }

    /// A copy of the oldest item, left in the queue; waits while it is empty
    /// (gevent's `Queue.peek()`).
    ///
    /// ```
    /// let q = coro::Queue::new();
    /// q.put("hi");
    /// assert_eq!(q.peek(), "hi");
    /// assert_eq!(q.get(), "hi"); // still there for get
    /// ```
    pub fn peek(&self) -> T {
        loop {
            if let Ok(item) = self.peek_until(None) {
                return item;
            }
        }
    }

    /// Like [`peek`](Self::peek), waiting at most `timeout` (gevent's `peek(timeout=t)`).
    ///
    /// # Errors
    /// [`Empty`] if it stayed empty.
    pub fn peek_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.peek_until(Some(timer::deadline_after(timeout)))
    }

    /// A copy of the oldest item if there is one now (gevent's `peek_nowait()`).
    ///
    /// # Errors
    /// [`Empty`].
    pub fn peek_nowait(&self) -> Result<T, Empty> {
        self.inner.items.lock().front().cloned().ok_or(Empty)
    }
}

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
///             let _job: u32 = q.get();
///             q.task_done().unwrap();
///         }
///     })?
/// };
/// (0..3).for_each(|i| q.put(i));
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

    fn undo_task(&self) {
        let mut n = self.unfinished.lock();
        *n -= 1;
        if *n == 0 {
            n.notify_all();
        }
    }

    /// Puts `item` (one more unfinished task), waiting while the queue is full.
    pub fn put(&self, item: T) {
        self.add_task();
        self.queue.put(item);
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Full`] with the item.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.add_task();
        self.queue
            .put_timeout(item, timeout)
            .inspect_err(|_| self.undo_task())
    }

    /// Puts `item` only if there is room now.
    ///
    /// # Errors
    /// [`Full`] with the item.
    pub fn put_nowait(&self, item: T) -> Result<(), Full<T>> {
        self.add_task();
        self.queue
            .put_nowait(item)
            .inspect_err(|_| self.undo_task())
    }

    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        self.queue.get()
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Empty`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.queue.get_timeout(timeout)
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// [`Empty`].
    pub fn get_nowait(&self) -> Result<T, Empty> {
        self.queue.get_nowait()
    }

    /// A copy of the oldest item, left in the queue (see [`Queue::peek`]).
    pub fn peek(&self) -> T
    where
        T: Clone,
    {
        self.queue.peek()
    }

    /// Like [`peek`](Self::peek), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Empty`].
    pub fn peek_timeout(&self, timeout: Duration) -> Result<T, Empty>
    where
        T: Clone,
    {
        self.queue.peek_timeout(timeout)
    }

    /// A copy of the oldest item if there is one now.
    ///
    /// # Errors
    /// [`Empty`].
    pub fn peek_nowait(&self) -> Result<T, Empty>
    where
        T: Clone,
    {
        self.queue.peek_nowait()
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
