//! The one building block of every process-wide primitive: a robust lock (see
//! [`super::futex`]), a futex word to wait on, and a few words of state, in a shared block.
//!
//! Waiting is a futex on a sequence word, not a process-shared pthread condition variable:
//! glibc's condition variable counts its waiters, and one killed while waiting leaves a
//! later broadcast waiting for it for ever. A futex keeps no such count.
//!
//! "Robust" is the kernel's robust-futex list: when a process dies holding the lock, the
//! kernel marks it, and the next locker learns so instead of waiting for ever. The pid of the
//! holder is kept beside the lock so that the error can name it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::SharedError;
use super::futex::{futex_wait, futex_wake};
use super::memory::{SharedMemory, check_size};
use super::pid::my_pid;
use super::robust::{RobustWord, Taken};

/// Which primitive a cell belongs to, checked when a handle arrives in another process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Event = 3,
    Semaphore = 4,
    Condition = 5,
    Barrier = 6,
    Value = 7,
}

/// The state in shared memory. Word meanings depend on the [`Kind`].
#[repr(C, align(64))]
pub(crate) struct Cell {
    lock: RobustWord,
    /// Bumped by every notify; waiters sleep on it (a shared futex).
    seq: AtomicU32,
    kind: AtomicU32,
    /// The pid holding the lock as a user-visible lock (0: none).
    owner: AtomicU32,
    /// Recursion depth of an RLock.
    pub(crate) depth: AtomicU32,
    pub(crate) a: AtomicU64,
    pub(crate) b: AtomicU64,
    pub(crate) c: AtomicU64,
    pub(crate) d: AtomicU64,
}

/// Bytes a cell takes at the start of a block.
pub(crate) const CELL_SIZE: usize = std::mem::size_of::<Cell>();

/// What `lock` found.
pub(crate) enum Locked {
    /// Taken normally.
    Clean,
    /// Taken from a holder that died (pid, 0 if unknown); this caller holds it now.
    OwnerDied(u32),
}

/// A handle on a [`Cell`] at the start of a shared block.
#[derive(Clone)]
pub(crate) struct CellRef {
    /// The cell at the start of `mem`.
    cell: std::ptr::NonNull<Cell>,
    mem: Arc<SharedMemory>,
}

// SAFETY: a CellRef is an Arc of a mapping (Send and Sync) and a pointer into that mapping to
// a Cell, whose fields are all atomics.
unsafe impl Send for CellRef {}
// SAFETY: as for Send.
unsafe impl Sync for CellRef {}

impl CellRef {
    /// Makes a block of `CELL_SIZE + extra` bytes and sets its cell up as `kind`.
    pub(crate) fn create(kind: Kind, extra: usize) -> Result<Self, SharedError> {
        let mem = SharedMemory::create(check_size(CELL_SIZE as u128 + extra as u128)?)?;
        let cell = mem.ptr_at(0) as *const Cell;
        // SAFETY: the block is fresh, zeroed (a free lock and zero words: a valid Cell, all
        // atomics), page-aligned and CELL_SIZE + extra bytes long.
        unsafe { &*cell }.kind.store(kind as u32, Ordering::Release);
        Ok(CellRef::new(mem))
    }

    /// Attaches to the cell of the block `name`, which must be a `kind` of `CELL_SIZE + extra`.
    pub(crate) fn attach(name: &str, kind: Kind, extra: usize) -> Result<Self, SharedError> {
        let mem = SharedMemory::attach(name)?;
        let refused = |reason: String| SharedError::Refused {
            name: name.to_string(),
            reason,
        };
        if mem.size() != CELL_SIZE + extra {
            return Err(refused(format!(
                "{} bytes, where this type needs {}",
                mem.size(),
                CELL_SIZE + extra
            )));
        }
        let this = CellRef::new(mem);
        let found = this.cell().kind.load(Ordering::Acquire);
        if found != kind as u32 {
            return Err(refused(format!("it holds kind {found}, not a {kind:?}")));
        }
        Ok(this)
    }

    /// Attaches to the cell of the block `name`, which must be a `kind` of any size from
    /// `CELL_SIZE` up: the caller checks [`extra_len`](CellRef::extra_len) against what the
    /// cell says.
    pub(crate) fn attach_any_extra(name: &str, kind: Kind) -> Result<Self, SharedError> {
        let mem = SharedMemory::attach(name)?;
        let refused = |reason: String| SharedError::Refused {
            name: name.to_string(),
            reason,
        };
        if mem.size() < CELL_SIZE {
            return Err(refused(format!(
                "{} bytes, where this type needs at least {CELL_SIZE}",
                mem.size()
            )));
        }
        let this = CellRef::new(mem);
        let found = this.cell().kind.load(Ordering::Acquire);
        if found != kind as u32 {
            return Err(refused(format!("it holds kind {found}, not a {kind:?}")));
        }
        Ok(this)
    }

    /// The block the cell is in (for views of the bytes after the cell).
    pub(crate) fn memory(&self) -> Arc<SharedMemory> {
        Arc::clone(&self.mem)
    }

    /// How many bytes follow the cell.
    pub(crate) fn extra_len(&self) -> usize {
        self.mem.size() - CELL_SIZE
    }

