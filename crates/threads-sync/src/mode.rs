//! The two switches every lock reads on its fast path: deadlock detection and lock-order
//! checking, in one word. The lowest layer of the lock modules; [`deadlock`](crate::deadlock)
//! re-exports the public switches.

use std::sync::atomic::{AtomicU8, Ordering};

/// Bit of [`MODE`]: deadlock detection is on.
pub(crate) const DETECTION: u8 = 1;
/// Bit of [`MODE`]: lock-order checking is on.
pub(crate) const ORDER_CHECKING: u8 = 2;
/// Both switches in one word, so that a lock's fast path reads one static to pick its path.
static MODE: AtomicU8 = AtomicU8::new(if cfg!(debug_assertions) {
    DETECTION | ORDER_CHECKING
} else {
    DETECTION
});

/// Turns deadlock detection on or off for every lock of this crate (on by default).
///
/// Off, a contended lock simply blocks (as Python's does): a deadlock hangs.
pub fn set_detection(enabled: bool) {
    set_mode_bit(DETECTION, enabled);
}

fn set_mode_bit(bit: u8, enabled: bool) {
    if enabled {
        MODE.fetch_or(bit, Ordering::Relaxed);
    } else {
        MODE.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Both switches ([`DETECTION`], [`ORDER_CHECKING`]) as one word.
#[inline]
pub(crate) fn mode() -> u8 {
    MODE.load(Ordering::Relaxed)
}

/// Whether deadlock detection is on.
#[inline]
pub fn detection_enabled() -> bool {
    mode() & DETECTION != 0
}

/// Turns lock-order checking on or off. It is on by default in builds with debug assertions
/// (tests, `cargo run`) and off in release builds, like a debug kernel's lockdep: it costs
/// about 10 ns per lock acquisition (see `benches/lock_counter.rs`). Locks held when it is
/// switched on are not known to it until they are released and taken again.
pub fn set_lock_order_checking(enabled: bool) {
    set_mode_bit(ORDER_CHECKING, enabled);
}

/// Whether lock-order checking is on.
#[inline]
pub fn lock_order_checking_enabled() -> bool {
    mode() & ORDER_CHECKING != 0
}
