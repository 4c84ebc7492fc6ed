//! [`Event`]: Python's `threading.Event`, a flag threads can wait for.

use std::time::Duration;

/// Python's `threading.Event`: `set` wakes every waiter, `clear` resets the flag.
///
/// ```
/// use threads_sync::Event;
/// use std::time::Duration;
/// let done = Event::new();
/// assert!(!done.wait_timeout(Duration::from_millis(1))); // not set: times out
/// done.set();
/// assert!(done.is_set());
/// done.wait(); // returns at once
/// ```
#[derive(Debug, Default)]
pub struct Event {
    flag: parking_lot::Mutex<bool>,
    changed: parking_lot::Condvar,
}

impl Event {
    /// A new event, not set (a `const fn`: `static READY: Event = Event::new();`).
    pub const fn new() -> Self {
        Event {
            flag: parking_lot::const_mutex(false),
            changed: parking_lot::Condvar::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *self.flag.lock() = true;
        self.changed.notify_all();
    }

    /// Resets the flag.
    pub fn clear(&self) {
        *self.flag.lock() = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *self.flag.lock()
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        #[cfg(feature = "trace")]
        let _wait = crate::trace::Wait::new("event", String::new);
        let mut flag = self.flag.lock();
        while !*flag {
            self.changed.wait(&mut flag);
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it is set (Python's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = crate::deadline_after(timeout);
        #[cfg(feature = "trace")]
        let _wait = crate::trace::Wait::new("event", String::new);
        let mut flag = self.flag.lock();
        while !*flag {
            if self.changed.wait_until(&mut flag, deadline).timed_out() {
                break;
            }
        }
        *flag
    }
}
