//! `JoinableQueue<T>`: Python's `multiprocessing.JoinableQueue`, a [`Queue`] whose consumers
//! mark each item done, so that a producer can wait until every item put was processed.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PutError, Queue, QueueSender, ring_error};
use crate::error::QueueError;
use crate::ring::{TaskDone, WaitLimit};

/// `multiprocessing.JoinableQueue`: a [`Queue`] with [`task_done`](Self::task_done) and
/// [`join`](Self::join), across processes.
///
/// Every item put (through any handle or [`QueueSender`], in any process) counts as an
/// unfinished task until some process calls `task_done` once for it; `join` waits until none
/// is left. The counts live in the queue's shared memory beside its items, so every process
/// sees the same ones. Everything else is the [`Queue`]'s: pass [`handle`](Self::handle) (or
/// the queue itself) to a [`Process`](crate::Process) as an argument.
///
/// ```
/// use process_ipc::{JoinableQueue, Process, QueueError};
///
/// fn worker(q: JoinableQueue<u32>) -> u32 {
///     let mut sum = 0;
///     loop {
///         match q.get() {
///             Ok(x) => {
///                 sum += x;
///                 q.task_done().unwrap();
///             }
///             Err(QueueError::ShutDown) => return sum,
///             Err(e) => panic!("{e}"),
///         }
///     }
/// }
///
/// let q = JoinableQueue::new()?;
/// let child = Process::new(worker, (q.handle(),)).start().unwrap();
/// for i in 1..=10 {
///     q.put(i)?;
/// }
/// q.join()?; // every item was taken and marked done
/// assert_eq!(q.unfinished_tasks(), 0);
/// q.shutdown(false)?; // the worker's get now ends its loop
/// assert_eq!(child.join().unwrap(), 55);
/// # Ok::<(), QueueError>(())
/// ```
///
/// # A consumer that dies
///
/// Python's `join` waits for ever for an item whose consumer died between its `get` and its
/// `task_done`. Here too that item stays unfinished (nothing can tell whether the dead
/// process had finished it), so `join` would wait for ever: call
/// [`join_timeout`](Self::join_timeout), whose [`QueueError::JoinTimeout`] says how many tasks
/// are unfinished. The bound: each consumer killed leaves at most the items it had taken and
/// not yet marked done (one, for a consumer that marks each item before its next `get`); a
/// putter killed leaves the items its feeder had not moved (see the [`Queue`]'s loss bound).
/// `shutdown(true)` counts every item still in the queue done, so a `join` waiting for them
/// returns, but not those.
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A new, empty, unbounded queue.
    pub fn new() -> Result<Self, QueueError> {
        Ok(JoinableQueue {
            queue: Queue::new()?,
        })
    }

    /// A new, empty queue holding at most `maxsize` items; see [`Queue::bounded`].
    pub fn bounded(maxsize: usize) -> Result<Self, QueueError> {
        Ok(JoinableQueue {
            queue: Queue::bounded(maxsize)?,
        })
    }

    /// Another handle on this queue, for another process; see [`Queue::handle`].
    pub fn handle(&self) -> JoinableQueue<T> {
        JoinableQueue {
            queue: self.queue.handle(),
        }
    }

    /// A put-only handle; each item put through it is a task to mark done. See
    /// [`Queue::sender`].
    pub fn sender(&self) -> Result<QueueSender<T>, QueueError> {
        self.queue.sender()
    }

    /// Puts `item`, one more unfinished task; see [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// See [`Queue::put_timeout`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.queue.put_timeout(item, timeout)
    }

    /// See [`Queue::put_nowait`].
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.queue.put_nowait(item)
    }

    /// Takes the next item (mark it done with [`task_done`](Self::task_done) once processed);
    /// see [`Queue::get`].
    pub fn get(&self) -> Result<T, QueueError> {
        self.queue.get()
    }

    /// See [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.queue.get_timeout(timeout)
    }

    /// See [`Queue::get_nowait`].
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.queue.get_nowait()
    }

    /// See [`Queue::qsize`].
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// See [`Queue::empty`].
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// See [`Queue::full`].
    pub fn full(&self) -> bool {
        self.queue.full()
    }

    /// See [`Queue::maxsize`].
    pub fn maxsize(&self) -> Option<usize> {
        self.queue.maxsize()
    }

    /// See [`Queue::close`].
    pub fn close(&self) {
        self.queue.close();
    }

    /// See [`Queue::shutdown`]; with `immediate`, the items dropped count as done, so `join`
    /// returns once the items already taken are marked done.
    pub fn shutdown(&self, immediate: bool) -> Result<(), QueueError> {
        self.queue.shutdown(immediate)
    }

    /// See [`Queue::is_shutdown`].
    pub fn is_shutdown(&self) -> bool {
        self.queue.is_shutdown()
    }

    /// Test only (the `test-fault` feature): see [`Queue::__scribble`].
    #[cfg(feature = "test-fault")]
    #[doc(hidden)]
    pub fn __scribble(&self, word: &str, add: u64) {
        self.queue.__scribble(word, add);
    }

    /// Python's `task_done()`: marks one item taken by a `get` (in any process) as processed.
    ///
    /// # Errors
    /// [`QueueError::TooManyCalls`] if every item put is already marked done (Python's
    /// `ValueError`); nothing is counted then.
    pub fn task_done(&self) -> Result<(), QueueError> {
        match self.queue.ring.task_done() {
            TaskDone::Done => Ok(()),
            TaskDone::TooManyCalls => Err(QueueError::TooManyCalls),
        }
    }

    /// Items put and not yet marked done, in all processes (a snapshot while others work).
    pub fn unfinished_tasks(&self) -> u64 {
        self.queue.ring.unfinished()
    }

    /// Python's `join()`: waits until every item put has been marked done. Waits for ever for
    /// an item whose consumer died before its `task_done` (see "A consumer that dies" above):
    /// prefer [`join_timeout`](Self::join_timeout) where a consumer may die.
    ///
    /// # Errors
    /// [`QueueError::Corrupt`] if the queue's shared memory is damaged.
    pub fn join(&self) -> Result<(), QueueError> {
        self.join_until(WaitLimit::Forever, Duration::MAX)
    }

    /// Like [`join`](Self::join) for at most `timeout` (`Duration::MAX`: no limit).
    ///
    /// # Errors
    /// [`QueueError::JoinTimeout`] with the count of unfinished tasks if some are left after
    /// `timeout`; otherwise as [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), QueueError> {
        let wait = Instant::now()
            .checked_add(timeout)
            .map_or(WaitLimit::Forever, WaitLimit::Until);
        self.join_until(wait, timeout)
    }

    fn join_until(&self, wait: WaitLimit, timeout: Duration) -> Result<(), QueueError> {
        if self.queue.ring.join(wait).map_err(ring_error)? {
            return Ok(());
        }
        Err(QueueError::JoinTimeout {
            unfinished: self.unfinished_tasks(),
            timeout,
        })
    }
}

impl<T> Serialize for JoinableQueue<T> {
    /// As a [`Queue`]'s handle.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T: Serialize> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue {
            queue: Queue::deserialize(d)?,
        })
    }
}
