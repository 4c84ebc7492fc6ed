//! `pipe()` and `Connection<T>`: Python's `multiprocessing.Pipe()`, a duplex channel between
//! two processes with no feeder thread, for the lowest latency; [`pipe_one_way`] is
//! `Pipe(duplex=False)`.
//!
//! Unlike [`Queue::put`](crate::Queue::put), [`Connection::send`] writes to the socket from the
//! calling thread: it is as fast as raw ipc-channel, and, like Python's `Connection.send`, it
//! blocks while the peer's socket buffer is full (a peer that never reads). Use a `Queue` when a
//! writer must never block.
//!
//! Each message is a frame: an item (`send`) or bytes (`send_bytes`), in one stream, in order.
//! As in Python, where `send(x)` is `send_bytes(pickle.dumps(x))`, the bytes of an item are its
//! encoding (postcard, ipc-channel's own): `recv_bytes` of an item gives them, and `recv` of
//! bytes decodes them (a decode failure is `Err(Serde)`, and the bytes are gone, as Python's
//! unpickling error loses the message).
//!
//! Layer: above `wire`; beside `queue`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys;
use crate::wire::{self, ByRef, ipc_transfer_allowed, refuse};

/// Which pipe and which end: `pipe 4242.3, end 1` (made by pid 4242, its fourth pipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEnd {
    /// The pid of the process that made the pipe.
    pub pid: u32,
    /// Which of that process's pipes (counted from 0).
    pub number: u64,
    /// Which end: 0 is the first of the pair `pipe()` returns, 1 the second.
    pub end: u8,
}

impl std::fmt::Display for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pipe {}.{}, end {}", self.pid, self.number, self.end)
    }
}

impl PipeEnd {
    /// The other end of the same pipe.
    pub fn peer(&self) -> PipeEnd {
        PipeEnd {
            end: 1 - self.end,
            ..*self
        }
    }
}

/// Why a call on a pipe [`Connection`] failed; each names the end, and its peer where the peer
/// is the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    /// The other end is gone (closed, dropped, or its process died), and nothing is left to
    /// read (Python's `EOFError` on `recv`, `BrokenPipeError` on `send`).
    #[error(
        "{end}: its peer ({}) is gone (closed, dropped or its process died) and nothing is \
         left to read",
        .end.peer()
    )]
    Disconnected {
        /// This end.
        end: PipeEnd,
    },
    /// Nothing came within the timeout.
    #[error("{end}: nothing received within {waited:?}")]
    Timeout {
        /// This end.
        end: PipeEnd,
        /// How long the call waited.
        waited: Duration,
    },
    /// `try_recv` found nothing ready.
    #[error("{end}: nothing to receive yet")]
    Empty {
        /// This end.
        end: PipeEnd,
    },
    /// The end of a one-way pipe was used the other way (Python's `OSError: connection is
    /// read-only` / `write-only`).
    #[error("{end} only {can} (a one-way pipe, Python's Pipe(duplex=False))")]
    WrongWay {
        /// This end.
        end: PipeEnd,
        /// What it can do: "receives" or "sends".
        can: &'static str,
    },
    /// `recv_bytes_into` was given too little room: the message stays, to be read with a
    /// larger buffer or `recv_bytes` (Python's `BufferTooSmall`, which hands the message over
    /// inside the exception instead).
    #[error(
        "{end}: the next message is {needed} bytes, and the buffer has room for {room} from \
         the offset"
    )]
    BufferTooSmall {
        /// This end.
        end: PipeEnd,
        /// The message's length.
        needed: usize,
        /// The room in the buffer after the offset.
        room: usize,
    },
    /// An offset and size that do not fit the buffer (Python's `ValueError`).
    #[error("{end}: offset {offset} and size {size} do not fit a buffer of {len} bytes")]
    OutOfBounds {
        /// This end.
        end: PipeEnd,
        /// The offset asked for.
        offset: usize,
        /// The size asked for (or what was left).
        size: usize,
        /// The buffer's length.
        len: usize,
    },
    /// An item could not be encoded or decoded; the reason.
    #[error("{end}: {reason}")]
    Serde {
        /// This end.
        end: PipeEnd,
        /// What the encoder or decoder said.
        reason: String,
    },
    /// The socket failed.
    #[error("{end}: {reason}")]
    Io {
        /// This end.
        end: PipeEnd,
        /// The error.
        reason: String,
    },
}

/// One message on the wire: an item or bytes.
#[derive(Serialize, Deserialize)]
enum Frame<T> {
    Item(T),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// [`Frame`] as sent: by reference.
#[derive(Serialize)]
enum FrameOut<'a, T> {
    Item(ByRef<'a, T>),
    Bytes(#[serde(with = "serde_bytes")] &'a [u8]),
}

// ipc-channel wants both directions on a channel type; this one is only ever sent.
impl<'de, T> Deserialize<'de> for FrameOut<'_, T> {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a frame by reference is only ever sent",
        ))
    }
}

