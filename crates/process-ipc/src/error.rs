//! Error types: every failure of a child, a queue or a pool is a value that names what happened.

use std::time::Duration;

/// The name of a POSIX signal number (`9` -> `"SIGKILL"`), or `"unknown signal"`.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => "unknown signal",
    }
}

/// Why starting, running or joining a [`Process`](crate::Process) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The operating system refused to start the child executable.
    #[error("could not start a child process from /proc/self/exe: {0}")]
    Spawn(#[source] std::io::Error),
    /// The child did not complete the spawn handshake: it died or refused to run, stayed
    /// silent past the start deadline (then it was killed), a handshake message came from
    /// another pid or uid, or the arguments could not be sent. `reason` says which.
    #[error("child process {pid} failed during bootstrap: {reason}")]
    Bootstrap {
        /// The child's pid.
        pid: u32,
        /// What went wrong, as seen by the child or the parent.
        reason: String,
    },
    /// The target panicked in the child.
    #[error("child process {pid} panicked{}: {message}", panic_at(location))]
    Panicked {
        /// The child's pid.
        pid: u32,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, or `<unknown>` where the child's panic hook was
        /// replaced by one of its own (the error's message then leaves it out).
        location: String,
    },
    /// The child was killed by a signal (`kill()`, `terminate()`, the OOM killer, a crash...).
    #[error("child process {pid} was killed by signal {signal} ({})", signal_name(*signal))]
    Killed {
        /// The child's pid.
        pid: u32,
        /// The signal number (9 for SIGKILL).
        signal: i32,
    },
    /// The child exited without sending the target's return value back.
    #[error("child process {pid} exited with code {code} before returning a value")]
    Exited {
        /// The child's pid.
        pid: u32,
        /// Its exit code.
        code: i32,
    },
    /// `join_timeout` ran out; the handle is still usable.
    #[error("child process {pid} still running after waiting {waited:?}")]
    Timeout {
        /// The child's pid.
        pid: u32,
        /// How long the call waited.
        waited: Duration,
    },
    /// The value was already taken by an earlier successful join.
    #[error("child process {pid} was already joined")]
    AlreadyJoined {
        /// The child's pid.
        pid: u32,
    },
    /// Talking to the child over ipc-channel failed (serialization, socket error).
    #[error("IPC with child process {pid} failed: {message}")]
    Ipc {
        /// The child's pid (0 before the child exists).
        pid: u32,
        /// What failed.
        message: String,
    },
    /// The child was killed by the shutdown of
    /// [`shutdown_on_interrupt`](crate::shutdown_on_interrupt) (or by the same Ctrl-C) before
    /// it returned a value: Python's `KeyboardInterrupt`.
    #[error("child process {pid} was ended by the interrupt (signal {signal}, {}) before returning a value", signal_name(*signal))]
    Interrupted {
        /// The child's pid.
        pid: u32,
        /// The signal this process received (2 for SIGINT, 15 for SIGTERM).
        signal: i32,
    },
}

