//! A barrier for processes (Python's `multiprocessing.Barrier`) that a party's death breaks.
//!
//! The cell's words: `a` how many wait now, `b` why it is broken (0: it is not), `c` the
//! generation: its low half is bumped each time the parties go on, its high half by each
//! [`Barrier::reset`] (so a waiter woken by a change of `c` knows whether it passed or was
//! reset away), `d` the parties. After the cell, one
//! [`PartySlot`] per party: the pid and start time of the process that arrived with that index in
//! this generation, so that the others can tell whether it is still there. Python's barrier
//! counts a party killed while waiting as arrived, and the live ones go on without it; here
//! the last to arrive checks every recorded waiter before it lets them go, and every waiter
//! checks them each [`SLICE`] while it sleeps: a dead one breaks the barrier, and every wait
//! on it gets [`SharedError::BrokenBarrier`] naming the pid.
//!
//! After the slots, the [`Settings`] every handle shares: Python's `timeout=` and `action=`.
//! The action is a `fn()` (processes share code, not closures) and runs in the process of the
//! last party to arrive, under the barrier's lock, before any party goes on; a panic in it
//! breaks the barrier. While it runs, the last party is recorded in its slot like any waiter,
//! so that its death there breaks the barrier too, naming it.
//!
//! Everything read from the block is checked first (a count past the slots breaks the
//! barrier rather than index out of them). The action is never taken from the block alone:
//! a handle carries it (from `with_action`, or across processes as its offset in the same
//! executable, the way a process target travels), and it runs only if the block records the
//! same offset for the same executable; a mismatch breaks the barrier instead.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CellRef, Kind, deadline_after};
use super::error::SharedError;
use super::pid::my_pid;
use crate::sys;

/// How long a waiter sleeps between two looks at the other waiters' liveness.
const SLICE: Duration = Duration::from_millis(50);

/// `c`: the low half counts the rounds passed, the high half the resets.
const PASSES: u64 = 0xffff_ffff;
const RESET_STEP: u64 = 1 << 32;

/// `b`: aborted, or a wait timed out.
const BROKEN: u64 = 1;
/// `b`: a party died waiting; its pid is in the high half.
const DIED: u64 = 2;

/// Who arrived with one index: pid (0: nobody) and start time (in clock ticks since boot, as
/// `/proc/<pid>/stat` gives it; 0 if unknown), so that a reused pid is not taken for the
/// party.
#[repr(C)]
struct PartySlot {
    pid: AtomicU64,
    start: AtomicU64,
}

const SLOT: usize = std::mem::size_of::<PartySlot>();

/// What every handle shares, after the slots.
#[repr(C)]
struct Settings {
    /// Python's `timeout=`: 0 for none, else the nanoseconds plus 1 (saturated).
    timeout: AtomicU64,
    /// The action's offset from the anchor in its executable (see `sys::offset_of`).
    action: AtomicU64,
    /// 0: no action; else the fingerprint of the executable `action` is an offset in.
    action_exe: AtomicU64,
    _spare: AtomicU64,
}

const SETTINGS: usize = std::mem::size_of::<Settings>();

