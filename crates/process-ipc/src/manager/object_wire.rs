//! The one protocol between a handle to a manager's object (queue, dict, list, namespace,
//! value, lock, event) and the manager, and how it is framed on a connection.
//!
//! A client in another process talks to the manager over a stream of its own (today a
//! connection to the manager's Unix socket, see `rendezvous`): it writes one [`Call`] and reads
//! one [`Answer`], each as a little-endian `u32` length and that many bytes of postcard. One
//! connection carries one call at a time, so no numbering is needed. Keys, values and queue
//! items travel already encoded (postcard bytes): the manager stores bytes and never needs
//! their types, so a value that does not decode is found, and named by type, in the process
//! that asked for it. Nothing here knows the stream is a Unix socket: the framing reads and
//! writes any `Read`/`Write`, and a frame's deadline is the stream's read timeout.
//!
//! Trust: the manager reads frames from any process of its user. A frame over
//! [`MAX_FRAME`], one cut short by the end of the stream, one that does not decode, or one whose
//! rest does not arrive within [`FRAME_WAIT`] once it has begun ends that connection (only
//! that one); nothing is allocated for a frame before its bytes arrive.

use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::stream::{Limits, Stream};

/// What kind of object a number names (a call says which kind its handle expects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Lock,
    Event,
    Queue,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Namespace => "namespace",
            Kind::Value => "value",
            Kind::Lock => "lock",
            Kind::Event => "event",
            Kind::Queue => "queue",
        }
    }
}

/// One operation on object `object`, which the caller's handle says is a `kind`.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Call {
    pub(crate) object: u64,
    pub(crate) kind: Kind,
    pub(crate) op: Op,
}

