//! [`ManagedLock`] and [`ManagedEvent`]: Python's `manager.Lock()` and `manager.Event()`
//! proxies.

use std::marker::PhantomData;
use std::time::Duration;

use super::REPLY_GRACE;
use super::error::ManagerError;
use super::object_client::{Conn, ObjectRef, object_handle};
use super::object_wire::{Answer, Kind, Op, WireWait};

/// How long a client waits for the answer to a call that waits `wait` in the manager.
fn answer_within(wait: WireWait) -> Option<Duration> {
    match wait {
        WireWait::No => Some(REPLY_GRACE),
        WireWait::Nanos(n) => Some(Duration::from_nanos(n).saturating_add(REPLY_GRACE)),
        WireWait::Forever => None,
    }
}

fn wait_for(timeout: Duration) -> WireWait {
    WireWait::Nanos(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
}

/// A handle to a lock hosted by a [`Manager`](super::Manager): Python's `manager.Lock()`,
/// made by [`Manager::lock`](super::Manager::lock).
///
/// [`acquire`](ManagedLock::acquire) hands back a guard that releases the lock when dropped
/// (Python's `with lock:`). Not reentrant, as Python's `Lock`. Fair: a release hands the
/// lock to the acquire that has waited longest, in whatever process.
///
/// Where Python's manager keeps a lock held forever when its holder dies, the manager sees
/// the holder's connection close (the kernel closes a dead process's sockets), frees the lock,
/// and the next acquire fails with [`ManagerError::OwnerDied`] naming the dead pid; the acquire
/// after that works. A guard keeps the connection it acquired through until it is dropped.
///
/// ```
/// use std::time::Duration;
/// use process_ipc::manager::{Manager, ManagerError};
///
/// let manager = Manager::new()?;
/// let lock = manager.lock()?;
/// let guard = lock.acquire()?;
/// assert!(lock.try_acquire()?.is_none());
/// assert!(matches!(
///     lock.acquire_timeout(Duration::from_millis(10)),
///     Err(ManagerError::ObjectTimeout { .. })
/// ));
/// drop(guard);
/// assert!(lock.try_acquire()?.is_some());
/// # Ok::<(), ManagerError>(())
/// ```
pub struct ManagedLock {
    pub(super) obj: ObjectRef,
    pub(super) types: PhantomData<()>,
}

object_handle!(ManagedLock, Kind::Lock, "lock");

/// Holds a [`ManagedLock`]; dropping it releases the lock (see
/// [`release`](ManagedLockGuard::release) to see a failure).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ManagedLockGuard<'a> {
    lock: &'a ManagedLock,
    held: Option<Held>,
}

/// How a guard holds its lock.
enum Held {
    /// In the manager's process: as this owner id.
    Local(u64),
    /// Elsewhere: through this connection (the manager knows the holder by it).
    Remote(Conn),
}

impl std::fmt::Debug for ManagedLockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedLockGuard")
            .field("lock", &self.lock)
            .finish()
    }
}

impl ManagedLockGuard<'_> {
    /// Releases the lock now, saying whether the manager did.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone (the lock went with it).
    pub fn release(mut self) -> Result<(), ManagerError> {
        self.release_held()
    }

    fn release_held(&mut self) -> Result<(), ManagerError> {
        let obj = &self.lock.obj;
        let answer = match self.held.take() {
            Some(Held::Local(owner)) => obj.call_as(owner, Op::Release, Some(REPLY_GRACE))?,
            Some(Held::Remote(conn)) => obj.call_on(conn, Op::Release)?,
            None => return Ok(()),
        };
        obj.done(answer)
    }
}

impl Drop for ManagedLockGuard<'_> {
    fn drop(&mut self) {
        // A manager that is gone took the lock with it: nothing is left to release.
        let _ = self.release_held();
    }
}

