//! Locks that report deadlocks: [`Mutex<T>`] (data inside, Rust style), [`Lock`] and [`RLock`] (Python's).

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::deadlock::{self, WaitRegistration};
use crate::error::LockError;
use crate::identity::current_ident;
use crate::lock_meta::{LockKind, LockMeta};
use crate::lock_order::{self, Tracked};
use crate::mode::{self, detection_enabled};
use std::borrow::Cow;

/// A mutual-exclusion lock around a value, like `std::sync::Mutex`, that reports deadlocks.
///
/// Uncontended, [`lock`](Mutex::lock) is `parking_lot`'s compare-and-swap plus one store of the
/// owner's ident. Contended, it first backs off as `parking_lot` does (spin, then yield), then
/// registers in the wait-for graph; if waiting would
/// close a cycle, it returns [`LockError::Deadlock`] instead of hanging. There is no poisoning:
/// a panic while holding the lock releases it.
///
/// ```
/// use threads_sync::Mutex;
/// let counter = Mutex::named("counter", 0u64);
/// *counter.lock()? += 1;
/// assert_eq!(*counter.lock()?, 1);
/// assert_eq!(counter.name(), "counter");
/// # Ok::<(), threads_sync::LockError>(())
/// ```
// Layout: the owner word (first in `meta`), the raw lock and the start of the value are what
// the holder writes; `repr(C)` keeps them within 64 bytes of the start (the meta is five
// words: owner, tag and a `const`-constructible name), and `align(64)` keeps those 64 bytes
// inside one cache line wherever the mutex lives, so a handoff under contention moves one
// line, not two (and two mutexes never share a line).
#[repr(C, align(64))]
pub struct Mutex<T: ?Sized> {
    meta: LockMeta,
    inner: parking_lot::Mutex<T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex; its name in reports is `Mutex#<n>`. A `const fn`, so a mutex
    /// can be a `static`:
    /// ```
    /// static HITS: threads_sync::Mutex<u64> = threads_sync::Mutex::new(0);
    /// *HITS.lock()? += 1;
    /// assert_eq!(*HITS.lock()?, 1);
    /// # Ok::<(), threads_sync::LockError>(())
    /// ```
    pub const fn new(value: T) -> Self {
        Mutex {
            meta: LockMeta::new(LockKind::Mutex, None),
            inner: parking_lot::const_mutex(value),
        }
    }

    /// A new unlocked mutex that deadlock and lock-order reports call `name` (a `const fn`;
    /// [`with_name`](Mutex::with_name) takes a name built at run time).
    pub const fn named(name: &'static str, value: T) -> Self {
        Mutex {
            meta: LockMeta::new(LockKind::Mutex, Some(Cow::Borrowed(name))),
            inner: parking_lot::const_mutex(value),
        }
    }

    /// Like [`named`](Mutex::named), with a name built at run time (`format!("fork{i}")`).
    pub fn with_name(name: impl Into<String>, value: T) -> Self {
        Mutex {
            meta: LockMeta::new(LockKind::Mutex, Some(Cow::Owned(name.into()))),
            inner: parking_lot::const_mutex(value),
        }
    }

    /// Consumes the mutex and returns the value.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// The name used in reports.
    pub fn name(&self) -> String {
        self.meta.name()
    }

    /// Blocks until the lock is acquired, or returns [`LockError::Deadlock`] if waiting would
    /// close a cycle of threads waiting for each other (this one included).
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError> {
        match mode::mode() {
            mode::DETECTION => {
                // The release default (detection on, lock-order checking off), kept small
                // enough to inline: the ident is read before the compare-and-swap, so the
                // critical section gains only the store of the owner word.
                let me = current_ident();
                match self.inner.try_lock() {
                    Some(inner) => {
                        self.meta.set_owner(me);
                        Ok(MutexGuard {
                            mutex: self,
                            inner: ManuallyDrop::new(inner),
                            tracked: Tracked::NO,
                        })
                    }
                    None => self.lock_contended(None, Tracked::NO),
                }
            }
            // Nothing to check or record: `parking_lot`'s own path.
            0 => Ok(MutexGuard {
                mutex: self,
                inner: ManuallyDrop::new(self.inner.lock()),
                tracked: Tracked::NO,
            }),
            _ => self.lock_order_checked(),
        }
    }

