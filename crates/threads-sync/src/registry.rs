//! The live threads this crate started: spawning (every spawn reports the OS's refusal as an
//! error), Python's `enumerate()`, `active_count()`, `main_thread()`, and the daemon rule at exit.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::error::ThreadError;
use crate::identity::{MAIN_IDENT, ThreadInfo, adopt_ident, current_ident, new_ident};

/// A thread this crate started and whose body has not returned yet.
struct Live {
    info: ThreadInfo,
    /// Disconnected when the body has returned.
    finished: Receiver<()>,
}

/// Every live thread this crate started, by ident. Idents are handed out at spawn in
/// increasing order, so this is also start order; touched twice per thread (start and
/// exit), in O(log n) even with thousands of threads alive.
static LIVE: parking_lot::Mutex<BTreeMap<u64, Live>> = parking_lot::const_mutex(BTreeMap::new());

thread_local! {
    static DAEMON: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a daemon (false for the main thread and foreign threads).
pub(crate) fn current_is_daemon() -> bool {
    DAEMON.with(Cell::get)
}

/// A thread spawned by [`spawn`].
pub(crate) struct Spawned<T> {
    pub(crate) handle: JoinHandle<T>,
    pub(crate) ident: u64,
    /// Disconnected when the body has returned.
    pub(crate) finished: Receiver<()>,
}

/// Removes the thread from [`LIVE`] when its body returns (or unwinds), then tells
/// `finished` waiters, in that order, so a waiter never sees a finished thread still listed.
struct Leave {
    ident: u64,
    _finished: crossbeam_channel::Sender<()>,
}

impl Drop for Leave {
    fn drop(&mut self) {
        forget(self.ident);
    }
}

fn forget(ident: u64) {
    LIVE.lock().remove(&ident);
}

/// Spawns a named thread that runs `body` with a fresh ident and is listed by [`enumerate`]
/// while it runs; the OS's refusal (`EAGAIN`, `ENOMEM`) comes back as the `io::Error`.
pub(crate) fn spawn<T: Send + 'static>(
    name: Arc<str>,
    daemon: bool,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<Spawned<T>> {
    let ident = new_ident();
    let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
    LIVE.lock().insert(
        ident,
        Live {
            info: ThreadInfo {
                name: Arc::clone(&name),
                ident,
                daemon,
            },
            finished: finished.clone(),
        },
    );
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            adopt_ident(ident);
            DAEMON.with(|d| d.set(daemon));
            let _leave = Leave {
                ident,
                _finished: finished_tx,
            };
            #[cfg(feature = "trace")]
            let _span = crate::trace::thread_span(&name, ident, daemon);
            body()
        });
    match spawned {
        Ok(handle) => Ok(Spawned {
            handle,
            ident,
            finished,
        }),
        Err(err) => {
            forget(ident);
            Err(err)
        }
    }
}

/// The main thread (Python: `threading.main_thread()`): the thread std names `"main"`, whose
/// ident is always 1.
///
/// ```
/// let main = threads_sync::main_thread();
/// assert_eq!((main.name(), main.ident()), ("main", 1));
/// ```
pub fn main_thread() -> ThreadInfo {
    ThreadInfo {
        name: Arc::from("main"),
        ident: MAIN_IDENT,
        daemon: false,
    }
}

/// The threads alive now (Python: `threading.enumerate()`): the main thread, then every
/// thread this crate started ([`Thread`](crate::Thread), [`Timer`](crate::Timer),
/// [`ThreadPool`](crate::ThreadPool) workers) whose target has not returned, in start order.
/// Threads started with `std::thread` directly are not listed.
///
/// ```
/// use threads_sync::{Thread, enumerate, get_ident};
/// let (release, wait) = std::sync::mpsc::channel::<()>();
/// let t = Thread::new(move || wait.recv().ok(), ()).named("listed").start()?;
/// assert!(enumerate().iter().any(|info| info.name() == "listed" && info.ident() == t.ident()));
/// assert_eq!(enumerate()[0].name(), "main");
/// release.send(()).unwrap();
/// t.join()?;
/// # Ok::<(), threads_sync::ThreadError>(())
/// ```
pub fn enumerate() -> Vec<ThreadInfo> {
    let live = LIVE.lock();
    let mut all = Vec::with_capacity(live.len() + 1);
    all.push(main_thread());
    all.extend(live.values().map(|l| l.info.clone()));
    all
}

