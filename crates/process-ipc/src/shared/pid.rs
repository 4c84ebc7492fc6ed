//! This process's pid, cached for the locks' fast paths and the blocks' names.

use std::sync::atomic::{AtomicU32, Ordering};

static PID: AtomicU32 = AtomicU32::new(0);

/// This process's pid, cached (getpid is a system call, and the lock's fast path records it).
/// A fork child starts with the parent's cache, so `pthread_atfork` clears it there.
#[inline]
pub(crate) fn my_pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    first_pid()
}

#[cold]
fn first_pid() -> u32 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        extern "C" fn forget_pid() {
            PID.store(0, Ordering::Relaxed);
        }
        // The handler only stores to an atomic (async-signal-safe).
        crate::sys::at_fork(None, Some(forget_pid));
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}
