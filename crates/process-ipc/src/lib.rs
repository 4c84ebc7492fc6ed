//! `process_ipc`: Python's `multiprocessing` in Rust: `Process` with a pid, a `Queue` between
//! processes, a `Pool` of reused worker processes, and a `Manager` queue.
//!
//! ## A target in another process
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Queue
//! import os
//!
//! def square(x, q):
//!     q.put(os.getpid())
//!     return x * x          # (Python drops the return value; we give it back)
//!
//! q = Queue()
//! p = Process(target=square, args=(7, q)); p.start(); p.join()
//! assert q.get() == p.pid
//! ```
//!
//! Rust: the target is a plain `fn` whose arguments and return value are serde types. The child
//! is this same executable started again; a constructor runs the target there before `main`,
//! so no set-up line is needed in `main`, and the same code works in binaries, tests and
//! doctests. By default ([`StartMethod::ForkServer`]) it is forked from a small helper started
//! that way once, which costs less than half of a re-exec; [`StartMethod::Spawn`] re-executes for
//! every child.
//!
//! ```
//! use process_ipc::{current_pid, Process, Queue, QueueSender};
//!
//! fn square(x: u64, q: QueueSender<u32>) -> u64 {
//!     q.put(current_pid()).unwrap();
//!     x * x
//! }
//!
//! let q = Queue::new().unwrap();
//! let child = Process::new(square, (7, q.sender().unwrap())).start().unwrap();
//! let pid = child.pid();
//! assert_eq!(child.join().unwrap(), 49);
//! assert_eq!(q.get().unwrap(), pid);
//! assert_ne!(pid, current_pid());
//! ```
//!
//! ## Failure is a value
//!
//! A panic in the child, a signal, a non-zero exit: each comes back from `join` as an `Err`
//! that names the pid and what happened.
//!
//! ```
//! use process_ipc::{Process, ProcessError};
//!
//! fn boom() -> u8 {
//!     panic!("no luck")
//! }
//!
//! match Process::new(boom, ()).start().unwrap().join() {
//!     Err(ProcessError::Panicked { message, .. }) => assert_eq!(message, "no luck"),
//!     other => panic!("expected a panic, got {other:?}"),
//! }
//! ```
//!
//! ## A pool of reused workers
//!
//! ```python
//! with Pool(2) as pool:
//!     assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
//!     r = pool.apply_async(square, (7,)); assert r.get(timeout=10) == 49
//! ```
//!
//! ```
//! use std::time::Duration;
//! use process_ipc::{Pool, PoolError};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2).unwrap();
//! assert_eq!(pool.map(square, 0..5u64).unwrap(), vec![0, 1, 4, 9, 16]);
//! let r = pool.apply_async(square, (7,)).unwrap();
//! assert_eq!(r.get_timeout(Duration::from_secs(10)).unwrap(), 49);
//! assert_eq!(Pool::new(0).unwrap_err(), PoolError::NoWorkers(0));
//! ```
//!
//! Unlike Python's `Pool`, which waits forever when a worker is killed mid-task, a dead worker
//! fails only its own task, with its pid and the signal, and is replaced.
//!
//! ## Talking between processes
//!
//! [`Queue`] is Python's `multiprocessing.Queue`: `put` never blocks (a feeder thread ships
//! items in batches, which makes it fast for streams), and any number of processes can `get`
//! from it, each item going to one of them ([`Queue::bounded`] makes `put` wait when full).
//! [`JoinableQueue`] adds `task_done` and `join`, and every queue has Python 3.13's
//! [`shutdown`](Queue::shutdown).
//! [`pipe`] is Python's `Pipe()`: no
//! feeder, so a round trip costs what raw ipc-channel costs; its `send` blocks while the peer's
//! buffer is full. Both carry any serde type; both ends can be [`Process`] arguments.
//!
//! ```
//! use process_ipc::{pipe, Connection, Process};
//!
//! fn echo_twice(conn: Connection<String>) {
//!     for _ in 0..2 {
//!         let s = conn.recv().unwrap();
//!         conn.send(s.to_uppercase()).unwrap();
//!     }
//! }
//!
//! let (mine, theirs) = pipe().unwrap();
//! let child = Process::new(echo_twice, (theirs,)).start().unwrap();
//! mine.send("ping".to_string()).unwrap();
//! assert_eq!(mine.recv().unwrap(), "PING");
//! mine.send("pong".to_string()).unwrap();
//! assert_eq!(mine.recv().unwrap(), "PONG");
//! child.join().unwrap();
//! ```
//!
//! ## State shared through a Manager
//!
//! Python's `Manager().dict()`, `list()`, `Namespace()`, `Value()`, `Lock()` and `Event()`:
//! [`Manager::dict`], [`Manager::list`], [`Manager::namespace`], [`Manager::value`],
//! [`Manager::lock`], [`Manager::event`]. Their handles are plain serde data, passed to
//! `Process` targets and pool tasks like any argument; each call is one round trip to the
//! manager. See [`manager`].
//!
//! ```
//! use process_ipc::{ManagedDict, Manager, Process};
//!
//! fn fill(d: ManagedDict<u32, String>) -> usize {
//!     d.insert(1, "one".into()).unwrap();
//!     d.len().unwrap()
//! }
//!
//! let manager = Manager::new().unwrap();
//! let d = manager.dict().unwrap();
//! assert_eq!(Process::new(fill, (d.clone(),)).start().unwrap().join().unwrap(), 1);
//! assert_eq!(d.get(&1).unwrap().as_deref(), Some("one"));
//! ```
//!
//! ## State shared through memory
//!
//! Python's `Value`, `Array`, `shared_memory.SharedMemory` and process-wide `Lock`/`Event`:
//! plain-old-data in a shared block, so a read or write costs no message. Each handle passes
//! to a child like any argument.
//!
//! ```python
//! v = Value('q', 0)
//! def work(v):
//!     for _ in range(1000):
//!         with v.get_lock(): v.value += 1
//! ```
//!
//! ```
//! use process_ipc::{Process, Value};
//!
//! fn work(v: Value<u64>) {
//!     for _ in 0..1000 {
//!         *v.lock().unwrap() += 1;
//!     }
//! }
//!
//! let v = Value::new(0u64).unwrap();
//! let children: Vec<_> = (0..2).map(|_| Process::new(work, (v.clone(),)).start().unwrap()).collect();
//! for child in children {
//!     child.join().unwrap();
//! }
//! assert_eq!(v.get().unwrap(), 2000);
//! ```
//!
//! A lock whose holder dies is not held for ever: the next `acquire` is
//! [`SharedError::OwnerDied`] naming the dead pid, and the lock works again after it.
//!
//! ## Ctrl-C
//!
//! Without a handler, SIGINT or SIGTERM ends the program by the default action: no `Drop`
//! runs, and the children end through their lifeline (or the same Ctrl-C) without a report.
//! One line at the start of `main` gives Python's ending instead: pools terminated, children
//! terminated and reaped, pending results failing with [`PoolError::Interrupted`], a child's
//! `join` with [`ProcessError::Interrupted`], then death by the signal. See [`interrupt`].
//!
//! ```no_run
//! process_ipc::shutdown_on_interrupt().unwrap();
//! ```
//!
//! ## What a target can be
//!
//! A plain `fn` item or a closure that captures nothing: the child finds the same code in the
//! same executable, but nothing captured would come along. A capturing closure does not
//! compile, but where it fails depends on what it captures. A capture that is not `Copy` (a
//! `String`, a `Vec`) fails `cargo check` at your call: E0277, "the trait bound `String: Copy`
//! is not satisfied", "required for `{closure@src/main.rs:5:30: 5:37}` to implement
//! `Target<()>`". A closure that captures only `Copy` values is `Copy`, `Send` and `'static`,
//! so it satisfies every bound Rust can write on stable; only its size (not zero) gives it
//! away, and a size is checked where the generic code is instantiated: `cargo check` passes,
//! and `cargo build` fails with E0080, "evaluation panicked: a process target must be a named
//! fn item or a closure that captures nothing", in `process_ipc::start::child::conjure`, with a
//! note naming your closure (`conjure::<{closure@src/main.rs:5:30: 5:37}>`).
//!
//! ```compile_fail,E0080
//! let n = 21u64; // a Copy capture: `cargo check` passes, `cargo build` fails (E0080)
//! let _ = process_ipc::Process::new(move || n * 2, ()).start();
//! ```
//!
//! ```compile_fail,E0277
//! let name = String::from("n"); // not Copy: `cargo check` fails at this call (E0277)
//! let _ = process_ipc::Process::new(move || name.len(), ()).start();
//! ```
//!
//! How it works, and its limits: the child runs the target from a constructor before `main`,
//! after checking that its executable is the parent's (same device, inode, size and mtime);
//! otherwise `start` fails with [`ProcessError::Bootstrap`] instead of running anything. Pool
//! task arguments are plain serde data (like Python's, queue handles cannot be pool arguments);
//! share a queue with pool tasks through a [`Manager`].
//!
//! Limits, by design: Linux only (`/proc/self/exe`, `pipe2`, `prctl`); a child never runs
//! `main`, so state that `main` sets up does not exist there (pass it as an argument, or use a
//! pool initializer).

