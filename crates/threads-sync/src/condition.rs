//! [`Condition`]: Python's `threading.Condition`, a lock plus wait/notify.

use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::identity::current_ident;
use crate::lock::{Mutex, MutexGuard};
use crate::mode::detection_enabled;

/// Python's `threading.Condition`, owning its lock (a [`Mutex`]) and the data it guards.
///
/// `wait` releases the lock while waiting and takes it back before returning. Wake-ups can be
/// spurious, so wait in a loop or use [`wait_for`](Condition::wait_for).
///
/// ```python
/// with cond:
///     cond.wait_for(lambda: ready)
/// ```
/// ```
/// use std::sync::Arc;
/// use threads_sync::{Condition, Thread};
/// let cond = Arc::new(Condition::named("ready", false));
/// let setter = Arc::clone(&cond);
/// let t = Thread::new(move || {
///     *setter.lock().unwrap() = true;
///     setter.notify_all();
/// }, ()).start().unwrap();
/// let mut ready = cond.lock()?;
/// cond.wait_for(&mut ready, |r| *r)?;
/// assert!(*ready);
/// # drop(ready); t.join().unwrap();
/// # Ok::<(), threads_sync::LockError>(())
/// ```
#[derive(Debug)]
pub struct Condition<T> {
    mutex: Mutex<T>,
    cv: parking_lot::Condvar,
}

impl<T> Condition<T> {
    /// A condition whose lock guards `value` (a `const fn`).
    pub const fn new(value: T) -> Self {
        Condition {
            mutex: Mutex::new(value),
            cv: parking_lot::Condvar::new(),
        }
    }

    /// A condition whose lock reports call `name` (a `const fn`).
    pub const fn named(name: &'static str, value: T) -> Self {
        Condition {
            mutex: Mutex::named(name, value),
            cv: parking_lot::Condvar::new(),
        }
    }

    /// Like [`named`](Condition::named), with a name built at run time.
    pub fn with_name(name: impl Into<String>, value: T) -> Self {
        Condition {
            mutex: Mutex::with_name(name, value),
            cv: parking_lot::Condvar::new(),
        }
    }

    /// Takes the condition's lock (Python: `with cond:`).
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError> {
        self.mutex.lock()
    }

    /// Takes the condition's lock, giving up after `timeout`.
    pub fn try_lock_for(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, LockError> {
        self.mutex.try_lock_for(timeout)
    }

    /// The underlying lock.
    pub fn mutex(&self) -> &Mutex<T> {
        &self.mutex
    }

    fn check(&self, guard: &MutexGuard<'_, T>) -> Result<(), LockError> {
        if std::ptr::eq(guard.mutex, &self.mutex) {
            Ok(())
        } else {
            Err(LockError::WrongLock {
                condition: self.mutex.name(),
                given: guard.lock_name(),
            })
        }
    }

    /// Releases the lock, waits for a notification (or a spurious wake-up), re-takes the lock.
    pub fn wait(&self, guard: &mut MutexGuard<'_, T>) -> Result<(), LockError> {
        self.check(guard)?;
        guard.meta().clear_owner();
        self.cv.wait(&mut *guard.inner);
        if detection_enabled() {
            guard.meta().set_owner(current_ident());
        }
        Ok(())
    }

    /// Like [`wait`](Condition::wait) for at most `timeout`; `Ok(false)` if it timed out.
    pub fn wait_timeout(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
    ) -> Result<bool, LockError> {
        self.wait_until(guard, crate::deadline_after(timeout))
    }

    fn wait_until(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Instant,
    ) -> Result<bool, LockError> {
        self.check(guard)?;
        guard.meta().clear_owner();
        let timed_out = self.cv.wait_until(&mut *guard.inner, deadline).timed_out();
        if detection_enabled() {
            guard.meta().set_owner(current_ident());
        }
        Ok(!timed_out)
    }

    /// Waits until `predicate` holds for the guarded value (checked first, then after each wake-up).
    pub fn wait_for(
        &self,
        guard: &mut MutexGuard<'_, T>,
        mut predicate: impl FnMut(&mut T) -> bool,
    ) -> Result<(), LockError> {
        while !predicate(&mut **guard) {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// Like [`wait_for`](Condition::wait_for) for at most `timeout`; returns the predicate's
    /// last value (Python's `wait_for(pred, timeout)`).
    pub fn wait_for_timeout(
        &self,
        guard: &mut MutexGuard<'_, T>,
        mut predicate: impl FnMut(&mut T) -> bool,
        timeout: Duration,
    ) -> Result<bool, LockError> {
        let deadline = crate::deadline_after(timeout);
        loop {
            if predicate(&mut **guard) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.wait_until(guard, deadline)?;
        }
    }

    /// Wakes up to `n` waiting threads; returns how many were woken.
    pub fn notify(&self, n: usize) -> usize {
        (0..n).take_while(|_| self.cv.notify_one()).count()
    }

    /// Wakes every waiting thread; returns how many were woken.
    pub fn notify_all(&self) -> usize {
        self.cv.notify_all()
    }

    /// Consumes the condition and returns the guarded value.
    pub fn into_inner(self) -> T {
        self.mutex.into_inner()
    }
}
