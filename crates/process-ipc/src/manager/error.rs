//! What a [`Manager`](super::Manager) or [`ManagedQueue`](super::ManagedQueue) call can fail
//! with: [`ManagerError`], and [`PutError`], which hands a refused item back.

use std::fmt;
use std::io;
use std::time::Duration;

/// What went wrong in a [`Manager`](super::Manager) or [`ManagedQueue`](super::ManagedQueue) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The manager was shut down or dropped, or its process died.
    #[error("manager queue {queue} of the manager in process {pid} is gone: {why}")]
    Gone {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// What showed it.
        why: String,
    },
    /// `get_timeout` found no item within its timeout (or `flush_timeout` was still sending).
    #[error("no item arrived in manager queue {queue} (manager pid {pid}) within {timeout:?}")]
    Timeout {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// A put into a bounded queue found no room (`put_nowait`), or none within its timeout.
    #[error("manager queue {queue} (manager pid {pid}) is full: {maxsize} items")]
    Full {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// The queue's bound.
        maxsize: usize,
    },
    /// [`Manager::bounded_queue`](super::Manager::bounded_queue) was asked for a queue that can hold nothing.
    #[error(
        "a bounded manager queue needs maxsize >= 1 (manager pid {pid}); Manager::queue makes an unbounded one"
    )]
    InvalidMaxsize {
        /// The manager's process id.
        pid: u32,
    },
    /// `get_nowait` found the queue empty.
    #[error("manager queue {queue} (manager pid {pid}) is empty")]
    Empty {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
    },
    /// The manager's process is alive but did not answer a request it answers at once.
    #[error(
        "the manager in process {pid} did not answer a request on queue {queue} within {waited:?}"
    )]
    NoReply {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// How long the client waited.
        waited: Duration,
    },
    /// Items put earlier into this queue from this process could not be encoded here or
    /// decoded in the manager, so they were dropped (they alone: every other item arrived).
    /// Reported once, by the next [`flush`](super::ManagedQueue::flush) in that process.
    #[error("manager queue {queue} (manager pid {pid}): {reason}")]
    Dropped {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// How many items, and the encoder's message.
        reason: String,
    },
    /// [`Manager::new`](super::Manager::new) could not open its socket (in a new directory under the system's
    /// temporary directory) or start the thread that listens on it.
    #[error("cannot start a manager in process {pid}: {source}")]
    Start {
        /// This process's id.
        pid: u32,
        /// The system error.
        source: io::Error,
    },
    /// An item could not be encoded or decoded (this call's own item, or the one it received).
    #[error("manager queue {queue} (manager pid {pid}): an item does not (de)serialize: {message}")]
    Serialization {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// The serde error, in the `Serialize` impl's own words where it gave some.
        message: String,
    },
    /// The operating system refused a channel or a thread (out of file descriptors, say).
    #[error("manager queue {queue} (manager pid {pid}): {what}: {source}")]
    Io {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// What was being done.
        what: &'static str,
        /// The system error.
        source: io::Error,
    },
}

/// A put that did not happen: why, and the item when it is still at hand.
///
/// The item comes back whenever the put was refused for want of room
/// ([`ManagerError::Full`]); it does not when it already travelled to a manager that is gone.
pub struct PutError<T> {
    /// Why the put failed.
    pub error: ManagerError,
    /// The item, handed back.
    pub item: Option<T>,
}

impl<T> PutError<T> {
    pub(super) fn new(error: ManagerError, item: Option<T>) -> Self {
        Self { error, item }
    }

    /// The item, if it came back.
    pub fn into_item(self) -> Option<T> {
        self.item
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .field("item_returned", &self.item.is_some())
            .finish()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<PutError<T>> for ManagerError {
    fn from(e: PutError<T>) -> Self {
        e.error
    }
}
