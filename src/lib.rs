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

/// One timeline of the program's threads, child processes and coroutines (feature `trace`).
///
/// With the `trace` feature, every chapter records through `tracing`: thread starts and ends,
/// process starts, exits and signals, each Pool task's run in its worker and a worker's death,
/// waits on locks, queues and events longer than 100 µs, deadlock refusals, and each
/// coroutine's spawn, runs, parks and end. [`to_file`](trace::to_file) writes them, the child
/// processes' events merged in, as Chrome trace-event JSON that [Perfetto](https://ui.perfetto.dev)
/// and `chrome://tracing` open; `MULTITASK_TRACE=run.json ./program` does the same for a
/// program that never calls it. See the `timeline` crate for the format and the rules.
///
/// ```no_run
/// fn main() -> std::io::Result<()> {
///     let _trace = multitask::trace::to_file("run.json")?; // first thing in main
///     // ... threads, a process Pool, coroutines ...
///     Ok(()) // the guard drops: every process's events are merged into run.json
/// }
/// ```
#[cfg(feature = "trace")]
pub mod trace {
    pub use timeline::{ENV, Layer, TraceGuard, from_env, to_file};
}
