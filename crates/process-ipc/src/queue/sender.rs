//! `QueueSender<T>`, the put-only handle, and `PutError<T>`, a put that did not happen.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::feed::{Feed, PutterSlot};
use super::{TRANSFER_ONLY, io};
use crate::error::QueueError;
use crate::ring::{Ring, RingParts, SLOTS, WaitLimit};
use crate::wire::{ipc_transfer_allowed, refuse};

/// The putting side one process holds for one putting handle; its feeder thread lives while
/// it does (and until it has drained).
struct SenderShared {
    ring: Ring,
    slot: Arc<PutterSlot>,
    feed: OnceLock<Arc<Feed>>,
    starting: Mutex<()>,
    /// The largest serialized item `put` accepts.
    limit: usize,
}

impl Drop for SenderShared {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.get() {
            feed.close();
        }
    }
}

/// A put-only handle to a [`Queue`](crate::Queue): cheap to clone, and passable to a
/// [`Process`](crate::Process) as an argument. Any number of processes can hold one and put
/// concurrently.
///
/// While a `QueueSender` lives (in any process; one sent to a child counts from the moment it
/// is sent), readers of an empty queue wait for more; see "The end of a reader loop" on
/// [`Queue`](crate::Queue). A process that dies, even by SIGKILL, drops its handles.
pub struct QueueSender<T> {
    shared: Arc<SenderShared>,
    _marker: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            shared: Arc::clone(&self.shared),
            _marker: std::marker::PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender").finish_non_exhaustive()
    }
}

impl<T: Serialize> QueueSender<T> {
    /// A new putting handle of this process, with its own place among the queue's putters.
    pub(super) fn register(ring: &Ring) -> Result<Self, QueueError> {
        let index = ring.register(std::process::id()).map_err(io)?;
        Ok(Self::with_slot(ring, index))
    }

    pub(super) fn with_slot(ring: &Ring, index: usize) -> Self {
        QueueSender {
            shared: Arc::new(SenderShared {
                ring: ring.clone(),
                slot: Arc::new(PutterSlot {
                    ring: ring.clone(),
                    index,
                }),
                feed: OnceLock::new(),
                starting: Mutex::new(()),
                limit: ring.limit(),
            }),
            _marker: std::marker::PhantomData,
        }
    }

    fn feed(&self) -> Result<&Arc<Feed>, QueueError> {
        if let Some(feed) = self.shared.feed.get() {
            return Ok(feed);
        }
        let _once = self
            .shared
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = self.shared.feed.get() {
            return Ok(feed);
        }
        let feed = Feed::start(self.shared.ring.clone(), Arc::clone(&self.shared.slot))?;
        Ok(self.shared.feed.get_or_init(|| feed))
    }

    /// Puts `item` on the queue. On an unbounded queue this never blocks: the item is
    /// serialized now and moved into the queue by this handle's feeder thread. On a
    /// [`bounded`](crate::Queue::bounded) queue it first waits, as long as it takes, for a place.
    /// The item counts in [`qsize`](crate::Queue::qsize) (in every process) from now on.
    ///
    /// # Errors
    /// Each hands the item back ([`PutError::into_inner`]): [`QueueError::ShutDown`] once the
    /// queue is [shut down](crate::Queue::shutdown) (also for a put that was waiting for a
    /// place); [`QueueError::TooLarge`] over the queue's item limit
    /// ([`MAX_ITEM_BYTES`](super::MAX_ITEM_BYTES) unless
    /// [`Queue::with_item_limit`](crate::Queue::with_item_limit) set another);
    /// [`QueueError::Serde`] with the serializer's own message. A `PutError` converts into its
    /// [`QueueError`] with `?`.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_inner(item, WaitLimit::Forever)
    }

    /// Like [`put`](Self::put), but on a full bounded queue gives up after `timeout` with
    /// [`QueueError::Full`], handing the item back (Python's `put(item, timeout=...)`).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        let wait = Instant::now()
            .checked_add(timeout)
            .map_or(WaitLimit::Forever, WaitLimit::Until);
        self.put_inner(item, wait)
    }

    /// Like [`put`](Self::put), but on a full bounded queue returns [`QueueError::Full`] at
    /// once, handing the item back (Python's `put_nowait`).
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_inner(item, WaitLimit::No)
    }

    fn put_inner(&self, item: T, wait: WaitLimit) -> Result<(), PutError<T>> {
        let ring = &self.shared.ring;
        let feed = match self.feed() {
            Ok(feed) => feed,
            Err(e) => return Err(PutError::new(e, item)),
        };
        let deadline = wait.deadline();
        if ring.maxsize() == 0 {
            // Counted before the feeder moves it: `qsize` sees it at once (Python's count).
            if let Err(e) = ring.accept() {
                return Err(PutError::new(super::ring_error(e), item));
            }
            return feed
                .push(&item, self.shared.limit, ring, deadline)
                .map_err(|e| {
                    ring.unaccept(1);
                    PutError::new(e, item)
                });
        }
        // A place first (a put waiting for one is not counted yet, as in Python), then the count.
        let placed = ring.reserve(wait).and_then(|placed| {
            if placed && let Err(e) = ring.accept() {
                ring.unreserve();
                return Err(e);
            }
            Ok(placed)
        });
        match placed {
            Ok(true) => {}
            Ok(false) => return Err(PutError::new(QueueError::Full, item)),
            Err(e) => return Err(PutError::new(super::ring_error(e), item)),
        }
        feed.push(&item, self.shared.limit, ring, deadline)
            .map_err(|e| {
                ring.unaccept(1);
                ring.unreserve();
                PutError::new(e, item)
            })
    }

    /// Blocks until every item put through this handle has been moved into the queue (Python's
    /// `join_thread`). With no reader and a full ring this waits for one.
    pub fn flush(&self) {
        if let Some(feed) = self.shared.feed.get() {
            feed.wait_drained(None);
        }
    }

    /// Like [`flush`](Self::flush) for at most `timeout`; `Err(Timeout)` if items remain.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), QueueError> {
        match self.shared.feed.get() {
            Some(feed) if !feed.wait_drained(Some(Instant::now() + timeout)) => {
                Err(QueueError::Timeout(timeout))
            }
            _ => Ok(()),
        }
    }
}