/// A barrier for processes (Python's `multiprocessing.Barrier`): `parties` waiters meet, then
/// all go on. A party that dies while it waits breaks it, where Python's would let the others
/// go on as if it had come.
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
///
/// Python's `Barrier(parties, action=None, timeout=None)` is
/// `Barrier::new(parties)?.with_action(f).with_timeout(t)`; the action runs in the process of
/// the last party to arrive:
/// ```
/// use process_ipc::Barrier;
/// use std::time::Duration;
///
/// fn announce() {
///     println!("all here");
/// }
/// let barrier = Barrier::new(1)?
///     .with_action(announce)
///     .with_timeout(Duration::from_secs(5));
/// assert_eq!(barrier.timeout(), Some(Duration::from_secs(5)));
/// assert_eq!(barrier.wait()?, 0); // prints "all here" first
/// # Ok::<(), process_ipc::SharedError>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    cell: CellRef,
    /// The action, if this handle was given it or received it with the barrier.
    action: Option<fn()>,
}

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
        let cell = CellRef::create(Kind::Barrier, parties as usize * SLOT + SETTINGS)?;
        cell.cell().d.store(u64::from(parties), Ordering::Release);
        Ok(Barrier { cell, action: None })
    }

    /// Runs `action` once per round, in the process of the last party to arrive, before any
    /// party goes on (Python's `action=`). A panicking action breaks the barrier: that party
    /// gets [`SharedError::ActionPanicked`], the others [`SharedError::BrokenBarrier`]. It runs
    /// under the barrier's lock, as Python's does: it must not wait at this barrier.
    ///
    /// The action is a plain `fn()` (a named function, or a closure that captures nothing):
    /// another process runs the same code but gets nothing captured. Give it before the
    /// barrier is cloned or sent: a handle made earlier does not have it, and a last party
    /// arriving with such a handle breaks the barrier (with [`SharedError::Refused`]) instead
    /// of passing without the action.
    pub fn with_action(mut self, action: fn()) -> Self {
        if let Some(settings) = self.settings() {
            settings
                .action
                .store(sys::offset_of(action as usize) as u64, Ordering::Relaxed);
            settings
                .action_exe
                .store(exe_fingerprint(), Ordering::Release);
        }
        self.action = Some(action);
        self
    }

    /// The timeout of every [`wait`](Barrier::wait) on this barrier, from any handle in any
    /// process (Python's `timeout=`); a wait that runs out of it breaks the barrier as
    /// [`wait_timeout`](Barrier::wait_timeout) does.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        if let Some(settings) = self.settings() {
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            settings
                .timeout
                .store(nanos.saturating_add(1), Ordering::Release);
        }
        self
    }

    /// The default timeout given by [`with_timeout`](Barrier::with_timeout), if any.
    pub fn timeout(&self) -> Option<Duration> {
        let word = self.settings()?.timeout.load(Ordering::Acquire);
        (word != 0).then(|| Duration::from_nanos(word - 1))
    }

    /// How many must wait before all go on.
    pub fn parties(&self) -> u32 {
        self.cell.cell().d.load(Ordering::Relaxed) as u32
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.cell.cell().a.load(Ordering::Acquire) as u32
    }

    /// Whether it was aborted, a wait on it timed out, or a party died waiting.
    pub fn broken(&self) -> bool {
        self.cell.cell().b.load(Ordering::Acquire) != 0
    }

    /// Waits for the others (at most the default timeout, if one was given); this waiter's
    /// index (0 to parties - 1, `parties - 1` for the last to arrive) once all have come.
    ///
    /// # Errors
    /// [`SharedError::BrokenBarrier`] if the barrier is or becomes broken (the default
    /// timeout running out breaks it), naming the party whose death broke it if that is what
    /// did; [`SharedError::ActionPanicked`] for the last party if the action panicked.
    pub fn wait(&self) -> Result<u32, SharedError> {
        self.wait_until(self.timeout().and_then(deadline_after))
    }

    /// As [`wait`](Barrier::wait), at most `timeout` (instead of the default); a timeout
    /// breaks the barrier, as in Python.
    ///
    /// # Errors
    /// [`SharedError::BrokenBarrier`] on timeout, abort or a party's death;
    /// [`SharedError::ActionPanicked`] as for `wait`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, SharedError> {
        self.wait_until(deadline_after(timeout))
    }

    /// Breaks the barrier: every waiter, now and later, gets `BrokenBarrier`.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn abort(&self) -> Result<(), SharedError> {
        self.cell.lock_internal(None)?;
        self.broken_now(BROKEN);
        Ok(())
    }

    /// Returns the barrier to its first state, empty and not broken, so that it can be used
    /// again (Python's `reset()`); any party waiting at it now gets
    /// [`SharedError::BrokenBarrier`] (with no `dead_party`), as in Python. A barrier broken
    /// by a timeout, an [`abort`](Barrier::abort) or a party's death is usable again after it.
    ///
    /// As in Python, resetting while parties may still arrive needs care: one that comes just
    /// after the reset counts towards the next round.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the internal mutex fails.
    pub fn reset(&self) -> Result<(), SharedError> {
        self.cell.lock_internal(None)?;
        let words = self.cell.cell();
        for index in 0..u64::from(self.parties()) {
            if let Some(slot) = self.slot(index) {
                slot.pid.store(0, Ordering::Relaxed);
                slot.start.store(0, Ordering::Relaxed);
            }
        }
        words.a.store(0, Ordering::Relaxed);
        words.b.store(0, Ordering::Relaxed);
        let c = words.c.load(Ordering::Relaxed);
        words
            .c
            .store((c & !PASSES).wrapping_add(RESET_STEP), Ordering::Release);
        self.cell.unlock_and_notify(i32::MAX);
        Ok(())
    }

    /// The slot for arrival `index`, if the block has one.
    fn slot(&self, index: u64) -> Option<&PartySlot> {
        let slots = (self.cell.extra_len().saturating_sub(SETTINGS) / SLOT) as u64;
        (index < slots).then(|| {
            // SAFETY: the block holds `slots` slots after the cell (64-byte aligned, so
            // aligned for a Slot), all atomics, valid for any bits, as long as `self.cell`.
            unsafe { &*(self.cell.extra() as *const PartySlot).add(index as usize) }
        })
    }

    /// The settings after the slots, if the block has room for them.
    fn settings(&self) -> Option<&Settings> {
        let len = self.cell.extra_len();
        let at = len.checked_sub(SETTINGS)?;
        (at % std::mem::align_of::<Settings>() == 0).then(|| {
            // SAFETY: `at + SETTINGS <= len` bytes after the (64-byte aligned) cell, at an
            // aligned offset; all atomics, valid for any bits, as long as `self.cell`.
            unsafe { &*(self.cell.extra().add(at) as *const Settings) }
        })
    }

    /// Runs the action, if the barrier has one, as the last party (arrival `index`, holding
    /// the internal lock). On failure the barrier is broken and the lock released.
    fn run_action(&self, index: u64) -> Result<(), SharedError> {
        let recorded = self.settings().and_then(|settings| {
            (settings.action_exe.load(Ordering::Acquire) != 0)
                .then(|| settings.action.load(Ordering::Relaxed))
        });
        let action = match (recorded, self.action) {
            (None, None) => return Ok(()),
            (Some(offset), Some(action)) if offset == sys::offset_of(action as usize) as u64 => {
                action
            }
            _ => {
                let _ = self.broken_now(BROKEN);
                return Err(SharedError::Refused {
                    name: self.cell.name().to_string(),
                    reason: "this handle's action is not the barrier's (a handle made before \
                             with_action, or a scribbled block): the barrier is broken"
                        .into(),
                });
            }
        };
        let words = self.cell.cell();
        // Recorded as a waiter while the action runs: its death there breaks the barrier.
        if let Some(slot) = self.slot(index) {
            slot.start.store(my_start_time(), Ordering::Relaxed);
            slot.pid.store(u64::from(my_pid()), Ordering::Relaxed);
        }
        words.a.store(index + 1, Ordering::Release);
        let ran = catch_unwind(AssertUnwindSafe(action));
        words.a.store(index, Ordering::Relaxed);
        if let Some(slot) = self.slot(index) {
            slot.pid.store(0, Ordering::Relaxed);
        }
        ran.map_err(|payload| {
            let _ = self.broken_now(BROKEN);
            SharedError::ActionPanicked {
                message: sys::panic_message(&*payload),
            }
        })
    }

    /// Marks the barrier broken for `why` (unless it is already), wakes every waiter and
    /// releases the internal lock, which the caller holds; the error a waiter gets for it.
    fn broken_now(&self, why: u64) -> SharedError {
        let words = self.cell.cell();
        if words.b.load(Ordering::Relaxed) == 0 {
            words.b.store(why, Ordering::Release);
        }
        let err = broken_error(words.b.load(Ordering::Relaxed));
        self.cell.notify_all();
        self.cell.unlock();
        err
    }

    /// The pid of a party recorded among the first `count` arrivals of this generation that
    /// has died since, if any (the caller holds the internal lock).
    fn dead_waiter(&self, count: u64) -> Option<u32> {
        let me = my_pid();
        (0..count).find_map(|index| {
            let slot = self.slot(index)?;
            let pid = u32::try_from(slot.pid.load(Ordering::Relaxed)).ok()?;
            if pid == 0 || pid == me {
                return None;
            }
            (!alive(pid, slot.start.load(Ordering::Relaxed))).then_some(pid)
        })
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, SharedError> {
        self.cell.lock_internal(deadline)?;
        let words = self.cell.cell();
        let why = words.b.load(Ordering::Relaxed);
        if why != 0 {
            self.cell.unlock();
            return Err(broken_error(why));
        }
        let parties = words.d.load(Ordering::Relaxed);
        let generation = words.c.load(Ordering::Relaxed);
        let index = words.a.load(Ordering::Relaxed);
        if index >= parties || self.slot(index).is_none() {
            // Not a count this barrier can have: scribbled on.
            return Err(self.broken_now(BROKEN));
        }
        if index + 1 == parties {
            if let Some(pid) = self.dead_waiter(index) {
                return Err(self.broken_now(died(pid)));
            }
            self.run_action(index)?;
            for earlier in 0..index {
                if let Some(slot) = self.slot(earlier) {
                    slot.pid.store(0, Ordering::Relaxed);
                }
            }
            words.a.store(0, Ordering::Relaxed);
            let c = words.c.load(Ordering::Relaxed);
            let passed = (c & !PASSES) | (c.wrapping_add(1) & PASSES);
            words.c.store(passed, Ordering::Release);
            self.cell.notify_all();
            self.cell.unlock();
            return Ok(index as u32);
        }
        // The slot before the count: one that reads the count sees the slot filled, and a
        // death between the two leaves a slot the next arrival overwrites.
        if let Some(slot) = self.slot(index) {
            slot.start.store(my_start_time(), Ordering::Relaxed);
            slot.pid.store(u64::from(my_pid()), Ordering::Relaxed);
        }
        words.a.store(index + 1, Ordering::Release);
        let mut next_look = Instant::now() + SLICE;
        loop {
            let now_c = words.c.load(Ordering::Relaxed);
            if now_c & !PASSES != generation & !PASSES {
                // Reset while this party waited: Python's waiters get BrokenBarrierError.
                self.cell.unlock();
                return Err(SharedError::BrokenBarrier { dead_party: None });
            }
            if now_c != generation {
                self.cell.unlock();
                return Ok(index as u32);
            }
            let why = words.b.load(Ordering::Relaxed);
            if why != 0 {
                self.cell.unlock();
                return Err(broken_error(why));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                words.a.fetch_sub(1, Ordering::Relaxed);
                return Err(self.broken_now(BROKEN));
            }
            if now >= next_look {
                let waiting = words.a.load(Ordering::Relaxed).min(parties);
                if let Some(pid) = self.dead_waiter(waiting) {
                    return Err(self.broken_now(died(pid)));
                }
                next_look = now + SLICE;
            }
            let until = deadline.map_or(next_look, |d| d.min(next_look));
            self.cell.wait(Some(until));
        }
    }
}

