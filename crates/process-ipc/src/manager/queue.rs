//! [`ManagedQueue`]: the handle to a manager's queue, Python's `manager.Queue()` proxy. In the
//! manager's process it works on the queue's state directly; elsewhere through `client`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use super::REPLY_GRACE;
use super::client::{ProcessFeed, QueueWait};
use super::error::{ManagerError, PutError};
use super::object_client::ObjectRef;
use super::object_wire::Kind;
use super::server::{Counts, Item, QueueObj, Refused, Until};
use crate::Wire;
use crate::wire::serialize_message;

/// A handle to a queue hosted by a [`Manager`](super::Manager): Python's `manager.Queue()` proxy.
///
/// Clone it for another thread, or pass it to another process (as a `Process` argument, a
/// `Pool` task argument, inside any serde value); every copy reaches the same queue. All
/// methods take `&self` and may be called from several threads at once. A handle holds no
/// item, so it is `Send + Sync` whatever `T` is.
pub struct ManagedQueue<T> {
    /// Which queue, of which manager, and how to reach it.
    pub(super) obj: ObjectRef,
    pub(super) maxsize: Option<usize>,
    /// The queue itself when this handle was made by the manager (in its process).
    pub(super) local: Option<Arc<QueueObj>>,
    /// This process's feed into the queue, once this handle put through it.
    pub(super) feed: OnceLock<Arc<ProcessFeed>>,
    /// Whether this handle put items through the feed (its drop then waits for them).
    pub(super) put_any: AtomicBool,
    pub(super) types: PhantomData<fn(T) -> T>,
}

impl<T> Drop for ManagedQueue<T> {
    /// A handle that put items waits (a bounded while) until its process's feeder has sent
    /// them, so they survive the process's exit right after (a pool task returning).
    fn drop(&mut self) {
        if !*self.put_any.get_mut() {
            return;
        }
        if let Some(feed) = self.feed.get() {
            feed.feed
                .wait_drained(Instant::now().checked_add(REPLY_GRACE));
        }
    }
}

impl<T> fmt::Debug for ManagedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedQueue")
            .field("manager_pid", &self.obj.pid)
            .field("queue", &self.obj.object)
            .field("maxsize", &self.maxsize)
            .field("in_manager_process", &self.local.is_some())
            .finish()
    }
}

impl<T> Clone for ManagedQueue<T> {
    /// Another handle to the same queue.
    fn clone(&self) -> Self {
        let feed = OnceLock::new();
        if let Some(known) = self.feed.get() {
            let _ = feed.set(Arc::clone(known));
        }
        Self {
            obj: self.obj.clone(),
            maxsize: self.maxsize,
            local: self.local.clone(),
            feed,
            put_any: AtomicBool::new(false),
            types: PhantomData,
        }
    }
}

/// What a handle is on the wire: which queue, and where to ask for it. Plain data, so any
/// encoder carries it.
#[derive(Serialize, Deserialize)]
struct HandleWire<A> {
    pid: u32,
    queue: u64,
    maxsize: Option<u64>,
    address: A,
}

impl<T> Serialize for ManagedQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HandleWire {
            pid: self.obj.pid,
            queue: self.obj.object,
            maxsize: self.maxsize.map(|m| m as u64),
            address: &*self.obj.address,
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for ManagedQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = HandleWire::<String>::deserialize(deserializer)?;
        Ok(Self {
            obj: ObjectRef {
                pid: wire.pid,
                object: wire.queue,
                kind: Kind::Queue,
                address: wire.address.into(),
                local: None,
                pool: OnceLock::new(),
            },
            maxsize: wire
                .maxsize
                .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            local: None,
            feed: OnceLock::new(),
            put_any: AtomicBool::new(false),
            types: PhantomData,
        })
    }
}

impl<T: Wire> ManagedQueue<T> {
    /// The process id of the manager that hosts this queue.
    pub fn manager_pid(&self) -> u32 {
        self.obj.pid
    }

