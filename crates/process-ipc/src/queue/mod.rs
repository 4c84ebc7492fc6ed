//! `Queue<T>` and its put-only `QueueSender<T>`: Python's `multiprocessing.Queue`, a FIFO that
//! any number of processes put to and get from, each item going to exactly one reader.
//!
//! Putting is Python's design: `put` serializes the item at once and a feeder thread per
//! putting handle moves the buffer into the queue in chunks (`feed.rs`), so `put` on an
//! unbounded queue never blocks. The queue itself is a ring in shared memory (`crate::ring`) with a
//! robust process-wide lock for writers and another for readers, so a feeder and a reader never
//! wait for each other, and a holder that dies does not stop the others.

pub(crate) mod feed;
mod joinable;
mod sender;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::joinable::JoinableQueue;
pub use self::sender::{PutError, QueueSender};
use self::sender::{refuse_owned, slot_index};
use crate::error::QueueError;
use crate::ring::{Next, Ring, RingError, RingParts, Shutdown, WaitLimit};
use crate::wire::{ipc_transfer_allowed, refuse};

/// The largest item, serialized, that `put` accepts by default, and the most any queue can
/// carry: 4 GiB - 1. Python has no limit of its own; [`Queue::with_item_limit`] sets a lower
/// one.
pub const MAX_ITEM_BYTES: usize = u32::MAX as usize;

/// Bytes of records in a queue's ring. Items up to a quarter of it travel in one record,
/// bigger ones in pieces.
const RING_BYTES: usize = 1 << 20;

const TRANSFER_ONLY: &str = "a queue handle carries file descriptors and can only be passed as a \
                             Process argument (not inside a Pool task, a queue item or a file)";

fn io(e: impl std::fmt::Display) -> QueueError {
    QueueError::Io(e.to_string())
}

/// A ring's failure as the queue reports it.
pub(crate) fn ring_error(e: RingError) -> QueueError {
    match e {
        RingError::Broken { ring, check } => QueueError::Corrupt {
            queue: ring,
            check: check.into(),
        },
        RingError::Lock(e) => io(e),
        RingError::ShutDown => QueueError::ShutDown,
    }
}