fn died(pid: u32) -> u64 {
    DIED | (u64::from(pid) << 32)
}

/// The error for a barrier broken for `why` (a `b` word).
fn broken_error(why: u64) -> SharedError {
    SharedError::BrokenBarrier {
        dead_party: (why & DIED != 0).then_some((why >> 32) as u32),
    }
}

/// Whether process `pid`, started at `start` (clock ticks since boot; 0: unknown), is still
/// running: not gone, not a zombie, and not another process that took the pid since. When
/// `/proc` will not say (hidden by its mount options), it is taken to be alive.
fn alive(pid: u32, start: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match parse_stat(&stat) {
            Some((state, started)) => {
                !matches!(state, 'Z' | 'X' | 'x') && (start == 0 || started == start)
            }
            None => true,
        },
        Err(e) => e.kind() != std::io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// The state letter and start time of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name (field 2) may hold spaces and parentheses: the fields after it start
    // after the last ')'. The state is field 3, the start time field 22.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(18)?.parse().ok()?;
    Some((state, started))
}

/// This process's start time (clock ticks since boot; 0 if `/proc` will not say), read once
/// per process (a fork child reads its own).
fn my_start_time() -> u64 {
    static CACHED: AtomicU64 = AtomicU64::new(0);
    let pid = u64::from(my_pid());
    let cached = CACHED.load(Ordering::Relaxed);
    // pid in the high half, start time (well under 2^32 ticks: years) in the low.
    if cached >> 32 == pid && cached != 0 {
        return cached & 0xffff_ffff;
    }
    let start = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(0, |(_, started)| started);
    if start <= 0xffff_ffff {
        CACHED.store((pid << 32) | start, Ordering::Relaxed);
        start
    } else {
        0
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let action = self
            .action
            .map(|action| sys::offset_of(action as usize) as u64);
        (self.cell.name_for_transfer(), action).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, action) = <(String, Option<u64>)>::deserialize(deserializer)?;
        let cell =
            CellRef::attach_any_extra(&name, Kind::Barrier).map_err(serde::de::Error::custom)?;
        let parties = cell.cell().d.load(Ordering::Acquire);
        let refused = |reason: String| {
            serde::de::Error::custom(SharedError::Refused {
                name: name.clone(),
                reason,
            })
        };
        if parties == 0
            || parties > u64::from(u32::MAX)
            || cell.extra_len() as u64 != parties * SLOT as u64 + SETTINGS as u64
        {
            return Err(refused(format!(
                "a barrier of {parties} parties with {} bytes of slots and settings",
                cell.extra_len()
            )));
        }
        let mut barrier = Barrier { cell, action: None };
        if let Some(offset) = action {
            barrier.action = Some(barrier.trusted_action(offset).map_err(refused)?);
        }
        Ok(barrier)
    }
}

