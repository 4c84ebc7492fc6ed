//! The shared-memory ring under a [`Queue`](crate::Queue): records in a block that every
//! process holding a handle maps, with one robust process-wide lock for the writing side and
//! another for the reading side.
//!
//! Between the holder of the write lock and the holder of the read lock the ring is a
//! single-producer, single-consumer ring: the writer fills bytes past `tail` and publishes them
//! by moving `tail`; the reader consumes bytes before `tail` and frees them by moving `head`.
//! Neither side ever waits for the other's lock, so a feeder writing a batch and a reader
//! taking an item run at the same time.
//!
//! A record is an 8-byte header (payload length, kind) and its payload padded to 8 bytes;
//! records never wrap (a `PAD` record fills the end of the ring). A `BATCH` record carries
//! whole items, each its LEB128 length then its bytes (the feeder's chunk format, copied in one
//! piece); a reader takes one item per call (never more than it hands out), keeping where the
//! next item of the head record starts in `at` (one word, so a reader killed between two stores
//! never leaves a half-moved position). A small item that is not the last of its record is
//! claimed without the read lock, by a compare-exchange on `at` (see `read.rs`). An item too big for one record travels as `FIRST` (its
//! total length, then its first bytes), `MORE`..., `LAST`, written under one hold of the write
//! lock. Its reader takes the pieces as they come; if its call's deadline passes first it keeps
//! what it has in its handle and records its pid as the stream's `owner`: no other reader takes
//! the pieces while the owner lives (they wait, outside the read lock), and the owner's next
//! call goes on. A reader skips the pieces of an item whose owner died (at most that item is
//! lost), and pieces nobody started.
//!
//! Every word and length read from the block is untrusted (another process may have a memory
//! bug): `parse` checks each before use (see there), and a failed check is either one damaged
//! record skipped (`Next::Damaged`) or, when no known place is left to go on from, the ring
//! marked broken, in this handle and in the block (`broken`), so that every later call on it, in
//! any process, fails at once with [`RingError::Broken`] naming the check.
//!
//! Sleeping is a futex on a sequence word, with a count of sleepers so that the other side
//! pays for a wake-up only when someone sleeps (no pthread condition variable: glibc's waits
//! for ever for a waiter that was killed). Every sleep is at most a slice long, and never past
//! its call's deadline.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

mod ending;
pub(crate) mod frame;
pub(crate) mod parse;
mod peek;
mod read;
mod sleep;
#[cfg(test)]
mod tests;
mod write;

use self::ending::{Accepted, Ending, Tasks};
pub(crate) use self::ending::{Shutdown, TaskDone};
use self::parse::{BREAKING, Check};
pub(crate) use self::sleep::{WaitLimit, alive};
use self::sleep::{my_tid, take};
use crate::shared::{Lock, SharedError, SharedMemory};

#[cfg(feature = "test-fault")]
pub use peek::Scribble;

/// Putting handles (of all processes) that can be alive at once on one queue.
pub(crate) const SLOTS: usize = 256;
/// How often a sleeper looks whether the processes it waits for are still alive.
const SLICE: Duration = Duration::from_millis(50);
/// How long a reader that finds the ring empty keeps looking (yielding its CPU between looks)
/// before it sleeps: a putter that answers within it costs the reader no sleep and wake-up,
/// which on a VM whose other CPU is idle is tens of microseconds.
pub(crate) const LOOK_FOR: Duration = Duration::from_micros(30);
/// Items at least this big are decoded straight from the ring, never copied out first.
pub(crate) const BIG_ITEM: usize = 4 << 10;
/// Set in the read position word while a read-lock holder works: no reader claims an item
/// without the lock meanwhile (see `read.rs`).
const BUSY: u64 = 1 << 63;

const MAGIC: u64 = u64::from_le_bytes(*b"mt-queue");

#[repr(C, align(64))]
struct Fixed {
    magic: AtomicU64,
    cap: AtomicU64,
    /// 0: unbounded.
    maxsize: AtomicU64,
    limit: AtomicU64,
}