/// A put that did not happen: why, and the item handed back (the naming table's `Full<T>`
/// shape, as a [`ManagedQueue`](crate::ManagedQueue)'s).
///
/// ```
/// use process_ipc::{Queue, QueueError};
///
/// let q = Queue::<String>::bounded(1).unwrap();
/// q.put("first".into()).unwrap();
/// let refused = q.put_nowait("second".into()).unwrap_err();
/// assert_eq!(refused.error, QueueError::Full);
/// assert_eq!(refused.into_inner().as_deref(), Some("second"));
/// ```
pub struct PutError<T> {
    /// Why the put failed: [`QueueError::Full`] when no place came in time, or as for
    /// [`Queue::put`](crate::Queue::put).
    pub error: QueueError,
    /// The item, handed back (always, since a put that fails hands back what it was given;
    /// an `Option` for the sake of code written before).
    pub item: Option<T>,
}

impl<T> PutError<T> {
    pub(super) fn new(error: QueueError, item: T) -> Self {
        PutError {
            error,
            item: Some(item),
        }
    }

    /// The item, if it came back.
    pub fn into_inner(self) -> Option<T> {
        self.item
    }
}

impl<T> std::fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .field("item_returned", &self.item.is_some())
            .finish()
    }
}

impl<T> std::fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<T> From<PutError<T>> for QueueError {
    /// Why the put failed, without the item: lets `?` carry a failed put out of a function
    /// returning `Result<_, QueueError>`.
    fn from(e: PutError<T>) -> Self {
        e.error
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

pub(super) fn refuse_owned<E: serde::ser::Error>(why: String) -> E {
    E::custom(why)
}

impl<T> Serialize for QueueSender<T> {
    /// Sends the queue's name and a new place among its putters, taken now for the receiving
    /// process (so a reader cannot see the queue end while the handle is on its way).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !ipc_transfer_allowed() {
            return Err(refuse(TRANSFER_ONLY));
        }
        let ring = &self.shared.ring;
        let index = ring
            .register(std::process::id())
            .map_err(|e| refuse_owned(e.to_string()))?;
        (ring.parts(), index as u64).serialize(s)
    }
}

pub(super) fn slot_index<E: serde::de::Error>(index: u64) -> Result<usize, E> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < SLOTS)
        .ok_or_else(|| E::custom("a queue handle with a bad putter slot"))
}

impl<'de, T: Serialize> Deserialize<'de> for QueueSender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (parts, index) = <(RingParts, u64)>::deserialize(d)?;
        let ring = Ring::attach(parts).map_err(serde::de::Error::custom)?;
        let index = slot_index(index)?;
        ring.adopt(index, std::process::id());
        Ok(QueueSender::with_slot(&ring, index))
    }
}
