//! `Manager` and the objects it hosts: Python's `multiprocessing.Manager()` with its
//! `Queue()` ([`ManagedQueue`]), `dict()` ([`ManagedDict`]), `list()` ([`ManagedList`]),
//! `Namespace()` ([`ManagedNamespace`]), `Value()` ([`ManagedValue`]), `Lock()`
//! ([`ManagedLock`]) and `Event()` ([`ManagedEvent`]): state owned by a server whose handles
//! can be passed to other processes.
//!
//! In Python, a manager is a server process holding shared objects, and `manager.Queue()` hands
//! out a proxy that pickles into any process:
//!
//! ```python
//! from multiprocessing import Manager, Pool
//!
//! def put_n(q, n):
//!     for i in range(n):
//!         q.put(i)
//!
//! with Manager() as manager, Pool(2) as pool:
//!     q = manager.Queue()
//!     pool.starmap_async(put_n, [(q, 5000)] * 4)
//!     total = sum(q.get() for _ in range(20000))
//! ```
//!
//! Here [`Manager::new`] starts the server as threads of the calling process (one listening on
//! a Unix socket, and one per client connection), and [`Manager::queue`] hands out a
//! [`ManagedQueue<T>`]: `Clone`, `Serialize` and `Deserialize`, so it travels as an argument
//! to a `Process` target or a [`Pool`](crate::Pool) task, and works the same on the other
//! side. Like a pickled Python proxy, an encoded handle is plain data (which queue, and the
//! manager's socket path), so any encoder carries it. In a process other than the manager's,
//! every queue operation is a call of the manager's one framed protocol (the one every object
//! of the manager speaks) on a connection to its socket; in the manager's own process the
//! handle the manager made goes to the queue directly.
//!
//! ```
//! use std::time::Duration;
//! use process_ipc::manager::{ManagedQueue, Manager, ManagerError};
//!
//! let manager = Manager::new()?;
//! let queue: ManagedQueue<u64> = manager.queue()?;
//!
//! // Producers anywhere: here threads, each with its own clone of the handle.
//! let producers: Vec<_> = (0..4u64)
//!     .map(|p| {
//!         let q = queue.clone();
//!         std::thread::spawn(move || (0..100).try_for_each(|i| q.put(p * 100 + i)))
//!     })
//!     .collect();
//! for p in producers {
//!     p.join().unwrap()?;
//! }
//! assert_eq!(queue.qsize()?, 400);
//! let total: u64 = (0..400).map(|_| queue.get()).sum::<Result<u64, _>>()?;
//! assert_eq!(total, (0..400).sum::<u64>());
//!
//! // Every wait has a bound, and a manager that is gone is an error, not a hang.
//! assert!(matches!(queue.get_timeout(Duration::from_millis(10)), Err(ManagerError::Timeout { .. })));
//! drop(manager);
//! assert!(matches!(queue.put(1).map_err(ManagerError::from), Err(ManagerError::Gone { .. })));
//! # Ok::<(), ManagerError>(())
//! ```
//!
//! ```
//! use process_ipc::manager::{ManagedQueue, Manager};
//!
//! let manager = Manager::new()?;
//! let queue: ManagedQueue<String> = manager.queue()?;
//! // Encoded and decoded as a `Process` argument or a pool task would be:
//! let remote: ManagedQueue<String> = postcard::from_bytes(&postcard::to_stdvec(&queue)?)?;
//! // What a child process would hold: it reaches the queue through the manager's socket.
//! remote.put("hello from afar".to_string())?;
//! assert_eq!(queue.get()?, "hello from afar");
//! queue.put("and back".to_string())?;
//! assert_eq!(remote.get()?, "and back");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//! - **Unbounded** unless made with [`Manager::bounded_queue`] (Python's `Queue(maxsize)`),
//!   whose puts wait for room; `put_timeout` and `put_nowait` hand the item back when full.
//! - **Buffered puts, as in Python's `multiprocessing.Queue`**: outside the manager's process,
//!   `put` into an unbounded queue encodes the item into this process's buffer for the queue,
//!   and the crate's feeder thread (the one `Queue` uses) sends what has piled up as one call,
//!   answered once the manager holds it. A process's items arrive in put order and before its
//!   own next get or qsize on that queue. Dropping a handle that put items waits until they
//!   are sent, so they survive the process's exit (a `Process` target or a pool task drops its
//!   arguments when it returns); [`ManagedQueue::flush`] waits until the manager holds them.
//! - **Nothing lost on bad data**: every put encodes its item at once (an item that does not
//!   encode fails its own put, and no consumer ever meets it); the manager keeps each item's
//!   bytes apart and never decodes them, so an item that does not decode as `T` fails only the
//!   get that took it; every other item arrives.
//! - **Fair**: getters are served first come, first served, whichever process they wait in.
//! - **Exactly once**: an item goes to one getter. A `get_timeout` that runs out is withdrawn
//!   in the manager before it reports [`ManagerError::Timeout`], so an item is never sent to a
//!   caller that has stopped waiting; an item handed to a getter whose process died meanwhile
//!   (its connection closed) goes back to the front of the queue.
//! - **Deadlines**: a timed call returns within its timeout and a short grace even when the
//!   manager is alive but stopped: the client reads the answer with that deadline.
//! - **Manager gone**: after [`Manager::shutdown`] or drop, or when the manager's process dies,
//!   every call fails with [`ManagerError::Gone`], and blocked getters wake with it at once.
//!   A buffered put is the exception: it may be accepted just before its feeder finds the
//!   manager gone; that failure then shows at the next put or flush. Items still queued when
//!   the manager ends are dropped, as Python's are with its manager.
//! - **Costs**: a busy producer pays one round trip per batch of puts; a get, `get_nowait`,
//!   `qsize` or a bounded put is one round trip on a connection of this process's pool (one
//!   per call in flight). The manager's own handles go straight to the queue.
//! - **Files and peers**: the socket lives in a directory of its own (mode 0700 whatever the
//!   umask) under the system's temporary directory, removed at shutdown (a manager whose
//!   process is killed leaves it); the manager answers only peers of its own user
//!   (`SO_PEERCRED`), and a handle used by another user fails with
//!   [`ManagerError::PermissionDenied`] naming both uids.
//!
//! # Dicts, lists, namespaces, values, locks and events
//!
//! ```python
//! from multiprocessing import Manager, Pool
//!
//! def record(d, words, key):
//!     d.update({w: key for w in words})
//!
//! with Manager() as m, Pool(2) as pool:
//!     d, lock, done = m.dict(), m.Lock(), m.Event()
//!     pool.starmap(record, [(d, ["a", "b"], 1), (d, ["c"], 2)])
//!     assert sorted(d.keys()) == ["a", "b", "c"]
//! ```
//!
//! ```
//! use process_ipc::manager::{ManagedDict, Manager};
//! use process_ipc::Pool;
//!
//! fn record(d: ManagedDict<String, u32>, words: Vec<String>, key: u32) -> bool {
//!     d.update(words.into_iter().map(|w| (w, key))).is_ok()
//! }
//!
//! let manager = Manager::new()?;
//! let d = manager.dict::<String, u32>()?;
//! let pool = Pool::new(2).unwrap();
//! let tasks = [(d.clone(), vec!["a".into(), "b".into()], 1), (d.clone(), vec!["c".into()], 2)];
//! assert_eq!(pool.starmap(record, tasks).unwrap(), [true, true]);
//! let mut keys = d.keys()?;
//! keys.sort();
//! assert_eq!(keys, ["a", "b", "c"]);
//! # Ok::<(), process_ipc::manager::ManagerError>(())
//! ```
//!
//! - **One call, one round trip, one step**: each method is one request and one answer, done
//!   in the manager under one lock, so no call sees half of another (`update`, `extend`,
//!   `setdefault`, `items` are whole); two calls in a row are not atomic together (guard them
//!   with a [`ManagedLock`], as in Python). In the manager's process the handles the manager
//!   made call the objects directly.
//! - **Handles**: plain data (object number and the manager's socket path), `Clone`,
//!   `Serialize` and `Deserialize`, `Send + Sync`; a `Process` or pool task argument like a
//!   queue's. In another process a handle's first call opens a connection to the manager's
//!   socket (checked with `SO_PEERCRED` both ways), kept in a per-process pool for every later
//!   call, a queue's included; a call running while another is in flight opens a second one.
//! - **Values are serde types**, stored by the manager as postcard bytes: a key or value that
//!   does not serialize is [`ManagerError::Encode`] at the call, and nothing is sent; a value
//!   read as a type it does not decode as is [`ManagerError::Decode`] naming that type. Dict
//!   keys are compared by their bytes (equal for equal values of ordinary types), and keep
//!   insertion order, as Python's.
//! - **Blocking calls have bounds**: [`ManagedLock::acquire_timeout`],
//!   [`ManagedEvent::wait_timeout`]; any other call is answered at once, and a manager that is
//!   alive but does not answer within 5 s is [`ManagerError::ObjectNoReply`].
//! - **A lock holder that dies**: the manager sees its connection close, frees the lock, and
//!   the next acquire is [`ManagerError::OwnerDied`] naming the dead pid (Python's manager
//!   keeps such a lock held forever); the acquire after that works.
//! - **Lifetime**: an object lives as long as its manager. Python's manager frees an object
//!   when the last proxy to it goes; handles here are plain data that no one counts, so a
//!   manager that makes objects without end holds them all until it shuts down.
//! - **Manager gone**: every call, and every waiter, ends with [`ManagerError::ObjectGone`].
//! - **Cost**: a round trip is two syscalls on each side (a write and a read), so a call costs
//!   what the kernel's wake-up of the other side costs; see the `manager_dict` bench, beside
//!   a bare Unix-socket round trip.
//!
//! Layout: `mod.rs` ([`Manager`]); the handles `queue` ([`ManagedQueue`]'s API, with `remote`
//! for its calls from another process and `client` for its batched puts), `dict`, `list`,
//! `namespace` (and values) and `sync` (locks and events), all over `object_client` (one call,
//! one round trip); `object_wire` (the one protocol: calls, answers, frames); `rendezvous` (the
//! socket); `object_server` (the objects' state, and a connection's loop), with `server` (a
//! queue's state) and `object_dict` (a dict's). Across hosts: `builder` ([`ManagerBuilder`]),
//! `tcp` and `auth` (the TCP listener and its authkey handshake), `stream` (a connection of
//! either kind), `connected` ([`Manager::connect`], [`RemoteManager`]) and `object_names`.
//!
//! # Across hosts: TCP with an authkey
//!
//! Python's "Using a remote manager": [`Manager::builder`] with an address and an authkey
//! serves on TCP; any process that can reach it calls [`Manager::connect`] with the same key
//! and gets a [`RemoteManager`], whose [`lookup`](RemoteManager::lookup) finds what the server
//! [`register`](Manager::register)ed and whose `queue()`, `dict()`, ... make new objects
//! there, as handles of the same types. Both sides prove they hold the key (HMAC-SHA256 over
//! fresh nonces, never the key itself) before anything else is said; see [`ManagerBuilder`]
//! for the limits a TCP manager keeps.