/// Written by the write-lock holder.
#[repr(C, align(64))]
struct WriteSide {
    tail: AtomicU64,
    /// The thread writing a multi-record item (0: none), so a reader waiting for the rest can
    /// tell that it died.
    stream: AtomicU32,
    /// Free bytes a writer sleeping for room waits for (readers wake it once there are).
    want: AtomicU64,
}

/// Written by the read-lock holder.
#[repr(C, align(64))]
struct ReadSide {
    head: AtomicU64,
    /// The pid of the process whose reader holds the start of a big item (0: none).
    owner: AtomicU32,
    /// 0, or 1 + the index in `parse::BREAKING` of the check that broke the ring.
    broken: AtomicU32,
}

/// Written at every item (by a reader's claim, or by the read-lock holder), on a line of its
/// own: the writers read `ReadSide` (the head) at every batch, and a store here then costs the
/// reader no trip for that line.
#[repr(C, align(64))]
struct ReadPos {
    /// Where the next item of the head record starts (an absolute position inside it; at or
    /// before `head`: at the start of its payload), and [`BUSY`] while a read-lock holder
    /// works (see `read.rs`). It only grows while anything is taken.
    at: AtomicU64,
    /// Items taken, counted as their record is freed (a batch's all at once, a big item as
    /// its first piece goes): with the items taken from the head record, what `qsize` takes
    /// off (see `Ring::queued`).
    got_items: AtomicU64,
}

/// A futex word bumped at every wake-up, and how many sleep on it.
#[repr(C, align(64))]
struct Wake {
    word: AtomicU32,
    sleepers: AtomicU32,
}

#[repr(C, align(64))]
struct Counts {
    /// Bounded queues: items accepted by `put` and not yet taken by a `get`.
    reserved: AtomicU64,
}

#[repr(C)]
struct Header {
    fixed: Fixed,
    write: WriteSide,
    read: ReadSide,
    pos: ReadPos,
    /// Readers sleep here for data.
    data: Wake,
    /// Writers (and bounded putters) sleep here for room.
    room: Wake,
    counts: Counts,
    /// Pid of the process holding each putting handle (0: free).
    slots: [AtomicU32; SLOTS],
    /// Items counted at `put` (added after the ring's first layout: new words go last).
    accepted: Accepted,
    /// Whether the queue was shut down.
    ending: Ending,
    /// `task_done` calls, and the joiners waiting for them.
    tasks: Tasks,
}

const HDR: usize = std::mem::size_of::<Header>().next_multiple_of(64);

/// What a reader got.
pub(crate) enum Next<R> {
    /// One item, decoded by the caller's function.
    One(R),
    /// A multi-record item was cut off (its putter died): only it is lost.
    Lost(&'static str),
    /// A record failed this check and was skipped: only what it held is lost.
    Damaged(Check),
    Empty,
    Timeout,
    /// No item, and no putting handle is alive.
    Disconnected,
}

/// Why a ring call failed.
#[derive(Debug)]
pub(crate) enum RingError {
    /// Taking one of the ring's locks failed.
    Lock(SharedError),
    /// The ring failed `check` and is broken: every later call on it fails the same way.
    Broken {
        /// The ring's block.
        ring: String,
        /// The check that failed.
        check: Check,
    },
    /// The queue was shut down: no more puts (and, for a waiting bounded put, no place).
    ShutDown,
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Lock(e) => e.fmt(f),
            RingError::Broken { ring, check } => write!(f, "ring {ring} is corrupt: {check}"),
            RingError::ShutDown => f.write_str("the queue was shut down"),
        }
    }
}

/// The start of a big item a reader of this process took, kept until its call (or a later
/// one) takes the rest.
pub(crate) struct Partial {
    total: u64,
    bytes: Vec<u8>,
}

