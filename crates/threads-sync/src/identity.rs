//! Who a thread is: Python-style idents and names, given once per thread and never reused.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Idents handed out so far; 1 is kept for the main thread (see [`MAIN_IDENT`]).
static NEXT_IDENT: AtomicU64 = AtomicU64::new(2);
/// The main thread's ident.
pub(crate) const MAIN_IDENT: u64 = 1;
/// Whether some thread has taken [`MAIN_IDENT`].
static MAIN_CLAIMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static IDENT: Cell<u64> = const { Cell::new(0) };
    static NAME: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// This thread's ident: a number unique among the threads of this process, never reused.
#[inline]
pub(crate) fn current_ident() -> u64 {
    match IDENT.with(Cell::get) {
        0 => first_ident(),
        ident => ident,
    }
}

/// Gives a thread not started by [`Thread`](crate::Thread) its ident, on first use. The
/// thread std calls `"main"` (the one that runs `main`) gets [`MAIN_IDENT`].
#[cold]
#[inline(never)]
fn first_ident() -> u64 {
    let is_main = std::thread::current().name() == Some("main")
        && !MAIN_CLAIMED.swap(true, Ordering::Relaxed);
    let ident = if is_main { MAIN_IDENT } else { new_ident() };
    IDENT.with(|cell| cell.set(ident));
    ident
}

/// A fresh ident for a thread about to be spawned.
pub(crate) fn new_ident() -> u64 {
    NEXT_IDENT.fetch_add(1, Ordering::Relaxed)
}

/// Makes `ident` the calling (new) thread's ident.
pub(crate) fn adopt_ident(ident: u64) {
    IDENT.with(|cell| cell.set(ident));
}

/// This thread's name: the std name, or `Thread-<ident>` for an unnamed thread.
pub(crate) fn current_name() -> Arc<str> {
    let fresh = || -> Arc<str> {
        match std::thread::current().name() {
            Some(name) => Arc::from(name),
            None => Arc::from(format!("Thread-{}", current_ident())),
        }
    };
    // `try_with`: a lock taken in another thread-local's destructor must not panic here.
    NAME.try_with(|cell| cell.borrow_mut().get_or_insert_with(fresh).clone())
        .unwrap_or_else(|_| fresh())
}

/// A thread as Python's `threading.current_thread()`, `enumerate()` and `main_thread()`
/// describe it: name, ident, daemon flag.
// Defined here, below both the thread registry and `Thread`, which build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    pub(crate) name: Arc<str>,
    pub(crate) ident: u64,
    pub(crate) daemon: bool,
}

impl ThreadInfo {
    /// The thread's name: the std name (`"main"` for the main thread), the
    /// [`Thread`](crate::Thread)'s name, or `Thread-<ident>` for an unnamed thread.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thread's ident (see [`get_ident`](crate::get_ident)).
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// Whether the thread is a daemon (the main thread and threads not started by this crate
    /// are not).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}
