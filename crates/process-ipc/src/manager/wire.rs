//! The messages between a [`ManagedQueue`](super::ManagedQueue) client and its queue's server.
//!
//! One request channel per queue carries [`Request`]s from every client, in every process.
//! Puts are one-way. A client that needs answers (get, qsize) registers once, handing the
//! server the sending end of its own reply channel, and then numbers its requests (`seq`) so a
//! reply can always be matched to the call that asked for it.

use std::marker::PhantomData;

use ipc_channel::ipc::{IpcSender, OpaqueIpcSender};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// A client's message to a queue's server.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub(crate) enum Request<T> {
    /// Append items, in order (one-way: no reply). A feeder sends what piled up as one batch.
    Put(Vec<T>),
    /// Register a client; the server answers [`Reply::Registered`] on `reply`.
    Register {
        /// The sending end of the client's reply channel (its only copy after the send).
        reply: IpcSender<Reply<T>>,
    },
    /// Take an item: answered by [`Reply::Item`], or [`Reply::Empty`] when `block` is false
    /// and nothing is queued. A blocking get waits in the server's FIFO of getters.
    Get { client: u64, seq: u64, block: bool },
    /// Put one item into a bounded queue: answered by [`Reply::PutAck`] once it is in, or by
    /// [`Reply::PutRefused`] (handing it back) when the queue is full and `block` is false. A
    /// blocking put waits, holding its item, in the server's FIFO of putters.
    PutWait {
        client: u64,
        seq: u64,
        item: T,
        block: bool,
    },
    /// The client stopped waiting for get or put `seq`: answered by [`Reply::Cancelled`]
    /// (a get) or [`Reply::PutRefused`] (a put) if it was still waiting, and by nothing if it
    /// was already served (the client then reads that answer).
    Cancel { client: u64, seq: u64 },
    /// How many items are queued, getters and putters wait: answered by [`Reply::Size`].
    Qsize { client: u64, seq: u64 },
    /// The client's handle was dropped: forget its reply channel (one-way).
    Unregister { client: u64 },
    /// Stop the server thread (sent by the manager itself).
    Shutdown,
}

/// The server's message to one client, received on that client's own reply channel.
#[derive(Deserialize)]
pub(crate) enum Reply<T> {
    /// The client's id, in answer to [`Request::Register`].
    Registered { client: u64 },
    /// The item taken by get `seq`.
    Item { seq: u64, item: T },
    /// Get `seq` was non-blocking and the queue was empty.
    Empty { seq: u64 },
    /// Get `seq` was cancelled before an item reached it.
    Cancelled { seq: u64 },
    /// The answer to qsize `seq`: items queued, getters waiting, putters waiting.
    Size {
        seq: u64,
        len: u64,
        getters: u64,
        putters: u64,
    },
    /// Put `seq` is in the queue.
    PutAck { seq: u64 },
    /// Put `seq` did not happen (queue full); here is its item back.
    PutRefused { seq: u64, item: T },
}

// `Reply<T>` is only ever received; the server sends the wire-identical `ReplyOut`, which
// borrows the item so that a failed send (a client that died) leaves it in the queue.
// ipc-channel's typed channels want both directions, so this impl exists to satisfy the bound.
impl<T> Serialize for Reply<T> {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "manager replies are sent as ReplyOut, never as Reply",
        ))
    }
}

/// The sending twin of [`Reply`]: same variants in the same order, so the same bytes on the
/// wire, but [`ReplyOut::Item`] borrows its item.
#[derive(Serialize)]
pub(crate) enum ReplyOut<'a, T> {
    Registered {
        client: u64,
    },
    Item {
        seq: u64,
        item: &'a T,
    },
    Empty {
        seq: u64,
    },
    Cancelled {
        seq: u64,
    },
    Size {
        seq: u64,
        len: u64,
        getters: u64,
        putters: u64,
    },
    PutAck {
        seq: u64,
    },
    PutRefused {
        seq: u64,
        item: &'a T,
    },
}

// Never received: see `Reply`. ipc-channel's `OpaqueIpcSender::to` asks for the bound.
impl<'de, T> Deserialize<'de> for ReplyOut<'_, T> {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(
            "manager replies are received as Reply, never as ReplyOut",
        ))
    }
}

/// The server's end of one client's reply channel, kept untyped so that each send can borrow.
pub(crate) struct ReplySender<T> {
    inner: OpaqueIpcSender,
    item: PhantomData<fn(&T)>,
}

impl<T: Serialize> ReplySender<T> {
    pub(crate) fn new(sender: IpcSender<Reply<T>>) -> Self {
        Self {
            inner: sender.to_opaque(),
            item: PhantomData,
        }
    }

    /// Sends one reply; an error means the client's end is gone (or unusable).
    pub(crate) fn send(&self, reply: ReplyOut<'_, T>) -> Result<(), ipc_channel::IpcError> {
        // The conversion only re-types a clone of the same file descriptor handle.
        self.inner.clone().to::<ReplyOut<'_, T>>().send(reply)
    }
}

/// The sending twin of [`Request::Put`] (variant 0, a sequence of items: the same bytes), which
/// borrows the items, so a batch that fails to encode is still at hand to send item by item.
#[derive(Serialize)]
pub(crate) enum PutOut<'a, T> {
    Put(&'a [T]),
}

// Never received: the server receives `Request`. `OpaqueIpcSender::to` asks for the bound.
impl<'de, T> Deserialize<'de> for PutOut<'_, T> {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(
            "manager requests are received as Request, never as PutOut",
        ))
    }
}
