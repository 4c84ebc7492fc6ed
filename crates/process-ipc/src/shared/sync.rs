//! Locks, events, semaphores, conditions and barriers that work across processes
//! (Python's `multiprocessing.Lock`, `RLock`, `Event`, `Semaphore`, `BoundedSemaphore`,
//! `Condition`, `Barrier`).
//!
//! Each lives in its own small shared block (see [`super::cell`]); a handle is a serde value
//! (the block's name), so it can be a `Process` or pool argument and attaches on arrival.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CellRef, Kind, Locked, deadline_after};
use super::error::SharedError;

/// Serialises a handle as its block's name and attaches on the way in.
macro_rules! by_name {
    ($ty:ident, $kind:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.cell.name_for_transfer())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                let cell = CellRef::attach(&name, $kind, 0).map_err(serde::de::Error::custom)?;
                Ok($ty { cell })
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.cell.name())
                    .finish_non_exhaustive()
            }
        }
    };
}

/// A lock shared by processes (Python's `multiprocessing.Lock`), robust to its holder dying.
///
/// Where Python's lock stays taken for ever when its holder is killed, the next `acquire` here
/// gets [`SharedError::OwnerDied`] naming the dead pid, and the lock is free again after that.
///
/// ```
/// use process_ipc::Lock;
///
/// let lock = Lock::new().unwrap();
/// {
///     let _held = lock.acquire().unwrap();
///     assert!(lock.try_acquire().unwrap().is_none()); // taken
/// }
/// assert!(lock.try_acquire().unwrap().is_some()); // released when the guard dropped
/// ```
#[derive(Clone)]
pub struct Lock {
    pub(crate) cell: CellRef,
}

by_name!(Lock, Kind::Lock);

/// Holds a [`Lock`] (or the lock of a `Value`/`Array`) until dropped.
///
/// Not `Send`: a pthread mutex is released by the thread that took it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    cell: &'a CellRef,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.cell.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard { .. }")
    }
}

/// Turns what `lock` found into a guard, or into `OwnerDied` after freeing the lock.
fn guard_or_owner_died(cell: &CellRef, locked: Locked) -> Result<LockGuard<'_>, SharedError> {
    match locked {
        Locked::Clean => {
            cell.set_owner();
            Ok(LockGuard {
                cell,
                _not_send: PhantomData,
            })
        }
        Locked::OwnerDied(pid) => {
            cell.unlock();
            Err(SharedError::OwnerDied { pid })
        }
    }
}

pub(crate) fn acquire_cell(
    cell: &CellRef,
    deadline: Option<Instant>,
) -> Result<LockGuard<'_>, SharedError> {
    let locked = cell.lock(deadline)?;
    guard_or_owner_died(cell, locked)
}

pub(crate) fn try_acquire_cell(cell: &CellRef) -> Result<Option<LockGuard<'_>>, SharedError> {
    match cell.try_lock()? {
        None => Ok(None),
        Some(locked) => guard_or_owner_died(cell, locked).map(Some),
    }
}

impl Lock {
    /// A new, free lock.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn new() -> Result<Self, SharedError> {
        Ok(Lock {
            cell: CellRef::create(Kind::Lock, 0)?,
        })
    }

    /// Waits for the lock and takes it.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if the last holder died holding it (the lock is free again).
    pub fn acquire(&self) -> Result<LockGuard<'_>, SharedError> {
        acquire_cell(&self.cell, None)
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    /// [`SharedError::Timeout`], or as [`acquire`](Lock::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, SharedError> {
        acquire_cell(&self.cell, deadline_after(timeout))
    }

    /// Takes the lock if it is free (Python's `acquire(blocking=False)`).
    ///
    /// # Errors
    /// As [`acquire`](Lock::acquire).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>, SharedError> {
        try_acquire_cell(&self.cell)
    }
}

/// A re-entrant lock shared by processes (Python's `multiprocessing.RLock`): the thread that
/// holds it may take it again; it is free when every guard is dropped. Robust like [`Lock`].
///
/// ```
/// use process_ipc::RLock;
///
/// let lock = RLock::new().unwrap();
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap(); // the same thread again: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop((inner, outer));
/// ```
#[derive(Clone)]
pub struct RLock {
    cell: CellRef,
}

by_name!(RLock, Kind::RLock);

/// Holds an [`RLock`] once; the lock is free when all of a thread's guards are dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    cell: &'a CellRef,
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let cell = self.cell.cell();
        if cell.depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.cell.unlock();
        } else {
            // SAFETY: this thread holds the recursive mutex more than once; each guard unlocks
            // it once, and only the last one (above) clears the owner.
            unsafe { libc::pthread_mutex_unlock(self.cell.mutex_ptr()) };
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard { .. }")
    }
}