    /// Python's `q.put(item)`: appends `item`. A bounded queue ([`Manager::bounded_queue`](super::Manager::bounded_queue))
    /// makes it wait while full, and outside the manager's process each of its puts is a round
    /// trip. An unbounded queue never makes it wait:
    ///
    /// The item is encoded at once, as Python pickles at `put`: an item that does not encode
    /// fails its own put, and no consumer ever meets it. In the manager's process it is then
    /// queued at once. In any other process it goes into this process's buffer for the queue,
    /// which the crate's feeder thread sends to the manager in batches, like the feeder thread
    /// of Python's `multiprocessing.Queue`; `put` does not wait for the manager. Items put in
    /// one process arrive in put order, and before that process's next get or qsize on the
    /// queue. Dropping a handle that put items waits until they are sent;
    /// [`flush`](ManagedQueue::flush) waits until the manager holds them.
    ///
    /// # Errors
    /// Each error hands the item back where it is known not to be in the queue
    /// ([`PutError::into_inner`]; `?` turns a `PutError` into its [`ManagerError`]).
    /// [`ManagerError::ShutDown`] once the queue is [shut down](ManagedQueue::shutdown): at
    /// once in the manager's process and for a bounded queue; for an unbounded queue in any
    /// other process, from the moment this process knows it (see
    /// [`shutdown`](ManagedQueue::shutdown)).
    /// [`ManagerError::Serialization`] if the item does not encode (nothing is sent).
    /// [`ManagerError::Gone`] if the manager is known to be gone: at once in its own process;
    /// elsewhere as soon as a batch has failed, so a put racing with the manager's end may be
    /// accepted and then lost (as in Python); [`flush`](ManagedQueue::flush) says so.
    /// [`ManagerError::PermissionDenied`] if the manager runs as another user.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        if self.maxsize.is_some() {
            return self.put_bounded(item, QueueWait::Forever);
        }
        if let Some(queue) = &self.local {
            let bytes = match self.encode(&item) {
                Ok(bytes) => bytes,
                Err(e) => return Err(PutError::new(e, Some(item))),
            };
            return queue
                .put(Item::alone(bytes.into_vec()), Until::No)
                .map(drop)
                .map_err(|r| PutError::new(self.refused(r), Some(item)));
        }
        self.put_remote(item)
    }

    /// Python 3.13's `q.shutdown(immediate=False)`, for every handle in every process: puts
    /// fail from now on with [`ManagerError::ShutDown`] (handing the item back); gets take
    /// what is left, then fail the same way; with `immediate` what is left is dropped. Every
    /// get and bounded put waiting in the manager, from any process, wakes with
    /// [`ManagerError::ShutDown`]. This process's own puts made before reach the queue first.
    ///
    /// In a process other than the manager's an unbounded put is one-way (it is sent in a
    /// batch, unanswered, see [`put`](ManagedQueue::put)): such a put made after another
    /// process shut the queue down is refused only once this process knows it: from its
    /// first refused batch on (the items of that batch are lost, and
    /// [`flush`](ManagedQueue::flush) says so), from a get answered with `ShutDown`, or at
    /// once if it called `shutdown` itself. Python's manager answers every put; that costs a
    /// round trip per item.
    ///
    /// ```
    /// use process_ipc::manager::{Manager, ManagerError};
    ///
    /// let manager = Manager::new()?;
    /// let queue = manager.queue::<u32>()?;
    /// queue.put(1)?;
    /// queue.shutdown(false)?;
    /// let refused = queue.put(2).unwrap_err();
    /// assert!(matches!(refused.error, ManagerError::ShutDown { .. }));
    /// assert_eq!(refused.into_inner(), Some(2));
    /// assert_eq!(queue.get()?, 1);
    /// assert!(matches!(queue.get(), Err(ManagerError::ShutDown { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone.
    pub fn shutdown(&self, immediate: bool) -> Result<(), ManagerError> {
        match &self.local {
            Some(queue) => queue.shutdown(immediate).map_err(|r| self.refused(r)),
            None => self.shutdown_remote(immediate),
        }
    }

    pub(super) fn shut_down_error(&self) -> ManagerError {
        ManagerError::ShutDown {
            pid: self.obj.pid,
            queue: self.obj.object,
        }
    }

    /// Python's `q.put(item, timeout=...)`: like [`put`](ManagedQueue::put), but into a full
    /// bounded queue it waits at most `timeout` for room. An unbounded queue is never full.
    ///
    /// # Errors
    /// [`ManagerError::Full`] with the item handed back if no room came in time; otherwise as
    /// [`put`](ManagedQueue::put).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        if self.maxsize.is_none() {
            return self.put(item);
        }
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.put_bounded(item, QueueWait::Until(deadline, timeout)),
            None => self.put_bounded(item, QueueWait::Forever),
        }
    }

    /// Python's `q.put_nowait(item)`: puts only if a bounded queue has room now. An unbounded
    /// queue is never full.
    ///
    /// # Errors
    /// [`ManagerError::Full`] with the item handed back; otherwise as [`put`](ManagedQueue::put).
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        if self.maxsize.is_none() {
            return self.put(item);
        }
        self.put_bounded(item, QueueWait::No)
    }

    /// The bound given to [`Manager::bounded_queue`](super::Manager::bounded_queue); `None` for an unbounded queue.
    pub fn maxsize(&self) -> Option<usize> {
        self.maxsize
    }

    /// Python's `q.full()`: whether a bounded queue holds `maxsize` items now.
    ///
    /// # Errors
    /// As [`qsize`](ManagedQueue::qsize).
    pub fn full(&self) -> Result<bool, ManagerError> {
        match self.maxsize {
            Some(maxsize) => Ok(self.qsize()? >= maxsize),
            None => Ok(false),
        }
    }

    /// Waits until the manager holds every item put into this queue from this process, and
    /// reports the items that it could not take. Immediate in the manager's own process.
    ///
    /// ```
    /// use process_ipc::manager::{ManagedQueue, Manager, ManagerError};
    ///
    /// let manager = Manager::new()?;
    /// let queue: ManagedQueue<u32> = manager.queue()?;
    /// // A handle as a child process holds it.
    /// let remote: ManagedQueue<u32> = postcard::from_bytes(&postcard::to_stdvec(&queue)?)?;
    /// for i in 0..100 {
    ///     remote.put(i)?; // buffered: sent by this process's feeder thread
    /// }
    /// remote.flush()?;
    /// assert_eq!(queue.qsize()?, 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone (some items may be lost).
    pub fn flush(&self) -> Result<(), ManagerError> {
        self.flush_until(None)
    }

    /// [`flush`](ManagedQueue::flush), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ManagerError::Timeout`] if items were still unsent after `timeout`; otherwise as
    /// [`flush`](ManagedQueue::flush).
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), ManagerError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.flush_until(Some(deadline)).map_err(|e| match e {
                ManagerError::Timeout { .. } => self.timeout(timeout),
                other => other,
            }),
            None => self.flush(),
        }
    }

    /// Encodes `item` for the queue (the put's own error if it does not encode).
    pub(super) fn encode(&self, item: &T) -> Result<ByteBuf, ManagerError> {
        postcard::to_stdvec(item)
            .map(ByteBuf::from)
            .map_err(|e| self.serialization(serialize_message(item, e)))
    }

    /// Decodes an item taken from the queue: an item that does not decode as `T` fails only
    /// the get that took it.
    pub(super) fn decode(&self, bytes: &[u8]) -> Result<T, ManagerError> {
        postcard::from_bytes(bytes).map_err(|e| {
            self.serialization(format!(
                "the item taken does not decode as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    pub(super) fn serialization(&self, message: String) -> ManagerError {
        ManagerError::Serialization {
            pid: self.obj.pid,
            queue: self.obj.object,
            message,
        }
    }

    /// A refusal of the queue in this process, as an error.
    pub(super) fn refused(&self, refused: Refused) -> ManagerError {
        match refused {
            Refused::Closed => self.gone("it was shut down"),
            Refused::ShutDown => self.shut_down_error(),
            Refused::Malformed(why) => self.serialization(why),
        }
    }

    fn flush_until(&self, deadline: Option<Instant>) -> Result<(), ManagerError> {
        if let Some(queue) = &self.local {
            return match queue.counts() {
                Some(_) => Ok(()),
                None => Err(self.gone("it was shut down")),
            };
        }
        let Some(feed) = self.process_feed() else {
            return Ok(());
        };
        match feed.settle(deadline) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.timeout(Duration::ZERO)),
            Err(_) if feed.acks.shut.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(self.shut_down_error())
            }
            Err(why) => Err(self.gone(why)),
        }
    }

    /// Python's `q.get()`: takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone, including while this call waits.
    pub fn get(&self) -> Result<T, ManagerError> {
        self.get_with(|| QueueWait::Forever)
    }

    /// Python's `q.get(timeout=...)`: takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ManagerError::Timeout`] if no item came in time (none was taken);
    /// [`ManagerError::Gone`] if the manager is gone.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, ManagerError> {
        self.get_with(|| match Instant::now().checked_add(timeout) {
            Some(deadline) => QueueWait::Until(deadline, timeout),
            None => QueueWait::Forever,
        })
    }

    /// Python's `q.get_nowait()`: takes the oldest item if there is one, without waiting for
    /// one to arrive.
    ///
    /// # Errors
    /// [`ManagerError::Empty`] if the queue is empty; [`ManagerError::Gone`] if the manager is
    /// gone.
    pub fn get_nowait(&self) -> Result<T, ManagerError> {
        self.get_with(|| QueueWait::No)
    }

    /// Python's `q.qsize()`: how many items are queued now (others may change it at once).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone.
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        Ok(self.counts()?.items)
    }

    /// How many getters wait for an item now, in all processes: a diagnostic with no Python
    /// twin (a consumer that is stuck shows here).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone.
    pub fn getters_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.counts()?.getters)
    }

    /// How many putters wait for room in a bounded queue now, in all processes (their items
    /// are not in [`qsize`](ManagedQueue::qsize) yet).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone.
    pub fn putters_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.counts()?.putters)
    }

    /// Python's `q.empty()`: whether [`qsize`](ManagedQueue::qsize) is zero.
    ///
    /// # Errors
    /// As [`qsize`](ManagedQueue::qsize).
    pub fn empty(&self) -> Result<bool, ManagerError> {
        Ok(self.qsize()? == 0)
    }

    pub(super) fn gone(&self, why: impl Into<String>) -> ManagerError {
        self.obj.gone(why)
    }

    /// A get waiting `wait`, which in the manager's process is made only if no item is queued
    /// (see `QueueObj::get`).
    pub(super) fn get_with(&self, wait: impl FnOnce() -> QueueWait) -> Result<T, ManagerError> {
        let Some(queue) = &self.local else {
            return self.get_remote(wait());
        };
        // Made whenever the answer is `Ok(None)`: only a get that found no item makes it.
        let mut made = QueueWait::No;
        match queue.get(|| {
            made = wait();
            made.local()
        }) {
            Ok(Some(item)) => self.decode(item.bytes()),
            Ok(None) => Err(self.missed(made)),
            Err(refused) => Err(self.refused(refused)),
        }
    }

    /// No item came: `Empty` for a get that did not wait, `Timeout` for one that did.
    pub(super) fn missed(&self, wait: QueueWait) -> ManagerError {
        match wait {
            QueueWait::No => self.empty_error(),
            _ => self.timeout(wait.timeout()),
        }
    }

    /// A put into a bounded queue: Python's blocking `put`, with a wait of `wait`.
    pub(super) fn put_bounded(&self, item: T, wait: QueueWait) -> Result<(), PutError<T>> {
        let bytes = match self.encode(&item) {
            Ok(bytes) => bytes,
            Err(e) => return Err(PutError::new(e, Some(item))),
        };
        let Some(queue) = &self.local else {
            return self.put_bounded_remote(item, bytes, wait);
        };
        match queue.put(Item::alone(bytes.into_vec()), wait.local()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(PutError::new(self.full_error(), Some(item))),
            Err(refused) => Err(PutError::new(self.refused(refused), Some(item))),
        }
    }

    pub(super) fn full_error(&self) -> ManagerError {
        ManagerError::Full {
            pid: self.obj.pid,
            queue: self.obj.object,
            maxsize: self.maxsize.unwrap_or(usize::MAX),
        }
    }

    pub(super) fn empty_error(&self) -> ManagerError {
        ManagerError::Empty {
            pid: self.obj.pid,
            queue: self.obj.object,
        }
    }

    pub(super) fn timeout(&self, timeout: Duration) -> ManagerError {
        ManagerError::Timeout {
            pid: self.obj.pid,
            queue: self.obj.object,
            timeout,
        }
    }

    /// Items queued, getters and putters waiting.
    fn counts(&self) -> Result<Counts, ManagerError> {
        match &self.local {
            Some(queue) => queue.counts().ok_or_else(|| self.gone("it was shut down")),
            None => self.counts_remote(),
        }
    }
}
