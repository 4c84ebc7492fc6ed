//! `Manager` and `ManagedQueue<T>`: Python's `multiprocessing.Manager().Queue()`, a queue owned
//! by a server whose handles can be passed to other processes.
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
//! Here [`Manager::new`] starts the server as threads of the calling process (one per queue, and
//! one listening on a Unix socket), and [`Manager::queue`] hands out a [`ManagedQueue<T>`]:
//! `Clone`, `Serialize` and `Deserialize`, so it travels as an argument to a `Process` target or
//! a [`Pool`](crate::Pool) task, and works the same on the other side. Like a pickled Python
//! proxy, an encoded handle is plain data (which queue, and the manager's socket path), so any
//! encoder carries it; where it is decoded, its first use asks the manager's socket for the
//! queue's ipc-channel, once per queue per process. Every queue operation in a process other
//! than the manager's is then a message to that queue's server; in the manager's own process
//! the handle the manager made goes to the queue's state directly.
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
//! assert!(matches!(queue.put(1), Err(ManagerError::Gone { .. })));
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
//!   whose puts wait for room; `put_timeout` and `try_put` hand the item back when full.
//! - **Buffered puts, as in Python's `multiprocessing.Queue`**: outside the manager's process,
//!   `put` into an unbounded queue hands the item to a feeder thread (one per queue and
//!   process), which sends what has piled up as one message. A process's items arrive in put
//!   order and before its own next get or qsize on that queue. Dropping a handle that put
//!   items waits until they are sent, so they survive the process's exit (a `Process` target
//!   or a pool task drops its arguments when it returns); [`ManagedQueue::flush`] waits until
//!   the manager holds them.
//! - **Fair**: getters are served first come, first served, whichever process they wait in.
//! - **Exactly once**: an item goes to one getter. A `get_timeout` that runs out withdraws its
//!   request from the server before it reports [`ManagerError::Timeout`], so an item is never
//!   sent to a caller that has stopped waiting.
//! - **Manager gone**: after [`Manager::shutdown`] or drop, or when the manager's process dies,
//!   every call fails with [`ManagerError::Gone`], and blocked getters wake with it at once.
//!   A buffered put is the exception: it may be accepted just before its feeder finds the
//!   manager gone; that failure then shows at the next put or flush. Items still queued when
//!   the manager ends are dropped, as Python's are with its manager.
//! - **Costs**: the first use of a decoded handle costs one exchange with the manager's socket
//!   per queue and process (later handles in that process reuse the channel). A busy producer
//!   then pays one socket write per batch; a get, `try_get` or `qsize` is a round trip over a
//!   reply channel that each handle creates on first use and keeps (one per thread that uses
//!   the handle at once). The manager's own handles go straight to the queue's state.
//! - **Files**: the socket lives in a directory of its own (mode 0700) under the system's
//!   temporary directory, removed at shutdown; a manager whose process is killed leaves it.

mod feeder;
mod rendezvous;
mod server;
mod wire;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender, OpaqueIpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use feeder::{Failure, Feeder};
use rendezvous::{Rendezvous, Unreachable};
use server::{Counts, LocalGet, LocalPut, ServerThread, Shared};
use wire::{Reply, Request};

/// How long a client waits for an answer that a live server gives at once (registration,
/// `try_get`, `qsize`, the answer to a cancelled get). A dead server is noticed immediately,
/// through the closed channel; this bound only covers a server process that is alive but stuck
/// (stopped by a debugger or a signal, say).
const REPLY_GRACE: Duration = Duration::from_secs(5);