/// How long a receive waits.
#[derive(Clone, Copy)]
enum RecvWait {
    Forever,
    For(Duration),
    /// Only what is there now.
    Ready,
}

/// One end of a [`pipe`]: sends to and receives from the other end.
///
/// ```
/// let (left, right) = process_ipc::pipe::<u32>().unwrap();
/// left.send(7).unwrap();
/// assert_eq!(right.recv().unwrap(), 7);
/// right.send(8).unwrap();
/// assert_eq!(left.recv().unwrap(), 8);
/// ```
pub struct Connection<T> {
    tx: Option<IpcSender<Frame<T>>>,
    rx: Option<IpcReceiver<Frame<T>>>,
    /// A frame [`poll`](Connection::poll) received and nobody has taken yet.
    peeked: Mutex<Option<Frame<T>>>,
    end: PipeEnd,
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("end", &self.end)
            .field("readable", &self.rx.is_some())
            .field("writable", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

/// The ends of a new pipe made by this process.
fn new_ends() -> (PipeEnd, PipeEnd) {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let first = PipeEnd {
        pid: std::process::id(),
        number: COUNT.fetch_add(1, Ordering::Relaxed),
        end: 0,
    };
    (first, first.peer())
}

fn connection<T>(
    end: PipeEnd,
    tx: Option<IpcSender<Frame<T>>>,
    rx: Option<IpcReceiver<Frame<T>>>,
) -> Connection<T> {
    Connection {
        tx,
        rx,
        peeked: Mutex::new(None),
        end,
    }
}

/// `multiprocessing.Pipe()`: two connected ends; pass one to a [`Process`](crate::Process).
///
/// # Errors
/// [`PipeError::Io`] if the sockets cannot be made.
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>), PipeError>
where
    T: Serialize + DeserializeOwned,
{
    let (a, b) = new_ends();
    let io = |e: std::io::Error| PipeError::Io {
        end: a,
        reason: e.to_string(),
    };
    let ((a_tx, b_rx), (b_tx, a_rx)) = with_std_fds_open(|| {
        Ok::<_, PipeError>((
            ipc::channel::<Frame<T>>().map_err(io)?,
            ipc::channel::<Frame<T>>().map_err(io)?,
        ))
    })?;
    Ok((
        connection(a, Some(a_tx), Some(a_rx)),
        connection(b, Some(b_tx), Some(b_rx)),
    ))
}

/// `multiprocessing.Pipe(duplex=False)`: `(reader, writer)`, a one-way pipe (one socket pair
/// instead of two). The reader only receives and the writer only sends: the other calls are
/// [`PipeError::WrongWay`].
///
/// ```
/// let (reader, writer) = process_ipc::pipe_one_way::<String>().unwrap();
/// writer.send("one way".into()).unwrap();
/// assert_eq!(reader.recv().unwrap(), "one way");
/// assert!(reader.send("back".into()).is_err());
/// ```
///
/// # Errors
/// [`PipeError::Io`] if the sockets cannot be made.
pub fn pipe_one_way<T>() -> Result<(Connection<T>, Connection<T>), PipeError>
where
    T: Serialize + DeserializeOwned,
{
    let (a, b) = new_ends();
    let (tx, rx) = with_std_fds_open(ipc::channel::<Frame<T>>).map_err(|e| PipeError::Io {
        end: a,
        reason: e.to_string(),
    })?;
    Ok((connection(a, None, Some(rx)), connection(b, Some(tx), None)))
}

/// Runs `make` with descriptors 0, 1 and 2 all open: a standard descriptor the program has
/// closed is held on `/dev/null` meanwhile, so that the descriptors `make` opens (ipc-channel's
/// sockets, whose numbers it keeps to itself) are never 0, 1 or 2. A socket on 1 would take
/// whatever the program prints as a message, and ipc-channel, reading the text as a message
/// header that announces more fragments, waits for them for ever, whatever the timeout
/// (a child that closed its standard output and then made a `pipe` hung so).
pub(crate) fn with_std_fds_open<R>(make: impl FnOnce() -> R) -> R {
    let mut held = Vec::new();
    for fd in 0..=2 {
        if !sys::fd_is_open(fd) {
            // The lowest free number, so this one (the lower ones are open or held already),
            // unless another thread takes it first: then that thread's descriptor is there.
            held.extend(sys::open_dev_null());
        }
    }
    let made = make();
    drop(held);
    made
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Which pipe and end this is (errors name it too).
    pub fn end(&self) -> PipeEnd {
        self.end
    }

    fn error(&self, e: IpcError) -> PipeError {
        match e {
            IpcError::Disconnected => PipeError::Disconnected { end: self.end },
            IpcError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                PipeError::Disconnected { end: self.end }
            }
            IpcError::SerializationError(e) => self.serde(e.to_string()),
            other => PipeError::Io {
                end: self.end,
                reason: other.to_string(),
            },
        }
    }