    /// [`lock`](Mutex::lock) with lock-order checking on.
    #[inline(never)]
    fn lock_order_checked(&self) -> Result<MutexGuard<'_, T>, LockError> {
        // Lock order is checked before taking the lock (as lockdep does): the bookkeeping
        // stays outside the critical section.
        let tracked = lock_order::note_acquiring(&self.meta, true);
        if !detection_enabled() {
            // Nothing to check: `parking_lot`'s own path (compare-and-swap first).
            return Ok(self.guard(self.inner.lock(), tracked));
        }
        match self.inner.try_lock() {
            Some(inner) => Ok(self.guard(inner, tracked)),
            None => self.lock_contended(None, tracked),
        }
    }

    /// Takes the lock only if it is free right now (Python: `acquire(blocking=False)`).
    /// A try-lock cannot deadlock, so it records no lock-order edge.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let inner = self.inner.try_lock()?;
        let tracked = lock_order::note_acquiring(&self.meta, false);
        Some(self.guard(inner, tracked))
    }

    /// Like [`lock`](Mutex::lock), giving up with [`LockError::Timeout`] after `timeout`
    /// (Python: `acquire(timeout=...)`).
    #[inline]
    pub fn try_lock_for(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, LockError> {
        let tracked = lock_order::note_acquiring(&self.meta, true);
        match self.inner.try_lock() {
            Some(inner) => Ok(self.guard(inner, tracked)),
            None => self.lock_contended(Some(timeout), tracked),
        }
    }

    /// Whether some thread holds the lock now (Python: `locked()`).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Not part of the API: registers the calling thread as waiting for this lock, for the
    /// `compile_fail` check on [`WaitRegistration`]'s lifetime.
    #[doc(hidden)]
    pub fn __register_wait(&self) -> Result<Option<WaitRegistration<'_>>, LockError> {
        Ok(deadlock::register_wait(&self.meta)?)
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    #[inline]
    fn guard<'a>(
        &'a self,
        inner: parking_lot::MutexGuard<'a, T>,
        tracked: Tracked,
    ) -> MutexGuard<'a, T> {
        if detection_enabled() {
            self.meta.set_owner(current_ident());
        }
        MutexGuard {
            mutex: self,
            inner: ManuallyDrop::new(inner),
            tracked,
        }
    }

    /// The lock was held at the first try: back off as `parking_lot` does (spin, then yield)
    /// with plain try-locks; only if the lock stays taken through that does this thread
    /// register in the wait-for graph (and block).
    #[cold]
    #[inline(never)]
    fn lock_contended(
        &self,
        timeout: Option<Duration>,
        tracked: Tracked,
    ) -> Result<MutexGuard<'_, T>, LockError> {
        // Not `try_lock_for(ZERO)`: when its spin fails it marks the lock parked and parks
        // with an expired deadline, which sends the holder's unlock down the slow path.
        let mut backoff = parking_lot_core::SpinWait::new();
        while backoff.spin() {
            if let Some(inner) = self.inner.try_lock() {
                return Ok(self.guard(inner, tracked));
            }
        }
        self.lock_slow(timeout, tracked)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(
        &self,
        timeout: Option<Duration>,
        tracked: Tracked,
    ) -> Result<MutexGuard<'_, T>, LockError> {
        // The caller already tried, spun and yielded (`lock_contended`): the lock is really
        // contended, so register.
        #[cfg(feature = "trace")]
        let _wait = crate::trace::Wait::new("lock", || self.meta.name());
        let acquired = deadlock::register_wait(&self.meta)
            .map_err(LockError::from)
            .and_then(|registration| {
                let inner = match timeout {
                    None => self.inner.lock(),
                    Some(timeout) => {
                        self.inner
                            .try_lock_for(timeout)
                            .ok_or_else(|| LockError::Timeout {
                                lock: self.meta.name(),
                                timeout,
                            })?
                    }
                };
                Ok((registration, inner))
            });
        match acquired {
            Ok((Some(registration), inner)) => {
                registration.acquired(&self.meta);
                Ok(MutexGuard {
                    mutex: self,
                    inner: ManuallyDrop::new(inner),
                    tracked,
                })
            }
            Ok((None, inner)) => Ok(self.guard(inner, tracked)),
            Err(err) => {
                lock_order::note_released(&self.meta, tracked);
                Err(err)
            }
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("name", &self.meta.name())
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// Proof of holding a [`Mutex`]; the lock is released when this is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(crate) mutex: &'a Mutex<T>,
    /// Dropped by hand in `Drop`, so that the held-list bookkeeping runs after the release.
    pub(crate) inner: ManuallyDrop<parking_lot::MutexGuard<'a, T>>,
    tracked: Tracked,
}

