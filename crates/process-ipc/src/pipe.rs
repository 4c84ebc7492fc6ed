//! `pipe()` and `Connection<T>`: Python's `multiprocessing.Pipe()`, a duplex channel between
//! two processes with no feeder thread, for the lowest latency.
//!
//! Unlike [`Queue::put`](crate::Queue::put), [`Connection::send`] writes to the socket from the
//! calling thread: it is as fast as raw ipc-channel, and, like Python's `Connection.send`, it
//! blocks while the peer's socket buffer is full (a peer that never reads). Use a `Queue` when a
//! writer must never block.
//!
//! Layer: above `wire`; beside `queue`.

use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::QueueError;
use crate::wire::{self, ByRef, ipc_transfer_allowed, refuse};

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
    tx: IpcSender<T>,
    rx: IpcReceiver<T>,
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// `multiprocessing.Pipe()`: two connected ends; pass one to a [`Process`](crate::Process).
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>), QueueError>
where
    T: Serialize + DeserializeOwned,
{
    let io = |e: std::io::Error| QueueError::Io(e.to_string());
    let ((a_tx, b_rx), (b_tx, a_rx)) = with_std_fds_open(|| {
        Ok::<_, QueueError>((
            ipc::channel::<T>().map_err(io)?,
            ipc::channel::<T>().map_err(io)?,
        ))
    })?;
    Ok((
        Connection { tx: a_tx, rx: a_rx },
        Connection { tx: b_tx, rx: b_rx },
    ))
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
        // SAFETY: F_GETFD only asks whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // The lowest free number, so this one (the lower ones are open or held already),
            // unless another thread takes it first: then that thread's descriptor is there.
            // SAFETY: a valid C string; the result is checked.
            let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if null >= 0 {
                // SAFETY: a descriptor we just opened and own.
                held.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(null) });
            }
        }
    }
    let made = make();
    drop(held);
    made
}

fn recv_error(e: IpcError) -> QueueError {
    match e {
        IpcError::Disconnected => QueueError::Disconnected,
        IpcError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => QueueError::Disconnected,
        IpcError::SerializationError(e) => QueueError::Serde(e.to_string()),
        other => QueueError::Io(other.to_string()),
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends `item` to the other end. Blocks only while the other end's socket buffer is full.
    /// `Err(Disconnected)` once the other end is gone.
    pub fn send(&self, item: T) -> Result<(), QueueError> {
        // Sent by reference, so a failed encode can still say why in the item's own words.
        let tx = self.tx.clone().to_opaque().to::<ByRef<'_, T>>();
        wire::encoding(|| tx.send(ByRef(&item))).map_err(|(e, refusal)| {
            match refusal.or_else(|| wire::serialize_error(&item)) {
                Some(why) => QueueError::Serde(why),
                None => recv_error(e),
            }
        })
    }

    /// Waits for the next item; `Err(Disconnected)` once the other end is gone and drained.
    pub fn recv(&self) -> Result<T, QueueError> {
        self.rx.recv().map_err(recv_error)
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` with `Err(Timeout)`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.try_recv_timeout(left) {
                Ok(item) => return Ok(item),
                Err(TryRecvError::Empty) if Instant::now() < deadline => continue,
                Err(TryRecvError::Empty) => return Err(QueueError::Timeout(timeout)),
                Err(TryRecvError::IpcError(e)) => return Err(recv_error(e)),
            }
        }
    }

    /// The next item if one is ready, else `Err(Empty)`.
    pub fn try_recv(&self) -> Result<T, QueueError> {
        match self.rx.try_recv() {
            Ok(item) => Ok(item),
            Err(TryRecvError::Empty) => Err(QueueError::Empty),
            Err(TryRecvError::IpcError(e)) => Err(recv_error(e)),
        }
    }
}

impl<T> Serialize for Connection<T> {
    /// Moves this end (both of its sockets) with the value.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !ipc_transfer_allowed() {
            return Err(refuse(
                "a pipe Connection carries file descriptors and can only be passed as a Process argument",
            ));
        }
        (&self.tx, &self.rx).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (tx, rx) = <(IpcSender<T>, IpcReceiver<T>)>::deserialize(d)?;
        Ok(Connection { tx, rx })
    }
}
