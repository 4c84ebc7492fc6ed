//! `multitask`: Python's whole multitasking toolkit, under the same names, in Rust.
//!
//! This root crate is a thin facade; each chapter is its own crate that can be used alone:
//!
//! | Python | here | crate |
//! | --- | --- | --- |
//! | `threading`, `queue`, `multiprocessing.pool.ThreadPool` | [`threads`] | `threads-sync` |
//! | `multiprocessing` (`Process`, `Queue`, `Pool`, `Manager`) | [`process`] | `process-ipc` |
//! | iterables, iterators, generators | [`iter`] | `iter-gen` |
//! | `gevent` and `gevent.monkey` | [`coro`] | `coro` |
//!
//! ```
//! // Python: import threading, multiprocessing, gevent
//! use multitask::{coro, iter, process, threads};
//! # let _ = (stringify!(coro), stringify!(iter), stringify!(process), stringify!(threads));
//! ```

#![deny(missing_docs)]

#[doc(inline)]
pub use coro;
#[doc(inline)]
pub use iter_gen as iter;
#[doc(inline)]
pub use process_ipc as process;
#[doc(inline)]
pub use threads_sync as threads;