impl<T: ?Sized> MutexGuard<'_, T> {
    /// Name of the lock this guard holds.
    pub fn lock_name(&self) -> String {
        self.mutex.name()
    }

    /// Clears the owner before the raw lock is released (by a condition wait).
    pub(crate) fn meta(&self) -> &LockMeta {
        &self.mutex.meta
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.meta.clear_owner_if_set();
        // SAFETY: `inner` is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        lock_order::note_released(&self.mutex.meta, self.tracked);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Python's `threading.Lock`: a plain lock guarding no data, released when its guard drops.
///
/// Unlike Python's, it must be released by the thread that took it (the guard is not `Send`).
///
/// ```python
/// lock = threading.Lock()
/// with lock:
///     ...
/// ```
/// ```
/// use threads_sync::Lock;
/// let lock = Lock::named("io");
/// {
///     let _held = lock.acquire()?;
///     assert!(lock.locked());
///     assert!(lock.try_acquire().is_none());
/// }
/// assert!(!lock.locked());
/// # Ok::<(), threads_sync::LockError>(())
/// ```
#[derive(Debug)]
pub struct Lock {
    inner: Mutex<()>,
}

/// Proof of holding a [`Lock`].
pub type LockGuard<'a> = MutexGuard<'a, ()>;

impl Lock {
    /// A new unlocked lock; its name in reports is `Mutex#<n>`. A `const fn`, so a lock can be
    /// a `static`, as Python's module-level `lock = threading.Lock()`:
    /// ```
    /// use threads_sync::Lock;
    /// static LOCK: Lock = Lock::new();
    /// let held = LOCK.acquire()?;
    /// assert!(LOCK.locked());
    /// drop(held);
    /// assert!(!LOCK.locked());
    /// # Ok::<(), threads_sync::LockError>(())
    /// ```
    pub const fn new() -> Self {
        Lock {
            inner: Mutex::new(()),
        }
    }

    /// A new unlocked lock that reports call `name` (a `const fn`, so
    /// `static G_NUM_LOCK: Lock = Lock::named("g_num");` works).
    pub const fn named(name: &'static str) -> Self {
        Lock {
            inner: Mutex::named(name, ()),
        }
    }

    /// Like [`named`](Lock::named), with a name built at run time.
    pub fn with_name(name: impl Into<String>) -> Self {
        Lock {
            inner: Mutex::with_name(name, ()),
        }
    }

    /// The name used in reports.
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// Blocks until acquired; [`LockError::Deadlock`] if waiting would close a cycle.
    pub fn acquire(&self) -> Result<LockGuard<'_>, LockError> {
        self.inner.lock()
    }

    /// Like [`acquire`](Lock::acquire), giving up after `timeout` with [`LockError::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError> {
        self.inner.try_lock_for(timeout)
    }

    /// Acquires only if free now (Python: `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        self.inner.try_lock()
    }

    /// Whether some thread holds the lock.
    pub fn locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

struct RState {
    owner: u64,
    count: usize,
    tracked: Option<Tracked>,
}

/// Python's `threading.RLock`: the owning thread may acquire it again; it is released when
/// every guard of the owner has been dropped. Deadlocks are reported as for [`Mutex`].
///
/// ```
/// use threads_sync::RLock;
/// let rlock = RLock::named("tree");
/// let outer = rlock.acquire()?;
/// let inner = rlock.acquire()?; // the same thread: no deadlock
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert_eq!(rlock.count(), 0);
/// # Ok::<(), threads_sync::LockError>(())
/// ```
pub struct RLock {
    meta: LockMeta,
    state: parking_lot::Mutex<RState>,
    released: parking_lot::Condvar,
}

