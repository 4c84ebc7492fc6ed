//! The one building block of every process-wide primitive: a robust, process-shared pthread
//! mutex, a futex word to wait on, and a few words of state, in a shared block.
//!
//! Waiting is a futex on a sequence word, not a process-shared pthread condition variable:
//! glibc's condition variable counts its waiters, and one killed while waiting leaves a
//! later broadcast waiting for it for ever. A futex keeps no such count.
//!
//! "Robust" is the kernel's robust-futex list: when a process dies holding the mutex, the
//! kernel marks it, and the next locker gets `EOWNERDEAD` instead of waiting for ever. The
//! pid of the holder is kept beside the mutex so that the error can name it.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::SharedError;
use super::memory::SharedMemory;

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
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// Bumped by every notify; waiters sleep on it (a shared futex).
    seq: AtomicU32,
    kind: AtomicU32,
    /// The pid holding the mutex as a user-visible lock (0: none).
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
    /// Taken from a holder that died (pid, 0 if unknown); the mutex is consistent again.
    OwnerDied(u32),
}

/// A handle on a [`Cell`] at the start of a shared block.
#[derive(Clone)]
pub(crate) struct CellRef {
    mem: Arc<SharedMemory>,
}

impl CellRef {
    /// Makes a block of `CELL_SIZE + extra` bytes and sets its cell up as `kind`.
    pub(crate) fn create(kind: Kind, extra: usize) -> Result<Self, SharedError> {
        let mem = SharedMemory::create(CELL_SIZE + extra)?;
        let cell = mem.ptr_at(0) as *mut Cell;
        // SAFETY: the block is fresh, zeroed, page-aligned and CELL_SIZE + extra bytes long;
        // no other process knows its name yet, so initialising in place races with nothing.
        unsafe { init(cell, kind == Kind::RLock)? };
        // SAFETY: initialised just above.
        unsafe { &*cell }.kind.store(kind as u32, Ordering::Release);
        Ok(CellRef { mem: Arc::new(mem) })
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
        let this = CellRef { mem: Arc::new(mem) };
        let found = this.cell().kind.load(Ordering::Acquire);
        if found != kind as u32 {
            return Err(refused(format!("it holds kind {found}, not a {kind:?}")));
        }
        Ok(this)
    }

    pub(crate) fn name(&self) -> &str {
        self.mem.name()
    }

    /// The name, for sending: keeps the block attachable (see `SharedMemory`).
    pub(crate) fn name_for_transfer(&self) -> &str {
        self.mem.name_for_transfer()
    }

    pub(crate) fn cell(&self) -> &Cell {
        // SAFETY: the block starts with an initialised Cell (checked on attach, made on
        // create) and lives as long as `self.mem`.
        unsafe { &*(self.mem.ptr_at(0) as *const Cell) }
    }

    /// The bytes after the cell.
    pub(crate) fn extra(&self) -> *mut u8 {
        self.mem.ptr_at(CELL_SIZE)
    }

    /// Takes the mutex, waiting at most until `deadline` (`None`: no limit).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Locked, SharedError> {
        let mutex = self.cell().mutex.get();
        let code = match deadline {
            // SAFETY: `mutex` points at an initialised process-shared mutex.
            None => unsafe { libc::pthread_mutex_lock(mutex) },
            Some(deadline) => {
                // SAFETY: as above; the timespec is a valid absolute CLOCK_REALTIME time.
                unsafe { libc::pthread_mutex_timedlock(mutex, &realtime_deadline(deadline)) }
            }
        };
        match code {
            0 => Ok(Locked::Clean),
            libc::EOWNERDEAD => {
                let pid = self.cell().owner.swap(0, Ordering::Relaxed);
                // SAFETY: we hold the mutex (EOWNERDEAD hands it over); marking it consistent
                // is what makes it usable again.
                unsafe { libc::pthread_mutex_consistent(mutex) };
                Ok(Locked::OwnerDied(pid))
            }
            libc::ETIMEDOUT => Err(SharedError::Timeout(deadline.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            }))),
            code => Err(SharedError::from_code("pthread_mutex_lock", code)),
        }
    }

    /// Takes the mutex if it is free.
    pub(crate) fn try_lock(&self) -> Result<Option<Locked>, SharedError> {
        // SAFETY: an initialised process-shared mutex.
        match unsafe { libc::pthread_mutex_trylock(self.cell().mutex.get()) } {
            0 => Ok(Some(Locked::Clean)),
            libc::EBUSY => Ok(None),
            libc::EOWNERDEAD => {
                let pid = self.cell().owner.swap(0, Ordering::Relaxed);
                // SAFETY: we hold it; see `lock`.
                unsafe { libc::pthread_mutex_consistent(self.cell().mutex.get()) };
                Ok(Some(Locked::OwnerDied(pid)))
            }
            code => Err(SharedError::from_code("pthread_mutex_trylock", code)),
        }
    }

    /// Records this process as the holder (for `OwnerDied` reports).
    pub(crate) fn set_owner(&self) {
        self.cell().owner.store(my_pid(), Ordering::Relaxed);
    }

    /// Releases the mutex (the caller holds it).
    pub(crate) fn unlock(&self) {
        self.cell().owner.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the mutex.
        unsafe { libc::pthread_mutex_unlock(self.cell().mutex.get()) };
    }

    /// Releases the mutex, sleeps until a notify (or spuriously), and takes the mutex again;
    /// `false` if `deadline` passed first. The caller holds the mutex and re-checks its state.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        let seq = &self.cell().seq;
        // Read under the mutex: a notify after the unlock changes it, and the futex then
        // returns at once instead of sleeping through the wake-up.
        let seen = seq.load(Ordering::Acquire);
        self.unlock();
        let woke = futex_wait(seq, seen, deadline);
        // A holder that died meanwhile hands the mutex over consistent: carry on as holder.
        let _ = self.lock(None);
        woke
    }

    /// The mutex itself, for a recursive lock's inner unlocks.
    pub(crate) fn mutex_ptr(&self) -> *mut libc::pthread_mutex_t {
        self.cell().mutex.get()
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.notify(i32::MAX);
    }

    /// Wakes one waiter.
    pub(crate) fn notify_one(&self) {
        self.notify(1);
    }

    fn notify(&self, n: i32) {
        let seq = &self.cell().seq;
        seq.fetch_add(1, Ordering::Release);
        // SAFETY: FUTEX_WAKE on a word of a MAP_SHARED block (hence no PRIVATE flag); it
        // only wakes sleepers on that word.
        unsafe { libc::syscall(libc::SYS_futex, seq.as_ptr(), libc::FUTEX_WAKE, n) };
    }

    /// Takes the mutex for the primitive's own bookkeeping: a dead holder is no error there.
    pub(crate) fn lock_internal(&self, deadline: Option<Instant>) -> Result<(), SharedError> {
        self.lock(deadline).map(|_| ())
    }
}