/// How many threads [`enumerate`] would list (Python: `threading.active_count()`).
pub fn active_count() -> usize {
    LIVE.lock().len() + 1
}

/// Waits for every non-daemon thread this crate started, other than the caller, to finish
/// (threads started meanwhile included): what Python does when the main thread ends.
///
/// Rust ends the process, and every thread in it, when `main` returns. Python instead waits
/// for its non-daemon threads first, so their last output is never lost. To get Python's
/// behaviour, call this at the end of `main`, or [`join_non_daemon_at_exit`] once at its
/// start; daemon threads are left to die with the process, as in Python.
///
/// ```
/// use threads_sync::{Thread, join_non_daemon};
/// let (tx, rx) = std::sync::mpsc::channel();
/// Thread::new(move || tx.send("last words").unwrap(), ()).start()?; // handle dropped
/// join_non_daemon();
/// assert_eq!(rx.try_recv().unwrap(), "last words");
/// # Ok::<(), threads_sync::ThreadError>(())
/// ```
pub fn join_non_daemon() {
    while let Some((_, finished)) = next_non_daemon() {
        // Only disconnection ends the wait: nothing is ever sent.
        let _ = finished.recv();
    }
}

/// Like [`join_non_daemon`], giving up after `timeout` with [`ThreadError::Timeout`] naming
/// a thread still running.
pub fn join_non_daemon_timeout(timeout: Duration) -> Result<(), ThreadError> {
    let deadline = crate::deadline_after(timeout);
    while let Some((name, finished)) = next_non_daemon() {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(left) {
            return Err(ThreadError::Timeout {
                thread: name.to_string(),
                timeout,
            });
        }
    }
    Ok(())
}

/// Makes the process wait for its non-daemon threads when it exits, as Python does: when
/// `main` returns or [`std::process::exit`] is called, the exit waits in [`join_non_daemon`]
/// before the process ends (a kill, an abort or `libc::_exit` still ends it at once).
/// Calling it again does nothing more. Unix only (it is an `atexit(3)` handler).
///
/// A non-daemon thread that never finishes keeps the process from exiting, as in Python;
/// make such threads daemons.
///
/// # Errors
/// An [`std::io::Error`] if `atexit(3)` refuses the hook: the same type as
/// `process_ipc::join_non_daemon_at_exit`, so one `?` serves both.
#[cfg(unix)]
pub fn join_non_daemon_at_exit() -> std::io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    extern "C" fn at_exit() {
        // A panic must not unwind into libc's exit.
        let _ = std::panic::catch_unwind(join_non_daemon);
    }
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    // SAFETY: `at_exit` is a plain `extern "C" fn()` that lives as long as the program and
    // does not unwind; atexit(3) only stores it.
    if unsafe { libc::atexit(at_exit) } != 0 {
        REGISTERED.store(false, Ordering::Release);
        // atexit(3) sets no errno; its one failure is a full table (POSIX: ENOMEM).
        return Err(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            "could not register the exit hook that joins non-daemon threads (atexit table full)",
        ));
    }
    Ok(())
}

fn next_non_daemon() -> Option<(Arc<str>, Receiver<()>)> {
    let me = current_ident();
    LIVE.lock()
        .values()
        .find(|l| !l.info.daemon && l.info.ident != me)
        .map(|l| (Arc::clone(&l.info.name), l.finished.clone()))
}