/// What every handle on one ring in this process shares.
struct Own {
    mem: Arc<SharedMemory>,
    partial: Mutex<Option<Partial>>,
    /// Whether `partial` holds a big item's start: written only under the ring's read lock
    /// (whose acquire and release order it between this process's threads), so that a get
    /// with none to go on with takes its item without locking `partial`. A claim without the
    /// lock reads it too: a stale `false` there only lets it take a batch item where the rest
    /// of a big item should be, which the big item's holder then finds cut off anyway.
    partial_held: AtomicBool,
    /// A tail this process's readers saw (0: none yet). The tail only moves forward, so every
    /// record before any tail seen stays published: a reader reads the block's tail again only
    /// when the head reaches this one.
    tail_seen: AtomicU64,
    broken: OnceLock<Check>,
}

impl Drop for Own {
    fn drop(&mut self) {
        // The last handle of this process goes with the start of a big item: the item is lost
        // (its bytes were taken), and the other readers may skip its rest.
        if self.partial.get_mut().is_some() {
            let h = header(&self.mem);
            let _ = h.read.owner.compare_exchange(
                std::process::id(),
                0,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
            h.data.wake();
        }
    }
}

#[inline]
fn header(mem: &SharedMemory) -> &Header {
    // SAFETY: the block starts with a Header (sized on create, checked on attach), 64-byte
    // aligned; every field is an atomic, so shared access from any process is sound.
    unsafe { &*(mem.ptr_at(0) as *const Header) }
}

/// Where a block's header and records are mapped in this process (addresses, so that a
/// handle stays `Send` and `Sync`: every access through them is to atomics, or to the records
/// under the ring's rules).
#[derive(Clone, Copy)]
struct Addrs {
    header: usize,
    data: usize,
}

impl Addrs {
    fn of(mem: &SharedMemory) -> Addrs {
        Addrs {
            header: mem.ptr_at(0) as usize,
            data: mem.ptr_at(HDR) as usize,
        }
    }
}

/// A handle on one ring (cheap to clone).
#[derive(Clone)]
pub(crate) struct Ring {
    mem: Arc<SharedMemory>,
    own: Arc<Own>,
    rlock: Lock,
    wlock: Lock,
    cap: u64,
    /// Where the block's header and records start in this process (the mapping lives as long
    /// as `mem`), so the hot path does not ask the block again at every call.
    at: Addrs,
    /// The block's fixed words, read once (on create or attach) and never again: another
    /// process cannot change what this handle trusts.
    maxsize: u64,
    limit: u64,
}

impl Ring {
    /// A new ring of `cap` bytes of records (a power of two, at least 64 KiB).
    pub(crate) fn create(cap: usize, maxsize: usize, limit: usize) -> Result<Self, SharedError> {
        let cap = cap.max(64 << 10).next_power_of_two();
        let mem = Arc::new(SharedMemory::create(HDR + cap)?);
        let ring = Ring {
            own: Own::new(&mem),
            at: Addrs::of(&mem),
            mem,
            rlock: Lock::new()?,
            wlock: Lock::new()?,
            cap: cap as u64,
            maxsize: maxsize as u64,
            limit: limit as u64,
        };
        let f = &ring.hdr().fixed;
        f.cap.store(cap as u64, Ordering::Relaxed);
        f.maxsize.store(maxsize as u64, Ordering::Relaxed);
        f.limit.store(limit as u64, Ordering::Relaxed);
        f.magic.store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    /// Attaches to a ring made by [`create`](Self::create) in any process.
    pub(crate) fn attach(parts: RingParts) -> Result<Self, SharedError> {
        let name = parts.name;
        let mem = SharedMemory::attach(&name)?;
        let refused = |reason: &str| SharedError::Refused {
            name: name.clone(),
            reason: reason.into(),
        };
        if mem.size() < HDR + (64 << 10) {
            return Err(refused("too small for a queue"));
        }
        let mem = Arc::new(mem);
        let mut ring = Ring {
            own: Own::new(&mem),
            at: Addrs::of(&mem),
            mem,
            rlock: parts.rlock,
            wlock: parts.wlock,
            cap: 0,
            maxsize: 0,
            limit: 0,
        };
        let f = &ring.hdr().fixed;
        if f.magic.load(Ordering::Acquire) != MAGIC {
            return Err(refused("not a queue"));
        }
        let cap = f.cap.load(Ordering::Relaxed);
        if !cap.is_power_of_two() || cap as usize + HDR != ring.mem.size() {
            return Err(refused("its ring size does not match the block"));
        }
        let (maxsize, limit) = (
            f.maxsize.load(Ordering::Relaxed),
            f.limit.load(Ordering::Relaxed).min(u64::from(u32::MAX)),
        );
        ring.cap = cap;
        ring.maxsize = maxsize;
        ring.limit = limit;
        Ok(ring)
    }

    /// What a handle sends to another process to reach this ring.
    pub(crate) fn parts(&self) -> RingParts {
        RingParts {
            name: self.mem.name_for_transfer(),
            rlock: self.rlock.clone(),
            wlock: self.wlock.clone(),
        }
    }

    #[inline]
    fn hdr(&self) -> &Header {
        // SAFETY: as in `header`: `at.header` is where `mem`'s block (alive while `self` is)
        // starts.
        unsafe { &*(self.at.header as *const Header) }
    }

    #[inline]
    fn data(&self) -> *mut u8 {
        self.at.data as *mut u8
    }

    /// The ring's records, for reading (see `parse`: every length read from them is checked).
    #[inline]
    fn bytes(&self) -> &[u8] {
        // SAFETY: the block holds `cap` bytes of records after the header (checked on attach).
        // Other processes write them at any time: only bytes between `head` and `tail` are
        // trusted to stay put while `head` does (a claim checks that with `at`), and `parse`
        // reads every length once and checks it before use.
        unsafe { std::slice::from_raw_parts(self.data(), self.cap as usize) }
    }

    /// Which ring this is among this process's handles: the same for every clone of a handle
    /// (not for a second attach of the same block in one process).
    pub(crate) fn local_id(&self) -> usize {
        Arc::as_ptr(&self.own) as usize
    }

    /// The block's name, as errors report it.
    pub(crate) fn name(&self) -> &str {
        self.mem.name()
    }

    /// `Err(Broken)` if this handle, or any process, found the ring broken.
    #[inline]
    pub(crate) fn check_broken(&self) -> Result<(), RingError> {
        if let Some(&check) = self.own.broken.get() {
            return Err(self.broken_error(check));
        }
        match self.hdr().read.broken.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => {
                let check = BREAKING
                    .get(n as usize - 1)
                    .copied()
                    .unwrap_or("another process marked the ring broken");
                let _ = self.own.broken.set(check);
                Err(self.broken_error(check))
            }
        }
    }