    fn serde(&self, reason: String) -> PipeError {
        PipeError::Serde {
            end: self.end,
            reason,
        }
    }

    fn sender(&self) -> Result<&IpcSender<Frame<T>>, PipeError> {
        self.tx.as_ref().ok_or(PipeError::WrongWay {
            end: self.end,
            can: "receives",
        })
    }

    fn receiver(&self) -> Result<&IpcReceiver<Frame<T>>, PipeError> {
        self.rx.as_ref().ok_or(PipeError::WrongWay {
            end: self.end,
            can: "sends",
        })
    }

    /// Sends `item` to the other end. Blocks only while the other end's socket buffer is full.
    ///
    /// # Errors
    /// [`PipeError::Disconnected`] once the other end is gone; [`PipeError::Serde`] if `item`
    /// cannot be encoded (the pipe stays usable); [`PipeError::WrongWay`] on the reading end of
    /// a one-way pipe.
    pub fn send(&self, item: T) -> Result<(), PipeError> {
        let tx = self.sender()?;
        // Sent by reference, so a failed encode can still say why in the item's own words.
        let tx = tx.clone().to_opaque().to::<FrameOut<'_, T>>();
        wire::encoding(|| tx.send(FrameOut::Item(ByRef(&item)))).map_err(|(e, refusal)| {
            match refusal.or_else(|| wire::serialize_error(&item)) {
                Some(why) => self.serde(why),
                None => self.error(e),
            }
        })
    }

    /// Sends `buf[offset..offset + size]` as one message of bytes (Python's
    /// `send_bytes(buf, offset, size)`; `send_bytes(buf)` is `send_bytes(buf, 0, buf.len())`).
    ///
    /// # Errors
    /// [`PipeError::OutOfBounds`] if the range does not fit `buf`; as [`send`](Self::send).
    pub fn send_bytes(&self, buf: &[u8], offset: usize, size: usize) -> Result<(), PipeError> {
        let tx = self.sender()?;
        let bytes = offset
            .checked_add(size)
            .and_then(|end| buf.get(offset..end))
            .ok_or(PipeError::OutOfBounds {
                end: self.end,
                offset,
                size,
                len: buf.len(),
            })?;
        let tx = tx.clone().to_opaque().to::<FrameOut<'_, T>>();
        tx.send(FrameOut::Bytes(bytes)).map_err(|e| self.error(e))
    }

