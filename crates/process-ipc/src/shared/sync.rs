//! Locks that work across processes (Python's `multiprocessing.Lock` and `RLock`), and what
//! every shared primitive's handle has in common (serde by name).
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
                serializer.serialize_str(&self.cell.name_for_transfer())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                let cell = CellRef::attach(&name, $kind, 0).map_err(serde::de::Error::custom)?;
                Ok($ty { cell })
            }
        }
    };
    ($ty:ident, $kind:expr, debug_by_name) => {
        by_name!($ty, $kind);

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.cell.name())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(super) use by_name;

/// Who holds a lock, for its `Debug` (Python's repr names the owner as
/// `process name|thread name`; here, the pid and the kernel thread id).
struct Owner(Option<(u32, u32)>);

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some((0, tid)) => write!(f, "(pid ?, thread {tid})"),
            Some((pid, tid)) => write!(f, "(pid {pid}, thread {tid})"),
        }
    }
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

/// `Lock { name, owner: (pid 41, thread 41) }`, or `owner: None` when free: Python's
/// `<Lock(owner=MainProcess|MainThread)>` / `<Lock(owner=None)>`, with the pid and the kernel
/// thread id (what `gettid` gives) for the names.
impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.cell.name())
            .field("owner", &Owner(self.cell.holder()))
            .finish()
    }
}

/// Holds a [`Lock`] (or the lock of a `Value`/`Array`) until dropped.
///
/// Not `Send`: the lock is released by the thread that took it (the kernel knows holders by
/// thread).
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    pub(super) cell: &'a CellRef,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    #[inline]
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
#[inline]
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

#[inline]
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
    #[inline]
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

    /// The uncontended case alone, with no error to carry: the lock if it is free and its
    /// last holder did not die, else `None` (the caller then takes the usual way).
    #[inline]
    pub(crate) fn acquire_free(&self) -> Option<LockGuard<'_>> {
        // Not `then_some`: a guard built eagerly would unlock a lock it never took on drop.
        if self.cell.lock_free() {
            Some(LockGuard {
                cell: &self.cell,
                _not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// Takes the lock if it is free (Python's `acquire(blocking=False)`).
    ///
    /// # Errors
    /// As [`acquire`](Lock::acquire).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>, SharedError> {
        try_acquire_cell(&self.cell)
    }

    /// Whether some thread of some process holds the lock now (Python's `locked()`). A
    /// snapshot: another process may take or release it at once.
    pub fn locked(&self) -> bool {
        self.cell.holder().is_some()
    }

    /// Who holds the lock now, as `(pid, thread id)` (the kernel's thread id, as `gettid`
    /// gives it); `None` if it is free. The pid is 0 in the instant between the take and its
    /// record. A snapshot, for diagnostics (Python shows the owner in the lock's repr).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.cell.holder()
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

/// `RLock { name, owner: (pid 41, thread 41), depth: 2 }`, or `owner: None, depth: 0`:
/// Python's `<RLock(MainProcess|MainThread, 2)>` / `<RLock(None, 0)>`.
impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = self.cell.holder();
        f.debug_struct("RLock")
            .field("name", &self.cell.name())
            .field("owner", &Owner(owner))
            .field("depth", &if owner.is_some() { self.depth() } else { 0 })
            .finish()
    }
}

/// Holds an [`RLock`] once; the lock is free when all of a thread's guards are dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    cell: &'a CellRef,
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Only the holding thread changes the depth: no read-modify-write needed.
        let depth = &self.cell.cell().depth;
        let left = depth.load(Ordering::Relaxed) - 1;
        depth.store(left, Ordering::Relaxed);
        if left == 0 {
            self.cell.unlock();
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
                self.cell.cell().depth.store(1, Ordering::Relaxed);
                self.cell.set_owner();
                Ok(self.again())
            }
            Locked::OwnerDied(pid) => {
                self.cell.cell().depth.store(0, Ordering::Relaxed);
                self.cell.unlock();
                Err(SharedError::OwnerDied { pid })
            }
        }
    }

    /// One more guard for the thread that holds the lock.
    fn again(&self) -> RLockGuard<'_> {
        RLockGuard {
            cell: &self.cell,
            _not_send: PhantomData,
        }
    }

    /// The lock taken once more, if this thread holds it already.
    fn reentered(&self) -> Option<RLockGuard<'_>> {
        if !self.cell.held_by_me() {
            return None;
        }
        let depth = &self.cell.cell().depth;
        depth.store(depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Some(self.again())
    }

    /// Takes the lock (again, if this thread holds it).
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if the last holder died holding it (the lock is free again).
    pub fn acquire(&self) -> Result<RLockGuard<'_>, SharedError> {
        if let Some(guard) = self.reentered() {
            return Ok(guard);
        }
        let locked = self.cell.lock(None)?;
        self.guard(locked)
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    /// [`SharedError::Timeout`], or as [`acquire`](RLock::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, SharedError> {
        if let Some(guard) = self.reentered() {
            return Ok(guard);
        }
        let locked = self.cell.lock(deadline_after(timeout))?;
        self.guard(locked)
    }

    /// Takes the lock if it is free or already this thread's.
    ///
    /// # Errors
    /// As [`acquire`](RLock::acquire).
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>, SharedError> {
        if let Some(guard) = self.reentered() {
            return Ok(Some(guard));
        }
        match self.cell.try_lock()? {
            None => Ok(None),
            Some(locked) => self.guard(locked).map(Some),
        }
    }

    /// Whether some thread of some process holds the lock now (Python's `RLock.locked()`,
    /// 3.14). A snapshot.
    pub fn locked(&self) -> bool {
        self.cell.holder().is_some()
    }

    /// Who holds the lock now, as `(pid, thread id)`; `None` if it is free. See
    /// [`Lock::owner`].
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.cell.holder()
    }

    /// How many times the holder has taken it (0: free). Meaningful to the holder.
    pub fn depth(&self) -> u32 {
        self.cell.cell().depth.load(Ordering::Relaxed)
    }
}
