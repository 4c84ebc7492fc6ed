//! A barrier for processes (Python's `multiprocessing.Barrier`) that a party's death breaks.
//!
//! The cell's words: `a` how many wait now, `b` why it is broken (0: it is not), `c` the
//! generation: its low half is bumped each time the parties go on, its high half by each
//! [`Barrier::reset`] (so a waiter woken by a change of `c` knows whether it passed or was
//! reset away), `d` the parties. After the cell, one
//! [`Slot`] per party: the pid and start time of the process that arrived with that index in
//! this generation, so that the others can tell whether it is still there. Python's barrier
//! counts a party killed while waiting as arrived, and the live ones go on without it; here
//! the last to arrive checks every recorded waiter before it lets them go, and every waiter
//! checks them each [`SLICE`] while it sleeps: a dead one breaks the barrier, and every wait
//! on it gets [`SharedError::BrokenBarrier`] naming the pid.
//!
//! Everything read from the block is checked first (a count past the slots breaks the
//! barrier rather than index out of them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CellRef, Kind, deadline_after};
use super::error::SharedError;
use super::pid::my_pid;

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
struct Slot {
    pid: AtomicU64,
    start: AtomicU64,
}

const SLOT: usize = std::mem::size_of::<Slot>();

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
#[derive(Clone)]
pub struct Barrier {
    cell: CellRef,
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
        let cell = CellRef::create(Kind::Barrier, parties as usize * SLOT)?;
        cell.cell().d.store(u64::from(parties), Ordering::Release);
        Ok(Barrier { cell })
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

    /// Waits for the others; this waiter's index (0 to parties - 1) once all have come.
    ///
    /// # Errors
    /// [`SharedError::BrokenBarrier`] if the barrier is or becomes broken, naming the party
    /// whose death broke it if that is what did.
    pub fn wait(&self) -> Result<u32, SharedError> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait), at most `timeout`; a timeout breaks the barrier, as in
    /// Python.
    ///
    /// # Errors
    /// [`SharedError::BrokenBarrier`] on timeout, abort or a party's death.
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
    fn slot(&self, index: u64) -> Option<&Slot> {
        let slots = (self.cell.extra_len() / SLOT) as u64;
        (index < slots).then(|| {
            // SAFETY: the block holds `slots` slots after the cell (64-byte aligned, so
            // aligned for a Slot), all atomics, valid for any bits, as long as `self.cell`.
            unsafe { &*(self.cell.extra() as *const Slot).add(index as usize) }
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
        serializer.serialize_str(&self.cell.name_for_transfer())
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let cell =
            CellRef::attach_any_extra(&name, Kind::Barrier).map_err(serde::de::Error::custom)?;
        let parties = cell.cell().d.load(Ordering::Acquire);
        if parties == 0
            || parties > u64::from(u32::MAX)
            || cell.extra_len() as u64 != parties * SLOT as u64
        {
            return Err(serde::de::Error::custom(SharedError::Refused {
                name,
                reason: format!(
                    "a barrier of {parties} parties with {} bytes of slots",
                    cell.extra_len()
                ),
            }));
        }
        Ok(Barrier { cell })
    }
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