/// Why a [`Queue`](crate::Queue) operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueError {
    /// Every handle that could put has been dropped or closed, and the queue is drained.
    #[error(
        "queue disconnected: every putting handle is gone (closed, dropped or its process died) and no item is left"
    )]
    Disconnected,
    /// `get_nowait` found no item.
    #[error("queue is empty")]
    Empty,
    /// `get_timeout` found no item in time.
    #[error("no item arrived within {0:?}")]
    Timeout(Duration),
    /// `put` on a handle after its `close()`.
    #[error("put on a queue handle that was closed in this process")]
    Closed,
    /// `put_nowait` (or `put_timeout`, when its time ran out) on a bounded queue holding
    /// `maxsize` items (Python's `queue.Full`).
    #[error("queue is full: it holds its maxsize of items")]
    Full,
    /// A bad argument, named in the message (for example `Queue::bounded(0)`).
    #[error("invalid queue argument: {0}")]
    Invalid(&'static str),
    /// `get` on a handle that cannot read (a [`QueueSender`](crate::QueueSender), or a queue
    /// whose reading end was moved to another process).
    #[error("this queue handle cannot get: {0}")]
    NoReader(&'static str),
    /// One serialized item is over the queue's item limit
    /// ([`MAX_ITEM_BYTES`](crate::queue::MAX_ITEM_BYTES) unless
    /// [`Queue::with_item_limit`](crate::Queue::with_item_limit) set a lower one).
    #[error("queue item is {size} bytes serialized, over the limit of {limit} bytes")]
    TooLarge {
        /// Serialized size of the item.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The item could not be serialized (the serializer's own message) or deserialized (only
    /// that item is lost; the next `get` returns the next one).
    #[error("queue item (de)serialization failed: {0}")]
    Serde(String),
    /// The socket under the queue failed.
    #[error("queue transport failed: {0}")]
    Io(String),
    /// The queue's shared memory failed a check no process of this crate leaves it failing
    /// (another process scribbled on it, or has a memory bug): the queue is broken, and every
    /// later call on it, in any process, returns this error at once.
    #[error("queue {queue} is corrupt and can no longer be used: {check}")]
    Corrupt {
        /// The queue's shared-memory block.
        queue: String,
        /// The check that failed.
        check: String,
    },
    /// One record of the queue's shared memory failed a check and was skipped: only what it
    /// held is lost, and the next `get` goes on with the next item.
    #[error("a damaged record in queue {queue} was skipped ({check}); the next get goes on")]
    Damaged {
        /// The queue's shared-memory block.
        queue: String,
        /// The check that failed.
        check: String,
    },
    /// The queue was shut down (Python 3.13's `queue.ShutDown`): a `put` after
    /// [`shutdown`](crate::Queue::shutdown) (its [`PutError`](crate::queue::PutError) hands the item
    /// back), or a `get` once the queue is shut down and empty (at once after an immediate
    /// shutdown).
    #[error("queue shut down")]
    ShutDown,
    /// [`task_done`](crate::JoinableQueue::task_done) called more times than items were put
    /// (Python's `ValueError: task_done() called too many times`).
    #[error("task_done() called too many times")]
    TooManyCalls,
    /// [`join_timeout`](crate::JoinableQueue::join_timeout) ran out with tasks unfinished. An
    /// item whose getter died before its `task_done` stays unfinished for ever, and so does an
    /// item a killed putter had not moved out of its feeder: see
    /// [`JoinableQueue`](crate::JoinableQueue).
    #[error("{unfinished} task(s) still unfinished after {timeout:?}")]
    JoinTimeout {
        /// Items put and not yet marked done.
        unfinished: u64,
        /// How long the caller waited.
        timeout: Duration,
    },
}

/// Why a [`Pool`](crate::Pool) operation or task failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// `Pool::new(0)` or a builder with 0 processes.
    #[error("a pool needs at least one worker process, got {0}")]
    NoWorkers(usize),
    /// A worker process could not be started.
    #[error("could not start a pool worker: {0}")]
    Spawn(String),
    /// Submission after `close()` or `terminate()`.
    #[error("the pool is closed: no new tasks are accepted")]
    Closed,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before this task finished")]
    Terminated,
    /// The worker running the task died; only its own task (or chunk) fails.
    #[error("pool worker {pid} died while running {what}: {cause}")]
    WorkerDied {
        /// The worker's pid.
        pid: u32,
        /// `killed by signal 9 (SIGKILL)` or `exited with code 3`.
        cause: String,
        /// The signal number, when a signal killed it.
        signal: Option<i32>,
        /// Which task or which items (`items 40..50 of the map`).
        what: String,
    },
    /// The task panicked in the worker; the worker survives.
    #[error("task panicked in pool worker {pid} at {location}: {message}")]
    Panicked {
        /// The worker's pid.
        pid: u32,
        /// The panic message.
        message: String,
        /// `file:line:column`.
        location: String,
    },
    /// The task ran over the pool's per-task timeout; its worker was killed and replaced.
    #[error(
        "task ran over the per-task timeout of {limit:?} in worker {pid}, which was killed and replaced"
    )]
    TaskTimeout {
        /// The killed worker's pid.
        pid: u32,
        /// The configured limit.
        limit: Duration,
    },
    /// `get_timeout` (or `as_completed`, `imap`'s `next_timeout`, `join_timeout`) ran out;
    /// the task keeps running. The same variant as the ThreadPool's.
    #[error("result not ready after waiting {timeout:?}")]
    Timeout {
        /// How long the call waited.
        timeout: Duration,
    },
    /// The pool's initializer failed in a worker, so no task can run.
    #[error("the pool initializer failed in worker {pid}: {message}")]
    InitializerFailed {
        /// The worker's pid.
        pid: u32,
        /// The panic message.
        message: String,
    },
    /// Arguments or results could not be (de)serialized.
    #[error("task data (de)serialization failed: {0}")]
    Serde(String),
    /// The value was already taken by an earlier `get_timeout`.
    #[error("the result was already taken by an earlier get")]
    ResultTaken,
    /// `join()` before `close()` or `terminate()` (Python raises `ValueError`).
    #[error("join() needs close() or terminate() first")]
    StillOpen,
    /// `MapOptions::chunksize(0)` (Python: `ValueError: Chunksize must be 1+`), as the
    /// ThreadPool's.
    #[error("chunksize must be at least 1, got 0")]
    ZeroChunksize,
    /// [`AsyncResult::cancel`](crate::AsyncResult::cancel) withdrew the task before it started.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// SIGINT or SIGTERM arrived with [`shutdown_on_interrupt`](crate::shutdown_on_interrupt)
    /// installed: the pool was terminated before this task finished (Python's
    /// `KeyboardInterrupt`).
    #[error("interrupted by signal {signal} ({}): the pool was shut down before this finished", signal_name(*signal))]
    Interrupted {
        /// The signal number (2 for SIGINT, 15 for SIGTERM).
        signal: i32,
    },
    /// A pool on Redis (`PoolBuilder::redis`, feature `redis`): Redis could not be reached,
    /// answered out of protocol, or the connection dropped with this task in flight; or an option
    /// the Redis pool does not support. The message names the address and the cause.
    #[error("redis pool: {0}")]
    Broker(String),
    /// A pool on Redis: the worker that took the task runs another build of the program (a
    /// different executable), so it refused the task rather than call into unknown code.
    #[error(
        "worker {pid} on host {host} runs build {worker_build}, but this pool is build {pool_build}: it refused the task"
    )]
    BuildMismatch {
        /// The submitting program's build (sha256 of its executable, hex).
        pool_build: String,
        /// The worker's build.
        worker_build: String,
        /// The worker's host name.
        host: String,
        /// The worker's pid.
        pid: u32,
    },
}

/// " at file:line:column" for a known panic location, nothing for an unknown one.
fn panic_at(location: &str) -> String {
    match location {
        "" | "<unknown>" => String::new(),
        known => format!(" at {known}"),
    }
}
