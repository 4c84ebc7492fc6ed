//! What a [`Manager`](super::Manager) call, or a call on one of its objects, can fail with:
//! [`ManagerError`], and [`PutError`], which hands an item a queue refused back.

use std::fmt;
use std::io;
use std::time::Duration;

/// What went wrong in a [`Manager`](super::Manager) call or a call on one of its objects
/// ([`ManagedQueue`](super::ManagedQueue), [`ManagedDict`](super::ManagedDict), ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The queue was shut down with [`ManagedQueue::shutdown`](super::ManagedQueue::shutdown)
    /// (Python 3.13's `queue.ShutDown`): a put after it (a [`PutError`] hands the item back),
    /// or a get once the queue is empty.
    #[error("manager queue {queue} of the manager in process {pid} was shut down")]
    ShutDown {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
    },
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
    /// The manager runs as another user than this process: a manager serves only processes of
    /// its own user (checked with the socket's peer credentials both ways), and a process
    /// trusts only a manager of its own user.
    #[error(
        "permission denied: the manager in process {pid} runs as uid {peer_uid}, this process as uid {uid}; a manager serves only its own user"
    )]
    PermissionDenied {
        /// The manager's process id.
        pid: u32,
        /// The uid the manager (its socket) runs as.
        peer_uid: u32,
        /// This process's effective uid.
        uid: u32,
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
    /// Items put earlier into this queue from this process were dropped (they alone: every
    /// other item arrived). No longer reported: every put now encodes its item at the call
    /// (its own [`ManagerError::Serialization`]), and an item that does not decode fails only
    /// the get that took it. Kept so that code matching on it still compiles.
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
    /// A dict, list, namespace, value, lock or event of a manager that was shut down or
    /// dropped, or whose process died.
    #[error("manager {kind} {object} of the manager in process {pid} is gone: {why}")]
    ObjectGone {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the object is: `"dict"`, `"list"`, `"namespace"`, `"value"`, `"lock"`, `"event"`.
        kind: &'static str,
        /// What showed it.
        why: String,
    },
    /// A lock's `acquire_timeout` or an event's `wait_timeout` ran out (events say so with
    /// `Ok(false)` instead; this is the lock's).
    #[error("manager {kind} {object} (manager pid {pid}): not acquired within {timeout:?}")]
    ObjectTimeout {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the object is.
        kind: &'static str,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The manager's process is alive but did not answer a call on an object in time.
    #[error(
        "the manager in process {pid} did not answer a call on its {kind} {object} within {waited:?}"
    )]
    ObjectNoReply {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the object is.
        kind: &'static str,
        /// How long the client waited.
        waited: Duration,
    },
    /// The process that held a manager lock died holding it. The manager freed the lock: this
    /// acquire did not take it, the next one can. (Python's manager keeps such a lock held
    /// forever.)
    #[error(
        "manager lock {object} (manager pid {pid}): its holder, process {owner}{}, died or lost its connection holding it; the lock is free again",
        peer.as_deref().map(|p| format!(" at {p}")).unwrap_or_default()
    )]
    OwnerDied {
        /// The manager's process id.
        pid: u32,
        /// The lock's number within its manager.
        object: u64,
        /// The pid of the process that died holding the lock (over TCP, the pid its client
        /// gave in the authenticated handshake).
        owner: u32,
        /// Over TCP, the address the holder's connection came from (`ip:port`).
        peer: Option<String>,
    },
    /// A TCP manager and this process do not share an authkey: the manager refused this key,
    /// could not prove it holds it, or this process holds none for its address (call
    /// [`Manager::connect`](super::Manager::connect) first). Nothing else was exchanged.
    #[error("authentication with the manager at {address} failed: {why}")]
    AuthenticationFailed {
        /// The manager's address (`tcp:<ip>:<port>`).
        address: String,
        /// What happened.
        why: String,
    },
    /// [`Manager::connect`](super::Manager::connect) could not reach the address.
    #[error("cannot connect to a manager at {address}: {source}")]
    Connect {
        /// The address asked for.
        address: String,
        /// The system error.
        source: io::Error,
    },
    /// A key or value given to a call does not serialize: the call failed here and sent
    /// nothing.
    #[error(
        "manager {kind} {object} (manager pid {pid}): the {what} does not serialize, nothing was sent: {message}"
    )]
    Encode {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the object is.
        kind: &'static str,
        /// `"key"`, `"value"`, `"item"` or `"name"`.
        what: &'static str,
        /// The serde error, in the `Serialize` impl's own words where it gave some.
        message: String,
    },
    /// A value the manager holds does not decode as the type this handle asked for (another
    /// process stored a value of another type under the same handle or name).
    #[error(
        "manager {kind} {object} (manager pid {pid}): a value does not decode as {type_name}: {message}"
    )]
    Decode {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the object is.
        kind: &'static str,
        /// The Rust type it was decoded as.
        type_name: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// A list index past the end (Python's `IndexError`).
    #[error(
        "manager list {object} (manager pid {pid}): index {index} is out of range for length {len}"
    )]
    IndexOutOfRange {
        /// The manager's process id.
        pid: u32,
        /// The list's number within its manager.
        object: u64,
        /// The index asked for.
        index: u64,
        /// The list's length then.
        len: u64,
    },
    /// No item of the list equals the one a list's `index` or `remove_value` looked for
    /// (Python's `ValueError: x is not in list`).
    #[error("manager list {object} (manager pid {pid}): the item is not in the list")]
    NotInList {
        /// The manager's process id.
        pid: u32,
        /// The list's number within its manager.
        object: u64,
    },
    /// The manager refused a call on an object: the handle names an object it does not have
    /// or of another kind, or a lock release came from a caller that does not hold it.
    #[error("manager {kind} {object} (manager pid {pid}): {why}")]
    ObjectRefused {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the handle says the object is.
        kind: &'static str,
        /// The manager's reason.
        why: String,
    },
    /// The operating system refused a connection or failed one to the manager's objects.
    #[error("manager {kind} {object} (manager pid {pid}): {what}: {source}")]
    ObjectIo {
        /// The manager's process id.
        pid: u32,
        /// The object's number within its manager.
        object: u64,
        /// What the object is.
        kind: &'static str,
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

    /// The item, if it came back (the naming table's `into_inner`, as on `Full<T>`).
    pub fn into_inner(self) -> Option<T> {
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
