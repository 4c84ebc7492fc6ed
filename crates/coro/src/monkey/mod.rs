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
//! For code you cannot edit, the `patch` feature adds `patch_all()` (Linux
//! with glibc only): symbol-level hooks that make unchanged blocking calls
//! cooperative inside a coroutine, and leave them exactly glibc's outside
//! coroutines and before the patch:
//!
//! | patched (inside a coroutine) | how |
//! | --- | --- |
//! | `std::thread::sleep` (`nanosleep`, `clock_nanosleep`) | coro's timer |
//! | `std::net` TCP: `connect`, `accept`, `read`/`write` (`recv`, `send`, `read`, `write`, `readv`, `writev`) | parks until the socket is ready; `set_read_timeout`/`set_write_timeout` bound the wait (`WouldBlock` after it, as the kernel says); a socket set non-blocking by you stays non-blocking |
//! | `std::net` UDP: `send`, `recv`, `send_to`, `recv_from` | the same |
//! | name lookups (`ToSocketAddrs`, i.e. `getaddrinfo`) | on a helper thread while the coroutine waits |
//! | `poll`, `select` (any pollable descriptor) | parks until ready or the timeout |
//!
//! Not patched, so still blocking the whole worker inside a coroutine (the
//! [`crate::monitor`] names the coroutine that stalls on one): `std::sync`
//! locks, channels and condvars (use [`sync`]); file and pipe I/O (`read`/`write`
//! on what is not a socket go straight to glibc); `std::process` waits;
//! anything a C library does through its own system calls; and sockets a C
//! library drives with `epoll` itself.
//!
//! **Kills.** A greenlet killed while it waits in a shim call ([`net`]'s
//! methods, [`sleep`], [`sync`]'s waits, and every wait of the crate's own)
//! unwinds from that call the way gevent's `GreenletExit` does: no error value
//! reaches your code, your `Drop`s run, nothing is printed, and it ends
//! killed (`successful() == Some(true)`, `get()` is `Err(Killed)`). A
//! *patched* call cannot unwind: it is glibc's `extern "C"` symbol, called
//! from std through a declaration that may not unwind, so unwinding out of it
//! is undefined behaviour (`extern "C-unwind"` would have to be std's
//! declaration, not the hook's). So exactly this happens instead:
//!
//! - the patched call returns `Err` with `raw_os_error() == Some(libc::ECANCELED)`
//!   (std's `ErrorKind` for it is the uncategorized one); this one error value is
//!   what a gevent port sees that gevent's `GreenletExit` would not show it;
//! - every later patched call of that greenlet that would wait fails the same
//!   way at once (one that need not wait still does its work);
//! - the greenlet ends killed (`successful() == Some(true)`, `get()` is
//!   `Err(Killed)`, its `Drop`s run, nothing printed) by whichever comes first:
//!   a `?` or `return` that leaves its function, a panic (an `unwrap` of the
//!   error; the panic hook prints nothing for a greenlet already killed), or its
//!   next switch point outside the hook (any wait of this crate, a shim call,
//!   `coro::sleep`, `yield_now`), which unwinds there as a shim call does. std's
//!   `thread::sleep` panics on that error, so a killed patched sleep ends it too;
//! - code that swallows the error and loops on patched calls alone, never
//!   reaching a switch point, never ends: test for `ECANCELED` (or use the shim
//!   types, whose calls unwind).
//!
//! **Listen backlog.** std's `TcpListener::bind` listens with a backlog of 128;
//! more simultaneous connects than that make the kernel drop SYNs, and clients
//! retry only a second later. The shim's [`net::TcpListener`] listens with the
//! system's largest ([`net::max_listen_backlog`]), and under `patch_all` a
//! `listen(2)` asked for less is raised to it, so ported `std::net` servers
//! keep up; `raise_listen_backlog(false)` keeps the caller's number.

use std::time::Duration;

#[cfg(feature = "patch")]
mod flag;
pub mod net;
#[cfg(feature = "patch")]
mod patch;
#[cfg(all(feature = "patch", target_os = "linux", target_env = "gnu"))]
mod patch_net;
#[cfg(all(feature = "patch", target_os = "linux", target_env = "gnu"))]
mod poller;
#[cfg(feature = "patch")]
pub use patch::{patch_all, raise_listen_backlog, unpatch_all};

/// Sleeps: yields inside a coroutine, `std::thread::sleep` outside one.
pub fn sleep(duration: Duration) {
    crate::sleep::sleep(duration);
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
        pub use crate::sleep::yield_now;
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
