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
//! doctests.
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

mod bootstrap;
pub mod error;
mod pipe;
mod pool;
mod process;
pub mod queue;

pub use error::{PoolError, ProcessError, QueueError, signal_name};
pub use pipe::{Connection, pipe};
pub use pool::{AsyncResult, IMap, IMapUnordered, Pool, PoolBuilder};
pub use process::{Process, ProcessHandle, Target, current_pid, parent_pid};
pub use queue::{Queue, QueueSender};
pub use serde_bytes::ByteBuf;

pub mod manager;
pub use manager::{ManagedQueue, Manager, ManagerError};