    fn new(mem: SharedMemory) -> Self {
        let cell = std::ptr::NonNull::new(mem.ptr_at(0).cast::<Cell>()).expect("a mapping");
        CellRef {
            cell,
            mem: Arc::new(mem),
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.mem.name()
    }

    /// The name, for sending: keeps the block attachable (see `SharedMemory`).
    pub(crate) fn name_for_transfer(&self) -> String {
        self.mem.name_for_transfer()
    }

    #[inline]
    pub(crate) fn cell(&self) -> &Cell {
        // SAFETY: the block starts with an initialised Cell (checked on attach, made on
        // create) and lives as long as `self.mem`.
        unsafe { self.cell.as_ref() }
    }

    /// The bytes after the cell.
    pub(crate) fn extra(&self) -> *mut u8 {
        self.mem.ptr_at(CELL_SIZE)
    }

    /// Takes the lock, waiting at most until `deadline` (`None`: no limit).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Locked, SharedError> {
        let taken = self.cell().lock.lock(deadline)?;
        Ok(self.locked(taken))
    }

    /// Takes the lock if it is free and its last holder did not die (see
    /// `RobustWord::lock_free`), recording this process as the holder.
    #[inline]
    pub(crate) fn lock_free(&self) -> bool {
        if self.cell().lock.lock_free() {
            self.set_owner();
            return true;
        }
        false
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Result<Option<Locked>, SharedError> {
        Ok(self.cell().lock.try_lock()?.map(|taken| self.locked(taken)))
    }

    #[inline]
    fn locked(&self, taken: Taken) -> Locked {
        match taken {
            Taken::Clean => Locked::Clean,
            Taken::OwnerDied => Locked::OwnerDied(self.cell().owner.swap(0, Ordering::Relaxed)),
        }
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        self.cell().lock.held_by_me()
    }

    /// Who holds the lock now, as `(pid, thread id)`: `None` if it is free. A snapshot (it
    /// may change at once); the pid is 0 for the instant between the take and its record.
    pub(crate) fn holder(&self) -> Option<(u32, u32)> {
        let tid = self.cell().lock.holder_tid();
        (tid != 0).then(|| (self.cell().owner.load(Ordering::Relaxed), tid))
    }

    /// Records this process as the holder (for `OwnerDied` reports).
    #[inline]
    pub(crate) fn set_owner(&self) {
        self.cell().owner.store(my_pid(), Ordering::Relaxed);
    }

    /// Releases the lock (the caller holds it).
    #[inline]
    pub(crate) fn unlock(&self) {
        self.cell().owner.store(0, Ordering::Relaxed);
        self.cell().lock.unlock();
    }

    /// Releases the lock, sleeps until a notify (or spuriously), and takes the lock again;
    /// `false` if `deadline` passed first. The caller holds the lock and re-checks its state.
    ///
    /// For the primitives' own bookkeeping: a holder that died meanwhile is no error there
    /// (see [`wait_reporting`](CellRef::wait_reporting)).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        self.wait_reporting(deadline).0
    }

    /// As [`wait`](CellRef::wait), and the pid of a holder that died holding the lock while
    /// this thread was away from it (0 if it died before recording its pid): the lock is
    /// this caller's again either way, consistent.
    pub(crate) fn wait_reporting(&self, deadline: Option<Instant>) -> (bool, Option<u32>) {
        let seq = &self.cell().seq;
        // Read under the lock: a notify after the unlock changes it, and the futex then
        // returns at once instead of sleeping through the wake-up.
        let seen = seq.load(Ordering::Acquire);
        self.unlock();
        let woke = futex_wait(seq, seen, deadline);
        // A holder that died meanwhile hands the lock over: carry on as holder. (`lock`
        // without a deadline fails only if this thread's robust list cannot be found, which
        // it was when the lock was first taken.)
        let died = match self.lock(None) {
            Ok(Locked::OwnerDied(pid)) => Some(pid),
            _ => None,
        };
        (woke, died)
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.notify(i32::MAX);
    }

    /// Wakes one waiter.
    pub(crate) fn notify_one(&self) {
        self.notify(1);
    }

    /// Releases the lock, then wakes up to `n` waiters: a waiter woken after the release
    /// finds the lock free, instead of waking into a lock still held and sleeping again.
    /// (A waiter reads the sequence word under the lock, so the bump made under it is never
    /// missed.)
    pub(crate) fn unlock_and_notify(&self, n: i32) {
        let seq = &self.cell().seq;
        seq.fetch_add(1, Ordering::Release);
        self.unlock();
        futex_wake(seq, n);
    }

    fn notify(&self, n: i32) {
        let seq = &self.cell().seq;
        seq.fetch_add(1, Ordering::Release);
        futex_wake(seq, n);
    }

    /// Takes the lock for the primitive's own bookkeeping: a dead holder is no error there.
    pub(crate) fn lock_internal(&self, deadline: Option<Instant>) -> Result<(), SharedError> {
        self.lock(deadline).map(|_| ())
    }
}

impl Drop for CellRef {
    fn drop(&mut self) {
        // A guard leaked with `mem::forget` leaves the lock held and its entry on a thread's
        // robust list, which the kernel and libc go on reading and writing: the block must
        // then stay mapped, and never be handed out again.
        let cell = self.cell();
        if Arc::strong_count(&self.mem) == 1
            && cell.lock.is_held()
            && cell.owner.load(Ordering::Relaxed) == my_pid()
        {
            std::mem::forget(Arc::clone(&self.mem));
        }
    }
}

/// The deadline `timeout` from now, or `None` for a timeout too large to matter.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
