//! Error types of `threads_sync`: one enum per family of calls, each message naming what happened.

use std::fmt;
use std::time::Duration;

/// Why [`Thread::start`](crate::Thread::start) or [`ThreadHandle::join`](crate::ThreadHandle::join) failed.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// The target panicked; the payload's message is kept (Python would print the traceback).
    #[error("thread {thread:?} panicked: {message}")]
    Panicked {
        /// The thread's name.
        thread: String,
        /// The panic message (`"<non-string panic payload>"` when the payload was not a string).
        message: String,
    },
    /// `join_timeout` ran out while the thread was still running; it can be joined again.
    #[error("thread {thread:?} still running after {timeout:?}")]
    Timeout {
        /// The thread's name.
        thread: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The thread's value was already taken by an earlier successful `join_timeout`.
    #[error("thread {thread:?} was already joined")]
    AlreadyJoined {
        /// The thread's name.
        thread: String,
    },
    /// The operating system refused to create the thread (`EAGAIN` under `RLIMIT_NPROC` or
    /// when memory for its stack is refused, e.g. under `RLIMIT_AS`).
    #[error("could not spawn thread {thread:?}: {source}")]
    Spawn {
        /// The thread's name.
        thread: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One link of a wait-for cycle: `thread` waits for `lock`, which the next link's thread holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitLink {
    /// Name of the waiting thread.
    pub thread: String,
    /// Python-style ident of the waiting thread (see [`get_ident`](crate::get_ident)).
    pub ident: u64,
    /// Name of the lock it waits for.
    pub lock: String,
}

/// A wait that would close a cycle in the wait-for graph: every thread and lock in it.
///
/// `cycle[0]` is the thread that got this error (the victim); `cycle[i]` waits for a lock
/// held by `cycle[i + 1]`, and the last one waits for a lock held by `cycle[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    /// The cycle, starting with the victim.
    pub cycle: Vec<WaitLink>,
}

impl Deadlock {
    /// Names of the threads in the cycle, victim first.
    pub fn threads(&self) -> Vec<&str> {
        self.cycle.iter().map(|l| l.thread.as_str()).collect()
    }

    /// Names of the locks in the cycle, the victim's wanted lock first.
    pub fn locks(&self) -> Vec<&str> {
        self.cycle.iter().map(|l| l.lock.as_str()).collect()
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadlock: ")?;
        let n = self.cycle.len();
        for (i, link) in self.cycle.iter().enumerate() {
            let holder = &self.cycle[(i + 1) % n];
            if i > 0 {
                write!(f, "; ")?;
            }
            if holder.ident == link.ident {
                write!(
                    f,
                    "thread {:?} waits for lock {:?}, which it already holds",
                    link.thread, link.lock
                )?;
            } else {
                write!(
                    f,
                    "thread {:?} waits for lock {:?} held by thread {:?}",
                    link.thread, link.lock, holder.thread
                )?;
            }
        }
        write!(
            f,
            " (the wait by thread {:?} was refused)",
            self.cycle[0].thread
        )
    }
}

impl std::error::Error for Deadlock {}

/// Why a lock acquisition failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Waiting would close a cycle in the wait-for graph; nothing was acquired.
    #[error(transparent)]
    Deadlock(#[from] Deadlock),
    /// The timed acquisition ran out.
    #[error("timed out after {timeout:?} waiting for lock {lock:?}")]
    Timeout {
        /// Name of the lock.
        lock: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// A [`Condition`](crate::Condition) was handed a guard of another lock.
    #[error("condition {condition:?} was given a guard of lock {given:?}, not its own lock")]
    WrongLock {
        /// Name of the condition's own lock.
        condition: String,
        /// Name of the lock whose guard was passed.
        given: String,
    },
}

impl LockError {
    /// The deadlock report, when this error is one.
    pub fn as_deadlock(&self) -> Option<&Deadlock> {
        match self {
            LockError::Deadlock(d) => Some(d),
            _ => None,
        }
    }
}

/// Releasing a [`BoundedSemaphore`](crate::BoundedSemaphore) above its initial value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released too many times: value would exceed its bound {bound}")]
pub struct SemaphoreOverRelease {
    /// The initial (and maximum) value.
    pub bound: usize,
}

/// Why [`Barrier::wait`](crate::Barrier::wait) failed (Python: `BrokenBarrierError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// The barrier is broken: a waiter timed out, `abort` was called, or `reset` ran while
    /// this thread waited. Every waiter gets this until `reset`.
    #[error("barrier of {parties} parties is broken")]
    Broken {
        /// The barrier's party count.
        parties: usize,
    },
    /// This waiter's own timeout ran out; it broke the barrier for everyone else.
    #[error(
        "barrier of {parties} parties timed out after {timeout:?} with {waiting} waiting; it is now broken"
    )]
    Timeout {
        /// The barrier's party count.
        parties: usize,
        /// Threads waiting when the timeout hit (this one included).
        waiting: usize,
        /// How long this waiter waited.
        timeout: Duration,
    },
    /// The barrier's action panicked (in this thread, the last to arrive); the barrier is now
    /// broken and the other waiters get [`BarrierError::Broken`] (Python: the action's
    /// exception here, `BrokenBarrierError` there).
    #[error("the action of a barrier of {parties} parties panicked: {message}; it is now broken")]
    ActionPanicked {
        /// The barrier's party count.
        parties: usize,
        /// The panic message.
        message: String,
    },
    /// `Barrier::new(0)` (Python: `ValueError`).
    #[error("a barrier needs at least one party, got {parties}")]
    InvalidParties {
        /// The value given.
        parties: usize,
    },
}

