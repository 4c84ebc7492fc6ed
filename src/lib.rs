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
//!
//! Each chapter is a cargo feature of the same name (`threads`, `process`, `iter`, `coro`; all
//! on by default), and `patch` turns on coro's symbol-level monkey patch. A program that needs
//! only threads and generators builds just those crates, on any platform:
//!
//! ```toml
//! [dependencies]
//! # not on crates.io yet (and the name `multitask` there is another crate): a path or git
//! # dependency, as the README's "Use one crate alone" shows
//! multitask = { path = "../multitask", default-features = false, features = ["threads", "iter"] }
//! ```

#![deny(missing_docs)]

#[cfg(feature = "coro")]
#[doc(inline)]
pub use coro;
#[cfg(feature = "iter")]
#[doc(inline)]
pub use iter_gen as iter;
#[cfg(feature = "process")]
#[doc(inline)]
pub use process_ipc as process;
#[cfg(feature = "threads")]
#[doc(inline)]
pub use threads_sync as threads;