/// `multiprocessing.Queue`: a FIFO of serde values between any number of processes.
///
/// Every process that holds the `Queue` can [`put`](Queue::put) and [`get`](Queue::get); pass
/// [`q.handle()`](Queue::handle) (or the `Queue` itself) to a [`Process`](crate::Process) as an
/// argument, as often as you like, and [`sender`](Queue::sender) for a put-only handle. Each
/// item goes to exactly one reader, whichever asks first. `put` never blocks on an unbounded
/// queue (the item is serialized at once, then moved into the queue by a feeder thread);
/// [`Queue::bounded`] makes it wait while the queue holds `maxsize` items.
///
/// ```
/// let q = process_ipc::Queue::<String>::new().unwrap();
/// q.put("hello".to_string()).unwrap();
/// assert_eq!(q.get().unwrap(), "hello");
/// assert_eq!(q.get_nowait(), Err(process_ipc::QueueError::Empty));
/// ```
///
/// # The end of a reader loop
///
/// `get` on an empty queue returns [`QueueError::Disconnected`] once no putting handle is
/// left: every [`QueueSender`] is dropped (or its process died, even by SIGKILL: found within
/// about 50 ms), and every `Queue` handle that counts as a putter is [closed](Queue::close) or
/// dropped. The `Queue` made by [`new`](Queue::new) counts as a putter until it is closed, and
/// so does that `Queue` moved into a child (its putting end moves with it); a handle made by
/// [`handle`](Queue::handle) counts only once it has put, wherever it is. So give each consumer
/// child `q.handle()` and close the creator's handle when it is done putting: the consumers'
/// loops then end by themselves, with no sentinel items (Python needs one per consumer):
///
/// ```
/// use process_ipc::{Process, Queue, QueueError};
///
/// fn consume(q: Queue<u32>) -> Vec<u32> {
///     let mut got = Vec::new();
///     loop {
///         match q.get() {
///             Ok(x) => got.push(x),
///             Err(QueueError::Disconnected) => return got, // no putter left, queue drained
///             Err(e) => panic!("{e}"),
///         }
///     }
/// }
///
/// let q = Queue::<u32>::new().unwrap();
/// let consumers: Vec<_> = (0..2)
///     .map(|_| Process::new(consume, (q.handle(),)).start().unwrap())
///     .collect();
/// for i in 0..100 {
///     q.put(i).unwrap();
/// }
/// q.close(); // the last putter: the consumers' loops end once the queue is drained
/// let mut all: Vec<u32> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
/// all.sort();
/// assert_eq!(all, (0..100).collect::<Vec<_>>()); // each item exactly once
/// ```
///
/// A producer should be handed a [`QueueSender`] or the `Queue` itself (both count from the
/// moment they are sent); a producer handed a `q.handle()` counts only from its first `put`,
/// so if every other putter is gone before that, readers may see the end first.
///
/// # Faults, and what they cost
///
/// An item that fails to decode (its `Deserialize` refuses the bytes) fails only its own
/// `get`, with [`QueueError::Serde`] saying so; the next `get` returns the next item.
///
/// The loss bound. Each `get` takes from the queue exactly the item it returns, nothing ahead:
/// - a reader that returns, or drops its handle, loses nothing it did not hand out;
/// - a reader killed (SIGKILL) at any instant loses at most the item it was handing out.
///   An item it was killed in the middle of taking, before the queue moved past it, goes to
///   the next reader instead: no item is ever delivered twice. The queue's read lock is robust
///   (the kernel releases it for a dead holder), so the other readers carry on;
/// - a putter killed in the middle of an item loses only that item (the `get` that began it
///   reports it as [`QueueError::Serde`] "lost"); items a killed putter had not yet moved out
///   of its feeder are lost too (on a bounded queue their places stay taken).
///
/// An item over a quarter of the ring (256 KiB) travels in pieces. A `get_timeout` that runs
/// out while its writer is slow, stopped or silent returns [`QueueError::Timeout`] on time and
/// keeps the pieces it took in this process: the next `get` of any handle of this process goes
/// on with that item, and readers in other processes wait for it rather than take its pieces.
/// If this process drops every handle of the queue (or dies) first, that one item is lost.
///
/// The queue's shared memory is untrusted: another process with a memory bug (or a stray
/// write) cannot make a `get` read out of bounds, panic, hang or deliver twice. A damaged
/// record is skipped ([`QueueError::Damaged`]: only what it held is lost); damage that leaves
/// no known place to go on from breaks the queue, and every later call on it in any process
/// returns [`QueueError::Corrupt`] at once, naming the check that failed.
///
/// Every `*_timeout` call returns within its timeout (plus scheduling noise) whatever the
/// other processes do: stopped, silent, dead or scribbling.
///
/// [`qsize`](Queue::qsize) counts an item from its `put` on, in every process, as Python
/// does; it and [`empty`](Queue::empty) and [`full`](Queue::full) are snapshots only while
/// other processes put and get (and stay off by the items a killed putter lost).
///
/// # Ending a queue
///
/// [`shutdown`](Queue::shutdown) (Python 3.13) ends it for every process: puts fail with
/// [`QueueError::ShutDown`], handing their items back, and gets drain what is left and then
/// fail the same way; blocked callers wake. [`JoinableQueue`] adds `task_done` and `join`.
///
/// Byte payloads: wrap them in `serde_bytes::ByteBuf` (from the `serde_bytes` crate); a plain
/// `Vec<u8>` is encoded byte by byte, several times slower.
pub struct Queue<T> {
    ring: Ring,
    /// This handle's putting end: made at creation, or at the first put through a handle.
    sender: Mutex<Option<QueueSender<T>>>,
    closed: AtomicBool,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

fn decode_error(e: postcard::Error) -> QueueError {
    QueueError::Serde(format!(
        "this item could not be decoded ({e}); only it is lost, the next get returns the next item"
    ))
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A new, empty, unbounded queue.
    pub fn new() -> Result<Self, QueueError> {
        Self::with_item_limit(MAX_ITEM_BYTES)
    }

    /// A new, empty queue holding at most `maxsize` items (Python's `Queue(maxsize)`): `put`
    /// waits while it is full, [`put_timeout`](Self::put_timeout) and
    /// [`put_nowait`](Self::put_nowait) give up with [`QueueError::Full`]. Items still in a
    /// producer's feeder count, as in Python. `maxsize` 0 is [`QueueError::Invalid`] (Python
    /// reads 0 as "unbounded": use [`new`](Self::new) for that).
    ///
    /// ```
    /// use process_ipc::{Queue, QueueError};
    /// use std::time::Duration;
    ///
    /// let q = Queue::<u8>::bounded(2).unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert!(q.full());
    /// assert_eq!(q.put_nowait(3).unwrap_err().error, QueueError::Full);
    /// let refused = q.put_timeout(3, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(refused.into_inner(), Some(3)); // the item comes back
    /// assert_eq!(q.get().unwrap(), 1);
    /// q.put_nowait(3).unwrap();
    /// assert_eq!(q.maxsize(), Some(2));
    /// assert!(matches!(Queue::<u8>::bounded(0), Err(QueueError::Invalid(_))));
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Self, QueueError> {
        if maxsize == 0 {
            return Err(QueueError::Invalid(
                "maxsize 0: a bounded queue must hold at least one item",
            ));
        }
        Self::make(maxsize, MAX_ITEM_BYTES)
    }

    /// A new, empty queue whose `put` (through this handle and every [`QueueSender`] made from
    /// it, in any process) refuses items over `limit` bytes serialized with
    /// [`QueueError::TooLarge`]. A limit over [`MAX_ITEM_BYTES`] is [`MAX_ITEM_BYTES`].
    ///
    /// ```
    /// use process_ipc::{Queue, QueueError};
    ///
    /// let q = Queue::<String>::with_item_limit(16).unwrap();
    /// let err = q.put("x".repeat(100)).unwrap_err();
    /// assert!(matches!(err.error, QueueError::TooLarge { limit: 16, .. }));
    /// q.put("small".into()).unwrap();
    /// assert_eq!(q.get().unwrap(), "small");
    /// ```
    pub fn with_item_limit(limit: usize) -> Result<Self, QueueError> {
        Self::make(0, limit)
    }

    fn make(maxsize: usize, limit: usize) -> Result<Self, QueueError> {
        let ring = Ring::create(RING_BYTES, maxsize, limit.min(MAX_ITEM_BYTES)).map_err(io)?;
        let sender = QueueSender::register(&ring)?;
        Ok(Queue {
            ring,
            sender: Mutex::new(Some(sender)),
            closed: AtomicBool::new(false),
        })
    }

    /// Another handle on this queue, to pass to another process (or thread) so that it gets
    /// (and puts) too: Python passes the same `Queue` to every consumer. The new handle counts
    /// as a putter only once it puts, so a consumer's `get` loop ends when the producers do.
    ///
    /// ```
    /// let q = process_ipc::Queue::<u8>::new().unwrap();
    /// let other = q.handle();
    /// q.put(1).unwrap();
    /// assert_eq!(other.get().unwrap(), 1);
    /// ```
    pub fn handle(&self) -> Queue<T> {
        Queue {
            ring: self.ring.clone(),
            sender: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// A put-only handle for another process (or thread). Fails after [`close`](Self::close).
    pub fn sender(&self) -> Result<QueueSender<T>, QueueError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        match &*self.sender.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(own) => Ok(own.clone()),
            None => QueueSender::register(&self.ring),
        }
    }

    /// This handle's own putting end, made on first use by a handle that had none.
    fn own_sender(&self) -> Result<QueueSender<T>, QueueError> {
        let mut own = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        if own.is_none() {
            *own = Some(QueueSender::register(&self.ring)?);
        }
        Ok(own.as_ref().expect("just made").clone())
    }

    /// Puts `item`. Never blocks on an unbounded queue; see [`QueueSender::put`]. A failed put
    /// hands the item back ([`PutError::into_inner`]), and `?` turns it into its
    /// [`QueueError`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        match self.own_sender() {
            Ok(own) => own.put(item),
            Err(e) => Err(PutError::new(e, item)),
        }
    }

    /// See [`QueueSender::put_timeout`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        match self.own_sender() {
            Ok(own) => own.put_timeout(item, timeout),
            Err(e) => Err(PutError::new(e, item)),
        }
    }

    /// See [`QueueSender::put_nowait`].
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        match self.own_sender() {
            Ok(own) => own.put_nowait(item),
            Err(e) => Err(PutError::new(e, item)),
        }
    }

    /// `Queue.close()`: this handle will put no more. Items already put are still delivered;
    /// once every other putting handle is gone too, `get` on the empty queue returns
    /// `Disconnected`. Getting through this handle still works.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(sender);
    }

    /// Removes and returns the next item, waiting as long as it takes.
    /// `Err(Disconnected)` when the queue is empty and no putting handle is left (see "The end
    /// of a reader loop" above).
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_inner(|| WaitLimit::Forever, Duration::MAX)
    }

    /// Like [`get`](Self::get), giving up after `timeout` with `Err(Timeout)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        // The deadline is made only if the item is not taken at once.
        let wait = || {
            Instant::now()
                .checked_add(timeout)
                .map_or(WaitLimit::Forever, WaitLimit::Until)
        };
        self.get_inner(wait, timeout)
    }

    /// Python's `get_nowait()`: the next item if one is ready, else `Err(Empty)` (or
    /// `Err(Disconnected)` if none will come).
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.get_inner(|| WaitLimit::No, Duration::ZERO)
    }

    fn get_inner(
        &self,
        wait: impl FnOnce() -> WaitLimit,
        timeout: Duration,
    ) -> Result<T, QueueError> {
        // After an immediate shutdown nothing is handed out: what a feeder moved in since is
        // dropped (and counted done) here.
        if self.ring.shutdown_state().map_err(ring_error)? == Shutdown::Immediate {
            self.ring.drain().map_err(ring_error)?;
            return Err(QueueError::ShutDown);
        }
        // The decoder's error is kept aside: what comes back through the ring is then only
        // the item or not (a small value the compiler keeps in registers; moving postcard's
        // result through memory stalled every get).
        let mut why = None;
        let got = self
            .ring
            .next_waiting(wait, |bytes| {
                postcard::from_bytes::<T>(bytes)
                    .map_err(|e| why = Some(e))
                    .ok()
            })
            .map_err(ring_error)?;
        match got {
            Next::One(Some(item)) => Ok(item),
            Next::One(None) => Err(decode_error(why.unwrap_or(postcard::Error::SerdeDeCustom))),
            Next::Lost(why) => Err(QueueError::Serde(format!(
                "this item was lost: {why}; the next get returns the next item"
            ))),
            Next::Damaged(check) => Err(QueueError::Damaged {
                queue: self.ring.name().into(),
                check: check.into(),
            }),
            Next::Empty => Err(QueueError::Empty),
            Next::Timeout => Err(QueueError::Timeout(timeout)),
            Next::Disconnected => Err(QueueError::Disconnected),
        }
    }

    /// Python's `qsize()`: how many items wait in the queue. An item counts from the moment
    /// its `put` returns, in every process, as Python counts it (before the feeder has moved
    /// it); a `get` uncounts it as it takes it. It is exact when nothing runs at the same time;
    /// while other processes put and get it is a snapshot, already old when it returns (as in
    /// Python). Items a putter killed (SIGKILL) before its feeder moved them are lost and stay
    /// counted.
    ///
    /// ```
    /// let q = process_ipc::Queue::new().unwrap();
    /// q.put(1u8).unwrap();
    /// assert_eq!(q.qsize(), 1); // at once: the feeder may not have moved it yet
    /// let tx = q.sender().unwrap();
    /// for i in 0..3u8 {
    ///     tx.put(i).unwrap();
    /// }
    /// assert_eq!(q.qsize(), 4);
    /// assert_eq!(q.get().unwrap(), 1);
    /// assert_eq!(q.qsize(), 3);
    /// assert!(!q.empty());
    /// ```
    pub fn qsize(&self) -> usize {
        if self.ring.maxsize() > 0 {
            self.ring.reserved()
        } else {
            self.ring.queued()
        }
    }

    /// Python's `empty()`: [`qsize`](Self::qsize) is 0 (a snapshot, as Python's). An item
    /// counted may still be on its way into the queue, so a `get_nowait` right after a `put`
    /// can find nothing yet, as in Python.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Python's `full()`: a bounded queue holds `maxsize` items (a snapshot, see
    /// [`qsize`](Self::qsize)); always false for an unbounded one.
    pub fn full(&self) -> bool {
        let max = self.ring.maxsize();
        max > 0 && self.ring.reserved() >= max
    }

    /// Python 3.13's `shutdown(immediate=False)`, for every handle in every process: from now
    /// on `put` fails with [`QueueError::ShutDown`] and hands its item back, and `get` takes
    /// what is left, then fails with [`QueueError::ShutDown`] (rather than waiting, or
    /// [`QueueError::Disconnected`]). With `immediate`, what is left is dropped (counted done
    /// for a [`JoinableQueue`]) and `get` fails at once. Every blocked `get`, and every `put`
    /// waiting for a place in a bounded queue, wakes with [`QueueError::ShutDown`], in any
    /// process, within a few milliseconds (a futex wake-up; at most 50 ms if it is missed).
    ///
    /// Items put before the shutdown and still in a feeder are delivered (or, with
    /// `immediate`, dropped as they arrive). A plain shutdown first waits until this process's
    /// feeders have moved what it put into the queue (as [`QueueSender::flush`]), so a getter
    /// anywhere takes those before it sees the end: the producer that shuts the queue down
    /// when it is done loses nothing. Items another process put and has not moved yet may
    /// land after a getter saw `ShutDown` (the next get returns them): have that process
    /// [`flush`](QueueSender::flush) first if the order matters. Shutting down again is
    /// allowed; an immediate shutdown after a plain one drops what is left.
    ///
    /// ```
    /// use process_ipc::{Queue, QueueError};
    ///
    /// let q = Queue::new()?;
    /// q.put(1u32)?;
    /// q.put(2)?;
    /// q.shutdown(false)?;
    /// let refused = q.put(3).unwrap_err();
    /// assert_eq!(refused.error, QueueError::ShutDown);
    /// assert_eq!(refused.into_inner(), Some(3)); // the item comes back
    /// assert_eq!(q.get()?, 1); // what is left can still be taken
    /// q.shutdown(true)?; // drops the rest
    /// assert_eq!(q.get(), Err(QueueError::ShutDown));
    /// assert!(q.is_shutdown());
    /// # Ok::<(), QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Corrupt`] if the queue's shared memory is damaged (its shutdown word
    /// included: a value no queue writes names that check).
    pub fn shutdown(&self, immediate: bool) -> Result<(), QueueError> {
        if !immediate {
            // What this process put first lands first, so no get sees the end before it.
            feed::flush_ring(self.ring.local_id());
        }
        self.ring.shut_down(immediate).map_err(ring_error)?;
        if !immediate {
            // A put of another thread that passed just before the shutdown.
            feed::flush_ring(self.ring.local_id());
        }
        Ok(())
    }

    /// Whether [`shutdown`](Self::shutdown) was called, by any process (a damaged shutdown
    /// word reads as shut down; the next call on the queue reports it).
    pub fn is_shutdown(&self) -> bool {
        !matches!(self.ring.shutdown_state(), Ok(Shutdown::Open))
    }

    /// Test only (the `test-fault` feature): adds `add` (wrapping) to the ring's `"head"`,
    /// `"tail"`, `"shutdown"`, `"accepted"` or `"done"` word, as a process with a memory bug
    /// might.
    #[cfg(feature = "test-fault")]
    #[doc(hidden)]
    pub fn __scribble(&self, word: &str, add: u64) {
        self.ring.scribble(word, add);
    }

    /// Test only (the `test-fault` feature): the bytes in the ring, written and not yet freed
    /// (unlike [`qsize`](Self::qsize), which counts an item from its `put`).
    #[cfg(feature = "test-fault")]
    #[doc(hidden)]
    pub fn __ring_bytes(&self) -> u64 {
        self.ring.used_bytes()
    }

    /// Python's `maxsize`: `Some(n)` for [`bounded(n)`](Self::bounded), `None` if unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        Some(self.ring.maxsize()).filter(|&m| m > 0)
    }
}

