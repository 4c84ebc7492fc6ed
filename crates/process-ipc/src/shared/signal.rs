//! Events, semaphores and conditions that work across processes (Python's
//! `multiprocessing.Event`, `Semaphore`, `BoundedSemaphore`, `Condition`); the `Barrier` is in
//! [`super::barrier`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CellRef, Kind, deadline_after};
use super::error::SharedError;
use super::sync::{LockGuard, acquire_cell, by_name};

/// A flag that processes wait on (Python's `multiprocessing.Event`).
///
/// ```
/// use process_ipc::Event;
/// use std::time::Duration;
///
/// let ready = Event::new().unwrap();
/// assert!(!ready.wait_timeout(Duration::from_millis(1)).unwrap());
/// ready.set().unwrap();
/// assert!(ready.is_set());
/// ready.wait().unwrap(); // returns at once
/// ```
#[derive(Clone)]
pub struct Event {
    cell: CellRef,
}

by_name!(Event, Kind::Event, debug_by_name);

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn new() -> Result<Self, SharedError> {
        Ok(Event {
            cell: CellRef::create(Kind::Event, 0)?,
        })
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.cell.cell().a.load(Ordering::Acquire) != 0
    }

    /// Sets the flag and wakes every waiter, in every process.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn set(&self) -> Result<(), SharedError> {
        self.cell.lock_internal(None)?;
        self.cell.cell().a.store(1, Ordering::Release);
        self.cell.unlock_and_notify(i32::MAX);
        Ok(())
    }

    /// Clears the flag.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn clear(&self) -> Result<(), SharedError> {
        self.cell.lock_internal(None)?;
        self.cell.cell().a.store(0, Ordering::Release);
        self.cell.unlock();
        Ok(())
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn wait(&self) -> Result<(), SharedError> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits at most `timeout`; whether the flag is set.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, SharedError> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, SharedError> {
        if self.is_set() {
            return Ok(true);
        }
        match self.cell.lock_internal(deadline) {
            Ok(()) => {}
            Err(SharedError::Timeout(_)) => return Ok(self.is_set()),
            Err(e) => return Err(e),
        }
        while !self.is_set() {
            if !self.cell.wait(deadline) {
                break;
            }
        }
        let set = self.is_set();
        self.cell.unlock();
        Ok(set)
    }
}

/// A counter that processes take from and give back to (Python's
/// `multiprocessing.Semaphore`); with [`Semaphore::bounded`], Python's `BoundedSemaphore`.
///
/// ```
/// use process_ipc::Semaphore;
///
/// let slots = Semaphore::new(2).unwrap();
/// assert!(slots.try_acquire().unwrap());
/// assert!(slots.try_acquire().unwrap());
/// assert!(!slots.try_acquire().unwrap()); // both taken
/// slots.release().unwrap();
/// assert_eq!(slots.value(), 1);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    cell: CellRef,
}

by_name!(Semaphore, Kind::Semaphore, debug_by_name);

/// Python's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] whose `release` past its
/// initial value is an error.
pub type BoundedSemaphore = Semaphore;