/// What a call asks; the answer each gets is in its doc.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Op {
    /// Entries (dict, list, namespace): `Len`.
    Len,
    /// Empties a dict or a list: `Done`.
    Clear,
    /// Dict: the value under a key, `One`.
    DictGet(ByteBuf),
    /// Dict: sets a key, `One` with the value it replaced.
    DictInsert(ByteBuf, ByteBuf),
    /// Dict: removes a key, `One` with its value.
    DictRemove(ByteBuf),
    /// Dict: `Bool`.
    DictContains(ByteBuf),
    /// Dict: sets every pair, in order, as one step: `Done`.
    DictUpdate(Vec<(ByteBuf, ByteBuf)>),
    /// Dict: the value under a key, set to the one given first if missing: `One`.
    DictSetDefault(ByteBuf, ByteBuf),
    /// Dict: `Many`, in insertion order.
    DictKeys,
    /// Dict: `Many`, in insertion order.
    DictValues,
    /// Dict: `Pairs`, in insertion order.
    DictItems,
    /// Dict: removes the pair inserted last: `Pairs` with it, or with none when empty.
    DictPopItem,
    /// List: `Done`.
    ListAppend(ByteBuf),
    /// List: appends every item as one step: `Done`.
    ListExtend(Vec<ByteBuf>),
    /// List: `One` (`None` past the end).
    ListGet(u64),
    /// List: replaces an item, `One` with the old one, or `Refused(IndexOutOfRange)`.
    ListSet(u64, ByteBuf),
    /// List: inserts before an index (`len` appends): `Done`, or `Refused(IndexOutOfRange)`.
    ListInsert(u64, ByteBuf),
    /// List: removes the item at an index, `One`, or `Refused(IndexOutOfRange)`.
    ListRemove(u64),
    /// List: removes the last item, `One` (`None` when empty).
    ListPop,
    /// List: `Many`, every item in order.
    ListAll,
    /// List: `Len`, how many items equal (byte for byte) the one given.
    ListCount(ByteBuf),
    /// List: `Len`, the first index of an item equal to the one given within `start..end`
    /// (clamped to the list), or `Refused(NotInList)`.
    ListIndex(ByteBuf, u64, u64),
    /// List: removes the first item equal to the one given: `Done`, or `Refused(NotInList)`.
    ListRemoveValue(ByteBuf),
    /// List: reverses it in place: `Done`.
    ListReverse,
    /// List: `Many`, the items of `start..end`, clamped to the list (Python's `l[a:b]`).
    ListSlice(u64, u64),
    /// List: replaces the items of `start..end` (clamped) by the ones given, as one step:
    /// `Many`, the items it replaced (Python's `l[a:b] = items`, `del l[a:b]`).
    ListSplice(u64, u64, Vec<ByteBuf>),
    /// Namespace: `One` (`None`: no such name).
    NsGet(String),
    /// Namespace: `One` with the value it replaced.
    NsSet(String, ByteBuf),
    /// Namespace: `One` with the value removed.
    NsRemove(String),
    /// Namespace: `Many` (each a postcard `String`), sorted.
    NsNames,
    /// Value: `One` (always `Some`).
    ValueGet,
    /// Value: `One` with the value it replaced.
    ValueSet(ByteBuf),
    /// Lock: `Bool` (whether it was acquired), or `Refused(OwnerDied)`. `wait`: see [`WireWait`].
    Acquire(WireWait),
    /// Lock: `Done`, or `Refused(NotHeld)`.
    Release,
    /// Lock: `Len`, how many acquires wait.
    LockWaiting,
    /// Event: `Done`.
    EventSet,
    /// Event: `Done`.
    EventClear,
    /// Event: `Bool`.
    EventIsSet,
    /// Event: `Bool` (whether it is set: false only when the wait ran out).
    EventWait(WireWait),
    /// Queue: puts one encoded item, waiting `wait` for room in a bounded queue: `Bool`
    /// (false: still full, the item was not put).
    QueuePut(ByteBuf, WireWait),
    /// Queue: puts encoded items framed as the rings frame them (each a LEB128 length, then
    /// its bytes), in order, as one step: `Len`, how many. A batch that does not parse is
    /// refused whole.
    QueuePutFramed(ByteBuf),
    /// Queue: takes the oldest item, waiting `wait` for one: `One` (`None`: none came).
    QueueGet(WireWait),
    /// Queue: `Counts`.
    QueueCounts,
    /// Queue: Python 3.13's `shutdown(immediate)`: `Done`.
    QueueShutdown(bool),
    /// Manager (the call's object is ignored): makes an object of the call's kind, a queue
    /// bounded by `maxsize`, a value holding `initial`: `Len`, its number.
    Make {
        maxsize: Option<u64>,
        initial: Option<ByteBuf>,
    },
    /// Manager: names the call's object `name` (a name given again moves to this object):
    /// `Done`, or `Refused(NoSuchObject | WrongKind)`.
    Register(String),
    /// Manager: the object named so, which must be of the call's kind: `Named`, or
    /// `Refused(NoSuchName | WrongKind)`.
    Lookup(String),
}

/// How long a call may wait in the manager (a lock acquire, an event wait, a queue get or a
/// bounded put), as it travels: the time left, not a deadline (the two hosts' clocks differ).
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) enum WireWait {
    No,
    /// At most this many nanoseconds.
    Nanos(u64),
    Forever,
}

/// The manager's answer to one [`Call`].
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Answer {
    Done,
    Bool(bool),
    Len(u64),
    One(Option<ByteBuf>),
    Many(Vec<ByteBuf>),
    Pairs(Vec<(ByteBuf, ByteBuf)>),
    Refused(Refusal),
    /// A queue's items, waiting getters and waiting putters.
    Counts {
        items: u64,
        getters: u64,
        putters: u64,
    },
    /// The object a name stands for, and its bound when it is a queue.
    Named {
        object: u64,
        maxsize: Option<u64>,
    },
}

