//! What each worker thread is running, as far as coro knows: the switch points record it (only
//! while the blocking monitor is on) and [`crate::monitor`] reads it to name a stalled coroutine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);

/// What one worker thread is running, as far as `coro` knows.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    pub(crate) current: Mutex<Option<may::coroutine::Coroutine>>,
}

thread_local! {
    static SLOT: Arc<WorkerSlot> = Arc::new(WorkerSlot::default());
}

/// Whether the monitor is on (switch points record who runs only then).
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Records the current coroutine as running on this worker. Called after each switch.
#[inline]
pub(crate) fn resumed() {
    if enabled() {
        record_current();
    }
}

// Not inlined: the thread-local must be looked up after the switch, on the
// worker the coroutine resumed on, never cached from before it.
#[inline(never)]
fn record_current() {
    if !may::coroutine::is_coroutine() {
        return;
    }
    let co = may::coroutine::current();
    SLOT.with(|slot| {
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(co);
    });
}

#[inline(never)]
pub(crate) fn this_worker_slot() -> Arc<WorkerSlot> {
    SLOT.with(Arc::clone)
}