    /// Marks the ring broken (here and in the block) by `check`; wakes every sleeper, who then
    /// sees it. Returns the error to report.
    #[cold]
    pub(crate) fn break_ring(&self, check: Check) -> RingError {
        let _ = self.own.broken.set(check);
        let code = BREAKING
            .iter()
            .position(|&c| c == check)
            .map_or(u32::MAX, |i| i as u32 + 1);
        let h = self.hdr();
        let _ = h
            .read
            .broken
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::Relaxed);
        h.data.wake_always();
        h.room.wake_always();
        self.broken_error(check)
    }

    fn broken_error(&self, check: Check) -> RingError {
        RingError::Broken {
            ring: self.name().into(),
            check,
        }
    }

    /// A bounded queue's `maxsize` (0: unbounded).
    #[inline]
    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize as usize
    }

    /// The largest item, serialized.
    pub(crate) fn limit(&self) -> usize {
        self.limit as usize
    }

    /// The largest payload of one record.
    fn frag(&self) -> usize {
        (self.cap / 4) as usize
    }

    // ---- readers and putters ----

    /// Takes a slot for a putting handle of process `pid`.
    pub(crate) fn register(&self, pid: u32) -> Result<usize, SharedError> {
        let slots = &self.hdr().slots;
        for pass in 0..2 {
            for (i, s) in slots.iter().enumerate() {
                let cur = s.load(Ordering::Relaxed);
                let free = cur == 0 || (pass == 1 && !alive(cur));
                if free
                    && s.compare_exchange(cur, pid, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(i);
                }
            }
        }
        Err(SharedError::Refused {
            name: self.mem.name().into(),
            reason: format!("more than {SLOTS} putting handles are alive at once"),
        })
    }

    /// Hands slot `i` over to process `pid` (a handle that arrived there).
    pub(crate) fn adopt(&self, i: usize, pid: u32) {
        if let Some(slot) = self.hdr().slots.get(i) {
            slot.store(pid, Ordering::SeqCst);
        }
    }

    /// Frees slot `i`: one putting handle fewer. Wakes the readers, who may now see the end.
    pub(crate) fn unregister(&self, i: usize) {
        self.hdr().slots[i].store(0, Ordering::SeqCst);
        self.hdr().data.wake_always();
    }

    /// Whether any putting handle is alive; `check` also frees the slots of dead processes.
    fn putters(&self, check: bool) -> bool {
        let mut any = false;
        for s in &self.hdr().slots {
            let pid = s.load(Ordering::SeqCst);
            if pid != 0 {
                if check && !alive(pid) {
                    let _ = s.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::Relaxed);
                } else {
                    any = true;
                }
            }
        }
        any
    }

    // ---- bounded queues ----

    /// Takes one place in a bounded queue; false if `wait` ran out first.
    pub(crate) fn reserve(&self, wait: WaitLimit) -> Result<bool, RingError> {
        let h = self.hdr();
        let max = self.maxsize;
        let reserved = &h.counts.reserved;
        loop {
            self.check_broken()?;
            let seen = h.room.prepare();
            if let Err(e) = self.ensure_open() {
                h.room.cancel();
                return Err(e);
            }
            let r = reserved.load(Ordering::SeqCst);
            if r > max {
                h.room.cancel();
                return Err(self.break_ring(BREAKING[7]));
            }
            if r < max {
                h.room.cancel();
                if reserved
                    .compare_exchange(r, r + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(true);
                }
                continue;
            }
            if wait.passed() {
                h.room.cancel();
                return Ok(false);
            }
            h.room.sleep(seen, wait.slice_end());
        }
    }

    /// Gives back a place taken by [`reserve`](Self::reserve) for an item never put.
    pub(crate) fn unreserve(&self) {
        let h = self.hdr();
        let _ = h
            .counts
            .reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1));
        h.room.wake();
    }

    /// Places taken in a bounded queue.
    pub(crate) fn reserved(&self) -> usize {
        self.hdr().counts.reserved.load(Ordering::Relaxed) as usize
    }
}