/// Why the manager did not do a call.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Refusal {
    /// The manager shut down.
    Gone,
    /// No object has that number (a handle from another manager, or made up).
    NoSuchObject,
    /// The object is of another kind than the handle says (a handle decoded as another type).
    WrongKind { is: String, wanted: String },
    /// The lock's holder died holding it (the lock is free again): its pid, and over TCP the
    /// address its connection came from.
    OwnerDied { owner: u32, peer: Option<String> },
    /// A list index past the end.
    IndexOutOfRange { index: u64, len: u64 },
    /// No item of the list equals the one given (Python's `ValueError`).
    NotInList,
    /// A release of a lock this caller does not hold.
    NotHeld,
    /// The call itself did not decode (a client of another build).
    Malformed(String),
    /// The queue was shut down (its own `shutdown`, not the manager's): no put, and no get
    /// once it is empty.
    ShutDown,
    /// No object is registered under this name.
    NoSuchName(String),
}

/// The largest frame either side reads (a length over it is not ours, and would otherwise be
/// allocated first).
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Appends `message` to `out` as one frame (length, then postcard).
pub(crate) fn encode_frame<M: Serialize>(message: &M, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let encoded = postcard::to_extend(message, std::mem::take(out));
    *out = encoded.map_err(io::Error::other)?;
    let len = u32::try_from(out.len() - start - 4).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a manager message over 4 GiB does not fit one frame",
        )
    })?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes `message` as one frame, with one write; `buf` is scratch space kept between calls.
pub(crate) fn write_frame<M: Serialize>(
    writer: &mut impl Write,
    message: &M,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    encode_frame(message, buf)?;
    writer.write_all(buf)
}

/// How long either side of a connection polls for the next frame before it sleeps in `read`.
/// A call's answer, and a busy client's next call, usually come well within it: on a quiet
/// machine a poll that finds the frame saves the wake-up of a sleeping reader, which is most
/// of a round trip on a Unix socket (reading at once made the local dict bench 4.6x slower).
pub(crate) const SPIN: Duration = Duration::from_micros(40);

/// How long the manager waits for the rest of a frame once its first byte arrived: a peer that
/// stalls mid-frame is dropped after it (an idle connection, between frames, is not).
pub(crate) const FRAME_WAIT: Duration = Duration::from_secs(5);

/// The read half of a connection: each read first polls for up to [`SPIN`] (see
/// [`sys::recv_within`](crate::sys::recv_within)), then blocks as a plain read does (with the
/// socket's read timeout, or until `deadline` when one is set).
pub(crate) struct SpinRead {
    pub(crate) stream: Stream,
    /// How long a read polls before it sleeps: [`SPIN`], or zero where the next frame is not
    /// expected soon (after a batch of puts, whose sender collects the next one first).
    pub(crate) spin: Duration,
    /// Set while the manager reads the rest of a frame: reads past it fail with `TimedOut`.
    deadline: Option<std::time::Instant>,
    /// The largest frame the manager reads here, and how long the rest of one may take.
    pub(crate) limits: Limits,
}

impl SpinRead {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            spin: SPIN,
            deadline: None,
            limits: Limits {
                max_frame: MAX_FRAME,
                frame_wait: FRAME_WAIT,
            },
        }
    }
}

impl Read for SpinRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.spin.is_zero() {
            if let Some(n) = crate::sys::recv_within(self.stream.as_raw_fd(), buf, self.spin)? {
                return Ok(n);
            }
        }
        let Some(deadline) = self.deadline else {
            return self.stream.read(buf);
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the rest of a frame did not come within {:?}",
                    self.limits.frame_wait
                ),
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let read = self.stream.read(buf);
        self.stream.set_read_timeout(None)?;
        read
    }
}