    /// The next frame: the one `poll` kept, or one from the socket, waiting as `wait` says.
    fn next_frame(&self, wait: RecvWait) -> Result<Frame<T>, PipeError> {
        let rx = self.receiver()?;
        if let Some(frame) = self.peeked.lock().take() {
            return Ok(frame);
        }
        let timeout = match wait {
            RecvWait::Forever => return rx.recv().map_err(|e| self.error(e)),
            RecvWait::Ready => {
                return match rx.try_recv() {
                    Ok(frame) => Ok(frame),
                    Err(TryRecvError::Empty) => Err(PipeError::Empty { end: self.end }),
                    Err(TryRecvError::IpcError(e)) => Err(self.error(e)),
                };
            }
            RecvWait::For(timeout) => timeout,
        };
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let got = if left.is_zero() {
                rx.try_recv()
            } else {
                rx.try_recv_timeout(left)
            };
            match got {
                Ok(frame) => return Ok(frame),
                Err(TryRecvError::Empty) if started.elapsed() < timeout => continue,
                Err(TryRecvError::Empty) => {
                    return Err(PipeError::Timeout {
                        end: self.end,
                        waited: timeout,
                    });
                }
                Err(TryRecvError::IpcError(e)) => return Err(self.error(e)),
            }
        }
    }

    fn item(&self, frame: Frame<T>) -> Result<T, PipeError> {
        match frame {
            Frame::Item(item) => Ok(item),
            Frame::Bytes(bytes) => postcard::from_bytes(&bytes).map_err(|e| {
                self.serde(format!(
                    "{} bytes sent with send_bytes do not decode as the pipe's item type: {e}",
                    bytes.len()
                ))
            }),
        }
    }

    fn bytes(&self, frame: Frame<T>) -> Result<Vec<u8>, PipeError> {
        match frame {
            Frame::Bytes(bytes) => Ok(bytes),
            Frame::Item(item) => postcard::to_stdvec(&item).map_err(|e| self.serde(e.to_string())),
        }
    }

    /// Waits for the next item.
    ///
    /// # Errors
    /// [`PipeError::Disconnected`] once the other end is gone and nothing is left;
    /// [`PipeError::Serde`] for a message that does not decode (bytes from `send_bytes` that
    /// are not an item's encoding).
    pub fn recv(&self) -> Result<T, PipeError> {
        let frame = self.next_frame(RecvWait::Forever)?;
        self.item(frame)
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` with [`PipeError::Timeout`].
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and `Timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, PipeError> {
        let frame = self.next_frame(RecvWait::For(timeout))?;
        self.item(frame)
    }

    /// The next item if one is ready, else [`PipeError::Empty`].
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and `Empty`.
    pub fn try_recv(&self) -> Result<T, PipeError> {
        let frame = self.next_frame(RecvWait::Ready)?;
        self.item(frame)
    }

    /// Whether a message is there to read, waiting at most `timeout` for one (Python's
    /// `poll(timeout)`; `poll()` is `poll(Duration::ZERO)`). The message is not taken: the
    /// next `recv`, `recv_bytes` or `recv_bytes_into` gets it. As in Python, a peer that is
    /// gone also makes it `true` (the next receive then says `Disconnected`).
    ///
    /// # Errors
    /// [`PipeError::WrongWay`] on the writing end of a one-way pipe; [`PipeError::Io`] if the
    /// socket fails.
    pub fn poll(&self, timeout: Duration) -> Result<bool, PipeError> {
        self.receiver()?;
        if self.peeked.lock().is_some() {
            return Ok(true);
        }
        match self.next_frame(RecvWait::For(timeout)) {
            Ok(frame) => {
                let mut peeked = self.peeked.lock();
                // Another thread may have polled meanwhile: keep the order.
                match peeked.take() {
                    None => *peeked = Some(frame),
                    Some(first) => {
                        *peeked = Some(first);
                        drop(peeked);
                        return Err(PipeError::Io {
                            end: self.end,
                            reason: "two threads polled one end at once and took two messages"
                                .into(),
                        });
                    }
                }
                Ok(true)
            }
            Err(PipeError::Timeout { .. } | PipeError::Empty { .. }) => Ok(false),
            Err(PipeError::Disconnected { .. }) => Ok(true),
            Err(other) => Err(other),
        }
    }

    /// Waits for the next message and gives its bytes (Python's `recv_bytes()`): what
    /// `send_bytes` sent, or an item's encoding.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_bytes(&self) -> Result<Vec<u8>, PipeError> {
        let frame = self.next_frame(RecvWait::Forever)?;
        self.bytes(frame)
    }

    /// As [`recv_bytes`](Self::recv_bytes), at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, PipeError> {
        let frame = self.next_frame(RecvWait::For(timeout))?;
        self.bytes(frame)
    }

    /// Waits for the next message and copies its bytes into `buf` from `offset` (Python's
    /// `recv_bytes_into(buf, offset)`); how many bytes it wrote.
    ///
    /// # Errors
    /// [`PipeError::OutOfBounds`] for an offset past `buf`; [`PipeError::BufferTooSmall`] when
    /// the message does not fit (it stays, for the next receive); as [`recv`](Self::recv).
    pub fn recv_bytes_into(&self, buf: &mut [u8], offset: usize) -> Result<usize, PipeError> {
        if offset > buf.len() {
            return Err(PipeError::OutOfBounds {
                end: self.end,
                offset,
                size: 0,
                len: buf.len(),
            });
        }
        let frame = self.next_frame(RecvWait::Forever)?;
        let bytes = match frame {
            Frame::Bytes(bytes) => bytes,
            item => self.bytes(item)?,
        };
        let room = buf.len() - offset;
        if bytes.len() > room {
            let needed = bytes.len();
            *self.peeked.lock() = Some(Frame::Bytes(bytes));
            return Err(PipeError::BufferTooSmall {
                end: self.end,
                needed,
                room,
            });
        }
        buf[offset..offset + bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// Closes this end (Python's `close()`): the peer's receives get `Disconnected` once they
    /// have read what was sent. Taking `self`, it leaves nothing to misuse after, where
    /// Python raises `OSError: handle is closed`; dropping the end does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl<T> Serialize for Connection<T> {
    /// Moves this end (its sockets) with the value.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !ipc_transfer_allowed() {
            return Err(refuse(
                "a pipe Connection carries file descriptors and can only be passed as a Process argument",
            ));
        }
        if self.peeked.lock().is_some() {
            return Err(serde::ser::Error::custom(format!(
                "{} holds a message that poll() received and nobody has read: read it before \
                 sending the end to another process",
                self.end
            )));
        }
        (&self.tx, &self.rx, &self.end).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Ends<T> = (
            Option<IpcSender<Frame<T>>>,
            Option<IpcReceiver<Frame<T>>>,
            PipeEnd,
        );
        let (tx, rx, end) = <Ends<T>>::deserialize(d)?;
        Ok(connection(end, tx, rx))
    }
}