/// A `put` that found the queue full (Python: `queue.Full`); the item is handed back.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
#[error("queue full (maxsize {maxsize})")]
pub struct Full<T> {
    pub(crate) item: T,
    pub(crate) maxsize: usize,
}

impl<T> Full<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.item
    }

    /// The queue's maxsize.
    pub fn maxsize(&self) -> usize {
        self.maxsize
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Full")
            .field("maxsize", &self.maxsize)
            .finish_non_exhaustive()
    }
}

/// A `get` that found the queue empty, now or until its timeout (Python: `queue.Empty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue empty")]
pub struct Empty;

/// A call on a queue that was shut down (Python 3.13: `queue.ShutDown`): a `put` after
/// [`shutdown`](crate::Queue::shutdown) hands its item back in `ShutDown<T>`; a `get` finds it
/// once the queue is empty (`ShutDown<()>`).
#[derive(PartialEq, Eq, Clone, Copy, Default, thiserror::Error)]
#[error("queue shut down")]
pub struct ShutDown<T = ()> {
    pub(crate) item: T,
}

impl<T> ShutDown<T> {
    /// The item that was not put (`()` for a `get`).
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for ShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutDown").finish_non_exhaustive()
    }
}

/// Why a `put_timeout` or `put_nowait` did not put its item, which comes back either way.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum PutError<T> {
    /// No room (Python: `queue.Full`).
    #[error(transparent)]
    Full(Full<T>),
    /// The queue was shut down (Python: `queue.ShutDown`).
    #[error(transparent)]
    ShutDown(ShutDown<T>),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(full) => full.item,
            PutError::ShutDown(shut) => shut.item,
        }
    }

    /// Whether the queue was full (rather than shut down).
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(full) => full.fmt(f),
            PutError::ShutDown(shut) => shut.fmt(f),
        }
    }
}

/// Why a `get_timeout` or `get_nowait` returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// Nothing came in time (Python: `queue.Empty`).
    #[error(transparent)]
    Empty(#[from] Empty),
    /// The queue was shut down and is empty (Python: `queue.ShutDown`).
    #[error(transparent)]
    ShutDown(#[from] ShutDown),
}

/// `Queue::bounded(0)` (and the same on the other queues): a bound must be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a bounded queue needs maxsize of at least 1, got {maxsize} (new() makes an unbounded one)"
)]
pub struct MaxsizeError {
    /// The value given.
    pub maxsize: usize,
}

/// Misuse of [`Queue::task_done`](crate::Queue::task_done) or a timed-out [`Queue::join_timeout`](crate::Queue::join_timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskDoneError {
    /// More `task_done` calls than items put (Python: `ValueError`).
    #[error("task_done() called too many times")]
    TooManyCalls,
    /// `join_timeout` ran out with tasks still unfinished.
    #[error("{unfinished} task(s) still unfinished after {timeout:?}")]
    Timeout {
        /// Items put and not yet marked done.
        unfinished: usize,
        /// How long the caller waited.
        timeout: Duration,
    },
}

/// Why a [`ThreadPool`](crate::ThreadPool) call or an [`AsyncResult`](crate::AsyncResult) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `ThreadPool::new(0)` (Python: `ValueError: Number of processes must be at least 1`).
    #[error("a pool needs at least one thread, got {threads}")]
    NoThreads {
        /// The value given.
        threads: usize,
    },
    /// The operating system refused a worker thread; the workers already started were
    /// stopped, and no pool was made.
    #[error(transparent)]
    Spawn(Box<SpawnRefused>),
    /// `MapOptions::chunksize(0)` (Python: `ValueError: Chunksize must be 1+`).
    #[error("chunksize must be at least 1, got 0")]
    ZeroChunksize,
    /// The task was cancelled before it started (`AsyncResult::cancel` or `terminate`).
    #[error("task {task} was cancelled before it started")]
    Cancelled {
        /// Submission number of the task.
        task: u64,
    },
    /// The task panicked; only this task failed, the pool goes on.
    #[error("task {task} panicked: {message}")]
    TaskPanicked {
        /// Submission number of the task within its pool (0-based).
        task: u64,
        /// The panic message.
        message: String,
    },
    /// Work was submitted after `close` (Python: `ValueError: Pool not running`).
    #[error("pool is closed; no new tasks accepted")]
    Closed,
    /// `join` before `close` (Python: `ValueError: Pool is still running`).
    #[error("pool is still running; call close() before join()")]
    StillRunning,
    /// A timed wait ran out; the result may still arrive later.
    #[error("timed out after {timeout:?}")]
    Timeout {
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The value was already taken by an earlier `get`.
    #[error("result was already taken by an earlier get")]
    AlreadyTaken,
    /// The task was dropped without running or reporting (should not happen: tasks' panics
    /// are caught, and a dropped pool still runs what was queued).
    #[error("worker thread vanished before task {task} reported a result")]
    WorkerLost {
        /// Submission number of the task.
        task: u64,
    },
}

/// The OS refused a worker of a [`ThreadPool`](crate::ThreadPool) ([`PoolError::Spawn`]).
/// (Boxed in the error, so that every task's result stays small.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not start worker {worker} of a pool of {threads} threads: {error}")]
pub struct SpawnRefused {
    /// The pool size asked for.
    pub threads: usize,
    /// Which worker (0-based) the OS refused.
    pub worker: usize,
    /// The OS error, as text (e.g. "Resource temporarily unavailable (os error 11)").
    pub error: String,
    /// Its kind.
    pub kind: std::io::ErrorKind,
}

/// Turns a panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
