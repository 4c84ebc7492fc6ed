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
//! piece); a reader takes one item per call (never more than it hands out), keeping the offset inside the head record in
//! `sub`. An item too big for one record travels as `FIRST` (its total length, then its first
//! bytes), `MORE`..., `LAST`, written under one hold of the write lock and read under one hold
//! of the read lock. A reader skips every record that cannot start an item, which is how the
//! rest of an item whose reader died is dropped.
//!
//! Sleeping is a futex on a sequence word, with a count of sleepers so that the other side
//! pays for a wake-up only when someone sleeps (no pthread condition variable: glibc's waits
//! for ever for a waiter that was killed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) mod frame;
mod read;
mod write;

use crate::shared::{Lock, LockGuard, SharedError, SharedMemory};

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

const BATCH: u32 = 1;
const FIRST: u32 = 2;
const MORE: u32 = 3;
const LAST: u32 = 4;
const PAD: u32 = 5;
const REC: usize = 8;
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
    /// Items published (for `qsize`).
    put_items: AtomicU64,
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
    /// Bytes of the head record's payload already taken.
    sub: AtomicU64,
    /// Items taken (for `qsize`).
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
    /// Readers sleep here for data.
    data: Wake,
    /// Writers (and bounded putters) sleep here for room.
    room: Wake,
    counts: Counts,
    /// Pid of the process holding each putting handle (0: free).
    slots: [AtomicU32; SLOTS],
}

const HDR: usize = std::mem::size_of::<Header>().next_multiple_of(64);

/// How long a call may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Forever,
    Until(Instant),
    No,
}

impl Wait {
    fn passed(self) -> bool {
        match self {
            Wait::Forever => false,
            Wait::Until(at) => Instant::now() >= at,
            Wait::No => true,
        }
    }

    /// The end of the next sleep: the deadline or one slice from now, whichever is first.
    fn slice_end(self) -> Instant {
        let slice = Instant::now() + SLICE;
        match self {
            Wait::Until(at) => at.min(slice),
            _ => slice,
        }
    }
}

/// What a reader got.
pub(crate) enum Next<R> {
    /// One item, decoded by the caller's function.
    One(R),
    /// A multi-record item was cut off (its putter died): only it is lost.
    Lost(&'static str),
    Empty,
    Timeout,
    /// No item, and no putting handle is alive.
    Disconnected,
}

/// A handle on one ring (cheap to clone).
#[derive(Clone)]
pub(crate) struct Ring {
    mem: Arc<SharedMemory>,
    rlock: Lock,
    wlock: Lock,
    cap: u64,
    /// The block's fixed words, read once (on create or attach) and never again: another
    /// process cannot change what this handle trusts.
    maxsize: u64,
    limit: u64,
}

/// This thread's kernel id (cached).
fn my_tid() -> u32 {
    thread_local! {
        // SAFETY: gettid takes no arguments and cannot fail.
        static TID: u32 = unsafe { libc::syscall(libc::SYS_gettid) as u32 };
    }
    TID.with(|t| *t)
}

/// Whether thread or process `id` still runs (a zombie does not).
pub(crate) fn alive(id: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{id}/stat")) else {
        return false;
    };
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2).copied());
    !matches!(state, None | Some(b'Z' | b'X' | b'x'))
}

fn rec_size(len: usize) -> u64 {
    (REC + len.next_multiple_of(8)) as u64
}

impl Wake {
    /// Wakes every sleeper, if there is one.
    fn wake(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake_always();
        }
    }

    fn wake_always(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        crate::shared::futex_wake(&self.word, i32::MAX);
    }

    /// Registers a sleeper and reads the word: call `sleep` with what it returns, after
    /// checking the condition again (a wake-up in between makes the sleep return at once).
    fn prepare(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        self.word.load(Ordering::SeqCst)
    }

    /// Sleeps (see `prepare`); false if it woke by time.
    fn sleep(&self, seen: u32, until: Instant) -> bool {
        let woke = crate::shared::futex_wait(&self.word, seen, Some(until));
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        woke
    }

    fn cancel(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes `lock`, carrying on past a holder that died (the ring's own state needs no repair:
/// see the module notes). `None` when `wait` ran out.
fn take(lock: &Lock, wait: Wait) -> Result<Option<LockGuard<'_>>, SharedError> {
    loop {
        let got = match wait {
            Wait::Forever => lock.acquire().map(Some),
            // A free lock is taken without reading the clock.
            Wait::Until(at) => match lock.try_acquire() {
                Ok(None) => lock
                    .acquire_timeout(at.saturating_duration_since(Instant::now()))
                    .map(Some),
                other => other,
            },
            Wait::No => lock.try_acquire(),
        };
        match got {
            Err(SharedError::OwnerDied { .. }) => continue,
            Err(SharedError::Timeout(_)) => return Ok(None),
            other => return other,
        }
    }
}

impl Ring {
    /// A new ring of `cap` bytes of records (a power of two, at least 64 KiB).
    pub(crate) fn create(cap: usize, maxsize: usize, limit: usize) -> Result<Self, SharedError> {
        let cap = cap.max(64 << 10).next_power_of_two();
        let mem = SharedMemory::create(HDR + cap)?;
        let ring = Ring {
            mem: Arc::new(mem),
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
        let mut ring = Ring {
            mem: Arc::new(mem),
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
            name: self.mem.name_for_transfer().to_string(),
            rlock: self.rlock.clone(),
            wlock: self.wlock.clone(),
        }
    }

    #[inline]
    fn hdr(&self) -> &Header {
        // SAFETY: the block starts with a Header (sized on create, checked on attach), 64-byte
        // aligned; every field is an atomic, so shared access from any process is sound.
        unsafe { &*(self.mem.ptr_at(0) as *const Header) }
    }

    fn data(&self) -> *mut u8 {
        self.mem.ptr_at(HDR)
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

    fn rec_at(&self, pos: u64) -> (usize, u32) {
        let off = (pos & (self.cap - 1)) as usize;
        let mut head = [0u8; REC];
        // SAFETY: `off + REC <= cap` (records are 8-aligned and never wrap), inside the block.
        unsafe { std::ptr::copy_nonoverlapping(self.data().add(off), head.as_mut_ptr(), REC) };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        (len.min(self.frag()), kind)
    }

    /// The payload of the published record at `pos`.
    fn payload_at(&self, pos: u64, len: usize) -> &[u8] {
        let off = (pos & (self.cap - 1)) as usize + REC;
        // SAFETY: a published record lies inside the ring (its length was capped at `frag`
        // by `rec_at`, and records never wrap); the caller holds the read lock, and no writer
        // touches published bytes until `head` moves past them.
        unsafe { std::slice::from_raw_parts(self.data().add(off), len) }
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
    pub(crate) fn reserve(&self, wait: Wait) -> bool {
        let h = self.hdr();
        let max = self.maxsize;
        let reserved = &h.counts.reserved;
        loop {
            let seen = h.room.prepare();
            let r = reserved.load(Ordering::SeqCst);
            if r < max {
                h.room.cancel();
                if reserved
                    .compare_exchange(r, r + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if wait.passed() {
                h.room.cancel();
                return false;
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

    /// Items published and not yet taken (approximate while others work).
    pub(crate) fn items(&self) -> usize {
        let h = self.hdr();
        let got = h.read.got_items.load(Ordering::Relaxed);
        let put = h.write.put_items.load(Ordering::Relaxed);
        put.saturating_sub(got) as usize
    }
}

/// What travels to another process: the block's name and the two locks.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RingParts {
    name: String,
    rlock: Lock,
    wlock: Lock,
}