impl RLock {
    /// A new, free re-entrant lock.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn new() -> Result<Self, SharedError> {
        Ok(RLock {
            cell: CellRef::create(Kind::RLock, 0)?,
        })
    }

    fn guard(&self, locked: Locked) -> Result<RLockGuard<'_>, SharedError> {
        match locked {
            Locked::Clean => {
                if self.cell.cell().depth.fetch_add(1, Ordering::Relaxed) == 0 {
                    self.cell.set_owner();
                }
                Ok(RLockGuard {
                    cell: &self.cell,
                    _not_send: PhantomData,
                })
            }
            Locked::OwnerDied(pid) => {
                self.cell.cell().depth.store(0, Ordering::Relaxed);
                self.cell.unlock();
                Err(SharedError::OwnerDied { pid })
            }
        }
    }

    /// Takes the lock (again, if this thread holds it).
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if the last holder died holding it (the lock is free again).
    pub fn acquire(&self) -> Result<RLockGuard<'_>, SharedError> {
        let locked = self.cell.lock(None)?;
        self.guard(locked)
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    /// [`SharedError::Timeout`], or as [`acquire`](RLock::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, SharedError> {
        let locked = self.cell.lock(deadline_after(timeout))?;
        self.guard(locked)
    }

    /// Takes the lock if it is free or already this thread's.
    ///
    /// # Errors
    /// As [`acquire`](RLock::acquire).
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>, SharedError> {
        match self.cell.try_lock()? {
            None => Ok(None),
            Some(locked) => self.guard(locked).map(Some),
        }
    }

    /// How many times the holder has taken it (0: free). Meaningful to the holder.
    pub fn depth(&self) -> u32 {
        self.cell.cell().depth.load(Ordering::Relaxed)
    }
}

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

by_name!(Event, Kind::Event);

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
        self.cell.notify_all();
        self.cell.unlock();
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

by_name!(Semaphore, Kind::Semaphore);

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
        self.cell.notify_one();
        self.cell.unlock();
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

by_name!(Condition, Kind::Condition);

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
    /// [`SharedError::Refused`] if `guard` is another condition's.
    pub fn wait(&self, guard: &mut LockGuard<'_>) -> Result<(), SharedError> {
        self.check(guard)?;
        self.cell.wait(None);
        self.cell.set_owner();
        Ok(())
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
        let woke = self.cell.wait(deadline_after(timeout));
        self.cell.set_owner();
        Ok(woke)
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

/// A barrier for processes (Python's `multiprocessing.Barrier`): `parties` waiters meet, then
/// all go on.
///
/// ```
/// use process_ipc::Barrier;
/// use std::time::Duration;
///
/// let alone = Barrier::new(1).unwrap();
/// assert_eq!(alone.wait().unwrap(), 0); // one party: passes at once
/// let pair = Barrier::new(2).unwrap();
/// assert!(pair.wait_timeout(Duration::from_millis(5)).is_err()); // nobody came
/// assert!(pair.broken());
/// ```
#[derive(Clone)]
pub struct Barrier {
    cell: CellRef,
}

by_name!(Barrier, Kind::Barrier);

impl Barrier {
    /// A barrier for `parties` waiters.
    ///
    /// # Errors
    /// [`SharedError::Refused`] for 0 parties; [`SharedError::Os`] if the block cannot be made.
    pub fn new(parties: u32) -> Result<Self, SharedError> {
        if parties == 0 {
            return Err(SharedError::Refused {
                name: String::new(),
                reason: "a barrier needs at least 1 party".into(),
            });
        }
        let cell = CellRef::create(Kind::Barrier, 0)?;
        cell.cell().d.store(u64::from(parties), Ordering::Release);
        Ok(Barrier { cell })
    }

    /// How many must wait before all go on.
    pub fn parties(&self) -> u32 {
        self.cell.cell().d.load(Ordering::Relaxed) as u32
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.cell.cell().a.load(Ordering::Relaxed) as u32
    }

    /// Whether it was aborted or a wait on it timed out.
    pub fn broken(&self) -> bool {
        self.cell.cell().b.load(Ordering::Acquire) != 0
    }

    /// Waits for the others; this waiter's index (0 to parties - 1) once all have come.
    ///
    /// # Errors
    /// [`SharedError::BrokenBarrier`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<u32, SharedError> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait), at most `timeout`; a timeout breaks the barrier, as in
    /// Python.
    ///
    /// # Errors
    /// [`SharedError::BrokenBarrier`] on timeout or abort.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, SharedError> {
        self.wait_until(deadline_after(timeout))
    }

    /// Breaks the barrier: every waiter, now and later, gets `BrokenBarrier`.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn abort(&self) -> Result<(), SharedError> {
        self.cell.lock_internal(None)?;
        self.cell.cell().b.store(1, Ordering::Release);
        self.cell.notify_all();
        self.cell.unlock();
        Ok(())
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, SharedError> {
        self.cell.lock_internal(deadline)?;
        let words = self.cell.cell();
        if words.b.load(Ordering::Relaxed) != 0 {
            self.cell.unlock();
            return Err(SharedError::BrokenBarrier);
        }
        let generation = words.c.load(Ordering::Relaxed);
        let index = words.a.fetch_add(1, Ordering::Relaxed) as u32;
        if index + 1 == self.parties() {
            words.a.store(0, Ordering::Relaxed);
            words.c.fetch_add(1, Ordering::Release);
            self.cell.notify_all();
            self.cell.unlock();
            return Ok(index);
        }
        loop {
            if words.c.load(Ordering::Relaxed) != generation {
                self.cell.unlock();
                return Ok(index);
            }
            if words.b.load(Ordering::Relaxed) != 0 {
                self.cell.unlock();
                return Err(SharedError::BrokenBarrier);
            }
            if !self.cell.wait(deadline) && words.c.load(Ordering::Relaxed) == generation {
                words.b.store(1, Ordering::Release);
                words.a.fetch_sub(1, Ordering::Relaxed);
                self.cell.notify_all();
                self.cell.unlock();
                return Err(SharedError::BrokenBarrier);
            }
        }
    }
}
