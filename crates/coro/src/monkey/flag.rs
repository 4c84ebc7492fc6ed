//! Whether `patch_all()` is in force: set by `patch_all`/`unpatch_all`, read by every hook.

use std::sync::atomic::{AtomicBool, Ordering};

/// On between `patch_all()` and `unpatch_all()`.
pub(super) static PATCHED: AtomicBool = AtomicBool::new(false);

/// Whether the hooks cooperate (inside coroutines) rather than forward to glibc.
pub(crate) fn is_patched() -> bool {
    PATCHED.load(Ordering::Acquire)
}