impl<T> Serialize for Queue<T> {
    /// Sends the queue's name and, if this handle can put (it is not closed and has a putting end), a putting end for
    /// the receiver, taken now (so a reader cannot see the queue end while it is on its way).
    /// A handle from [`handle`](Queue::handle) carries none: the receiver counts as a putter
    /// only once it puts (see "The end of a reader loop").
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !ipc_transfer_allowed() {
            return Err(refuse(TRANSFER_ONLY));
        }
        let putting = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let slot = if putting && !self.closed.load(Ordering::Acquire) {
            let index = self
                .ring
                .register(std::process::id())
                .map_err(|e| refuse_owned(e.to_string()))?;
            Some(index as u64)
        } else {
            None
        };
        (self.ring.parts(), slot).serialize(s)
    }
}

impl<'de, T: Serialize> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (parts, slot): (RingParts, Option<u64>) = Deserialize::deserialize(d)?;
        let ring = Ring::attach(parts).map_err(serde::de::Error::custom)?;
        let sender = match slot {
            Some(index) => {
                let index = slot_index(index)?;
                ring.adopt(index, std::process::id());
                Some(QueueSender::with_slot(&ring, index))
            }
            None => None,
        };
        Ok(Queue {
            ring,
            sender: Mutex::new(sender),
            closed: AtomicBool::new(false),
        })
    }
}