#[cfg(feature = "test-fault")]
impl Ring {
    /// Test only: the bytes written and not yet freed (tail - head), as the header says.
    pub(crate) fn used_bytes(&self) -> u64 {
        let h = self.hdr();
        let tail = h.write.tail.load(Ordering::SeqCst);
        tail.saturating_sub(h.read.head.load(Ordering::SeqCst))
    }

    /// Test only (the `test-fault` feature): adds `add` (wrapping) to one of the ring's header
    /// words, `"head"`, `"tail"`, `"shutdown"`, `"accepted"` or `"done"`, as a process with a
    /// memory bug might.
    pub(crate) fn scribble(&self, word: &str, add: u64) {
        let h = self.hdr();
        if word == "shutdown" {
            h.ending.state.fetch_add(add as u32, Ordering::SeqCst);
            return;
        }
        let target = match word {
            "head" => &h.read.head,
            "tail" => &h.write.tail,
            "accepted" => &h.accepted.count,
            "done" => &h.tasks.done,
            _ => return,
        };
        target.fetch_add(add, Ordering::SeqCst);
    }
}

impl Own {
    fn new(mem: &Arc<SharedMemory>) -> Arc<Own> {
        Arc::new(Own {
            mem: Arc::clone(mem),
            partial: Mutex::new(None),
            partial_held: AtomicBool::new(false),
            tail_seen: AtomicU64::new(0),
            broken: OnceLock::new(),
        })
    }
}

/// What travels to another process: the block's name and the two locks.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RingParts {
    name: String,
    rlock: Lock,
    wlock: Lock,
}
