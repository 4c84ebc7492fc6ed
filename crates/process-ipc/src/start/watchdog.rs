//! The start deadline: a child still unconfirmed when it passes is killed, which also unblocks a
//! parent thread stuck writing the arguments to it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use crate::sys;

/// Deadlines of children still starting, and when the watchdog thread will next wake.
struct Watched {
    deadlines: HashMap<u32, Instant>,
    wakes_at: Option<Instant>,
}

fn watchdog() -> &'static (Mutex<Watched>, Condvar) {
    static WATCHDOG: OnceLock<(Mutex<Watched>, Condvar)> = OnceLock::new();
    static THREAD: OnceLock<()> = OnceLock::new();
    let shared = WATCHDOG.get_or_init(|| {
        let watched = Watched {
            deadlines: HashMap::new(),
            wakes_at: None,
        };
        (Mutex::new(watched), Condvar::new())
    });
    THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("process-ipc-watchdog".into())
            .stack_size(64 * 1024)
            .spawn(move || watchdog_loop(shared))
            .expect("process-ipc: cannot start the start-deadline watchdog thread");
    });
    shared
}

/// Kills `pid` at `deadline` unless [`unwatch`] comes first. The caller must not reap `pid`
/// before it calls `unwatch`. Wakes the watchdog only when this deadline is its earliest.
pub(crate) fn watch(pid: u32, deadline: Instant) {
    let (lock, cv) = watchdog();
    let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
    w.deadlines.insert(pid, deadline);
    if w.wakes_at.is_none_or(|at| deadline < at) {
        cv.notify_one();
    }
}

/// Stops watching `pid` (the watchdog finds out when it next wakes; no wake-up is paid here).
pub(crate) fn unwatch(pid: u32) {
    let (lock, _) = watchdog();
    lock.lock()
        .unwrap_or_else(|p| p.into_inner())
        .deadlines
        .remove(&pid);
}

fn watchdog_loop((lock, cv): &(Mutex<Watched>, Condvar)) {
    let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let now = Instant::now();
        w.deadlines.retain(|&pid, deadline| {
            if *deadline > now {
                return true;
            }
            let _ = sys::kill(pid, libc::SIGKILL);
            false
        });
        let next = w.deadlines.values().min().copied();
        w.wakes_at = next;
        w = match next {
            None => cv.wait(w).unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                cv.wait_timeout(w, at.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
}