mod auth;
mod builder;
mod client;
mod connected;
mod dict;
mod error;
mod list;
mod namespace;
mod object_client;
mod object_dict;
mod object_list;
mod object_names;
mod object_ops;
mod object_server;
mod object_wire;
mod queue;
mod remote;
mod rendezvous;
mod server;
mod server_process;
mod stream;
mod sync;
mod tcp;

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::Wire;
use builder::Listener;
pub use builder::{DEFAULT_MAX_CONNECTIONS, DEFAULT_TCP_MAX_FRAME, ManagerBuilder};
pub use connected::{ManagedObject, RemoteManager};
pub use dict::ManagedDict;
pub use error::{ManagerError, PutError};
pub use list::ManagedList;
pub use namespace::{ManagedNamespace, ManagedValue};
use object_client::ObjectRef;
use object_server::Objects;
use object_wire::Kind;
pub use queue::ManagedQueue;
pub use server_process::ManagerProcess;
pub use sync::{ManagedEvent, ManagedLock, ManagedLockGuard};

/// How long a client waits for an answer that a live server gives at once (`get_nowait`,
/// `qsize`, a batch of puts, a dict call). A dead server is noticed immediately, through the
/// closed connection; this bound only covers a server process that is alive but stuck
/// (stopped by a debugger or a signal, say).
const REPLY_GRACE: Duration = Duration::from_secs(5);

