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