/// How long [`Manager::shutdown`] waits for each queue's server thread to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What went wrong in a [`Manager`] or [`ManagedQueue`] call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The manager was shut down or dropped, or its process died.
    #[error("manager queue {queue} of the manager in process {pid} is gone: {why}")]
    Gone {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// What showed it.
        why: String,
    },
    /// `get_timeout` found no item within its timeout (or `flush_timeout` was still sending).
    #[error("no item arrived in manager queue {queue} (manager pid {pid}) within {timeout:?}")]
    Timeout {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// A put into a bounded queue found no room (`try_put`), or none within its timeout.
    #[error("manager queue {queue} (manager pid {pid}) is full: {maxsize} items")]
    Full {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// The queue's bound.
        maxsize: usize,
    },
    /// [`Manager::bounded_queue`] was asked for a queue that can hold nothing.
    #[error(
        "a bounded manager queue needs maxsize >= 1 (manager pid {pid}); Manager::queue makes an unbounded one"
    )]
    InvalidMaxsize {
        /// The manager's process id.
        pid: u32,
    },
    /// `try_get` / `get_nowait` found the queue empty.
    #[error("manager queue {queue} (manager pid {pid}) is empty")]
    Empty {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
    },
    /// The manager's process is alive but did not answer a request it answers at once.
    #[error(
        "the manager in process {pid} did not answer a request on queue {queue} within {waited:?}"
    )]
    NoReply {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// How long the client waited.
        waited: Duration,
    },
    /// Items put earlier into this queue from this process could not be encoded, so the feeder
    /// dropped them (and only them): reported once, by the next flush in that process, and
    /// logged as a warning when it happens.
    #[error("manager queue {queue} (manager pid {pid}): {reason}")]
    Dropped {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// How many items, and the encoder's message.
        reason: String,
    },
    /// [`Manager::new`] could not open its socket (in a new directory under the system's
    /// temporary directory) or start the thread that listens on it.
    #[error("cannot start a manager in process {pid}: {source}")]
    Start {
        /// This process's id.
        pid: u32,
        /// The system error.
        source: io::Error,
    },
    /// An item could not be encoded or decoded.
    #[error("manager queue {queue} (manager pid {pid}): an item does not (de)serialize: {source}")]
    Serialization {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// ipc-channel's encoding error.
        source: ipc_channel::SerDeError,
    },
    /// The operating system refused a channel or a thread (out of file descriptors, say).
    #[error("manager queue {queue} (manager pid {pid}): {what}: {source}")]
    Io {
        /// The manager's process id.
        pid: u32,
        /// The queue's number within its manager.
        queue: u64,
        /// What was being done.
        what: &'static str,
        /// The system error.
        source: io::Error,
    },
}

/// A put that did not happen: why, and the item when it is still at hand.
///
/// The item comes back whenever the put was refused for want of room
/// ([`ManagerError::Full`]); it does not when it already travelled to a manager that is gone.
pub struct PutError<T> {
    /// Why the put failed.
    pub error: ManagerError,
    /// The item, handed back.
    pub item: Option<T>,
}

impl<T> PutError<T> {
    fn new(error: ManagerError, item: Option<T>) -> Self {
        Self { error, item }
    }

    /// The item, if it came back.
    pub fn into_item(self) -> Option<T> {
        self.item
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .field("item_returned", &self.item.is_some())
            .finish()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<PutError<T>> for ManagerError {
    fn from(e: PutError<T>) -> Self {
        e.error
    }
}

/// Makes a write to a closed channel an `EPIPE` error instead of a fatal `SIGPIPE`.
///
/// ipc-channel writes with `sendmsg` without `MSG_NOSIGNAL`. Rust's `main` ignores `SIGPIPE`
/// before it runs, but a child process that runs its target before `main` (and a program that
/// restored the default) would be killed by the signal when its manager is gone, instead of
/// getting [`ManagerError::Gone`]. A handler someone installed on purpose is left alone.
fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action makes this a query; `current` is a valid place to write.
        let queried = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) };
        if queried == 0 && current.sa_sigaction == libc::SIG_DFL {
            // SAFETY: SIG_IGN is a valid disposition for SIGPIPE and installs no handler code.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        }
    });
}

/// Python's `multiprocessing.Manager()`: a server that owns queues and hands out handles to
/// them.
///
/// The server runs as threads of the process that calls [`Manager::new`] (one thread per
/// queue, blocked on that queue's request channel), not as a separate process: the queues live
/// exactly as long as this value and its process. Dropping it, or calling
/// [`shutdown`](Manager::shutdown), ends every queue; handles anywhere then get
/// [`ManagerError::Gone`].
pub struct Manager {
    pid: u32,
    /// Where handles decoded in other processes ask for their queue's channel.
    address: Arc<str>,
    next_queue: AtomicU64,
    /// `None` once shut down.
    running: Mutex<Option<Running>>,
}

