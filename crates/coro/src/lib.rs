//! `coro`: gevent's coroutines in Rust, on the `may` runtime, with a monkey-patch-style shim.
//!
//! # Hello, greenlets
//!
//! In gevent:
//!
//! ```python
//! import gevent
//!
//! def work(n):
//!     gevent.sleep(0.001)
//!     return n * n
//!
//! jobs = [gevent.spawn(work, n) for n in range(3)]
//! gevent.joinall(jobs, timeout=5)
//! assert [j.value for j in jobs] == [0, 1, 4]
//! ```
//!
//! Here:
//!
//! ```
//! use std::time::Duration;
//!
//! let mut jobs: Vec<_> = (0..3u64)
//!     .map(|n| {
//!         coro::spawn(move || {
//!             coro::sleep(Duration::from_millis(1)); // yields to the others
//!             n * n
//!         })
//!     })
//!     .collect::<Result<_, _>>()?;
//! coro::joinall(&jobs, Some(Duration::from_secs(5)))?;
//! let values: Vec<u64> = jobs.iter_mut().map(|g| g.get()).collect::<Result<_, _>>()?;
//! assert_eq!(values, [0, 1, 4]);
//! # Ok::<(), coro::CoroError>(())
//! ```
//!
//! # Failure is a value
//!
//! A panic in a greenlet does not take the program down; it comes back from
//! `get` as [`CoroError::Panicked`] with its message, and the other greenlets go on.
//! A wait that can last has a `_timeout` form.
//!
//! ```
//! use std::time::Duration;
//! use coro::CoroError;
//!
//! let mut bad = coro::spawn(|| -> u32 { panic!("boom") })?;
//! let mut good = coro::spawn(|| 7u32)?;
//! match bad.get_timeout(Duration::from_secs(5)) {
//!     Err(CoroError::Panicked { message, .. }) => assert_eq!(message, "boom"),
//!     other => panic!("expected a panic, got {other:?}"),
//! }
//! assert_eq!(good.get_timeout(Duration::from_secs(5))?, 7);
//!
//! // gevent.with_timeout: give up on slow work, killing it.
//! let slow = coro::with_timeout(Duration::from_millis(20), || {
//!     coro::sleep(Duration::from_secs(60));
//! });
//! assert!(matches!(slow, Err(CoroError::Timeout { .. })));
//! # Ok::<(), coro::CoroError>(())
//! ```
//!
//! # Pools, queues, events
//!
//! ```python
//! pool = gevent.pool.Pool(2)           # at most 2 at once
//! q = gevent.queue.Queue(maxsize=1)    # put blocks when full
//! ev = gevent.event.Event()            # set / clear / wait
//! ```
//!
//! ```
//! use std::time::Duration;
//! let t = Duration::from_secs(5);
//!
//! let pool = coro::Pool::new(2)?;
//! let q = coro::Queue::bounded(1)?;
//! let ev = coro::Event::new();
//! let (q2, ev2) = (q.clone(), ev.clone());
//! let producer = pool.spawn(move || {
//!     for i in 0..3 {
//!         q2.put(i).unwrap(); // waits while the queue is full
//!     }
//!     ev2.set();
//! })?;
//! let got: Vec<i32> = (0..3).map(|_| q.get_timeout(t).unwrap()).collect();
//! assert_eq!(got, [0, 1, 2]);
//! assert!(ev.wait_timeout(t));
//! assert!(producer.join_timeout(t));
//! assert!(pool.join_timeout(t));
//! # Ok::<(), coro::CoroError>(())
//! ```
//!
//! # The blocking shim, and patch_all
//!
//! In gevent, `time.sleep` blocks the hub and every greenlet waits in line
//! until `monkey.patch_all()` swaps it for the cooperative one. Here
//! [`monkey`] holds dual-mode versions of the blocking calls (sleep, TCP,
//! UDP, channels, locks) that yield inside a coroutine and block plainly
//! outside one; `use coro::monkey::prelude::*;` shadows the std names (a file
//! that names `std::net::TcpStream` explicitly still gets std's). With the
//! `patch` feature (Linux, glibc), `coro::monkey::patch_all()` makes even
//! unchanged `std::thread::sleep` and `std::net` code (TCP, UDP, name
//! lookups, `poll`/`select`) cooperative inside coroutines; see [`monkey`]
//! for what it covers and what stays blocking.
//!
//! # Runtime: one worker by default, and may's rules
//!
//! The runtime starts at the first spawn with [`Config::default`]: **one
//! worker thread**, like gevent's one hub, a 32 KiB stack per coroutine
//! (may's default) and workers pinned to cores (may's default). Change it
//! with [`configure`] *before* the first spawn; may reads its settings only
//! once, when its scheduler starts, so later calls return
//! [`CoroError::AlreadyStarted`] (and every test in one test binary shares
//! one runtime). Stacks of finished coroutines are kept for the next spawns,
//! up to [`DEFAULT_STACK_POOL`] (16 384; may's own default is 1000), so a
//! burst of coroutines does not unmap and map its stacks again each time; each
//! kept stack holds its maps and the memory its coroutines touched (about
//! 8 KiB after one that only slept, measured by the `coro_rss` bench) until reused
//! ([`Config::with_stack_pool`]). More workers run coroutines in parallel, but may then moves
//! a coroutine between workers at any switch, so asking for them
//! ([`Config::with_workers`]) is `unsafe`: you promise that no coroutine holds
//! a thread-local across a switch.
//!
//! Code inside a coroutine must follow may's rules:
//! - **No blocking calls**: `std::thread::sleep`, std sockets and std locks
//!   stop the whole worker, and every other coroutine on it waits. Use this
//!   crate's calls or [`monkey`]. The opt-in [`monitor`] logs offenders.
//! - **No thread-locals held across a yield** (with more than one worker):
//!   after a switch the coroutine may run on another worker; a thread-local
//!   read before and after a yield may then differ. With the default single
//!   worker this cannot happen, which is why only the multi-worker
//!   configuration is `unsafe`.
//! - **No long CPU loops without a switch**: scheduling is cooperative; call
//!   [`yield_now`] now and then.
//! - **Mind the stack**: 32 KiB by default; deep recursion or big arrays on
//!   the stack overflow it (debug builds use much more stack than release).
//!   may's guard page catches the overflow and abandons the coroutine: it
//!   ends with [`CoroError::StackOverflow`], and nothing in it is unwound, so
//!   its destructors do not run. Raise the size with [`Config::with_stack_size`]
//!   or [`Builder::stack_size`].
//!
//! # Timers: coro's own
//!
//! Every timed wait of `coro` ([`sleep`], the `*_timeout` calls, `Timeout`)
//! goes to one timer of coro's own: a heap of deadlines drained by one
//! thread, which hands each batch of due waiters to a hub coroutine that wakes
//! them from a worker. A timed wait costs a heap entry, not a coroutine, and a
//! woken coroutine resumes on a worker. may's own timed waits (used by the
//! may primitives in `monkey::sync`, e.g. `recv_timeout`) keep two caveats
//! of may 0.3.51: the timeout is kept in whole milliseconds, truncated (under
//! 1 ms it never times out), and the timer is armed before the coroutine
//! parks, so under load it can fire first and the wait never ends.
//!
//! # How many coroutines: `vm.max_map_count`
//!
//! may maps each coroutine stack as one region plus a guard page, i.e. two
//! kernel memory maps. Linux's default `vm.max_map_count` (65 530) therefore
//! allows about 32 700 live coroutines per process; gevent's heap-allocated
//! greenlets have no such limit. `coro` stops 512 maps short of it, so the
//! rest of the process can still allocate and start threads: past that,
//! [`spawn`] returns [`CoroError::StackExhausted`] naming the setting and the
//! real count of maps (never a panic or an abort). Timed waits cost no
//! coroutine of their own, so coroutines in a timed wait reach the same count.
//! Pooled stacks do not lower it either: a spawn takes a pooled stack before
//! it maps a new one. A smaller stack does not help (the count of maps is the
//! limit, not memory); raise the setting (`sysctl -w vm.max_map_count=262144`)
//! or bound live coroutines with a [`Pool`].
//!
//! `coro` wraps the process's panic hook once (at the first spawn; a hook you
//! set before that is kept and called) so that the panics it turns into
//! values print nothing: may's cancel unwinding when a greenlet is killed, any
//! panic in a greenlet already killed, and a stack allocation failure. Other
//! panics reach the previous hook.
//!
//! # Kills: gevent's `GreenletExit`
//!
//! A kill ([`Greenlet::kill`], [`killall`], [`Pool::kill`], [`with_timeout`])
//! unwinds the greenlet from the call it waits in: its `Drop`s run, no error
//! value reaches its code, nothing is printed. As in gevent, that is a
//! *successful* end: `successful()` is `Some(true)`, `link_value` callbacks
//! run and `link_exception` ones do not, [`Greenlet::exception`] is `None`.
//! gevent's `get()` then returns the `GreenletExit` instance; here `get()` is
//! `Err(`[`CoroError::Killed`]`)`, a variant apart from a panic's
//! ([`CoroError::is_killed`]). A greenlet killed inside a *patched* `std`
//! call sees that call fail with `ECANCELED` instead (see [`monkey`]).

