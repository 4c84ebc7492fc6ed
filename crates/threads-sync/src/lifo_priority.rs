//! [`LifoQueue`] and [`PriorityQueue`]: Python's `queue.LifoQueue` and `queue.PriorityQueue`,
//! one lock-and-condvar queue over a stack or a heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Empty, Full, GetError, MaxsizeError, PutError, ShutDown, TaskDoneError};

/// The order a queue hands items out in.
trait Store: Default {
    type Item;
    fn push(&mut self, item: Self::Item);
    fn pop(&mut self) -> Option<Self::Item>;
    fn len(&self) -> usize;
}

impl<T> Store for Vec<T> {
    type Item = T;
    fn push(&mut self, item: T) {
        Vec::push(self, item);
    }
    fn pop(&mut self) -> Option<T> {
        Vec::pop(self)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// A min-heap: the smallest item first, as Python's `heapq`.
impl<T: Ord> Store for BinaryHeap<Reverse<T>> {
    type Item = T;
    fn push(&mut self, item: T) {
        BinaryHeap::push(self, Reverse(item));
    }
    fn pop(&mut self) -> Option<T> {
        BinaryHeap::pop(self).map(|Reverse(item)| item)
    }
    fn len(&self) -> usize {
        BinaryHeap::len(self)
    }
}

struct State<S> {
    items: S,
    unfinished: usize,
    /// Set by `shutdown` (Python 3.13's `is_shutdown`).
    shut_down: bool,
}

struct Inner<S> {
    state: parking_lot::Mutex<State<S>>,
    not_empty: parking_lot::Condvar,
    not_full: parking_lot::Condvar,
    all_done: parking_lot::Condvar,
    /// 0: unbounded.
    maxsize: usize,
}

/// The shared body of both queues: Python's `queue.Queue` logic over any [`Store`].
struct Blocking<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Blocking<S> {
    fn clone(&self) -> Self {
        Blocking {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> Blocking<S> {
    fn with_maxsize(maxsize: usize) -> Self {
        Blocking {
            inner: Arc::new(Inner {
                state: parking_lot::Mutex::new(State {
                    items: S::default(),
                    unfinished: 0,
                    shut_down: false,
                }),
                not_empty: parking_lot::Condvar::new(),
                not_full: parking_lot::Condvar::new(),
                all_done: parking_lot::Condvar::new(),
                maxsize,
            }),
        }
    }

    fn bounded(maxsize: usize) -> Result<Self, MaxsizeError> {
        if maxsize == 0 {
            return Err(MaxsizeError { maxsize });
        }
        Ok(Self::with_maxsize(maxsize))
    }

    fn is_full(&self, state: &State<S>) -> bool {
        self.inner.maxsize > 0 && state.items.len() >= self.inner.maxsize
    }

    /// Puts `item`, waiting for room until `deadline` (`None`: forever).
    fn put_until(&self, item: S::Item, deadline: Option<Instant>) -> Result<(), PutError<S::Item>> {
        let mut state = self.inner.state.lock();
        loop {
            if state.shut_down {
                return Err(PutError::ShutDown(ShutDown { item }));
            }
            if !self.is_full(&state) {
                break;
            }
            let timed_out = match deadline {
                None => {
                    self.inner.not_full.wait(&mut state);
                    false
                }
                Some(deadline) => self
                    .inner
                    .not_full
                    .wait_until(&mut state, deadline)
                    .timed_out(),
            };
            if timed_out && !state.shut_down && self.is_full(&state) {
                return Err(PutError::Full(Full {
                    item,
                    maxsize: self.inner.maxsize,
                }));
            }
        }
        state.items.push(item);
        state.unfinished += 1;
        drop(state);
        self.inner.not_empty.notify_one();
        Ok(())
    }

    /// Takes the next item, waiting until `deadline` (`None`: forever); once shut down, what
    /// is left, then [`GetError::ShutDown`].
    fn get_until(&self, deadline: Option<Instant>) -> Result<S::Item, GetError> {
        let mut state = self.inner.state.lock();
        loop {
            if let Some(item) = state.items.pop() {
                drop(state);
                self.inner.not_full.notify_one();
                return Ok(item);
            }
            if state.shut_down {
                return Err(GetError::ShutDown(ShutDown::default()));
            }
            match deadline {
                None => self.inner.not_empty.wait(&mut state),
                Some(deadline) => {
                    if self
                        .inner
                        .not_empty
                        .wait_until(&mut state, deadline)
                        .timed_out()
                        && state.items.len() == 0
                        && !state.shut_down
                    {
                        return Err(GetError::Empty(Empty));
                    }
                }
            }
        }
    }

    /// Python 3.13's `shutdown(immediate)`: later puts fail; gets take what is left, then
    /// fail; `immediate` drops what is left and counts it done. Every waiter wakes.
    fn shutdown(&self, immediate: bool) {
        let mut state = self.inner.state.lock();
        state.shut_down = true;
        let mut dropped = Vec::new();
        if immediate {
            while let Some(item) = state.items.pop() {
                dropped.push(item);
                state.unfinished = state.unfinished.saturating_sub(1);
            }
            self.inner.all_done.notify_all();
        }
        drop(state);
        self.inner.not_empty.notify_all();
        self.inner.not_full.notify_all();
        // The items' drops run outside the lock (a drop may use the queue).
        drop(dropped);
    }

    fn is_shutdown(&self) -> bool {
        self.inner.state.lock().shut_down
    }

    fn qsize(&self) -> usize {
        self.inner.state.lock().items.len()
    }

    fn full(&self) -> bool {
        self.is_full(&self.inner.state.lock())
    }

    fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut state = self.inner.state.lock();
        if state.unfinished == 0 {
            return Err(TaskDoneError::TooManyCalls);
        }
        state.unfinished -= 1;
        if state.unfinished == 0 {
            self.inner.all_done.notify_all();
        }
        Ok(())
    }

    fn join_until(
        &self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<(), TaskDoneError> {
        let mut state = self.inner.state.lock();
        while state.unfinished > 0 {
            match deadline {
                None => self.inner.all_done.wait(&mut state),
                Some(deadline) => {
                    if self
                        .inner
                        .all_done
                        .wait_until(&mut state, deadline)
                        .timed_out()
                        && state.unfinished > 0
                    {
                        return Err(TaskDoneError::Timeout {
                            unfinished: state.unfinished,
                            timeout,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn deadline(timeout: Duration) -> Option<Instant> {
    // A timeout too long to represent waits forever.
    Instant::now().checked_add(timeout)
}

/// The methods both queues share, with the one documentation.
macro_rules! queue_api {
    ($queue:ident, [$($bound:tt)*], $order:literal) => {
        impl<T: $($bound)*> $queue<T> {
            /// An unbounded queue.
            pub fn new() -> Self {
                $queue(Blocking::with_maxsize(0))
            }

            /// A queue holding at most `maxsize` items; 0 is [`MaxsizeError`].
            pub fn bounded(maxsize: usize) -> Result<Self, MaxsizeError> {
                Blocking::bounded(maxsize).map($queue)
            }

            /// The bound given at creation; `None` when unbounded.
            pub fn maxsize(&self) -> Option<usize> {
                (self.0.inner.maxsize > 0).then_some(self.0.inner.maxsize)
            }

            /// Items in the queue now.
            pub fn qsize(&self) -> usize {
                self.0.qsize()
            }

            /// Whether the queue is empty now.
            pub fn empty(&self) -> bool {
                self.0.qsize() == 0
            }

            /// Whether the queue is full now (never, when unbounded).
            pub fn full(&self) -> bool {
                self.0.full()
            }

            /// Puts `item`, waiting while the queue is full; [`ShutDown`] hands it back once
            /// the queue is shut down (also to a put that was waiting).
            pub fn put(&self, item: T) -> Result<(), ShutDown<T>> {
                match self.0.put_until(item, None) {
                    Ok(()) => Ok(()),
                    Err(PutError::ShutDown(shut)) => Err(shut),
                    Err(PutError::Full(_)) => unreachable!("an untimed put waits until there is room"),
                }
            }

            /// Puts `item`, waiting at most `timeout` for room; [`PutError`] hands it back.
            pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
                match deadline(timeout) {
                    Some(deadline) => self.0.put_until(item, Some(deadline)),
                    None => self.0.put_until(item, None),
                }
            }

            /// Puts `item` only if there is room now.
            pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
                self.0.put_until(item, Some(Instant::now()))
            }

            #[doc = concat!("Takes the ", $order, " item, waiting while the queue is empty; [`ShutDown`] once it is shut down and empty.")]
            pub fn get(&self) -> Result<T, ShutDown> {
                match self.0.get_until(None) {
                    Ok(item) => Ok(item),
                    Err(GetError::ShutDown(shut)) => Err(shut),
                    Err(GetError::Empty(_)) => unreachable!("an untimed get waits until there is an item"),
                }
            }

            #[doc = concat!("Takes the ", $order, " item, waiting at most `timeout`; [`GetError::Empty`] if none came.")]
            pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
                self.0.get_until(deadline(timeout))
            }

            #[doc = concat!("Takes the ", $order, " item only if there is one now.")]
            pub fn get_nowait(&self) -> Result<T, GetError> {
                self.0.get_until(Some(Instant::now()))
            }

            /// Shuts the queue down (Python 3.13: `shutdown(immediate)`): from now on `put`
            /// fails with [`ShutDown`] (handing the item back) and `get` takes what is left,
            /// then fails with [`ShutDown`]. With `immediate`, what is left is dropped and
            /// counted done, so `join` returns. Every blocked `get` and `put` wakes.
            pub fn shutdown(&self, immediate: bool) {
                self.0.shutdown(immediate)
            }

            /// Whether [`shutdown`](Self::shutdown) was called.
            pub fn is_shutdown(&self) -> bool {
                self.0.is_shutdown()
            }

            /// Marks one item taken by `get` as processed; [`TaskDoneError::TooManyCalls`] if
            /// every item put is already marked.
            pub fn task_done(&self) -> Result<(), TaskDoneError> {
                self.0.task_done()
            }

            /// Items put and not yet marked done.
            pub fn unfinished_tasks(&self) -> usize {
                self.0.inner.state.lock().unfinished
            }

            /// Waits until every item put has been marked done.
            pub fn join(&self) {
                let _ = self.0.join_until(None, Duration::MAX);
            }

            /// Like [`join`](Self::join) for at most `timeout`.
            pub fn join_timeout(&self, timeout: Duration) -> Result<(), TaskDoneError> {
                self.0.join_until(deadline(timeout), timeout)
            }
        }

        impl<T: $($bound)*> Default for $queue<T> {
            fn default() -> Self {
                $queue::new()
            }
        }

        impl<T> Clone for $queue<T> {
            fn clone(&self) -> Self {
                $queue(self.0.clone())
            }
        }

        impl<T> fmt::Debug for $queue<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($queue))
                    .field("maxsize", &self.0.inner.maxsize)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Python's `queue.LifoQueue`: the last item put is the first out (a stack), with the
/// same calls as [`Queue`](crate::Queue). Cloning gives another handle to the same queue.
///
/// ```
/// let q = threads_sync::LifoQueue::new();
/// for x in [1, 2, 3] { q.put(x)?; }
/// assert_eq!([q.get()?, q.get()?, q.get()?], [3, 2, 1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LifoQueue<T>(Blocking<Vec<T>>);

queue_api!(LifoQueue, [], "newest");

/// Python's `queue.PriorityQueue`: the smallest item first (put `(priority, item)` tuples
/// for Python's usual pattern), with the same calls as [`Queue`](crate::Queue).
///
/// ```
/// let q = threads_sync::PriorityQueue::new();
/// q.put((2, "write"))?;
/// q.put((1, "read"))?;
/// q.put((3, "close"))?;
/// assert_eq!(q.get()?, (1, "read"));
/// q.shutdown(false); // Python 3.13: what is left can still be taken
/// assert_eq!(q.get()?, (2, "write"));
/// assert_eq!(q.put((0, "late")).unwrap_err().into_inner(), (0, "late"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PriorityQueue<T>(Blocking<BinaryHeap<Reverse<T>>>);

queue_api!(PriorityQueue, [Ord], "smallest");