/// What a running manager owns.
struct Running {
    rendezvous: Rendezvous,
    servers: Vec<ServerThread>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("pid", &self.pid)
            .field("queues", &self.next_queue.load(Ordering::Relaxed))
            .field("running", &self.is_running())
            .finish()
    }
}

impl Manager {
    /// Starts a manager in this process: a thread listening on a Unix socket in a private
    /// temporary directory, where handles decoded in other processes ask for their queue.
    ///
    /// # Errors
    /// [`ManagerError::Start`] if the socket, its directory or the thread cannot be created.
    pub fn new() -> Result<Self, ManagerError> {
        ignore_sigpipe();
        let pid = std::process::id();
        let rendezvous =
            Rendezvous::start(pid).map_err(|source| ManagerError::Start { pid, source })?;
        Ok(Self {
            pid,
            address: rendezvous.address().into(),
            next_queue: AtomicU64::new(1),
            running: Mutex::new(Some(Running {
                rendezvous,
                servers: Vec::new(),
            })),
        })
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
    /// [`ManagerError::Gone`] after [`shutdown`](Manager::shutdown); [`ManagerError::Io`] if the
    /// request channel or the server thread cannot be created.
    #[doc(alias = "Queue")]
    pub fn queue<T>(&self) -> Result<ManagedQueue<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.make_queue(None)
    }

    /// Python's `manager.Queue(maxsize)`: a new queue that holds at most `maxsize` items.
    ///
    /// A put into a full queue waits for room ([`ManagedQueue::put_timeout`] and
    /// [`ManagedQueue::try_put`] give up and hand the item back). Waiting putters are let in
    /// first come, first served. Outside the manager's process each put is a round trip (the
    /// server must say there was room), so a bounded queue is slower than an unbounded one.
    ///
    /// ```
    /// use process_ipc::manager::{Manager, ManagerError};
    ///
    /// let manager = Manager::new()?;
    /// let queue = manager.bounded_queue::<u8>(1)?;
    /// queue.put(1)?;
    /// let refused = queue.try_put(2).unwrap_err();
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
    pub fn bounded_queue<T>(&self, maxsize: usize) -> Result<ManagedQueue<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        if maxsize == 0 {
            return Err(ManagerError::InvalidMaxsize { pid: self.pid });
        }
        self.make_queue(Some(maxsize))
    }

    fn make_queue<T>(&self, maxsize: Option<usize>) -> Result<ManagedQueue<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let queue = self.next_queue.fetch_add(1, Ordering::Relaxed);
        let io = |what, source| ManagerError::Io {
            pid: self.pid,
            queue,
            what,
            source,
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(running) = running.as_mut() else {
            return Err(ManagerError::Gone {
                pid: self.pid,
                queue,
                why: "the manager was shut down before the queue was made".into(),
            });
        };
        let (requests, incoming) =
            ipc::channel::<Request<T>>().map_err(|e| io("cannot create its request channel", e))?;
        let shared = Arc::new(Shared::new(maxsize));
        let server = ServerThread::start(
            format!("manager-queue-{queue}"),
            Arc::clone(&shared),
            incoming,
            requests.clone(),
        )
        .map_err(|e| io("cannot start its server thread", e))?;
        running.servers.push(server);
        running.rendezvous.add(queue, requests);
        Ok(ManagedQueue {
            pid: self.pid,
            queue,
            maxsize,
            address: Arc::clone(&self.address),
            local: Some(shared),
            conn: OnceLock::new(),
            put_any: AtomicBool::new(false),
        })
    }

    /// Python's `manager.shutdown()`: ends every queue of this manager. Blocked getters wake
    /// with [`ManagerError::Gone`], here and in other processes, and later calls on any handle
    /// fail the same way. Calling it again does nothing.
    pub fn shutdown(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut running) = running {
            running.rendezvous.stop();
            for server in &mut running.servers {
                server.stop(SHUTDOWN_GRACE);
            }
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One registered connection to a queue's server: an id and the receiving end of the reply
/// channel that only the server can send on.
struct Client<T> {
    id: u64,
    next_seq: u64,
    replies: IpcReceiver<Reply<T>>,
    /// The queue's request channel, re-typed so that `Drop` can send `Unregister` (which
    /// carries no item, so its bytes are the same for every item type).
    unregister: IpcSender<Request<()>>,
}

impl<T> Drop for Client<T> {
    fn drop(&mut self) {
        // Best effort: a server that is gone has nothing left to forget.
        let _ = self
            .unregister
            .send(Request::Unregister { client: self.id });
    }
}

/// How long a get or a bounded put may wait.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant, Duration),
    Forever,
}

