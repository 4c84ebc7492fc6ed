//! The messages between a [`ManagedQueue`](super::ManagedQueue) client and its queue's server.
//!
//! One request channel per queue carries [`Request`]s from every client, in every process.
//! Puts are one-way. A client that needs answers (get, qsize, flush) registers once, handing
//! the server the sending end of its own reply channel, and then numbers its requests (`seq`)
//! so a reply can always be matched to the call that asked for it.
//!
//! Items a client sends travel as [`Frames`]: each item encoded on its own, so one that the
//! server cannot decode costs only itself, never the items sent with it.

use std::marker::PhantomData;

use ipc_channel::ipc::{IpcSender, OpaqueIpcSender};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Items encoded one by one (postcard), back to back; `ends` holds where each item ends, as
/// little-endian `u32`s (read only where an item is decoded, never parsed as a whole).
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct Frames {
    bytes: ByteBuf,
    ends: ByteBuf,
}

/// postcard's output appended to a `Vec` that stays ours if an encode fails midway.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl Frames {
    /// Appends one item; on failure nothing is appended and the error is postcard's.
    pub(crate) fn push<T: Serialize>(&mut self, item: &T) -> Result<(), postcard::Error> {
        let start = self.bytes.len();
        match postcard::serialize_with_flavor(item, Append(&mut self.bytes)) {
            Ok(()) => {
                // A batch over 4 GiB would not fit the index; ipc-channel refuses far less.
                let end = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
                self.ends.extend_from_slice(&end.to_le_bytes());
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// How many items it holds.
    pub(crate) fn len(&self) -> usize {
        self.ends.len() / 4
    }

    /// Empties it, keeping its buffers for the next batch.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// How many bytes its items take.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Each item decoded on its own, in order.
    pub(crate) fn decode<T: de::DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<T, postcard::Error>> + '_ {
        let mut start = 0usize;
        self.ends.chunks_exact(4).map(move |end| {
            let end = u32::from_le_bytes([end[0], end[1], end[2], end[3]]) as usize;
            let end = end.clamp(start, self.bytes.len());
            let frame = &self.bytes[start..end];
            start = end;
            postcard::from_bytes(frame)
        })
    }
}

/// A client's message to a queue's server.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub(crate) enum Request<T> {
    /// Append items, in order (one-way: no reply). A feeder sends what piled up as one batch.
    /// Items that do not decode are counted for `producer`, whose next [`Request::Flush`]
    /// reports them.
    Put { producer: u64, items: Frames },
    /// Register a client; the server answers [`Reply::Registered`] on `reply`.
    Register {
        /// The sending end of the client's reply channel (its only copy after the send).
        reply: IpcSender<Reply<T>>,
    },
    /// Take an item: answered by [`Reply::Item`], or [`Reply::Empty`] when `block` is false
    /// and nothing is queued. A blocking get waits in the server's FIFO of getters.
    Get { client: u64, seq: u64, block: bool },
    /// Put one item (encoded alone) into a bounded queue: answered by [`Reply::PutAck`] once
    /// it is in, [`Reply::PutRefused`] when the queue is full and `block` is false, or
    /// [`Reply::PutFailed`] if it does not decode. A blocking put waits in the server's FIFO of
    /// putters. The client keeps its item until the answer.
    PutWait {
        client: u64,
        seq: u64,
        item: ByteBuf,
        block: bool,
    },
    /// The client stopped waiting for get or put `seq`: answered by [`Reply::Cancelled`]
    /// (a get) or [`Reply::PutRefused`] (a put) if it was still waiting, and by nothing if it
    /// was already served (the client then reads that answer).
    Cancel { client: u64, seq: u64 },
    /// How many items are queued, getters and putters wait: answered by [`Reply::Size`].
    Qsize { client: u64, seq: u64 },
    /// Everything `producer` sent before is handled: answered by [`Reply::Flushed`], which
    /// says how many of its items did not decode since its last flush.
    Flush {
        client: u64,
        seq: u64,
        producer: u64,
    },
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
    /// Put `seq` did not happen (queue full): the client still has its item.
    PutRefused { seq: u64 },
    /// Put `seq` did not happen: its item does not decode in the manager.
    PutFailed { seq: u64, why: String },
    /// Get `seq` took an item that does not encode; it is dropped, and only this get fails.
    Undeliverable { seq: u64, why: String },
    /// The answer to flush `seq`: `dropped` items of the producer did not decode (`why`: the
    /// first one's error).
    Flushed { seq: u64, dropped: u64, why: String },
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
    },
    PutFailed {
        seq: u64,
        why: String,
    },
    Undeliverable {
        seq: u64,
        why: String,
    },
    Flushed {
        seq: u64,
        dropped: u64,
        why: String,
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

/// The sending twin of [`Request::Put`] (variant 0, the same fields: the same bytes), which
/// borrows its frames, so a feeder reuses one buffer for every batch.
#[derive(Serialize)]
pub(crate) enum PutOut<'a> {
    Put { producer: u64, items: &'a Frames },
}

// Never received: the server receives `Request`. `OpaqueIpcSender::to` asks for the bound.
impl<'de> Deserialize<'de> for PutOut<'_> {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(
            "manager requests are received as Request, never as PutOut",
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

    /// Sends one reply; an error means the client's end is gone (or unusable), or, for a
    /// `SerializationError`, that the reply's item does not encode.
    pub(crate) fn send(&self, reply: ReplyOut<'_, T>) -> Result<(), ipc_channel::IpcError> {
        // The conversion only re-types a clone of the same file descriptor handle.
        self.inner.clone().to::<ReplyOut<'_, T>>().send(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_that_does_not_decode_costs_only_itself() {
        let mut frames = Frames::default();
        for word in ["one", "two", "three"] {
            frames.push(&word.to_string()).unwrap();
        }
        // Item 1 as a u8 instead of a string: garbage for its decoder.
        let mut bytes = Vec::new();
        let mut broken = Frames::default();
        for (i, f) in frames.decode::<String>().enumerate() {
            if i == 1 {
                bytes.push(0xff);
            } else {
                bytes.extend(postcard::to_stdvec(&f.unwrap()).unwrap());
            }
            broken
                .ends
                .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
        broken.bytes = ByteBuf::from(bytes);
        let got: Vec<Result<String, _>> = broken.decode().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_deref().ok(), Some("one"));
        assert!(got[1].is_err());
        assert_eq!(got[2].as_deref().ok(), Some("three"));
        assert_eq!(broken.len(), 3);
    }
}
