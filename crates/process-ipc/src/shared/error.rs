//! What can go wrong with state shared between processes.

use std::io;
use std::time::Duration;

/// An error of [`SharedMemory`](super::SharedMemory), [`Value`](super::Value) and the
/// process-wide locks and events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// A segment of 0 bytes was asked for (Python raises `ValueError` too).
    #[error("shared memory needs a size of at least 1 byte, not 0")]
    ZeroSize,
    /// A block of this size cannot be backed: it overflows the address space, or it is larger
    /// than the RAM and swap of the whole system, so touching all of it would end in the
    /// out-of-memory killer. Python's `SharedMemory` would fail later, on the touch.
    #[error(
        "shared memory of {size} bytes refused: more than this system can back \
         ({limit} bytes of RAM + swap)"
    )]
    TooLarge {
        /// The bytes asked for (exact, even where the count overflows `usize`).
        size: u128,
        /// RAM + swap, in bytes: the most a block may hold.
        limit: u64,
    },
    /// No segment of ours has this name (never made, unlinked, or its creator has exited).
    #[error("no shared memory named {name:?}: {reason}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// Why it was not found.
        reason: String,
    },
    /// A block's contents are not what its type wrote: a word read from shared memory failed
    /// its check (another process scribbled on it, or the name leads to another kind of
    /// block). Nothing was read past the block.
    #[error("shared memory {name:?} is corrupt: {what}")]
    Corrupt {
        /// The block's name.
        name: String,
        /// Which word, and what it held.
        what: String,
    },
    /// An index past the end (Python's `IndexError`).
    #[error("index {index} out of range for {len} items")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many items there are.
        len: usize,
    },
    /// A string or bytes longer than its slot's room (Python's `ValueError: exceeds available
    /// storage`).
    #[error("item {index} needs {needed} bytes, and its slot holds {capacity}")]
    TooLong {
        /// The item's index.
        index: usize,
        /// The bytes it needs.
        needed: usize,
        /// The slot's room.
        capacity: usize,
    },
    /// A block of this name exists already (Python's `FileExistsError` from
    /// `SharedMemory(name, create=True)`).
    #[error("shared memory {name:?} exists already")]
    Exists {
        /// The name asked for.
        name: String,
    },
    /// The name leads to something that is not a segment of this user's, or has another shape
    /// than the type that attaches to it.
    #[error("shared memory {name:?} refused: {reason}")]
    Refused {
        /// The name asked for.
        name: String,
        /// What did not match.
        reason: String,
    },
    /// The process that held the lock died holding it. The lock has been made consistent and
    /// released: the next `acquire` works. Python's multiprocessing deadlocks here.
    #[error("the lock's owner (pid {pid}) died holding it; the lock is usable again")]
    OwnerDied {
        /// The pid of the process that died holding the lock (0 if it died before recording it).
        pid: u32,
    },
    /// A timed wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A barrier was aborted, a wait on it timed out, or a party died waiting at it (Python's
    /// `BrokenBarrierError`; Python's barrier would wait for the dead party for ever).
    #[error(
        "the barrier is broken{}",
        .dead_party.map(|pid| format!(": party pid {pid} died waiting at it")).unwrap_or_default()
    )]
    BrokenBarrier {
        /// The pid of the party whose death broke it, if that is what broke it.
        dead_party: Option<u32>,
    },
    /// A barrier's action panicked in this party (the last to arrive); the barrier is now
    /// broken and the other parties get [`SharedError::BrokenBarrier`] (Python: the action's
    /// exception here, `BrokenBarrierError` there).
    #[error("the barrier's action panicked: {message}; the barrier is now broken")]
    ActionPanicked {
        /// The panic message.
        message: String,
    },
    /// `release` of a bounded semaphore would raise it past its initial value.
    #[error("a BoundedSemaphore released more times than acquired (bound {bound})")]
    OverRelease {
        /// The semaphore's initial value.
        bound: u32,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl SharedError {
    pub(crate) fn os(op: &'static str) -> Self {
        SharedError::Os {
            op,
            source: io::Error::last_os_error(),
        }
    }

    /// [`SharedError::Os`] for `op` with the error the OS layer returned.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        SharedError::Os { op, source }
    }
}
