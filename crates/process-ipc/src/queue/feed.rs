//! The feeder: `put` serializes an item into this process's buffer at once (so errors show up
//! at the call), and one thread per putting handle moves the buffer into the queue's ring in
//! chunks, as Python's `multiprocessing.Queue` does with its pipe. A child process waits for
//! its feeders to drain before it reports its return value, and every process gives them a
//! while at exit, so nothing put is lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ring_error;
use crate::error::QueueError;
use crate::ring::frame::{count_items, write_len, write_long_len, write_padded_len};
use crate::ring::{BIG_ITEM, LOOK_FOR, Ring, Shutdown};
use crate::{start::child, wire};

/// Items are packed into chunks of about this many bytes before they are moved.
const CHUNK_BYTES: usize = 1 << 20;
/// A chunk smaller than this, found on waking, waits one yield for more.
const SMALL_CHUNK: usize = 4 << 10;
/// How often a putter waiting for the feeder looks again whether it is stuck.
const PROGRESS_POLL: Duration = Duration::from_millis(1);
/// The longest a putter waits for the feeder before it queues behind it anyway.
const PROGRESS_MAX: Duration = Duration::from_millis(100);
/// Moved chunks kept for reuse.
const SPARE_CHUNKS: usize = 2;

/// At process exit (after `main` returns or `std::process::exit`), gives the feeders up to
/// this long to move what was put, as Python joins its feeder threads at exit.
const EXIT_FLUSH: Duration = Duration::from_secs(10);

/// Where a feeder moves its chunks of framed items: the queue's ring ([`RingSink`]), or a
/// manager's connection (each chunk one call there).
pub(crate) trait Sink: Send + 'static {
    /// Moves `count` items, each framed as [`crate::ring::frame`] frames them (a LEB128 length,
    /// then the item's bytes). An error drops them and breaks the feed: later puts fail with it.
    fn write_framed(&mut self, framed: &[u8], count: usize) -> Result<(), QueueError>;

    /// Called when the feeder has nothing left to move, before it sleeps: a sink that moves
    /// asynchronously (a manager's connection) finishes here what it left in flight.
    fn idle(&mut self) {}

    /// The feeder dropped `n` items put without moving them (the sink failed): a sink that
    /// counts items at `put` forgets them.
    fn dropped(&mut self, _n: usize) {}
}

/// The ring as a feeder's sink; it holds the handle's putter slot until the feeder drains.
struct RingSink {
    ring: Ring,
    _slot: Arc<PutterSlot>,
}

impl Sink for RingSink {
    fn write_framed(&mut self, framed: &[u8], count: usize) -> Result<(), QueueError> {
        // After an immediate shutdown what was put is dropped, not moved (Python drops what
        // is in the queue); items moved while it happens are dropped by the next get or join.
        if self.ring.shutdown_state().map_err(ring_error)? == Shutdown::Immediate {
            self.ring.forget(count as u64);
            return Ok(());
        }
        self.ring.write_framed(framed, count).map_err(ring_error)
    }

    fn dropped(&mut self, n: usize) {
        self.ring.forget(n as u64);
    }
}

/// One putting handle's place in the ring's table of putters: while it is held (by the handle,
/// then by its feeder until it has drained) readers of an empty queue wait for more items.
pub(crate) struct PutterSlot {
    pub(crate) ring: Ring,
    pub(crate) index: usize,
}

impl Drop for PutterSlot {
    fn drop(&mut self) {
        self.ring.unregister(self.index);
    }
}

/// A value on a cache line of its own, so that a counter one thread writes does not slow down
/// another thread writing its neighbour.
#[repr(align(64))]
struct Line<T>(T);

/// The feeder's state shared with `put` and `flush`.
pub(crate) struct Feed {
    /// The ring it moves items into ([`Ring::local_id`]; 0 for another sink).
    ring: usize,
    /// parking_lot's lock, which spins with back-off before it sleeps: several threads of a
    /// process putting at once handed std's lock over through futex sleeps and wake-ups, which
    /// cost them more than the rest of their puts.
    chunks: parking_lot::Mutex<FeedBuf>,
    more: parking_lot::Condvar,
    /// The feeder finished a chunk (see `push`).
    progress: parking_lot::Condvar,
    /// Items put through this handle: written only by `push`, under `chunks`.
    pushed: Line<AtomicUsize>,
    /// Items the feeder has moved into the ring (or dropped): written only by the feeder.
    /// Items waiting are `pushed - moved`; two counters, each on its own line, because one
    /// counter both sides update costs every `put` a cache miss while the feeder works.
    moved: Line<AtomicUsize>,
    drained: (Mutex<()>, Condvar),
    /// Threads waiting in `wait_drained`: only then does the feeder pay for a wake-up.
    flushers: AtomicUsize,
    /// `broken` holds the error: read on every `put` without taking the lock.
    is_broken: AtomicBool,
    broken: Mutex<Option<QueueError>>,
}

