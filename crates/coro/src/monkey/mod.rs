//! The blocking shim: calls that yield inside a coroutine and block plainly outside one.
//!
//! gevent's `monkey.patch_all()` swaps the standard library's blocking calls
//! for cooperative ones. Rust cannot swap a module at run time, so this
//! module offers the same names instead; `use coro::monkey::prelude::*;`
//! shadows them in your code:
//!
//! | std | here | inside a coroutine | outside |
//! | --- | --- | --- | --- |
//! | `std::thread::sleep` | [`sleep`], `prelude::thread::sleep` | yields for the duration | `std::thread::sleep` |
//! | `std::net::{TcpListener, TcpStream, UdpSocket}` | [`net`] | waits on may's event loop | blocks the thread |
//! | `std::sync::{Mutex, Condvar, RwLock}` | [`sync`] (may's) | yields while contended | blocks the thread |
//! | `std::sync::mpsc` | [`sync::mpsc`] (may's) | `recv` yields | `recv` blocks |
//!
//! The locks and channels are may's own. Their timed waits inside a
//! coroutine (`recv_timeout`, `Condvar::wait_timeout`) carry may 0.3.51's
//! timer caveats (whole milliseconds, truncated; see the crate docs); the
//! crate's [`crate::Queue`] and [`crate::Event`] do not.
//!
//! Which mode a call takes is decided per call by
//! `may::coroutine::is_coroutine()`, so the same function works from `main`
//! and from a greenlet.
//!
//! For code you cannot edit, the `patch` feature adds `patch_all()`: a
//! symbol-level patch that makes unchanged `std::thread::sleep` cooperative
//! (Linux with glibc only).

use std::time::Duration;

pub mod net;
#[cfg(feature = "patch")]
mod patch;
#[cfg(all(feature = "patch", target_os = "linux", target_env = "gnu"))]
mod patch_net;
#[cfg(all(feature = "patch", target_os = "linux", target_env = "gnu"))]
mod poller;
#[cfg(feature = "patch")]
pub use patch::{patch_all, unpatch_all};

/// Sleeps: yields inside a coroutine, `std::thread::sleep` outside one.
pub fn sleep(duration: Duration) {
    crate::sleep(duration);
}

/// Whether `patch_all()` is in effect (always `false` without the `patch` feature).
pub fn is_patched() -> bool {
    #[cfg(feature = "patch")]
    {
        patch::is_patched()
    }
    #[cfg(not(feature = "patch"))]
    {
        false
    }
}

/// Locks and channels that yield inside a coroutine and block in a thread (may's).
pub mod sync {
    pub use may::sync::{Barrier, Condvar, Mutex, MutexGuard, RwLock, WaitTimeoutResult};

    /// Multi-producer single-consumer channels (may's), `std::sync::mpsc`'s API.
    pub mod mpsc {
        pub use may::sync::mpsc::*;
    }
}

/// `use coro::monkey::prelude::*;` shadows the std names with the dual-mode ones.
///
/// ```
/// use coro::monkey::prelude::*;
/// use std::time::Duration;
///
/// let m = Mutex::new(0); // may's Mutex, not std's
/// let (tx, rx) = mpsc::channel();
/// let g = coro::spawn(move || {
///     thread::sleep(Duration::from_millis(1)); // yields: we are in a coroutine
///     *m.lock().unwrap() += 1;
///     tx.send(*m.lock().unwrap()).unwrap();
/// })
/// .unwrap();
/// assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
/// g.join();
/// ```
pub mod prelude {
    pub use super::net::{TcpListener, TcpStream, UdpSocket};
    pub use super::sync::{Condvar, Mutex, MutexGuard, RwLock, mpsc};

    /// `thread::sleep` and `thread::yield_now` that cooperate inside a coroutine.
    pub mod thread {
        pub use crate::monkey::sleep;
        pub use crate::yield_now;
    }

    /// `net::TcpStream` and friends, dual-mode.
    pub mod net {
        pub use crate::monkey::net::*;
    }

    /// `sync::Mutex` and friends, dual-mode.
    pub mod sync {
        pub use crate::monkey::sync::*;
    }
}
