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
//! piece); readers take them one at a time, keeping the offset inside the head record in
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

use super::frame::{read_len, write_padded_len};
use crate::shared::{Lock, LockGuard, SharedError, SharedMemory};

/// Putting handles (of all processes) that can be alive at once on one queue.
pub(crate) const SLOTS: usize = 256;
/// How often a sleeper looks whether the processes it waits for are still alive.
const SLICE: Duration = Duration::from_millis(50);
/// A lone reader copies out at most this many bytes of small items per visit.
const BATCH_BYTES: usize = 256 << 10;
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
    /// Handles that have read (a killed process's stay counted: that only turns batching off).
    readers: AtomicU32,
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
    /// This many small items appended to the caller's buffer, framed as in a chunk.
    Batch(usize),
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

/// Sleeps while `word` holds `seen`, until `until` at the latest; false if the time ran out.
fn futex_wait(word: &AtomicU32, seen: u32, until: Instant) -> bool {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return false;
    }
    let ts = libc::timespec {
        tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a 4-byte-aligned word of a MAP_SHARED block (hence no PRIVATE
    // flag), with a relative timeout that lives through the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
        )
    };
    !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
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
        // SAFETY: FUTEX_WAKE on a word of a MAP_SHARED block; it only wakes its sleepers.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
            )
        };
    }

    /// Registers a sleeper and reads the word: call `sleep` with what it returns, after
    /// checking the condition again (a wake-up in between makes the sleep return at once).
    fn prepare(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        self.word.load(Ordering::SeqCst)
    }

    /// Sleeps (see `prepare`); false if it woke by time.
    fn sleep(&self, seen: u32, until: Instant) -> bool {
        let woke = futex_wait(&self.word, seen, until);
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
            Wait::Until(at) => lock
                .acquire_timeout(at.saturating_duration_since(Instant::now()))
                .map(Some),
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
        };
        let f = &ring.hdr().fixed;
        if f.magic.load(Ordering::Acquire) != MAGIC {
            return Err(refused("not a queue"));
        }
        let cap = f.cap.load(Ordering::Relaxed);
        if !cap.is_power_of_two() || cap as usize + HDR != ring.mem.size() {
            return Err(refused("its ring size does not match the block"));
        }
        ring.cap = cap;
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

    fn hdr(&self) -> &Header {
        // SAFETY: the block starts with a Header (sized on create, checked on attach), 64-byte
        // aligned; every field is an atomic, so shared access from any process is sound.
        unsafe { &*(self.mem.ptr_at(0) as *const Header) }
    }

    fn data(&self) -> *mut u8 {
        self.mem.ptr_at(HDR)
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.hdr().fixed.maxsize.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn limit(&self) -> usize {
        self.hdr().fixed.limit.load(Ordering::Relaxed) as usize
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

    /// One more handle reads from this queue.
    pub(crate) fn add_reader(&self) {
        self.hdr().read.readers.fetch_add(1, Ordering::Relaxed);
    }

    /// One reading handle fewer.
    pub(crate) fn drop_reader(&self) {
        self.hdr().read.readers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether only one handle has ever read and is still counted.
    pub(crate) fn lone_reader(&self) -> bool {
        self.hdr().read.readers.load(Ordering::Relaxed) <= 1
    }

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
        let max = h.fixed.maxsize.load(Ordering::Relaxed);
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

    // ---- writing (holding the write lock) ----

    /// Room for a record of `len` payload bytes at `tail` (with the pad it may need).
    fn fits(&self, tail: u64, len: usize) -> bool {
        let head = self.hdr().read.head.load(Ordering::SeqCst);
        let off = tail & (self.cap - 1);
        let rec = rec_size(len);
        let need = rec
            + if off + rec > self.cap {
                self.cap - off
            } else {
                0
            };
        self.cap - (tail - head) >= need
    }

    /// Waits until a record of `len` payload bytes fits at `tail`. A writer that must sleep
    /// asks for a quarter of the ring at least, so that readers wake it once per few records
    /// instead of at every one.
    fn wait_room(&self, tail: u64, len: usize) {
        let h = self.hdr();
        while !self.fits(tail, len) {
            let want = (rec_size(len) + self.cap / 4).min(self.cap);
            h.write.want.store(want, Ordering::SeqCst);
            let seen = h.room.prepare();
            if self.fits(tail, len) {
                h.room.cancel();
                return;
            }
            h.room.sleep(seen, Instant::now() + SLICE);
        }
    }

    /// Writes one record at `tail` (it fits) and publishes it; returns the new tail.
    fn append(&self, mut tail: u64, kind: u32, parts: &[&[u8]]) -> u64 {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let off = tail & (self.cap - 1);
        if off + rec_size(len) > self.cap {
            self.write_head(off, (self.cap - off) as usize - REC, PAD);
            tail += self.cap - off;
        }
        let off = (tail & (self.cap - 1)) as usize;
        let mut at = off + REC;
        for p in parts {
            // SAFETY: the record fits between `off` and `cap` (checked by `fits`), and bytes
            // past `tail` belong to no reader.
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.data().add(at), p.len()) };
            at += p.len();
        }
        self.write_head(off as u64, len, kind);
        let tail = tail + rec_size(len);
        self.hdr().write.tail.store(tail, Ordering::SeqCst);
        self.hdr().data.wake();
        tail
    }

    fn write_head(&self, off: u64, len: usize, kind: u32) {
        let mut head = [0u8; REC];
        head[..4].copy_from_slice(&(len as u32).to_le_bytes());
        head[4..].copy_from_slice(&kind.to_le_bytes());
        // SAFETY: `off + REC <= cap`, at or past the tail: ours to write.
        unsafe { std::ptr::copy_nonoverlapping(head.as_ptr(), self.data().add(off as usize), REC) };
    }

    /// Appends the items of `framed` (each its LEB128 length and its bytes, `count` of them),
    /// in order, waiting for room as long as it takes. Runs of small items are copied in one
    /// piece per record.
    pub(crate) fn write_framed(&self, framed: &[u8], count: usize) -> Result<(), SharedError> {
        let _g = take(&self.wlock, Wait::Forever)?;
        let h = self.hdr();
        let frag = self.frag();
        let mut tail = h.write.tail.load(Ordering::Relaxed);
        let (mut pos, mut left) = (0usize, count);
        while left > 0 && pos < framed.len() {
            // The longest run of whole items that fits one record.
            let (start, mut n) = (pos, 0u64);
            while left > 0 {
                let Some((len, head)) = read_len(&framed[pos..]) else {
                    left = 0;
                    break;
                };
                if pos + head + len - start > frag {
                    break;
                }
                pos += head + len;
                left -= 1;
                n += 1;
            }
            if n > 0 {
                let run = &framed[start..pos];
                self.wait_room(tail, run.len());
                tail = self.append(tail, BATCH, &[run]);
                h.write.put_items.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            // One item too big for a record: FIRST, MORE..., LAST.
            let Some((len, head)) = read_len(&framed[pos..]) else {
                break;
            };
            let item = &framed[pos + head..pos + head + len];
            pos += head + len;
            left -= 1;
            tail = self.write_stream(tail, item);
        }
        Ok(())
    }

    /// Whether a writer (or a bounded putter) sleeps for room now.
    pub(crate) fn writer_waits_for_room(&self) -> bool {
        self.hdr().room.sleepers.load(Ordering::SeqCst) > 0
    }

    /// Writes one item straight into the ring, if the write lock is free and the ring has
    /// room at its tail: `encode` serializes it into the region it is given and returns its
    /// length (`None` if it did not fit, or failed: the caller then takes its buffered path).
    /// Returns the item's length once it is published.
    pub(crate) fn put_direct(
        &self,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        const LEN: usize = 5;
        let _g = take(&self.wlock, Wait::No).ok()??;
        let h = self.hdr();
        let tail = h.write.tail.load(Ordering::Relaxed);
        let head = h.read.head.load(Ordering::SeqCst);
        let off = tail & (self.cap - 1);
        let contiguous = (self.cap - off).min(self.cap - (tail - head)) as usize;
        let room = contiguous
            .min(self.frag() + REC)
            .checked_sub(REC + LEN + 8)?;
        if room < 64 {
            return None;
        }
        let at = off as usize + REC + LEN;
        // SAFETY: `at + room` lies inside the ring before `cap` and inside its free part
        // (past `tail`, before `head + cap`), which belongs to the write-lock holder alone.
        let region = unsafe { std::slice::from_raw_parts_mut(self.data().add(at), room) };
        let n = encode(region)?;
        if n > room {
            return None;
        }
        let mut len = [0u8; LEN];
        write_padded_len(&mut len, 0, n);
        // SAFETY: the five bytes before the item, inside the same free region.
        unsafe { std::ptr::copy_nonoverlapping(len.as_ptr(), self.data().add(at - LEN), LEN) };
        self.write_head(off, LEN + n, BATCH);
        h.write
            .tail
            .store(tail + rec_size(LEN + n), Ordering::SeqCst);
        h.write.put_items.fetch_add(1, Ordering::Relaxed);
        h.data.wake();
        Some(n)
    }

    fn write_stream(&self, mut tail: u64, item: &[u8]) -> u64 {
        let h = self.hdr();
        let frag = self.frag();
        let total = (item.len() as u64).to_le_bytes();
        let first = (frag - total.len()).min(item.len());
        h.write.stream.store(my_tid(), Ordering::SeqCst);
        self.wait_room(tail, frag);
        tail = self.append(tail, FIRST, &[&total, &item[..first]]);
        h.write.put_items.fetch_add(1, Ordering::Relaxed);
        let mut rest = &item[first..];
        while !rest.is_empty() {
            let n = rest.len().min(frag);
            self.wait_room(tail, n);
            let kind = if n == rest.len() { LAST } else { MORE };
            tail = self.append(tail, kind, &[&rest[..n]]);
            rest = &rest[n..];
        }
        if item.len() == first {
            tail = self.append(tail, LAST, &[]);
        }
        h.write.stream.store(0, Ordering::SeqCst);
        h.data.wake();
        tail
    }

    // ---- reading (holding the read lock) ----

    /// Moves the read position to `sub` inside the record at `head` (past it at its end) and
    /// counts `items` taken.
    fn advance(&self, head: u64, rec_len: usize, sub: usize, items: u64) {
        let h = self.hdr();
        if sub >= rec_len {
            h.read.sub.store(0, Ordering::Relaxed);
            h.read
                .head
                .store(head + rec_size(rec_len), Ordering::SeqCst);
        } else {
            h.read.sub.store(sub as u64, Ordering::Relaxed);
        }
        if items > 0 {
            h.read.got_items.fetch_add(items, Ordering::Relaxed);
            if h.fixed.maxsize.load(Ordering::Relaxed) > 0 {
                let _ = h
                    .counts
                    .reserved
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                        Some(r.saturating_sub(items))
                    });
                // A bounded putter may wait for this place.
                h.room.wake();
                return;
            }
        }
        // A writer waiting for room: only once what it asked for is free.
        let used = h.write.tail.load(Ordering::SeqCst) - h.read.head.load(Ordering::SeqCst);
        if self.cap - used >= h.write.want.load(Ordering::SeqCst) {
            h.room.wake();
        }
    }

    /// Takes the next item. With `batch`, a run of small items at the head is appended to it
    /// instead (framed) and counted in [`Next::Batch`]; otherwise (and for a big item) the item
    /// is handed to `decode` where it lies.
    pub(crate) fn next<R>(
        &self,
        wait: Wait,
        mut batch: Option<&mut Vec<u8>>,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Next<R>, SharedError> {
        let Some(_g) = take(&self.rlock, wait)? else {
            return Ok(match wait {
                Wait::No => Next::Empty,
                _ => Next::Timeout,
            });
        };
        let h = self.hdr();
        let mut check = false;
        loop {
            let head = h.read.head.load(Ordering::Relaxed);
            if head < h.write.tail.load(Ordering::Acquire) {
                let (len, kind) = self.rec_at(head);
                match kind {
                    BATCH => {
                        let payload = self.payload_at(head, len);
                        let sub = (h.read.sub.load(Ordering::Relaxed) as usize).min(len);
                        let Some((n, hd)) =
                            read_len(&payload[sub..]).filter(|&(n, hd)| sub + hd + n <= len)
                        else {
                            // A malformed record: drop the rest of it.
                            self.advance(head, len, len, 0);
                            continue;
                        };
                        if let Some(buf) = batch.as_deref_mut() {
                            if n < BIG_ITEM {
                                let (mut end, mut count) = (sub, 0u64);
                                while end < len && end - sub < BATCH_BYTES {
                                    match read_len(&payload[end..]) {
                                        Some((n, hd)) if n < BIG_ITEM && end + hd + n <= len => {
                                            end += hd + n;
                                            count += 1;
                                        }
                                        _ => break,
                                    }
                                }
                                buf.extend_from_slice(&payload[sub..end]);
                                self.advance(head, len, end, count);
                                return Ok(Next::Batch(count as usize));
                            }
                        }
                        let item = &payload[sub + hd..sub + hd + n];
                        // Advances even if `decode` panics: the item is this reader's.
                        let _step = Step {
                            ring: self,
                            head,
                            len,
                            sub: sub + hd + n,
                        };
                        return Ok(Next::One(decode(item)));
                    }
                    FIRST => {
                        let got = self.read_stream(head, len);
                        drop(_g);
                        return Ok(match got {
                            Ok(item) => Next::One(decode(&item)),
                            Err(why) => Next::Lost(why),
                        });
                    }
                    // Padding, or the rest of an item whose reader died: nobody's item.
                    _ => {
                        self.advance(head, len, len, 0);
                        continue;
                    }
                }
            }
            let seen = h.data.prepare();
            if head < h.write.tail.load(Ordering::SeqCst) {
                h.data.cancel();
                continue;
            }
            if !self.putters(check) {
                h.data.cancel();
                return Ok(Next::Disconnected);
            }
            if matches!(wait, Wait::No) {
                h.data.cancel();
                return Ok(Next::Empty);
            }
            if wait.passed() {
                h.data.cancel();
                return Ok(Next::Timeout);
            }
            check = !h.data.sleep(seen, wait.slice_end());
        }
    }

    /// Reads a multi-record item whose `FIRST` record (`len` bytes) is at `head`.
    fn read_stream(&self, head: u64, len: usize) -> Result<Vec<u8>, &'static str> {
        const CUT: &str = "its putting process died in the middle of it";
        let h = self.hdr();
        let p = self.payload_at(head, len);
        let total = p
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let limit = h.fixed.limit.load(Ordering::Relaxed);
        if len < 8 || total > limit {
            self.advance(head, len, len, 1);
            return Err("its header was damaged");
        }
        let mut item = Vec::with_capacity(total as usize);
        item.extend_from_slice(&p[8..]);
        self.advance(head, len, len, 1);
        let mut check = false;
        loop {
            let head = h.read.head.load(Ordering::Relaxed);
            let seen = h.data.prepare();
            if head < h.write.tail.load(Ordering::SeqCst) {
                h.data.cancel();
                let (len, kind) = self.rec_at(head);
                match kind {
                    PAD => self.advance(head, len, len, 0),
                    MORE | LAST => {
                        item.extend_from_slice(self.payload_at(head, len));
                        self.advance(head, len, len, 0);
                        if kind == LAST {
                            return Ok(item);
                        }
                    }
                    // A new item where the rest of ours should be: ours was cut off.
                    _ => return Err(CUT),
                }
                continue;
            }
            let writer = h.write.stream.load(Ordering::SeqCst);
            if writer == 0 || (check && !alive(writer)) {
                h.data.cancel();
                if head < h.write.tail.load(Ordering::SeqCst) {
                    continue; // the last record came just now
                }
                return Err(CUT);
            }
            check = !h.data.sleep(seen, Instant::now() + SLICE);
        }
    }
}

/// Moves the read position past one item when dropped (also during a panic in `decode`).
struct Step<'a> {
    ring: &'a Ring,
    head: u64,
    len: usize,
    sub: usize,
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.ring.advance(self.head, self.len, self.sub, 1);
    }
}

/// What travels to another process: the block's name and the two locks.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RingParts {
    name: String,
    rlock: Lock,
    wlock: Lock,
}
