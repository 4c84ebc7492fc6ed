//! Error types: what went wrong with a coroutine, a queue or the runtime, said in words.

use std::fmt;
use std::time::Duration;

/// Everything a coroutine operation can fail with.
///
/// A greenlet that panicked or was killed, a wait that timed out, a spawn the
/// kernel refused: each is a value here, never a panic in the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoroError {
    /// The coroutine panicked; `message` is the panic's text.
    #[error("coroutine '{name}' panicked: {message}")]
    Panicked {
        /// The greenlet's name (`Greenlet-N` unless you named it).
        name: String,
        /// The panic message (`"<non-string panic payload>"` if it was not text).
        message: String,
    },
    /// The coroutine was killed (`Greenlet::kill`, `killall`, `with_timeout`) before it returned.
    ///
    /// This is gevent's `GreenletExit` value: gevent's `get()` returns that
    /// instance for a killed greenlet, and counts the end as successful.
    /// Here `get` cannot hand a `T`, so it is this variant, apart from
    /// [`CoroError::Panicked`]; the greenlet's `successful()` is still
    /// `Some(true)` and its `link_value` callbacks run, as gevent's do.
    #[error("coroutine '{name}' was killed before it returned a value")]
    Killed {
        /// The greenlet's name.
        name: String,
    },
    /// The coroutine overflowed its stack; may abandoned it (nothing was unwound).
    #[error(
        "coroutine '{name}' overflowed its stack; give it a bigger one \
         (coro::Builder::stack_size or coro::Config::with_stack_size)"
    )]
    StackOverflow {
        /// The greenlet's name.
        name: String,
    },
    /// A wait ended because its timeout passed first.
    #[error("{what} timed out after {timeout:?}")]
    Timeout {
        /// What was being waited for, e.g. `"get of coroutine 'Greenlet-3'"`.
        what: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// `joinall` returned at its timeout with some greenlets still running.
    #[error(
        "joinall timed out after {timeout:?}: {} of {total} greenlets finished \
         (indices {finished:?})", finished.len()
    )]
    JoinAllTimeout {
        /// The indices (in the order given) of the greenlets that had finished.
        finished: Vec<usize>,
        /// How many were joined.
        total: usize,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The value of this greenlet was already taken by an earlier `get`.
    #[error("the value of coroutine '{name}' was already taken by an earlier get")]
    ValueTaken {
        /// The greenlet's name.
        name: String,
    },
    /// No room for a new coroutine stack: the kernel refused it, or it would
    /// leave too few memory maps for the rest of the process.
    #[error(
        "cannot spawn coroutine: no room for its stack ({cause}); \
         {live} coroutines are alive and this process holds {maps} memory maps \
         against vm.max_map_count = {max_map_count}; may maps 2 regions per stack, so about \
         {} coroutines fit at once: raise it (`sysctl -w vm.max_map_count=262144`), keep fewer \
         alive (a Pool), or, if the maps are far below the limit, free memory / raise RLIMIT_AS",
        max_map_count / 2
    )]
    StackExhausted {
        /// What the allocator reported (e.g. `Cannot allocate memory (os error 12)`),
        /// or that coro stopped short of `vm.max_map_count` to keep maps free.
        cause: String,
        /// Coroutines spawned through `coro` that were alive at the time.
        live: usize,
        /// Lines in `/proc/self/maps` at the time (0 if unreadable).
        maps: usize,
        /// `/proc/sys/vm/max_map_count` (0 if unreadable).
        max_map_count: usize,
    },
    /// Spawning failed for a reason other than stack memory.
    #[error("cannot spawn coroutine: {0}")]
    Spawn(String),
    /// A stack size outside what the platform allows.
    #[error("invalid coroutine stack size {bytes} bytes: it must be between {min} and {max} bytes")]
    InvalidStackSize {
        /// The size that was asked for.
        bytes: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed.
        max: usize,
    },
    /// An `AsyncResult` was given a failure (`set_exception`) instead of a value.
    #[error("the AsyncResult failed: {message}")]
    Exception {
        /// The message given to `set_exception`.
        message: String,
    },
    /// A bad argument, e.g. `Pool::new(0)`.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The runtime is already running; its configuration can no longer change.
    #[error(
        "the coroutine runtime already started with {workers} worker(s); \
         call coro::configure before the first spawn"
    )]
    AlreadyStarted {
        /// The worker count it runs with.
        workers: usize,
    },
    /// The blocking monitor is already running.
    #[error("the blocking monitor is already running; stop the first one before starting another")]
    MonitorRunning,
    /// The symbol-level patch is not available on this platform.
    #[error("monkey::patch_all is not available here: {0}")]
    PatchUnavailable(String),
}

impl CoroError {
    /// Whether this is a kill's outcome ([`CoroError::Killed`], gevent's
    /// `GreenletExit`), which gevent counts as a successful end, not a failure.
    pub fn is_killed(&self) -> bool {
        matches!(self, CoroError::Killed { .. })
    }
}

/// A put found the queue full (Python's `queue.Full`); the item is handed back.
#[derive(PartialEq, Eq, Clone, thiserror::Error)]
#[error("queue full")]
pub struct Full<T> {
    item: T,
}

impl<T> Full<T> {
    pub(crate) fn new(item: T) -> Self {
        Full { item }
    }

    /// Takes back the item that could not be put.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Full").finish_non_exhaustive()
    }
}

/// A get found the queue empty, at once or for its whole timeout (Python's `queue.Empty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue empty")]
pub struct Empty;

/// A call on a queue that was shut down (Python 3.13's `queue.ShutDown`): a `put` after
/// [`shutdown`](crate::Queue::shutdown) hands its item back in `ShutDown<T>`; a `get` finds
/// it once the queue is empty (`ShutDown<()>`). The same shape as `threads::ShutDown`.
#[derive(PartialEq, Eq, Clone, Copy, Default, thiserror::Error)]
#[error("queue shut down")]
pub struct ShutDown<T = ()> {
    item: T,
}

impl<T> ShutDown<T> {
    pub(crate) fn new(item: T) -> Self {
        ShutDown { item }
    }

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
#[derive(PartialEq, Eq, Clone, thiserror::Error)]
pub enum PutError<T> {
    /// No room (Python's `queue.Full`).
    #[error(transparent)]
    Full(Full<T>),
    /// The queue was shut down (Python's `queue.ShutDown`).
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

/// Why a `get_timeout`, `get_nowait` (or a `peek_` of them) returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// Nothing came in time (Python's `queue.Empty`).
    #[error(transparent)]
    Empty(#[from] Empty),
    /// The queue was shut down and is empty (Python's `queue.ShutDown`).
    #[error(transparent)]
    ShutDown(#[from] ShutDown),
}

/// `Result` with [`CoroError`].
pub type Result<T, E = CoroError> = std::result::Result<T, E>;
