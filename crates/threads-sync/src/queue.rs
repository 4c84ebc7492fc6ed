//! [`Queue`]: Python's `queue.Queue` for threads, on `crossbeam-channel`; [`SimpleQueue`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};

use crate::error::{Empty, Full, MaxsizeError, TaskDoneError};

#[derive(Debug, Default)]
struct Tasks {
    unfinished: parking_lot::Mutex<usize>,
    all_done: parking_lot::Condvar,
}

/// Python's `queue.Queue`: a FIFO shared by threads, optionally bounded, with `task_done`/`join`.
///
/// Cloning gives another handle to the same queue (share it with threads that way or in an `Arc`).
///
/// ```python
/// q = queue.Queue(maxsize=1)
/// q.put(1); q.put_nowait(2)  # raises queue.Full
/// ```
/// ```
/// use threads_sync::Queue;
/// let q = Queue::bounded(1)?;
/// q.put(1);
/// let full = q.put_nowait(2).unwrap_err();
/// assert_eq!(full.into_inner(), 2); // the item comes back
/// assert_eq!(q.get(), 1);
/// q.task_done().unwrap();
/// q.join(); // every item put was marked done
/// assert!(Queue::<u8>::bounded(0).is_err()); // Python's maxsize=0 is `Queue::new()`
/// # Ok::<(), threads_sync::MaxsizeError>(())
/// ```
#[derive(Debug)]
pub struct Queue<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    /// 0: unbounded.
    maxsize: usize,
    tasks: Arc<Tasks>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
            maxsize: self.maxsize,
            tasks: Arc::clone(&self.tasks),
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<T> Queue<T> {
    /// An unbounded queue (Python: `queue.Queue()`).
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Queue {
            tx,
            rx,
            maxsize: 0,
            tasks: Arc::default(),
        }
    }

    /// A queue holding at most `maxsize` items (Python: `queue.Queue(maxsize)`); 0 is
    /// [`MaxsizeError`] (Python's `maxsize=0` means unbounded: that is [`Queue::new`]).
    pub fn bounded(maxsize: usize) -> Result<Self, MaxsizeError> {
        if maxsize == 0 {
            return Err(MaxsizeError { maxsize });
        }
        let (tx, rx) = crossbeam_channel::bounded(maxsize);
        Ok(Queue {
            tx,
            rx,
            maxsize,
            tasks: Arc::default(),
        })
    }

    /// The bound given at creation; `None` when unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        (self.maxsize > 0).then_some(self.maxsize)
    }

    /// Items in the queue now.
    pub fn qsize(&self) -> usize {
        self.rx.len()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Whether the queue is full now (never, when unbounded).
    pub fn full(&self) -> bool {
        self.maxsize > 0 && self.rx.len() >= self.maxsize
    }

    fn add_task(&self) {
        *self.tasks.unfinished.lock() += 1;
    }

    fn undo_task(&self) {
        let mut unfinished = self.tasks.unfinished.lock();
        *unfinished -= 1;
        if *unfinished == 0 {
            self.tasks.all_done.notify_all();
        }
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) {
        self.add_task();
        // The queue holds a receiver, so the channel cannot be disconnected.
        if self.tx.send(item).is_err() {
            unreachable!("a Queue owns a receiver of its own channel");
        }
    }

    /// Puts `item`, waiting at most `timeout` for room; [`Full`] hands it back.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.add_task();
        self.tx.send_timeout(item, timeout).map_err(|e| {
            self.undo_task();
            let item = match e {
                SendTimeoutError::Timeout(item) | SendTimeoutError::Disconnected(item) => item,
            };
            Full {
                item,
                maxsize: self.maxsize,
            }
        })
    }

    /// Puts `item` only if there is room now (Python: `put_nowait`).
    pub fn put_nowait(&self, item: T) -> Result<(), Full<T>> {
        self.add_task();
        self.tx.try_send(item).map_err(|e| {
            self.undo_task();
            let item = match e {
                TrySendError::Full(item) | TrySendError::Disconnected(item) => item,
            };
            Full {
                item,
                maxsize: self.maxsize,
            }
        })
    }

    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        match self.rx.recv() {
            Ok(item) => item,
            Err(_) => unreachable!("a Queue owns a sender of its own channel"),
        }
    }

    /// Takes the oldest item, waiting at most `timeout`; [`Empty`] if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => Empty,
        })
    }

    /// Takes the oldest item only if there is one now (Python: `get_nowait`).
    pub fn get_nowait(&self) -> Result<T, Empty> {
        self.rx.try_recv().map_err(|_| Empty)
    }

    /// Marks one item taken by `get` as processed; [`TaskDoneError::TooManyCalls`] if every
    /// item put is already marked.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut unfinished = self.tasks.unfinished.lock();
        if *unfinished == 0 {
            return Err(TaskDoneError::TooManyCalls);
        }
        *unfinished -= 1;
        if *unfinished == 0 {
            self.tasks.all_done.notify_all();
        }
        Ok(())
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        *self.tasks.unfinished.lock()
    }

    /// Waits until every item put has been marked done with [`task_done`](Queue::task_done).
    pub fn join(&self) {
        let mut unfinished = self.tasks.unfinished.lock();
        while *unfinished > 0 {
            self.tasks.all_done.wait(&mut unfinished);
        }
    }

    /// Like [`join`](Queue::join) for at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), TaskDoneError> {
        let deadline = Instant::now() + timeout;
        let mut unfinished = self.tasks.unfinished.lock();
        while *unfinished > 0 {
            if self
                .tasks
                .all_done
                .wait_until(&mut unfinished, deadline)
                .timed_out()
                && *unfinished > 0
            {
                return Err(TaskDoneError::Timeout {
                    unfinished: *unfinished,
                    timeout,
                });
            }
        }
        Ok(())
    }
}

/// Python's `queue.SimpleQueue`: an unbounded FIFO without `task_done`/`join`, for the
/// cases that need nothing more.
///
/// ```
/// let q = threads_sync::SimpleQueue::new();
/// q.put("a");
/// q.put("b");
/// assert_eq!((q.get(), q.get_nowait()), ("a", Ok("b")));
/// assert!(q.get_nowait().is_err());
/// ```
#[derive(Debug)]
pub struct SimpleQueue<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T> Default for SimpleQueue<T> {
    fn default() -> Self {
        SimpleQueue::new()
    }
}

impl<T> SimpleQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        SimpleQueue { tx, rx }
    }

    /// Puts `item` (never blocks: the queue is unbounded).
    pub fn put(&self, item: T) {
        if self.tx.send(item).is_err() {
            unreachable!("a SimpleQueue owns a receiver of its own channel");
        }
    }

    /// Same as [`put`](SimpleQueue::put) (Python has both names).
    pub fn put_nowait(&self, item: T) {
        self.put(item);
    }

    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        match self.rx.recv() {
            Ok(item) => item,
            Err(_) => unreachable!("a SimpleQueue owns a sender of its own channel"),
        }
    }

    /// Takes the oldest item, waiting at most `timeout`; [`Empty`] if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.rx.recv_timeout(timeout).map_err(|_| Empty)
    }

    /// Takes the oldest item only if there is one now.
    pub fn get_nowait(&self) -> Result<T, Empty> {
        self.rx.try_recv().map_err(|_| Empty)
    }

    /// Items in the queue now.
    pub fn qsize(&self) -> usize {
        self.rx.len()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.rx.is_empty()
    }
}