/// Makes a write to a closed connection an `EPIPE` error instead of a fatal `SIGPIPE` (see
/// [`sys::ignore_default_sigpipe`](crate::sys::ignore_default_sigpipe)): a process whose manager
/// is gone then gets [`ManagerError::Gone`]. A handler someone installed on purpose is left alone.
fn ignore_sigpipe() {
    crate::sys::ignore_default_sigpipe();
}

/// Python's `multiprocessing.Manager()`: a server that owns queues, dicts, lists, namespaces,
/// values, locks and events, and hands out handles to them.
///
/// The server runs as threads of the process that calls [`Manager::new`] (one listening on
/// its socket, and one per client connection), not as a separate process: the objects live exactly as long as this value and
/// its process. Dropping it, or calling [`shutdown`](Manager::shutdown), ends every object;
/// handles anywhere then get [`ManagerError::Gone`] (queues) or [`ManagerError::ObjectGone`].
pub struct Manager {
    pid: u32,
    /// The manager's socket, where handles decoded in other processes connect.
    address: Arc<str>,
    /// The dicts, lists, namespaces, values, locks and events.
    objects: Arc<Objects>,
    /// `None` once shut down.
    running: Mutex<Option<Running>>,
}

/// What a running manager owns.
struct Running {
    listener: Listener,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("pid", &self.pid)
            .field("objects_made", &self.objects.made())
            .field("running", &self.is_running())
            .finish()
    }
}

