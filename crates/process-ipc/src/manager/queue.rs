//! [`ManagedQueue`]: the handle to a manager's queue, Python's `manager.Queue()` proxy. In the
//! manager's process it works on the queue's state directly; elsewhere through `client`.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::REPLY_GRACE;
use super::client::{Connection, Wait};
use super::error::{ManagerError, PutError};
use super::feeder::Failure;
use super::server::{LocalGet, LocalPut, Shared};
use crate::Wire;
use crate::wire::serialize_message;

/// A handle to a queue hosted by a [`Manager`](super::Manager): Python's `manager.Queue()` proxy.
///
/// Clone it for another thread, or pass it to another process (as a `Process` argument, a
/// `Pool` task argument, inside any serde value); every copy reaches the same queue. All
/// methods take `&self` and may be called from several threads at once. A handle is `Send`
/// when `T` is, and `Sync` when `T` is `Send + Sync`.
pub struct ManagedQueue<T> {
    pub(super) pid: u32,
    pub(super) queue: u64,
    pub(super) maxsize: Option<usize>,
    /// The manager's socket, where a decoded handle asks for the queue's request channel.
    pub(super) address: Arc<str>,
    /// The queue's state when this handle was made by the manager (in its process).
    pub(super) local: Option<Arc<Shared<T>>>,
    /// This process's connection to the queue's server, for a decoded handle, once made.
    pub(super) conn: OnceLock<Arc<Connection<T>>>,
    /// Whether this handle put items through the feeder (its drop then waits for them).
    pub(super) put_any: AtomicBool,
}

impl<T> Drop for ManagedQueue<T> {
    /// A handle that put items waits (a bounded while) until its process's feeder has sent
    /// them, so they survive the process's exit right after (a `Process` target returning).
    fn drop(&mut self) {
        if !*self.put_any.get_mut() {
            return;
        }
        let feeder = self
            .conn
            .get()
            .and_then(|c| c.feeder.get())
            .and_then(Option::as_ref);
        if let Some(feeder) = feeder {
            feeder.wait_sent(Instant::now().checked_add(REPLY_GRACE));
        }
    }
}

impl<T> fmt::Debug for ManagedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedQueue")
            .field("manager_pid", &self.pid)
            .field("queue", &self.queue)
            .field("maxsize", &self.maxsize)
            .field("in_manager_process", &self.local.is_some())
            .finish()
    }
}

impl<T: Serialize> Clone for ManagedQueue<T> {
    /// Another handle to the same queue. It registers its own reply channel when first used
    /// for a get in a process other than the manager's.
    fn clone(&self) -> Self {
        let conn = OnceLock::new();
        if let Some(connected) = self.conn.get() {
            let _ = conn.set(Arc::clone(connected));
        }
        Self {
            pid: self.pid,
            queue: self.queue,
            maxsize: self.maxsize,
            address: Arc::clone(&self.address),
            local: self.local.clone(),
            conn,
            put_any: AtomicBool::new(false),
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
            pid: self.pid,
            queue: self.queue,
            maxsize: self.maxsize.map(|m| m as u64),
            address: &*self.address,
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for ManagedQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = HandleWire::<String>::deserialize(deserializer)?;
        Ok(Self {
            pid: wire.pid,
            queue: wire.queue,
            maxsize: wire
                .maxsize
                .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            address: wire.address.into(),
            local: None,
            conn: OnceLock::new(),
            put_any: AtomicBool::new(false),
        })
    }
}

impl<T: Wire> ManagedQueue<T> {
    /// The process id of the manager that hosts this queue.
    pub fn manager_pid(&self) -> u32 {
        self.pid
    }

    /// Python's `q.put(item)`: appends `item`. A bounded queue ([`Manager::bounded_queue`](super::Manager::bounded_queue))
    /// makes it wait while full, and outside the manager's process each of its puts is a round
    /// trip. An unbounded queue never makes it wait:
    ///
    /// In the manager's process the item is queued at once. In any other process the item goes
    /// to the queue's feeder thread in this process, which sends what has piled up as one
    /// message, like the feeder thread of Python's `multiprocessing.Queue`; `put` waits only if
    /// thousands of items are still unsent. Items put in one process arrive in put order, and
    /// before that process's next get or qsize on the queue. Dropping a handle that put items
    /// waits until they are sent; [`flush`](ManagedQueue::flush) waits until the manager holds
    /// them.
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is known to be gone: at once in its own process;
    /// elsewhere as soon as a send has failed, so a put racing with the manager's end may be
    /// accepted and then lost (as in Python). [`ManagerError::Serialization`] if the item
    /// does not encode and the put was not buffered: in the manager's process (where the item
    /// is encoded at once, as Python pickles at `put`, so that no consumer ever meets it) and
    /// into a bounded queue. A buffered put's item that does not encode, or does not decode in
    /// the manager, shows as [`ManagerError::Dropped`] at the next
    /// [`flush`](ManagedQueue::flush).
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        if self.maxsize.is_some() {
            return Ok(self.put_bounded(item, Wait::Forever)?);
        }
        if let Some(shared) = &self.local {
            self.check_encodes(&item)?;
            return if shared.put(item) {
                Ok(())
            } else {
                Err(self.gone("it was shut down"))
            };
        }
        self.put_remote(item)
    }