impl Wait {
    /// The timeout a timed wait was given (zero otherwise).
    fn timeout(self) -> Duration {
        match self {
            Wait::Until(_, timeout) => timeout,
            _ => Duration::ZERO,
        }
    }
}

/// What a client call ended with; `Broken` means the client must not be reused.
enum Outcome<T> {
    Ok(T),
    Broken(ManagerError),
}

/// A handle to a queue hosted by a [`Manager`]: Python's `manager.Queue()` proxy.
///
/// Clone it for another thread, or pass it to another process (as a `Process` argument, a
/// `Pool` task argument, inside any serde value); every copy reaches the same queue. All
/// methods take `&self` and may be called from several threads at once. A handle is `Send`
/// when `T` is, and `Sync` when `T` is `Send + Sync`.
pub struct ManagedQueue<T> {
    pid: u32,
    queue: u64,
    maxsize: Option<usize>,
    /// The manager's socket, where a decoded handle asks for the queue's request channel.
    address: Arc<str>,
    /// The queue's state when this handle was made by the manager (in its process).
    local: Option<Arc<Shared<T>>>,
    /// This process's connection to the queue's server, for a decoded handle, once made.
    conn: OnceLock<Arc<Connection<T>>>,
    /// Whether this handle put items through the feeder (its drop then waits for them).
    put_any: AtomicBool,
}

/// One process's connection to one queue's server, shared by every handle to that queue
/// decoded in the process (a pool worker decodes one per task).
struct Connection<T> {
    requests: OpaqueIpcSender,
    /// The thread that sends this process's puts, started by the first one; `None` inside if
    /// it could not start (puts then go directly).
    feeder: OnceLock<Option<Feeder<T>>>,
    /// Registered clients not in use by a call right now (one per concurrent caller).
    clients: Mutex<Vec<Client<T>>>,
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    fn requests(&self) -> IpcSender<Request<T>> {
        self.requests.clone().to()
    }
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

impl<T> ManagedQueue<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// The process id of the manager that hosts this queue.
    pub fn manager_pid(&self) -> u32 {
        self.pid
    }