// Layers, bottom to top: ARCHITECTURE.md's table for process-ipc, which tidy enforces.
// One public path per item: the crate root. `queue` and `manager` stay public modules only for
// what has no distinct name at the root yet (`queue::PutError` and `manager::PutError`, and
// `queue::MAX_ITEM_BYTES`); their other items are the root's re-exports.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "process-ipc is Linux-only: it re-executes /proc/self/exe, authenticates children with \
     SO_PEERCRED/SCM_CREDENTIALS, waits on pids through waitid and keeps shared state in memfds. \
     threads-sync, iter-gen and coro (without `patch`) build on other platforms."
);

mod current;
mod error;
pub mod interrupt;
mod pipe;
mod pool;
mod process;
pub mod queue;
mod ring;
mod shared;
mod start;
mod sys;
#[cfg(feature = "trace")]
mod trace;
#[cfg(feature = "trace")]
mod trace_wait;
mod wire;

pub use current::{CurrentProcess, ParentProcess, connection, current_process, parent_process};
pub use error::{PoolError, ProcessError, QueueError, signal_name};
pub use interrupt::{interrupted, shutdown_on_interrupt, shutdown_on_interrupt_then};
pub use pipe::{Connection, PipeEnd, PipeError, pipe, pipe_one_way};
#[cfg(all(feature = "redis", feature = "test-fault"))]
#[doc(hidden)]
pub use pool::__scribble_redis_task;
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub use pool::scribble_result_ring as __scribble_pool_result_ring;
pub use pool::{
    AsCompleted, AsyncResult, IMap, IMapUnordered, MapOptions, Pool, PoolBuilder, ReturnWhen,
    Waited, as_completed, wait,
};
#[cfg(feature = "redis")]
pub use pool::{PoolWorkers, RedisOptions, build_id, serve_pool};
pub use process::{Process, ProcessHandle, active_children, current_pid, parent_pid};
pub use queue::{JoinableQueue, Queue, QueueSender};
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub use ring::Scribble as __RingScribble;
pub use shared::{
    Array, ArrayGuard, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock,
    RLockGuard, RawArray, RawValue, Semaphore, ShareableItem, ShareableList, SharedError,
    SharedMemory, SharedMemoryManager, Value, ValueGuard, ValueLock,
};
pub use start::exit_rule::{join_non_daemon, join_non_daemon_at_exit, join_non_daemon_timeout};
pub use start::fork_server::__fork_server_pid;
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub use start::fork_server::{__pause_fork_server_reaper, __stop_fork_server};
pub use start::{START_METHOD_VAR, START_TIMEOUT, StartMethod, Target, get_start_method};
pub use wire::Wire;

pub mod manager;
pub use manager::{
    ManagedDict, ManagedEvent, ManagedList, ManagedLock, ManagedLockGuard, ManagedNamespace,
    ManagedQueue, ManagedValue, Manager, ManagerError,
};