impl Barrier {
    /// The action at `offset`, received with this barrier, if the block records the same
    /// offset in this very executable (so it is the entry of the `fn()` the creator gave).
    fn trusted_action(&self, offset: u64) -> Result<fn(), String> {
        let settings = self
            .settings()
            .ok_or_else(|| "no room for the settings".to_string())?;
        let exe = settings.action_exe.load(Ordering::Acquire);
        let recorded = settings.action.load(Ordering::Relaxed);
        let mine = exe_fingerprint();
        if exe == 0 || mine == 0 || exe != mine || recorded != offset {
            return Err(format!(
                "the action received (offset {offset:#x}) is not the one the barrier records \
                 (offset {recorded:#x}) for this executable"
            ));
        }
        let address = sys::address_at(offset as isize);
        // SAFETY: the block (made by a process of this same executable, `exe_fingerprint`)
        // and the handle agree that the action is at `offset` from the anchor, where
        // `with_action` measured a `fn()`; the same executable has the same code at the same
        // offset from the anchor in every process.
        Ok(unsafe { std::mem::transmute::<usize, fn()>(address) })
    }
}

/// This executable's identity (device, inode, size, modification time of `/proc/self/exe`),
/// hashed; never 0, or 0 when `/proc` will not say (then no action is trusted).
fn exe_fingerprint() -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    static FINGERPRINT: OnceLock<u64> = OnceLock::new();
    *FINGERPRINT.get_or_init(|| match std::fs::metadata("/proc/self/exe") {
        Ok(meta) => {
            // `DefaultHasher::new` has fixed keys: the same in every process of this executable.
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (
                meta.dev(),
                meta.ino(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
            )
                .hash(&mut hasher);
            hasher.finish() | 1
        }
        Err(_) => 0,
    })
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("name", &self.cell.name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_whatever_the_command_name() {
        let line = "42 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(line), Some(('S', 777)));
        assert_eq!(parse_stat("42 (x"), None);
        assert!(alive(my_pid(), my_start_time()));
        assert!(
            !alive(my_pid(), my_start_time() + 1),
            "another start: a reused pid"
        );
    }
}