    /// Python's `q.put(item)`: appends `item`. A bounded queue ([`Manager::bounded_queue`])
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
    /// cannot be encoded and the put was not buffered (in a buffered put that shows as
    /// [`ManagerError::Dropped`] at the next [`flush`](ManagedQueue::flush)).
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        if self.maxsize.is_some() {
            return Ok(self.put_bounded(item, Wait::Forever)?);
        }
        if let Some(shared) = &self.local {
            return if shared.put(item) {
                Ok(())
            } else {
                Err(self.gone("it was shut down"))
            };
        }
        let conn = self.conn()?;
        let feeder = conn.feeder.get_or_init(|| {
            Feeder::start(conn.requests(), format!("manager-feeder-{}", self.queue)).ok()
        });
        match feeder {
            Some(feeder) => {
                self.put_any.store(true, Ordering::Relaxed);
                feeder.put(item).map_err(|f| self.failed(f))
            }
            None => conn
                .requests()
                .send(Request::Put(vec![item]))
                .map_err(|e| self.send_error(e)),
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
            return self.put(item).map_err(|e| PutError::new(e, None));
        }
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.put_bounded(item, Wait::Until(deadline, timeout)),
            None => self.put_bounded(item, Wait::Forever),
        }
    }

    /// Puts only if a bounded queue has room now. An unbounded queue is never full.
    ///
    /// # Errors
    /// [`ManagerError::Full`] with the item handed back; otherwise as [`put`](ManagedQueue::put).
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        if self.maxsize.is_none() {
            return self.put(item).map_err(|e| PutError::new(e, None));
        }
        self.put_bounded(item, Wait::No)
    }

    /// Python's name for [`try_put`](ManagedQueue::try_put).
    ///
    /// # Errors
    /// As [`try_put`](ManagedQueue::try_put).
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.try_put(item)
    }

    /// The bound given to [`Manager::bounded_queue`]; `None` for an unbounded queue.
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

    /// Waits until the manager holds every item put into this queue from this process.
    /// Immediate in the manager's own process.
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone (some items may be lost);
    /// [`ManagerError::Dropped`] if earlier items could not be encoded.
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
        if let Some(failure) = feeder.failure() {
            return Err(self.failed(failure));
        }
        // Sent is not yet handled: a round trip queues behind the items.
        self.counts().map(drop)
    }

    /// Lets this handle's own puts reach the server before a request that must see them.
    /// Failures are left for the next put or flush to report.
    fn sync_puts(&self, deadline: Option<Instant>) -> bool {
        self.feeder()
            .is_none_or(|feeder| feeder.wait_sent(deadline))
    }

    fn failed(&self, failure: Failure) -> ManagerError {
        match failure {
            Failure::Gone(why) => self.gone(why),
            Failure::Dropped(reason) => ManagerError::Dropped {
                pid: self.pid,
                queue: self.queue,
                reason,
            },
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

    /// Takes the oldest item if there is one, without waiting for one to arrive.
    ///
    /// # Errors
    /// [`ManagerError::Empty`] if the queue is empty; [`ManagerError::Gone`] if the manager is
    /// gone.
    pub fn try_get(&self) -> Result<T, ManagerError> {
        self.get_with(Wait::No)
    }

    /// Python's name for [`try_get`](ManagedQueue::try_get).
    ///
    /// # Errors
    /// As [`try_get`](ManagedQueue::try_get).
    pub fn get_nowait(&self) -> Result<T, ManagerError> {
        self.try_get()
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

    fn counts(&self) -> Result<Counts, ManagerError> {
        if let Some(shared) = &self.local {
            return shared.counts().ok_or_else(|| self.gone("it was shut down"));
        }
        self.sync_puts(None);
        self.with_client(REPLY_GRACE, |requests, client| {
            let seq = client.seq();
            if let Err(e) = requests.send(Request::Qsize {
                client: client.id,
                seq,
            }) {
                return Outcome::Broken(self.send_error(e));
            }
            loop {
                match self.recv(client, Some(REPLY_GRACE)) {
                    Ok(Reply::Size {
                        seq: s,
                        len,
                        getters,
                        putters,
                    }) if s == seq => {
                        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
                        return Outcome::Ok(Counts {
                            items: size(len),
                            getters: size(getters),
                            putters: size(putters),
                        });
                    }
                    Ok(_) => continue,
                    Err(e) => return Outcome::Broken(e),
                }
            }
        })
    }

    /// Python's `q.empty()`: whether [`qsize`](ManagedQueue::qsize) is zero.
    ///
    /// # Errors
    /// As [`qsize`](ManagedQueue::qsize).
    pub fn empty(&self) -> Result<bool, ManagerError> {
        Ok(self.qsize()? == 0)
    }

    fn gone(&self, why: impl Into<String>) -> ManagerError {
        ManagerError::Gone {
            pid: self.pid,
            queue: self.queue,
            why: why.into(),
        }
    }

    /// This process's connection to the queue: this handle's, the one another handle made in
    /// this process, or (first use in this process) a new one, obtained from the manager
    /// through its socket.
    fn conn(&self) -> Result<&Arc<Connection<T>>, ManagerError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        ignore_sigpipe();
        let queue = self.queue;
        let make = |requests| Connection {
            requests,
            feeder: OnceLock::new(),
            clients: Mutex::new(Vec::new()),
        };
        let conn = rendezvous::connect(&self.address, queue, make).map_err(|e| match e {
            Unreachable::Gone(why) => self.gone(why),
            Unreachable::Io(source) => ManagerError::Io {
                pid: self.pid,
                queue,
                what: "cannot open a channel to reach the manager",
                source,
            },
        })?;
        Ok(self.conn.get_or_init(|| conn))
    }

    /// The feeder of this process's connection, if one was started.
    fn feeder(&self) -> Option<&Feeder<T>> {
        self.conn.get()?.feeder.get()?.as_ref()
    }

    fn send_error(&self, error: IpcError) -> ManagerError {
        match error {
            IpcError::SerializationError(source) => ManagerError::Serialization {
                pid: self.pid,
                queue: self.queue,
                source,
            },
            IpcError::Disconnected => self.gone("its request channel is closed"),
            IpcError::Io(e) => match e.kind() {
                io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::NotConnected => self.gone("its request channel is closed"),
                _ => ManagerError::Io {
                    pid: self.pid,
                    queue: self.queue,
                    what: "cannot send a request",
                    source: e,
                },
            },
        }
    }

    /// Receives one reply; `None` waits without bound. A timeout is `NoReply`.
    fn recv(&self, client: &Client<T>, wait: Option<Duration>) -> Result<Reply<T>, ManagerError> {
        let received = match wait {
            None => client.replies.recv().map_err(TryRecvError::IpcError),
            Some(d) => client.replies.try_recv_timeout(d),
        };
        received.map_err(|e| match e {
            TryRecvError::Empty => ManagerError::NoReply {
                pid: self.pid,
                queue: self.queue,
                waited: wait.unwrap_or_default(),
            },
            TryRecvError::IpcError(IpcError::SerializationError(source)) => {
                ManagerError::Serialization {
                    pid: self.pid,
                    queue: self.queue,
                    source,
                }
            }
            TryRecvError::IpcError(_) => self.gone("its reply channel closed"),
        })
    }

    /// Runs `call` with a registered client (reused, or registered now within `register`),
    /// and keeps the client for later unless the call broke it.
    fn with_client<R>(
        &self,
        register: Duration,
        call: impl FnOnce(&IpcSender<Request<T>>, &mut Client<T>) -> Outcome<R>,
    ) -> Result<R, ManagerError> {
        let conn = self.conn()?;
        let requests = conn.requests();
        let pooled = conn.clients.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut client = match pooled {
            Some(client) => client,
            None => self.register(&requests, register)?,
        };
        match call(&requests, &mut client) {
            Outcome::Ok(value) => {
                conn.clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(client);
                Ok(value)
            }
            // Dropping the client unregisters it.
            Outcome::Broken(e) => Err(e),
        }
    }

    /// Creates a reply channel and registers it with the server.
    fn register(
        &self,
        requests: &IpcSender<Request<T>>,
        wait: Duration,
    ) -> Result<Client<T>, ManagerError> {
        let (reply, replies) = ipc::channel::<Reply<T>>().map_err(|source| ManagerError::Io {
            pid: self.pid,
            queue: self.queue,
            what: "cannot create a reply channel",
            source,
        })?;
        // The send moves `reply` and drops this process's copy of it: the server then holds
        // the only sending end, so its exit closes the channel and wakes this client.
        requests
            .send(Request::Register { reply })
            .map_err(|e| self.send_error(e))?;
        let mut client = Client {
            id: 0,
            next_seq: 1,
            replies,
            unregister: requests.clone().to_opaque().to(),
        };
        match self.recv(&client, Some(wait.max(REPLY_GRACE)))? {
            Reply::Registered { client: id } => {
                client.id = id;
                Ok(client)
            }
            _ => Err(self.gone("it answered a registration with something else")),
        }
    }

    fn get_with(&self, wait: Wait) -> Result<T, ManagerError> {
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

    fn get_remote(&self, wait: Wait) -> Result<T, ManagerError> {
        let deadline = match wait {
            Wait::Until(deadline, _) => Some(deadline),
            _ => None,
        };
        if !self.sync_puts(deadline) {
            if let Wait::Until(_, timeout) = wait {
                return Err(self.timeout(timeout));
            }
        }
        let register = match wait {
            Wait::Until(deadline, _) => deadline.saturating_duration_since(Instant::now()),
            _ => REPLY_GRACE,
        };
        self.with_client(register, |requests, client| {
            let block = !matches!(wait, Wait::No);
            let request = |client, seq| Request::Get { client, seq, block };
            self.exchange(requests, client, request, wait, |reply, seq| match reply {
                Reply::Item { seq: s, item } if s == seq => Some(Ok(item)),
                Reply::Empty { seq: s } if s == seq => Some(Err(self.empty_error())),
                Reply::Cancelled { seq: s } if s == seq => Some(Err(self.timeout(wait.timeout()))),
                _ => None,
            })
        })?
    }

    /// Sends `request` (made from the client id and a fresh seq) and reads replies until
    /// `answer` recognises the one that concludes it. If `wait` runs out first, the request is
    /// withdrawn with `Cancel` and the server's answer to that (which may still be the real
    /// answer, sent just before) is what `answer` gets: a reply is never left unread.
    fn exchange<R>(
        &self,
        requests: &IpcSender<Request<T>>,
        client: &mut Client<T>,
        request: impl FnOnce(u64, u64) -> Request<T>,
        wait: Wait,
        mut answer: impl FnMut(Reply<T>, u64) -> Option<R>,
    ) -> Outcome<R> {
        let seq = client.seq();
        if let Err(e) = requests.send(request(client.id, seq)) {
            return Outcome::Broken(self.send_error(e));
        }
        loop {
            let bound = match wait {
                Wait::No => Some(REPLY_GRACE),
                Wait::Forever => None,
                Wait::Until(deadline, _) => {
                    Some(deadline.saturating_duration_since(Instant::now()))
                }
            };
            match self.recv(client, bound) {
                Ok(reply) => {
                    if let Some(r) = answer(reply, seq) {
                        return Outcome::Ok(r);
                    }
                }
                // ipc-channel polls in whole milliseconds, rounding down: wait out the rest.
                Err(ManagerError::NoReply { .. }) => match wait {
                    Wait::Until(deadline, _) if Instant::now() < deadline => {}
                    Wait::Until(..) => break,
                    _ => return Outcome::Broken(self.no_reply(REPLY_GRACE)),
                },
                Err(e) => return Outcome::Broken(e),
            }
        }
        let cancel = Request::Cancel {
            client: client.id,
            seq,
        };
        if let Err(e) = requests.send(cancel) {
            return Outcome::Broken(self.send_error(e));
        }
        loop {
            match self.recv(client, Some(REPLY_GRACE)) {
                Ok(reply) => {
                    if let Some(r) = answer(reply, seq) {
                        return Outcome::Ok(r);
                    }
                }
                Err(e) => return Outcome::Broken(e),
            }
        }
    }

    /// A put into a bounded queue: Python's blocking `put`, with a wait of `wait`.
    fn put_bounded(&self, item: T, wait: Wait) -> Result<(), PutError<T>> {
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

    fn put_bounded_remote(&self, item: T, wait: Wait) -> Result<(), PutError<T>> {
        let register = match wait {
            Wait::Until(deadline, _) => deadline.saturating_duration_since(Instant::now()),
            _ => REPLY_GRACE,
        };
        let block = !matches!(wait, Wait::No);
        let outcome = self.with_client(register, |requests, client| {
            let request = |client, seq| Request::PutWait {
                client,
                seq,
                item,
                block,
            };
            self.exchange(requests, client, request, wait, |reply, seq| match reply {
                Reply::PutAck { seq: s } if s == seq => Some(None),
                Reply::PutRefused { seq: s, item } if s == seq => Some(Some(item)),
                _ => None,
            })
        });
        match outcome {
            Ok(None) => Ok(()),
            Ok(Some(item)) => Err(PutError::new(self.full_error(), Some(item))),
            Err(e) => Err(PutError::new(e, None)),
        }
    }

    fn full_error(&self) -> ManagerError {
        ManagerError::Full {
            pid: self.pid,
            queue: self.queue,
            maxsize: self.maxsize.unwrap_or(usize::MAX),
        }
    }

    fn empty_error(&self) -> ManagerError {
        ManagerError::Empty {
            pid: self.pid,
            queue: self.queue,
        }
    }

    fn no_reply(&self, waited: Duration) -> ManagerError {
        ManagerError::NoReply {
            pid: self.pid,
            queue: self.queue,
            waited,
        }
    }

    fn timeout(&self, timeout: Duration) -> ManagerError {
        ManagerError::Timeout {
            pid: self.pid,
            queue: self.queue,
            timeout,
        }
    }
}

impl<T> Client<T> {
    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}