impl ManagedLock {
    /// Python's `lock.acquire()`: waits as long as it takes.
    ///
    /// # Errors
    /// [`ManagerError::OwnerDied`] if the last holder died holding it (the lock is free
    /// again, and was not taken by this call); [`ManagerError::ObjectGone`] if the manager is
    /// gone, including while this call waits.
    pub fn acquire(&self) -> Result<ManagedLockGuard<'_>, ManagerError> {
        match self.acquire_with(WireWait::Forever)? {
            Some(guard) => Ok(guard),
            None => Err(self.obj.unexpected(&Answer::Bool(false))),
        }
    }

    /// Python's `lock.acquire(timeout=...)`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectTimeout`] if the lock stayed held for `timeout`; otherwise as
    /// [`acquire`](ManagedLock::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ManagedLockGuard<'_>, ManagerError> {
        match self.acquire_with(wait_for(timeout))? {
            Some(guard) => Ok(guard),
            None => Err(ManagerError::ObjectTimeout {
                pid: self.obj.pid,
                object: self.obj.object,
                kind: Kind::Lock.name(),
                timeout,
            }),
        }
    }

    /// Python's `lock.acquire(blocking=False)`: the guard if the lock was free, else `None`.
    ///
    /// # Errors
    /// As [`acquire`](ManagedLock::acquire).
    pub fn try_acquire(&self) -> Result<Option<ManagedLockGuard<'_>>, ManagerError> {
        self.acquire_with(WireWait::No)
    }

    /// How many acquires wait for this lock now, in all processes: a diagnostic with no
    /// Python twin (a process that is stuck on the lock shows here).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn waiting(&self) -> Result<usize, ManagerError> {
        let answer = self.obj.call(Op::LockWaiting, Some(REPLY_GRACE))?;
        self.obj.count(answer)
    }

    fn acquire_with(&self, wait: WireWait) -> Result<Option<ManagedLockGuard<'_>>, ManagerError> {
        let within = answer_within(wait);
        let held = if let Some(objects) = &self.obj.local {
            let owner = objects.new_owner();
            let answer = self.obj.call_as(owner, Op::Acquire(wait), within)?;
            self.obj.flag(answer)?.then_some(Held::Local(owner))
        } else {
            let (answer, conn) = self.obj.call_keeping(Op::Acquire(wait), within)?;
            match self.obj.flag(answer) {
                Ok(true) => Some(Held::Remote(conn)),
                Ok(false) => {
                    self.obj.give_back(conn);
                    None
                }
                Err(e) => return Err(e),
            }
        };
        Ok(held.map(|held| ManagedLockGuard {
            lock: self,
            held: Some(held),
        }))
    }
}

/// A handle to an event hosted by a [`Manager`](super::Manager): Python's `manager.Event()`,
/// made by [`Manager::event`](super::Manager::event).
///
/// ```
/// use std::time::Duration;
/// use process_ipc::manager::Manager;
///
/// let manager = Manager::new()?;
/// let ready = manager.event()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(10))?);
/// ready.set()?;
/// assert!(ready.is_set()?);
/// ready.wait()?;
/// ready.clear()?;
/// assert!(!ready.is_set()?);
/// # Ok::<(), process_ipc::manager::ManagerError>(())
/// ```
pub struct ManagedEvent {
    pub(super) obj: ObjectRef,
    pub(super) types: PhantomData<()>,
}

object_handle!(ManagedEvent, Kind::Event, "event");

impl ManagedEvent {
    fn call(&self, op: Op) -> Result<Answer, ManagerError> {
        self.obj.call(op, Some(REPLY_GRACE))
    }

    /// Python's `event.set()`: sets the flag and wakes every waiter, in every process.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn set(&self) -> Result<(), ManagerError> {
        let answer = self.call(Op::EventSet)?;
        self.obj.done(answer)
    }

    /// Python's `event.clear()`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn clear(&self) -> Result<(), ManagerError> {
        let answer = self.call(Op::EventClear)?;
        self.obj.done(answer)
    }

    /// Python's `event.is_set()`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        let answer = self.call(Op::EventIsSet)?;
        self.obj.flag(answer)
    }

    /// Python's `event.wait()`: waits until the flag is set.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone, including while this call waits.
    pub fn wait(&self) -> Result<(), ManagerError> {
        let answer = self.obj.call(Op::EventWait(WireWait::Forever), None)?;
        self.obj.flag(answer).map(drop)
    }

    /// Python's `event.wait(timeout)`: whether the flag was set within `timeout`.
    ///
    /// # Errors
    /// As [`wait`](ManagedEvent::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        let wait = wait_for(timeout);
        let answer = self.obj.call(Op::EventWait(wait), answer_within(wait))?;
        self.obj.flag(answer)
    }
}
