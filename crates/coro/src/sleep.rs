//! `sleep` and `yield_now`: the two ways a coroutine gives up its worker on purpose.

use std::time::Duration;

use crate::{timer, wait};

/// Sleeps cooperatively (gevent's `sleep`); `Duration::ZERO` just yields.
///
/// Inside a coroutine other coroutines run meanwhile; in a plain thread it is
/// `std::thread::sleep`.
pub fn sleep(duration: Duration) {
    if !may::coroutine::is_coroutine() {
        std::thread::sleep(duration);
        return;
    }
    #[cfg(feature = "trace")]
    let _parked = crate::trace::Parked::new(duration.is_zero());
    if duration.is_zero() {
        may::coroutine::yield_now();
    } else {
        // coro's own timer: the wake-up puts this coroutine straight back on a worker.
        wait::sleep_until(timer::deadline_after(duration));
    }
    crate::running::resumed();
}

/// Lets the other ready coroutines run, then continues (gevent's `sleep(0)`).
///
/// Outside a coroutine it yields the thread.
#[inline]
pub fn yield_now() {
    // may's yield_now already falls back to `std::thread::yield_now` in a thread.
    #[cfg(feature = "trace")]
    let _parked = crate::trace::Parked::new(may::coroutine::is_coroutine());
    may::coroutine::yield_now();
    crate::running::resumed();
}
