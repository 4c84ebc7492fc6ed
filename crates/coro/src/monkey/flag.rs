//! Whether `patch_all()` is in force: set by `patch_all`/`unpatch_all`, read by every hook.

use std::sync::atomic::{AtomicBool, Ordering};

/// On between `patch_all()` and `unpatch_all()`.
pub(super) static PATCHED: AtomicBool = AtomicBool::new(false);

/// Whether the hooks cooperate (inside coroutines) rather than forward to glibc.
pub(crate) fn is_patched() -> bool {
    PATCHED.load(Ordering::Acquire)
}

/// Whether a patched `listen(2)` raises a smaller backlog to the system's largest (default on).
pub(super) static RAISE_BACKLOG: AtomicBool = AtomicBool::new(true);

/// The backlog a patched `listen` passes on: raised to the system's largest while patched.
pub(crate) fn listen_backlog(asked: i32) -> i32 {
    if is_patched() && RAISE_BACKLOG.load(Ordering::Relaxed) {
        asked.max(super::net::max_listen_backlog())
    } else {
        asked
    }
}