impl RLock {
    /// A new unlocked re-entrant lock; its name in reports is `RLock#<n>` (a `const fn`).
    pub const fn new() -> Self {
        Self::with_meta(LockMeta::new(LockKind::RLock, None))
    }

    /// A new re-entrant lock that reports call `name` (a `const fn`).
    pub const fn named(name: &'static str) -> Self {
        Self::with_meta(LockMeta::new(LockKind::RLock, Some(Cow::Borrowed(name))))
    }

    /// Like [`named`](RLock::named), with a name built at run time.
    pub fn with_name(name: impl Into<String>) -> Self {
        Self::with_meta(LockMeta::new(
            LockKind::RLock,
            Some(Cow::Owned(name.into())),
        ))
    }

    const fn with_meta(meta: LockMeta) -> Self {
        RLock {
            meta,
            state: parking_lot::const_mutex(RState {
                owner: 0,
                count: 0,
                tracked: None,
            }),
            released: parking_lot::Condvar::new(),
        }
    }

    /// The name used in reports.
    pub fn name(&self) -> String {
        self.meta.name()
    }

    /// How many times the owner holds it (0 when free).
    pub fn count(&self) -> usize {
        self.state.lock().count
    }

    /// Blocks until acquired (at once if this thread owns it); [`LockError::Deadlock`] if
    /// waiting would close a cycle.
    pub fn acquire(&self) -> Result<RLockGuard<'_>, LockError> {
        match self.try_acquire() {
            Some(guard) => Ok(guard),
            None => self.acquire_slow(None),
        }
    }

    /// Like [`acquire`](RLock::acquire), giving up after `timeout` with [`LockError::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, LockError> {
        match self.try_acquire() {
            Some(guard) => Ok(guard),
            None => self.acquire_slow(Some(timeout)),
        }
    }

    /// Acquires only if free or already owned by this thread.
    pub fn try_acquire(&self) -> Option<RLockGuard<'_>> {
        let me = current_ident();
        let mut state = self.state.lock();
        if state.owner == me {
            state.count += 1;
        } else if state.owner == 0 {
            self.take(&mut state, me);
        } else {
            return None;
        }
        Some(RLockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    fn take(&self, state: &mut RState, me: u64) {
        state.owner = me;
        state.count = 1;
        self.meta.set_owner(me);
        state.tracked = Some(lock_order::note_acquiring(&self.meta, true));
    }

    #[cold]
    fn acquire_slow(&self, timeout: Option<Duration>) -> Result<RLockGuard<'_>, LockError> {
        let deadline = timeout.map(crate::deadline_after);
        let me = current_ident();
        #[cfg(feature = "trace")]
        let _wait = crate::trace::Wait::new("lock", || self.meta.name());
        let registration = deadlock::register_wait(&self.meta)?;
        let mut state = self.state.lock();
        while state.owner != 0 {
            match deadline {
                None => self.released.wait(&mut state),
                Some(deadline) => {
                    if self.released.wait_until(&mut state, deadline).timed_out()
                        && state.owner != 0
                    {
                        return Err(LockError::Timeout {
                            lock: self.meta.name(),
                            timeout: timeout.unwrap_or_default(),
                        });
                    }
                }
            }
        }
        self.take(&mut state, me);
        drop(state);
        drop(registration);
        Ok(RLockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }
}

impl Default for RLock {
    fn default() -> Self {
        RLock::new()
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("RLock")
            .field("name", &self.meta.name())
            .field("owner", &state.owner)
            .field("count", &state.count)
            .finish()
    }
}

/// One level of holding an [`RLock`]; the lock is free once all the owner's guards are dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// Must be dropped on the owning thread.
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let lock = self.lock;
        let mut state = lock.state.lock();
        state.count -= 1;
        if state.count == 0 {
            if let Some(tracked) = state.tracked.take() {
                lock_order::note_released(&lock.meta, tracked);
            }
            lock.meta.clear_owner();
            state.owner = 0;
            drop(state);
            lock.released.notify_one();
        }
    }
}