impl Manager {
    /// Starts a manager in this process: a thread listening on a Unix socket in a private
    /// temporary directory, where handles decoded in other processes connect.
    ///
    /// # Errors
    /// [`ManagerError::Start`] if the socket, its directory or the thread cannot be created.
    pub fn new() -> Result<Self, ManagerError> {
        Self::builder().serve()
    }

    /// The process the manager's server runs in (this one).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the manager still serves (it has not been shut down).
    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Python's `manager.Queue()`: a new, empty, unbounded queue hosted by this manager.
    ///
    /// # Errors
    /// [`ManagerError::Gone`] after [`shutdown`](Manager::shutdown).
    #[doc(alias = "Queue")]
    pub fn queue<T: Wire>(&self) -> Result<ManagedQueue<T>, ManagerError> {
        self.make_queue(None)
    }

    /// Python's `manager.Queue(maxsize)`: a new queue that holds at most `maxsize` items.
    ///
    /// A put into a full queue waits for room ([`ManagedQueue::put_timeout`] and
    /// [`ManagedQueue::put_nowait`] give up and hand the item back). Waiting putters are let in
    /// first come, first served. Outside the manager's process each put is a round trip (the
    /// server must say there was room), so a bounded queue is slower than an unbounded one.
    ///
    /// ```
    /// use process_ipc::manager::{Manager, ManagerError};
    ///
    /// let manager = Manager::new()?;
    /// let queue = manager.bounded_queue::<u8>(1)?;
    /// queue.put(1)?;
    /// let refused = queue.put_nowait(2).unwrap_err();
    /// assert!(matches!(refused.error, ManagerError::Full { maxsize: 1, .. }));
    /// assert_eq!(refused.item, Some(2));
    /// assert_eq!(queue.get()?, 1);
    /// queue.put(3)?;
    /// # Ok::<(), ManagerError>(())
    /// ```
    ///
    /// # Errors
    /// [`ManagerError::InvalidMaxsize`] if `maxsize` is 0 (Python reads 0 as "unbounded": use
    /// [`Manager::queue`] for that); otherwise as [`Manager::queue`].
    pub fn bounded_queue<T: Wire>(&self, maxsize: usize) -> Result<ManagedQueue<T>, ManagerError> {
        if maxsize == 0 {
            return Err(ManagerError::InvalidMaxsize { pid: self.pid });
        }
        self.make_queue(Some(maxsize))
    }