impl Semaphore {
    /// A semaphore holding `value`.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn new(value: u32) -> Result<Self, SharedError> {
        Self::make(value, 0)
    }

    /// A semaphore holding `value` that may never hold more (Python's `BoundedSemaphore`).
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn bounded(value: u32) -> Result<Self, SharedError> {
        Self::make(value, u64::from(value) + 1)
    }

    fn make(value: u32, bound_plus_one: u64) -> Result<Self, SharedError> {
        let cell = CellRef::create(Kind::Semaphore, 0)?;
        cell.cell().a.store(u64::from(value), Ordering::Relaxed);
        cell.cell().b.store(bound_plus_one, Ordering::Release);
        Ok(Semaphore { cell })
    }

    /// What it holds now.
    pub fn value(&self) -> u32 {
        self.cell.cell().a.load(Ordering::Acquire) as u32
    }

    /// Waits until it holds at least one, and takes one.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn acquire(&self) -> Result<(), SharedError> {
        self.acquire_until(None).map(|_| ())
    }

    /// Waits at most `timeout` to take one; whether it did.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, SharedError> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Takes one if it holds any (Python's `acquire(blocking=False)`).
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn try_acquire(&self) -> Result<bool, SharedError> {
        self.acquire_until(Some(Instant::now()))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<bool, SharedError> {
        match self.cell.lock_internal(deadline) {
            Ok(()) => {}
            Err(SharedError::Timeout(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let words = self.cell.cell();
        while words.a.load(Ordering::Relaxed) == 0 {
            if !self.cell.wait(deadline) {
                break;
            }
        }
        let took = words.a.load(Ordering::Relaxed) > 0;
        if took {
            words.a.fetch_sub(1, Ordering::Release);
        }
        self.cell.unlock();
        Ok(took)
    }

    /// Gives one back and wakes a waiter.
    ///
    /// # Errors
    /// [`SharedError::OverRelease`] for a bounded semaphore already at its initial value.
    pub fn release(&self) -> Result<(), SharedError> {
        self.cell.lock_internal(None)?;
        let words = self.cell.cell();
        let bound_plus_one = words.b.load(Ordering::Relaxed);
        if bound_plus_one != 0 && words.a.load(Ordering::Relaxed) + 1 >= bound_plus_one {
            self.cell.unlock();
            return Err(SharedError::OverRelease {
                bound: (bound_plus_one - 1) as u32,
            });
        }
        words.a.fetch_add(1, Ordering::Release);
        self.cell.unlock_and_notify(1);
        Ok(())
    }
}

/// A condition variable with its own lock, shared by processes (Python's
/// `multiprocessing.Condition`).
///
/// ```
/// use process_ipc::Condition;
/// use std::time::Duration;
///
/// let cond = Condition::new().unwrap();
/// let mut held = cond.acquire().unwrap();
/// // Nobody notifies: the wait times out, and the lock is held again after it.
/// assert!(!cond.wait_timeout(&mut held, Duration::from_millis(5)).unwrap());
/// ```
#[derive(Clone)]
pub struct Condition {
    cell: CellRef,
}

by_name!(Condition, Kind::Condition, debug_by_name);

impl Condition {
    /// A new condition variable and its lock.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn new() -> Result<Self, SharedError> {
        Ok(Condition {
            cell: CellRef::create(Kind::Condition, 0)?,
        })
    }

    /// Takes the condition's lock.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if its last holder died holding it (free again).
    pub fn acquire(&self) -> Result<LockGuard<'_>, SharedError> {
        acquire_cell(&self.cell, None)
    }

    /// Releases the lock, waits for a notify, and takes the lock again.
    ///
    /// # Errors
    /// [`SharedError::Refused`] if `guard` is another condition's;
    /// [`SharedError::OwnerDied`] if, while this thread waited, another process took the lock
    /// and died holding it. The lock is `guard`'s again then, as after any wait, and usable
    /// (its next holder sees no error); what it guards is as the dead holder left it, so
    /// check it before going on. Python's condition deadlocks here.
    pub fn wait(&self, guard: &mut LockGuard<'_>) -> Result<(), SharedError> {
        self.check(guard)?;
        let (_, died) = self.cell.wait_reporting(None);
        self.retaken(died)
    }

    /// As [`wait`](Condition::wait), at most `timeout`; `false` if it timed out.
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    pub fn wait_timeout(
        &self,
        guard: &mut LockGuard<'_>,
        timeout: Duration,
    ) -> Result<bool, SharedError> {
        self.check(guard)?;
        let (woke, died) = self.cell.wait_reporting(deadline_after(timeout));
        self.retaken(died).map(|()| woke)
    }

    /// Waits until `predicate` holds: checked first, then after each wake-up, always with the
    /// lock held (Python's `cond.wait_for(predicate)`). The predicate reads the shared state
    /// the condition guards (a [`Value`](crate::Value)'s raw view, a
    /// [`SharedMemory`](crate::SharedMemory)...), since a process condition guards no value of
    /// its own.
    ///
    /// # Errors
    /// As [`wait`](Condition::wait): an owner that died while this thread waited is reported
    /// at once, before the predicate is checked again (the lock is `guard`'s).
    pub fn wait_for(
        &self,
        guard: &mut LockGuard<'_>,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<(), SharedError> {
        self.check(guard)?;
        while !predicate() {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// As [`wait_for`](Condition::wait_for), at most `timeout` in all; the predicate's last
    /// value (Python's `cond.wait_for(predicate, timeout)`: `false` means it timed out with
    /// the predicate still false).
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    pub fn wait_for_timeout(
        &self,
        guard: &mut LockGuard<'_>,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, SharedError> {
        self.check(guard)?;
        let deadline = deadline_after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let (_, died) = self.cell.wait_reporting(deadline);
            self.retaken(died)?;
        }
    }

    /// The lock is this thread's again: records it, and reports a holder that died meanwhile.
    fn retaken(&self, died: Option<u32>) -> Result<(), SharedError> {
        self.cell.set_owner();
        match died {
            Some(pid) => Err(SharedError::OwnerDied { pid }),
            None => Ok(()),
        }
    }

    /// Wakes up to `n` waiters (the caller should hold the lock, as in Python).
    pub fn notify(&self, n: usize) {
        for _ in 0..n {
            self.cell.notify_one();
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.cell.notify_all();
    }

    fn check(&self, guard: &LockGuard<'_>) -> Result<(), SharedError> {
        if std::ptr::eq(guard.cell, &self.cell) {
            Ok(())
        } else {
            Err(SharedError::Refused {
                name: self.cell.name().to_string(),
                reason: "the guard belongs to another lock".into(),
            })
        }
    }
}