    /// Python's `q.put(item, timeout=...)`: like [`put`](ManagedQueue::put), but into a full
    /// bounded queue it waits at most `timeout` for room. An unbounded queue is never full.
    ///
    /// # Errors
    /// [`ManagerError::Full`] with the item handed back if no room came in time; otherwise as
    /// [`put`](ManagedQueue::put).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        if self.maxsize.is_none() {
            return self.put(item).map_err(|e| PutError::new(e, None));
        }
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.put_bounded(item, Wait::Until(deadline, timeout)),
            None => self.put_bounded(item, Wait::Forever),
        }
    }

    /// Python's `q.put_nowait(item)`: puts only if a bounded queue has room now. An unbounded
    /// queue is never full.
    ///
    /// # Errors
    /// [`ManagerError::Full`] with the item handed back; otherwise as [`put`](ManagedQueue::put).
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        if self.maxsize.is_none() {
            return self.put(item).map_err(|e| PutError::new(e, None));
        }
        self.put_bounded(item, Wait::No)
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
    /// [`ManagerError::Gone`] if the manager is gone (some items may be lost);
    /// [`ManagerError::Dropped`] if items put since the last flush did not encode here or did
    /// not decode in the manager (they alone are missing).
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

    /// Encodes `item` to see that it can travel (into a counter: nothing is kept).
    fn check_encodes(&self, item: &T) -> Result<(), ManagerError> {
        postcard::experimental::serialized_size(item)
            .map(drop)
            .map_err(|e| self.serialization(serialize_message(item, e)))
    }

    pub(super) fn serialization(&self, message: String) -> ManagerError {
        ManagerError::Serialization {
            pid: self.pid,
            queue: self.queue,
            message,
        }
    }

    fn flush_until(&self, deadline: Option<Instant>) -> Result<(), ManagerError> {
        if let Some(shared) = &self.local {
            return match shared.counts() {
                Some(_) => Ok(()),
                None => Err(self.gone("it was shut down")),
            };
        }
        let Some(feeder) = self.feeder() else {
            return Ok(());
        };
        if !feeder.wait_sent(deadline) {
            return Err(self.timeout(Duration::ZERO));
        }
        let failure = feeder.failure();
        // Sent is not yet handled: a round trip queues behind the items, and brings back what
        // the manager could not decode.
        let undecoded = self.flushed()?;
        match (failure, undecoded) {
            (Some(Failure::Gone(why)), _) => Err(self.gone(why)),
            (None, None) => Ok(()),
            (Some(Failure::Dropped { count, why }), None) => {
                Err(self.dropped(count, "encode here", &why))
            }
            (None, Some((count, why))) => Err(self.dropped(count, "decode in the manager", &why)),
            (Some(Failure::Dropped { count, why }), Some((more, _))) => {
                Err(self.dropped(count + more, "encode here or decode in the manager", &why))
            }
        }
    }

    /// Lets this handle's own puts reach the server before a request that must see them.
    /// Failures are left for the next put or flush to report.
    pub(super) fn sync_puts(&self, deadline: Option<Instant>) -> bool {
        self.feeder()
            .is_none_or(|feeder| feeder.wait_sent(deadline))
    }

    pub(super) fn failed(&self, failure: Failure) -> ManagerError {
        match failure {
            Failure::Gone(why) => self.gone(why),
            Failure::Dropped { count, why } => self.dropped(count, "encode here", &why),
        }
    }

    fn dropped(&self, count: u64, failed: &str, why: &str) -> ManagerError {
        let items = if count == 1 { "item" } else { "items" };
        ManagerError::Dropped {
            pid: self.pid,
            queue: self.queue,
            reason: format!(
                "{count} {items} put from this process did not {failed} and were left out \
                 (every other item arrived): {why}"
            ),
        }
    }

    /// Python's `q.get()`: takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone, including while this call waits.
    pub fn get(&self) -> Result<T, ManagerError> {
        self.get_with(Wait::Forever)
    }

    /// Python's `q.get(timeout=...)`: takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ManagerError::Timeout`] if no item came in time (none was taken);
    /// [`ManagerError::Gone`] if the manager is gone.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, ManagerError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.get_with(Wait::Until(deadline, timeout)),
            None => self.get(),
        }
    }

    /// Python's `q.get_nowait()`: takes the oldest item if there is one, without waiting for
    /// one to arrive.
    ///
    /// # Errors
    /// [`ManagerError::Empty`] if the queue is empty; [`ManagerError::Gone`] if the manager is
    /// gone.
    pub fn get_nowait(&self) -> Result<T, ManagerError> {
        self.get_with(Wait::No)
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
        ManagerError::Gone {
            pid: self.pid,
            queue: self.queue,
            why: why.into(),
        }
    }

    pub(super) fn get_with(&self, wait: Wait) -> Result<T, ManagerError> {
        match &self.local {
            Some(shared) => self.get_local(shared, wait),
            None => self.get_remote(wait),
        }
    }

    fn get_local(&self, shared: &Shared<T>, wait: Wait) -> Result<T, ManagerError> {
        let gone = || self.gone("it was shut down");
        let (id, slot) = match shared.get_local(!matches!(wait, Wait::No)) {
            LocalGet::Item(item) => return Ok(item),
            LocalGet::Empty => return Err(self.empty_error()),
            LocalGet::Closed => return Err(gone()),
            LocalGet::Wait { id, slot } => (id, slot),
        };
        match wait {
            Wait::Until(deadline, timeout) => match slot.recv_deadline(deadline) {
                Ok(item) => Ok(item),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(gone()),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if shared.cancel_local(id) {
                        Err(self.timeout(timeout))
                    } else {
                        // Delivered between the timeout and the withdrawal: it is ours.
                        slot.try_recv().map_err(|_| gone())
                    }
                }
            },
            Wait::Forever | Wait::No => slot.recv().map_err(|_| gone()),
        }
    }

    /// A put into a bounded queue: Python's blocking `put`, with a wait of `wait`.
    pub(super) fn put_bounded(&self, item: T, wait: Wait) -> Result<(), PutError<T>> {
        match &self.local {
            Some(shared) => self.put_bounded_local(shared, item, wait),
            None => self.put_bounded_remote(item, wait),
        }
    }

    fn put_bounded_local(
        &self,
        shared: &Shared<T>,
        item: T,
        wait: Wait,
    ) -> Result<(), PutError<T>> {
        if let Err(e) = self.check_encodes(&item) {
            return Err(PutError::new(e, Some(item)));
        }
        let gone = |item| PutError::new(self.gone("it was shut down"), item);
        let (id, admitted) = match shared.put_local(item, !matches!(wait, Wait::No)) {
            LocalPut::Done => return Ok(()),
            LocalPut::Full(item) => return Err(PutError::new(self.full_error(), Some(item))),
            LocalPut::Closed(item) => return Err(gone(Some(item))),
            LocalPut::Wait { id, admitted } => (id, admitted),
        };
        match wait {
            Wait::Until(deadline, _) => match admitted.recv_deadline(deadline) {
                Ok(()) => Ok(()),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(gone(None)),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    match shared.cancel_local_put(id) {
                        Some(item) => Err(PutError::new(self.full_error(), Some(item))),
                        // Admitted between the timeout and the withdrawal: the put happened.
                        None => admitted.try_recv().map_err(|_| gone(None)),
                    }
                }
            },
            Wait::Forever | Wait::No => admitted.recv().map_err(|_| gone(None)),
        }
    }

    pub(super) fn full_error(&self) -> ManagerError {
        ManagerError::Full {
            pid: self.pid,
            queue: self.queue,
            maxsize: self.maxsize.unwrap_or(usize::MAX),
        }
    }

    pub(super) fn empty_error(&self) -> ManagerError {
        ManagerError::Empty {
            pid: self.pid,
            queue: self.queue,
        }
    }

    pub(super) fn no_reply(&self, waited: Duration) -> ManagerError {
        ManagerError::NoReply {
            pid: self.pid,
            queue: self.queue,
            waited,
        }
    }

    pub(super) fn timeout(&self, timeout: Duration) -> ManagerError {
        ManagerError::Timeout {
            pid: self.pid,
            queue: self.queue,
            timeout,
        }
    }
}