    fn make_queue<T: Wire>(&self, maxsize: Option<usize>) -> Result<ManagedQueue<T>, ManagerError> {
        let queue = self.objects.next_object();
        let obj = ObjectRef {
            pid: self.pid,
            object: queue,
            kind: Kind::Queue,
            address: Arc::clone(&self.address),
            local: None,
            pool: OnceLock::new(),
        };
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let local = running
            .as_ref()
            .and_then(|_| self.objects.add_queue(queue, maxsize));
        let Some(local) = local else {
            return Err(obj.gone("the manager was shut down before the queue was made"));
        };
        Ok(ManagedQueue {
            obj,
            maxsize,
            local: Some(local),
            feed: OnceLock::new(),
            put_any: AtomicBool::new(false),
            types: PhantomData,
        })
    }

    /// Adds an object of `kind` (a `Value`'s initial value in `value`) and makes its handle.
    fn make_object(
        &self,
        kind: Kind,
        initial: impl FnOnce(&ObjectRef) -> Result<Option<serde_bytes::ByteBuf>, ManagerError>,
    ) -> Result<ObjectRef, ManagerError> {
        let object = self.objects.next_object();
        let obj = ObjectRef {
            pid: self.pid,
            object,
            kind,
            address: Arc::clone(&self.address),
            local: Some(Arc::clone(&self.objects)),
            pool: OnceLock::new(),
        };
        let value = initial(&obj)?;
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_none() || !self.objects.add(object, kind, value) {
            return Err(obj.gone(format!(
                "the manager was shut down before the {} was made",
                kind.name()
            )));
        }
        Ok(obj)
    }

    /// Python's `manager.dict()`: a new, empty dict hosted by this manager, whose handle
    /// passes to other processes like a queue's (see [`ManagedDict`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] after [`shutdown`](Manager::shutdown).
    #[doc(alias = "Manager().dict")]
    pub fn dict<K: Wire, V: Wire>(&self) -> Result<ManagedDict<K, V>, ManagerError> {
        self.make_object(Kind::Dict, |_| Ok(None))
            .map(ManagedDict::new)
    }

    /// Python's `manager.list()`: a new, empty list hosted by this manager (see
    /// [`ManagedList`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] after [`shutdown`](Manager::shutdown).
    pub fn list<T: Wire>(&self) -> Result<ManagedList<T>, ManagerError> {
        self.make_object(Kind::List, |_| Ok(None))
            .map(ManagedList::new)
    }

    /// Python's `manager.Namespace()`: a new namespace with no names set (see
    /// [`ManagedNamespace`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] after [`shutdown`](Manager::shutdown).
    #[doc(alias = "Namespace")]
    pub fn namespace(&self) -> Result<ManagedNamespace, ManagerError> {
        self.make_object(Kind::Namespace, |_| Ok(None))
            .map(ManagedNamespace::new)
    }

    /// Python's `manager.Value(typecode, value)`: a new value hosted by this manager, of any
    /// serde type (see [`ManagedValue`]).
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `initial` does not serialize;
    /// [`ManagerError::ObjectGone`] after [`shutdown`](Manager::shutdown).
    #[doc(alias = "Value")]
    pub fn value<T: Wire>(&self, initial: T) -> Result<ManagedValue<T>, ManagerError> {
        self.make_object(Kind::Value, |obj| obj.encode("value", &initial).map(Some))
            .map(ManagedValue::new)
    }

    /// Python's `manager.Lock()`: a new lock hosted by this manager (see [`ManagedLock`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] after [`shutdown`](Manager::shutdown).
    #[doc(alias = "Lock")]
    pub fn lock(&self) -> Result<ManagedLock, ManagerError> {
        self.make_object(Kind::Lock, |_| Ok(None))
            .map(ManagedLock::new)
    }

    /// Python's `manager.Event()`: a new event hosted by this manager, not set (see
    /// [`ManagedEvent`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] after [`shutdown`](Manager::shutdown).
    #[doc(alias = "Event")]
    pub fn event(&self) -> Result<ManagedEvent, ManagerError> {
        self.make_object(Kind::Event, |_| Ok(None))
            .map(ManagedEvent::new)
    }

    /// Python's `manager.shutdown()`: ends every object of this manager. Blocked getters wake
    /// with [`ManagerError::Gone`], blocked lock acquires and event waits with
    /// [`ManagerError::ObjectGone`], here and in other processes, and later calls on any handle
    /// fail the same way. Calling it again does nothing.
    pub fn shutdown(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut running) = running {
            running.listener.stop();
            self.objects.close();
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