/// Sets up the mutex (robust, process-shared, recursive if asked) of a zeroed cell.
///
/// # Safety
/// `cell` must point at zeroed, writable memory for a `Cell` that nothing else uses yet.
unsafe fn init(cell: *mut Cell, recursive: bool) -> Result<(), SharedError> {
    let check = |op, code: i32| match code {
        0 => Ok(()),
        code => Err(SharedError::from_code(op, code)),
    };
    // SAFETY (whole block): attribute objects live on this stack frame and are destroyed
    // after use; the mutex and cond pointers are inside the zeroed cell the caller owns.
    unsafe {
        let mut mattr: libc::pthread_mutexattr_t = std::mem::zeroed();
        check(
            "pthread_mutexattr_init",
            libc::pthread_mutexattr_init(&mut mattr),
        )?;
        check(
            "pthread_mutexattr_setpshared",
            libc::pthread_mutexattr_setpshared(&mut mattr, libc::PTHREAD_PROCESS_SHARED),
        )?;
        check(
            "pthread_mutexattr_setrobust",
            libc::pthread_mutexattr_setrobust(&mut mattr, libc::PTHREAD_MUTEX_ROBUST),
        )?;
        if recursive {
            check(
                "pthread_mutexattr_settype",
                libc::pthread_mutexattr_settype(&mut mattr, libc::PTHREAD_MUTEX_RECURSIVE),
            )?;
        }
        let made = libc::pthread_mutex_init(std::ptr::addr_of_mut!((*cell).mutex).cast(), &mattr);
        libc::pthread_mutexattr_destroy(&mut mattr);
        check("pthread_mutex_init", made)
    }
}

/// Sleeps while `word` still holds `seen`, at most until `deadline`; `false` on timeout.
fn futex_wait(word: &AtomicU32, seen: u32, deadline: Option<Instant>) -> bool {
    let timeout = deadline.map(|at| {
        let left = at.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        }
    });
    if timeout.is_some_and(|t| t.tv_sec == 0 && t.tv_nsec == 0) {
        return false;
    }
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT on a 4-byte-aligned word of a MAP_SHARED block, with a relative
    // timeout that lives through the call (or none).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            timeout_ptr,
        )
    };
    !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

static PID: AtomicU32 = AtomicU32::new(0);

/// This process's pid, cached (getpid is a system call, and the lock's fast path records it).
/// A fork child starts with the parent's cache, so `pthread_atfork` clears it there.
fn my_pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        extern "C" fn forget_pid() {
            PID.store(0, Ordering::Relaxed);
        }
        // SAFETY: registers a handler that only stores to an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

fn now(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

fn add(mut ts: libc::timespec, d: Duration) -> libc::timespec {
    ts.tv_sec = ts
        .tv_sec
        .saturating_add(d.as_secs().min(i64::MAX as u64 / 2) as libc::time_t);
    ts.tv_nsec += d.subsec_nanos() as libc::c_long;
    if ts.tv_nsec >= 1_000_000_000 {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1_000_000_000;
    }
    ts
}

fn realtime_deadline(deadline: Instant) -> libc::timespec {
    add(
        now(libc::CLOCK_REALTIME),
        deadline.saturating_duration_since(Instant::now()),
    )
}

/// The deadline `timeout` from now, or `None` for a timeout too large to matter.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