#![deny(missing_docs)]

#[cfg(all(feature = "patch", not(all(target_os = "linux", target_env = "gnu"))))]
compile_error!(
    "coro's `patch` feature is Linux + glibc only: it defines glibc's sleep and socket symbols \
     and finds the originals with dlsym(RTLD_NEXT). Build without it (the `monkey` shim types \
     work everywhere may does)."
);

mod coroutine;
mod error;
mod event;
mod greenlet;
pub mod monitor;
pub mod monkey;
mod node;
mod pool;
mod queue;
mod running;
mod runtime;
mod sleep;
mod supervise;
mod timeout;
mod timer;
mod wait;

pub use coroutine::{Coroutine, Target};
pub use error::{CoroError, Empty, Full, GetError, PutError, Result, ShutDown};
pub use event::{AsyncResult, Event};
pub use greenlet::{Builder, Greenlet, GreenletRef, getcurrent, spawn, spawn_later};
pub use monitor::{Monitor, start_monitor, start_monitor_with};
pub use pool::{IMap, Pool};
pub use queue::{JoinableQueue, Queue};
pub use runtime::{
    Config, DEFAULT_STACK_POOL, DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE, configure,
    is_started, live_coroutines, runtime_config,
};
pub use sleep::{sleep, yield_now};
pub use supervise::{Group, Iwait, Waitable, iwait, killall, wait};
pub use timeout::{JoinAllOptions, Timeout, joinall, joinall_with, with_timeout};

/// Whether the caller runs inside a coroutine (may's `is_coroutine`).
pub fn is_coroutine() -> bool {
    may::coroutine::is_coroutine()
}