/// The manager's read of the next call: waits without bound for a frame to begin (an idle
/// client is fine), then at most the connection's frame wait ([`FRAME_WAIT`] unless set) for
/// the rest of it, and refuses a frame over its limit. Errors as [`read_frame`].
pub(crate) fn read_call(
    reader: &mut io::BufReader<SpinRead>,
    buf: &mut Vec<u8>,
) -> io::Result<Call> {
    let limits = reader.get_ref().limits;
    let ready = reader.fill_buf()?;
    if ready.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    // The usual case: the whole frame is already buffered, and no deadline is needed.
    let whole = ready.len() >= 4 && {
        let len = u32::from_le_bytes([ready[0], ready[1], ready[2], ready[3]]) as usize;
        ready.len() - 4 >= len
    };
    if whole {
        return read_frame_within(reader, buf, limits.max_frame);
    }
    reader.get_mut().deadline = std::time::Instant::now().checked_add(limits.frame_wait);
    let call = read_frame_within(reader, buf, limits.max_frame);
    reader.get_mut().deadline = None;
    call
}

/// Reads one frame into `buf` and decodes it. An end of stream before or inside the frame is
/// `UnexpectedEof`; a frame that does not decode is `InvalidData`; a length over
/// [`MAX_FRAME`] is `InvalidInput`. The buffer grows as bytes arrive, never ahead of them.
pub(crate) fn read_frame<M: for<'de> Deserialize<'de>>(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
) -> io::Result<M> {
    read_frame_within(reader, buf, MAX_FRAME)
}

/// As [`read_frame`], refusing a frame over `limit` bytes.
pub(crate) fn read_frame_within<M: for<'de> Deserialize<'de>>(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<M> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        // Not a frame of ours: the stream cannot be read on from here.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {len} bytes is over the {limit}-byte limit"),
        ));
    }
    buf.clear();
    let got = reader.take(len as u64).read_to_end(buf)?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("a frame of {len} bytes ended after {got}"),
        ));
    }
    postcard::from_bytes(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips() {
        let call = Call {
            object: 7,
            kind: Kind::Dict,
            op: Op::DictInsert(ByteBuf::from(vec![1, 2]), ByteBuf::from(vec![3])),
        };
        let mut buf = Vec::new();
        let mut wire = Vec::new();
        write_frame(&mut wire, &call, &mut buf).unwrap();
        let back: Call = read_frame(&mut &wire[..], &mut buf).unwrap();
        assert_eq!(back.object, 7);
        assert!(
            matches!(back.op, Op::DictInsert(k, v) if k.as_slice() == [1, 2] && v.as_slice() == [3])
        );
        let mut empty: &[u8] = &[];
        let end = read_frame::<Call>(&mut empty, &mut buf).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
        let mut huge: &[u8] = &u32::MAX.to_le_bytes();
        let refused = read_frame::<Call>(&mut huge, &mut buf).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        let mut garbage = 1u32.to_le_bytes().to_vec();
        garbage.push(0xff);
        let undecodable = read_frame::<Call>(&mut &garbage[..], &mut buf).unwrap_err();
        assert_eq!(undecodable.kind(), io::ErrorKind::InvalidData);
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes, read as a stream of frames under a small limit: each read is a call or
        /// an error, never a panic, and the buffer never grows past the limit's worth.
        #[test]
        fn the_frame_decoder_takes_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            limit in 0usize..256,
        ) {
            let mut reader = &bytes[..];
            let mut buf = Vec::new();
            for _ in 0..bytes.len() + 1 {
                let before = reader.len();
                let read = read_frame_within::<Call>(&mut reader, &mut buf, limit);
                prop_assert!(buf.capacity() <= 2 * limit + 64, "{} for limit {limit}", buf.capacity());
                if read.is_err() || reader.len() == before {
                    break;
                }
            }
        }

        /// A length prefix that claims more than is there allocates only what arrived.
        #[test]
        fn a_claimed_length_is_not_allocated_ahead(claimed in 0u32.., body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut wire = claimed.to_le_bytes().to_vec();
            wire.extend_from_slice(&body);
            let mut buf = Vec::new();
            let _ = read_frame::<Answer>(&mut &wire[..], &mut buf);
            prop_assert!(buf.capacity() <= 2 * body.len() + 64);
        }
    }
}