struct FeedBuf {
    chunks: VecDeque<Vec<u8>>,
    /// Chunks the feeder has moved, kept for reuse: a fresh big chunk costs page faults and
    /// copies as it grows.
    spare: Vec<Vec<u8>>,
    open: bool,
    /// The feeder is asleep on `more` and no put has woken it yet: only then does `put` pay
    /// for a wake-up.
    idle: bool,
    /// The last item put was big: try the direct path for the next one.
    big: bool,
    /// The feeder has taken a chunk and not finished moving it.
    in_flight: bool,
    /// Putters wait on `progress` for the feeder to finish its chunk.
    waiting: usize,
}

fn feeds() -> &'static Mutex<Vec<Weak<Feed>>> {
    static FEEDS: Mutex<Vec<Weak<Feed>>> = Mutex::new(Vec::new());
    &FEEDS
}

extern "C" fn flush_at_exit() {
    // Never unwind into libc.
    let _ = std::panic::catch_unwind(|| flush_all_until(Some(Instant::now() + EXIT_FLUSH)));
}

fn register_exit_flush() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // A full table of exit handlers leaves the flush to `flush`/drop, as before.
        let _ = crate::sys::at_exit(flush_at_exit);
    });
}

/// Waits until every feeder in this process has moved its buffered items into its queue.
/// Registered with the bootstrap: a child runs it before it reports its return value.
pub(crate) fn flush_all() {
    flush_all_until(None);
}

fn flush_all_until(deadline: Option<Instant>) {
    flush_where(deadline, |_| true);
}

/// Waits until every feeder in this process that moves items into `ring` (its
/// [`Ring::local_id`]) has moved what was put: a shutdown lets them land first.
pub(crate) fn flush_ring(ring: usize) {
    flush_where(None, |feed| feed.ring == ring);
}

fn flush_where(deadline: Option<Instant>, which: impl Fn(&Feed) -> bool) {
    let all: Vec<Arc<Feed>> = {
        let mut list = feeds().lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.iter()
            .filter_map(Weak::upgrade)
            .filter(|f| which(f))
            .collect()
    };
    for feed in all {
        feed.wait_drained(deadline);
    }
}

impl Feed {
    /// Starts the feeder thread of one putting handle; it holds `slot` until it has drained.
    pub(crate) fn start(ring: Ring, slot: Arc<PutterSlot>) -> Result<Arc<Feed>, QueueError> {
        let id = ring.local_id();
        let sink = RingSink { ring, _slot: slot };
        Self::start_for(sink, "process-ipc-queue-feeder", id)
    }

    /// Starts a feeder thread (named `name`) that moves what is put into `sink`.
    pub(crate) fn start_with<S: Sink>(sink: S, name: &str) -> Result<Arc<Feed>, QueueError> {
        Self::start_for(sink, name, 0)
    }

