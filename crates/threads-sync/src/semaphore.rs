//! [`Semaphore`] and [`BoundedSemaphore`]: Python's counters of free slots.

use std::time::Duration;

use crate::error::SemaphoreOverRelease;

/// Python's `threading.Semaphore`: `acquire` takes a slot (waiting while none is free),
/// `release` gives one back. Releases are not checked; see [`BoundedSemaphore`].
///
/// ```
/// use threads_sync::Semaphore;
/// let slots = Semaphore::new(2);
/// slots.acquire();
/// assert!(slots.try_acquire());
/// assert!(!slots.try_acquire()); // both slots taken
/// slots.release();
/// assert_eq!(slots.value(), 1);
/// ```
#[derive(Debug)]
pub struct Semaphore {
    value: parking_lot::Mutex<usize>,
    freed: parking_lot::Condvar,
}

impl Semaphore {
    /// A semaphore with `value` free slots (a `const fn`, so it can be a `static`).
    pub const fn new(value: usize) -> Self {
        Semaphore {
            value: parking_lot::const_mutex(value),
            freed: parking_lot::Condvar::new(),
        }
    }

    /// Free slots right now.
    pub fn value(&self) -> usize {
        *self.value.lock()
    }

    /// Takes a slot, waiting as long as needed.
    pub fn acquire(&self) {
        let mut value = self.value.lock();
        while *value == 0 {
            self.freed.wait(&mut value);
        }
        *value -= 1;
    }

    /// Takes a slot if one frees up within `timeout`; `false` if none did.
    #[must_use = "false means no slot was taken"]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        let deadline = crate::deadline_after(timeout);
        let mut value = self.value.lock();
        while *value == 0 {
            if self.freed.wait_until(&mut value, deadline).timed_out() && *value == 0 {
                return false;
            }
        }
        *value -= 1;
        true
    }

    /// Takes a slot only if one is free now (Python: `acquire(blocking=False)`).
    #[must_use = "false means no slot was taken"]
    pub fn try_acquire(&self) -> bool {
        let mut value = self.value.lock();
        if *value == 0 {
            return false;
        }
        *value -= 1;
        true
    }

    /// Gives one slot back, waking one waiter.
    pub fn release(&self) {
        self.release_n(1);
    }

    /// Gives `n` slots back (Python: `release(n)`).
    pub fn release_n(&self, n: usize) {
        *self.value.lock() += n;
        for _ in 0..n {
            if !self.freed.notify_one() {
                break;
            }
        }
    }

    fn release_bounded(&self, n: usize, bound: usize) -> Result<(), SemaphoreOverRelease> {
        {
            let mut value = self.value.lock();
            if *value + n > bound {
                return Err(SemaphoreOverRelease { bound });
            }
            *value += n;
        }
        for _ in 0..n {
            if !self.freed.notify_one() {
                break;
            }
        }
        Ok(())
    }
}

/// Python's `threading.BoundedSemaphore`: releasing above the initial value is an error
/// (usually a bug: a release without its acquire).
///
/// ```
/// use threads_sync::BoundedSemaphore;
/// let slots = BoundedSemaphore::new(1);
/// slots.acquire();
/// assert!(slots.release().is_ok());
/// assert!(slots.release().is_err()); // one release too many
/// ```
#[derive(Debug)]
pub struct BoundedSemaphore {
    inner: Semaphore,
    bound: usize,
}

impl BoundedSemaphore {
    /// A semaphore with `value` free slots that never holds more than `value` (a `const fn`).
    pub const fn new(value: usize) -> Self {
        BoundedSemaphore {
            inner: Semaphore::new(value),
            bound: value,
        }
    }

    /// The bound (the initial value).
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Free slots right now.
    pub fn value(&self) -> usize {
        self.inner.value()
    }

    /// Takes a slot, waiting as long as needed.
    pub fn acquire(&self) {
        self.inner.acquire();
    }

    /// Takes a slot if one frees up within `timeout`; `false` if none did.
    #[must_use = "false means no slot was taken"]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire_timeout(timeout)
    }

    /// Takes a slot only if one is free now.
    #[must_use = "false means no slot was taken"]
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Gives one slot back; [`SemaphoreOverRelease`] (and no change) if that would exceed the bound.
    pub fn release(&self) -> Result<(), SemaphoreOverRelease> {
        self.inner.release_bounded(1, self.bound)
    }

    /// Gives `n` slots back, all or none.
    pub fn release_n(&self, n: usize) -> Result<(), SemaphoreOverRelease> {
        self.inner.release_bounded(n, self.bound)
    }
}