    fn start_for<S: Sink>(sink: S, name: &str, ring: usize) -> Result<Arc<Feed>, QueueError> {
        let feed = Arc::new(Feed {
            ring,
            chunks: parking_lot::Mutex::new(FeedBuf {
                chunks: VecDeque::new(),
                spare: Vec::new(),
                open: true,
                idle: false,
                big: false,
                in_flight: false,
                waiting: 0,
            }),
            more: parking_lot::Condvar::new(),
            progress: parking_lot::Condvar::new(),
            pushed: Line(AtomicUsize::new(0)),
            moved: Line(AtomicUsize::new(0)),
            drained: (Mutex::new(()), Condvar::new()),
            flushers: AtomicUsize::new(0),
            is_broken: AtomicBool::new(false),
            broken: Mutex::new(None),
        });
        register_exit_flush();
        child::before_report(flush_all);
        feeds()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&feed));
        let feed2 = Arc::clone(&feed);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || feeder_loop(feed2, sink))
            .map_err(|e| QueueError::Io(format!("cannot start the feeder thread: {e}")))?;
        Ok(feed)
    }

    /// No more puts through this handle: the feeder drains what is left, then exits.
    pub(crate) fn close(&self) {
        let mut buf = self.chunks.lock();
        buf.open = false;
        self.more.notify_all();
    }

    /// Serializes `item` into the buffer (refusing it over `limit` bytes). After a big item,
    /// when nothing of this handle waits to be moved, the next one is serialized straight into
    /// the ring if it has room (one copy fewer, and no hop through the feeder thread); small
    /// items always go through the buffer, where they travel in batches.
    /// A `put_timeout` passes its `deadline`: the wait for the feeder never runs past it.
    pub(crate) fn push<T: Serialize>(
        &self,
        item: &T,
        limit: usize,
        ring: &Ring,
        deadline: Option<Instant>,
    ) -> Result<(), QueueError> {
        self.push_via(item, limit, Some(ring), deadline)
    }

    /// [`push`](Feed::push) for a feed whose sink is not a ring: every item goes through the
    /// buffer.
    pub(crate) fn push_buffered<T: Serialize>(
        &self,
        item: &T,
        limit: usize,
    ) -> Result<(), QueueError> {
        self.push_via(item, limit, None, None)
    }

    fn push_via<T: Serialize>(
        &self,
        item: &T,
        limit: usize,
        ring: Option<&Ring>,
        deadline: Option<Instant>,
    ) -> Result<(), QueueError> {
        if self.is_broken.load(Ordering::Acquire) {
            let why = self
                .broken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(why.unwrap_or_else(|| QueueError::Io("the queue's feeder stopped".into())));
        }
        let mut buf = self.chunks.lock();
        // A stream of big items stays on the direct path: while the feeder is moving earlier
        // ones (and not stuck waiting for readers to make room), wait for it rather than queue
        // behind it. Never for a reader: a feeder waiting for room ends the wait at once.
        // The clock is read only here: a small put never pays for it.
        let mut give_up = None;
        while buf.big
            && (buf.in_flight || !buf.chunks.is_empty())
            && ring.is_some_and(|ring| !ring.writer_waits_for_room())
        {
            let now = Instant::now();
            let most = now + PROGRESS_MAX;
            if now >= *give_up.get_or_insert(deadline.map_or(most, |d| d.min(most))) {
                break;
            }
            buf.waiting += 1;
            self.progress.wait_for(&mut buf, PROGRESS_POLL);
            buf.waiting -= 1;
        }
        let direct_ring = ring.filter(|_| buf.big && buf.chunks.is_empty() && !buf.in_flight);
        if let Some(ring) = direct_ring.filter(|_| self.pending() == 0) {
            let direct = ring.put_direct(|region| {
                let n = postcard::to_slice(item, region).ok()?.len();
                (n <= limit).then_some(n)
            });
            if let Some(n) = direct {
                buf.big = n >= BIG_ITEM;
                return Ok(());
            }
        }
        let need_new = buf.chunks.back().is_none_or(|c| c.len() >= CHUNK_BYTES);
        if need_new {
            let mut chunk = buf.spare.pop().unwrap_or_else(|| Vec::with_capacity(256));
            chunk.extend_from_slice(&0u32.to_le_bytes());
            buf.chunks.push_back(chunk);
        }
        let buf_big = buf.big;
        let chunk = buf.chunks.back_mut().expect("a chunk exists");
        let before = chunk.len();
        // Room for the length: one byte, widened below in the rare case a small item needs
        // more; five after a big item, so that the next big one is not moved to make room.
        let reserved = if buf_big {
            chunk.extend_from_slice(&[0; 5]);
            5
        } else {
            chunk.push(0);
            1
        };
        let written = wire::encoding(|| postcard::serialize_with_flavor(item, Append(&mut *chunk)));
        let size = chunk.len() - before - reserved;
        if let Err((e, refusal)) = written {
            chunk.truncate(before);
            drop(buf);
            let why = refusal
                .or_else(|| wire::serialize_error(item))
                .unwrap_or_else(|| e.to_string());
            return Err(QueueError::Serde(why));
        }
        if size > limit {
            chunk.truncate(before);
            return Err(QueueError::TooLarge { size, limit });
        }
        buf.big = size >= BIG_ITEM;
        let chunk = buf.chunks.back_mut().expect("a chunk exists");
        if reserved == 5 {
            write_padded_len(chunk, before, size);
        } else if let Err(len) = write_len(chunk, before, size) {
            write_long_len(chunk, before, len);
        }
        let count = count_items(chunk) as u32 + 1;
        chunk[..4].copy_from_slice(&count.to_le_bytes());
        // Only `push` writes `pushed`, always under `chunks`: no atomic add needed.
        let pushed = self.pushed.0.load(Ordering::Relaxed);
        self.pushed.0.store(pushed + 1, Ordering::Release);
        // The first put after the feeder went to sleep wakes it, and only that one: until the
        // woken feeder gets the lock back (on a busy machine, many puts later) every put would
        // otherwise see it asleep and pay for another wake-up call.
        let wake = std::mem::take(&mut buf.idle);
        drop(buf);
        if wake {
            self.more.notify_one();
        }
        Ok(())
    }

    /// Why the feed stopped taking puts (its sink failed), if it did.
    pub(crate) fn broken(&self) -> Option<String> {
        if !self.is_broken.load(Ordering::Acquire) {
            return None;
        }
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| match e {
                // A sink's own words, without the variant's prefix.
                QueueError::Io(why) => why.clone(),
                other => other.to_string(),
            })
    }

    /// Waits until the buffer is empty; false if `deadline` passed first.
    pub(crate) fn wait_drained(&self, deadline: Option<Instant>) -> bool {
        let (lock, cv) = &self.drained;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.flushers.fetch_add(1, Ordering::SeqCst);
        let _count = Flusher(&self.flushers);
        while self.pending() > 0 {
            let mut pause = Duration::from_millis(10);
            if let Some(at) = deadline {
                let now = Instant::now();
                if now >= at {
                    return false;
                }
                pause = pause.min(at - now);
            }
            guard = cv
                .wait_timeout(guard, pause)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Items put and not yet moved. Reads `moved` first: a put in between can only make the
    /// answer larger, never report a drained buffer too early.
    fn pending(&self) -> usize {
        let moved = self.moved.0.load(Ordering::SeqCst);
        self.pushed.0.load(Ordering::Acquire).saturating_sub(moved)
    }

    /// The feeder moved (or dropped) `n` more items.
    fn sent(&self, n: usize) {
        self.moved.0.fetch_add(n, Ordering::SeqCst);
        if self.flushers.load(Ordering::SeqCst) > 0 && self.pending() == 0 {
            let _guard = self.drained.0.lock().unwrap_or_else(|p| p.into_inner());
            self.drained.1.notify_all();
        }
    }
}

/// Serializes into the end of a chunk: a byte is a push and a run of bytes one copy
/// (`std::io::Write` for `Vec`, which `postcard::to_io` goes through, makes a `memcpy` call for
/// every byte of a varint).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        // A varint (every integer postcard writes) is a few bytes: pushed one by one, not a
        // `memcpy` call each.
        if bytes.len() <= 10 {
            for &b in bytes {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Counts a thread in `wait_drained` until dropped.
struct Flusher<'a>(&'a AtomicUsize);

impl Drop for Flusher<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn feeder_loop<S: Sink>(feed: Arc<Feed>, mut sink: S) {
    // The chunk moved last, handed back for reuse under the next pop's lock.
    let mut used: Option<Vec<u8>> = None;
    loop {
        let chunk = {
            let mut buf = feed.chunks.lock();
            if std::mem::take(&mut buf.in_flight) && buf.waiting > 0 {
                feed.progress.notify_all();
            }
            if let Some(mut old) = used.take() {
                if buf.spare.len() < SPARE_CHUNKS && old.capacity() <= 2 * CHUNK_BYTES {
                    old.clear();
                    buf.spare.push(old);
                }
            }
            let mut looked = false;
            let mut idled = false;
            loop {
                if let Some(chunk) = buf.chunks.pop_front() {
                    buf.in_flight = true;
                    break Some(chunk);
                }
                if !buf.open {
                    break None;
                }
                if !looked {
                    // A putter that puts again soon (a reply in a ping-pong) finds the feeder
                    // awake: no sleep and wake-up on either side.
                    looked = true;
                    drop(buf);
                    crate::sys::look_for(LOOK_FOR, || (feed.pending() > 0).then_some(()));
                    buf = feed.chunks.lock();
                    continue;
                }
                if !idled {
                    idled = true;
                    drop(buf);
                    sink.idle();
                    buf = feed.chunks.lock();
                    continue;
                }
                buf.idle = true;
                feed.more.wait(&mut buf);
                buf.idle = false;
                if buf.chunks.front().is_some_and(|c| c.len() < SMALL_CHUNK) {
                    // Woken for a few bytes: let the putter add more before moving them.
                    drop(buf);
                    std::thread::yield_now();
                    buf = feed.chunks.lock();
                }
            }
        };
        let Some(chunk) = chunk else {
            // Everything is in the ring: this handle puts no more.
            drop(sink);
            return;
        };
        let count = count_items(&chunk);
        if let Err(e) = sink.write_framed(&chunk[4..], count) {
            // The ring is corrupt (or its lock failed, never seen), or a manager is gone:
            // drop what is buffered and refuse more puts with the reason.
            *feed.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            feed.is_broken.store(true, Ordering::Release);
            let mut buf = feed.chunks.lock();
            let dropped: usize = buf.chunks.drain(..).map(|c| count_items(&c)).sum();
            drop(buf);
            sink.dropped(count + dropped);
            feed.sent(count + dropped);
            continue;
        }
        feed.sent(count);
        used = Some(chunk);
    }
}
