//! `Queue<T>` and its put-only `QueueSender<T>`: a process-safe FIFO on ipc-channel, with a
//! feeder thread per process so `put` never blocks.
//!
//! Like Python's `multiprocessing.Queue`, `put` serializes the item at once (so errors show up
//! at the call) and appends it to an in-memory buffer; a feeder thread ships the buffer over the
//! socket in batches. `put` therefore never blocks and never deadlocks, even with no reader:
//! the buffer grows instead (unbounded, like Python's). A child process waits for its feeders to
//! drain before it reports its return value, so nothing put by a target is lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use parking_lot::Mutex as TimedMutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::bootstrap;
use crate::error::QueueError;
use crate::wire::{self, ipc_transfer_allowed, refuse};

/// The largest item, serialized, that `put` accepts by default, and the most any queue can
/// carry: 4 GiB - 1 (each item travels behind a 32-bit length). Python has no limit of its own;
/// [`Queue::with_item_limit`] sets a lower one.
pub const MAX_ITEM_BYTES: usize = u32::MAX as usize;
/// Items are packed into chunks of about this many bytes before they are sent.
const CHUNK_BYTES: usize = 1 << 20;

const TRANSFER_ONLY: &str = "a queue handle carries file descriptors and can only be passed as a \
                             Process argument (not inside a Pool task, a queue item or a file)";

/// The feeder's state shared with `put` and `flush`.
struct Feed {
    chunks: Mutex<FeedBuf>,
    more: Condvar,
    pending: AtomicUsize,
    drained: (Mutex<()>, Condvar),
    broken: Mutex<Option<String>>,
}

#[derive(Default)]
struct FeedBuf {
    chunks: VecDeque<Vec<u8>>,
    open: bool,
    /// The feeder is asleep on `more`: only then does `put` pay for a wake-up.
    idle: bool,
}

/// The sending side one process holds for one channel; the feeder thread lives while it does.
struct SenderShared {
    ipc: IpcSender<ByteBuf>,
    feed: OnceLock<Arc<Feed>>,
    /// The largest serialized item `put` accepts.
    limit: usize,
}

impl Drop for SenderShared {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.get() {
            // The feeder drains what is left, then exits and drops its socket end.
            let mut buf = feed.chunks.lock().unwrap_or_else(|p| p.into_inner());
            buf.open = false;
            feed.more.notify_all();
        }
    }
}

fn feeds() -> &'static Mutex<Vec<Weak<Feed>>> {
    static FEEDS: Mutex<Vec<Weak<Feed>>> = Mutex::new(Vec::new());
    &FEEDS
}

/// At process exit (after `main` returns or `std::process::exit`), gives the feeders up to
/// this long to ship what was put, as Python joins its feeder threads at exit.
const EXIT_FLUSH: Duration = Duration::from_secs(10);

extern "C" fn flush_at_exit() {
    // Never unwind into libc.
    let _ = std::panic::catch_unwind(|| flush_all_until(Some(Instant::now() + EXIT_FLUSH)));
}

fn register_exit_flush() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(flush_at_exit) };
    });
}

/// Waits until every feeder in this process has handed its buffered items to the socket.
/// Registered with the bootstrap: a child runs it before it reports its return value.
pub(crate) fn flush_all() {
    flush_all_until(None);
}

fn flush_all_until(deadline: Option<Instant>) {
    let all: Vec<Arc<Feed>> = {
        let mut list = feeds().lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    for feed in all {
        feed.wait_drained(deadline);
    }
}

impl Feed {
    fn wait_drained(&self, deadline: Option<Instant>) -> bool {
        let (lock, cv) = &self.drained;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.pending.load(Ordering::Acquire) > 0 {
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

    fn sent(&self, n: usize) {
        if self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            let _guard = self.drained.0.lock().unwrap_or_else(|p| p.into_inner());
            self.drained.1.notify_all();
        }
    }
}

fn feeder_loop(feed: Arc<Feed>, ipc: IpcSender<ByteBuf>) {
    loop {
        let (chunk, last) = {
            let mut buf = feed.chunks.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(chunk) = buf.chunks.pop_front() {
                    break (Some(chunk), false);
                }
                if !buf.open {
                    break (None, true);
                }
                buf.idle = true;
                buf = feed.more.wait(buf).unwrap_or_else(|p| p.into_inner());
                buf.idle = false;
            }
        };
        if last {
            return;
        }
        let Some(chunk) = chunk else { continue };
        let count = count_items(&chunk);
        if let Err(e) = ipc.send(ByteBuf::from(chunk)) {
            // The reader is gone: drop what is buffered and refuse further puts.
            let mut broken = feed.broken.lock().unwrap_or_else(|p| p.into_inner());
            *broken = Some(e.to_string());
            let mut buf = feed.chunks.lock().unwrap_or_else(|p| p.into_inner());
            let dropped: usize = buf.chunks.drain(..).map(|c| count_items(&c)).sum();
            drop(buf);
            feed.sent(count + dropped);
            continue;
        }
        feed.sent(count);
    }
}

/// Writes `len` as a LEB128 varint at `at`, where one byte was reserved and the `len` bytes of
/// the item follow it: a length of 128 or more moves the item up to make room.
#[inline]
fn write_len(chunk: &mut [u8], at: usize, len: usize) -> Result<(), usize> {
    if len < 0x80 {
        chunk[at] = len as u8;
        Ok(())
    } else {
        Err(len)
    }
}

/// [`write_len`] for lengths of 128 and more.
#[cold]
fn write_long_len(chunk: &mut Vec<u8>, at: usize, len: usize) {
    let mut bytes = [0u8; 5];
    let mut n = 0;
    let mut v = len as u32;
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        bytes[n] = if v == 0 { low } else { low | 0x80 };
        n += 1;
        if v == 0 {
            break;
        }
    }
    if n > 1 {
        let end = chunk.len();
        chunk.resize(end + n - 1, 0);
        chunk.copy_within(at + 1..end, at + n);
    }
    chunk[at..at + n].copy_from_slice(&bytes[..n]);
}

/// Reads a LEB128 varint length at the start of `bytes`: (length, bytes it took).
#[inline]
fn read_len(bytes: &[u8]) -> Option<(usize, usize)> {
    match bytes.first() {
        Some(&b) if b < 0x80 => Some((usize::from(b), 1)),
        _ => read_long_len(bytes),
    }
}

#[cold]
fn read_long_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(v).ok()?, i + 1));
        }
    }
    None
}

/// A chunk is a 4-byte little-endian item count followed by the items, each its length (a
/// LEB128 varint) and its postcard encoding; the length lets a reader step over an item that
/// fails to decode.
fn count_items(chunk: &[u8]) -> usize {
    u32::from_le_bytes(chunk[..4].try_into().expect("chunk header")) as usize
}

/// A put-only handle to a [`Queue`]: cheap to clone, and passable to a [`Process`](crate::Process)
/// as an argument. Any number of processes can hold one and put concurrently.
pub struct QueueSender<T> {
    shared: Arc<SenderShared>,
    _marker: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            shared: Arc::clone(&self.shared),
            _marker: std::marker::PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender").finish_non_exhaustive()
    }
}

impl<T: Serialize> QueueSender<T> {
    fn from_ipc(ipc: IpcSender<ByteBuf>, limit: usize) -> Self {
        QueueSender {
            shared: Arc::new(SenderShared {
                ipc,
                feed: OnceLock::new(),
                limit,
            }),
            _marker: std::marker::PhantomData,
        }
    }

    fn feed(&self) -> Result<&Arc<Feed>, QueueError> {
        if let Some(feed) = self.shared.feed.get() {
            return Ok(feed);
        }
        let feed = self.shared.feed.get_or_init(|| {
            Arc::new(Feed {
                chunks: Mutex::new(FeedBuf {
                    chunks: VecDeque::new(),
                    open: true,
                    idle: false,
                }),
                more: Condvar::new(),
                pending: AtomicUsize::new(0),
                drained: (Mutex::new(()), Condvar::new()),
                broken: Mutex::new(None),
            })
        });
        // First put in this process: start the feeder (exactly once, guarded by the list lock).
        let mut list = feeds().lock().unwrap_or_else(|p| p.into_inner());
        if !list.iter().any(|w| w.as_ptr() == Arc::as_ptr(feed)) {
            register_exit_flush();
            bootstrap::before_report(flush_all);
            list.push(Arc::downgrade(feed));
            let (feed2, ipc) = (Arc::clone(feed), self.shared.ipc.clone());
            std::thread::Builder::new()
                .name("process-ipc-queue-feeder".into())
                .spawn(move || feeder_loop(feed2, ipc))
                .map_err(|e| QueueError::Io(format!("cannot start the feeder thread: {e}")))?;
        }
        Ok(feed)
    }

    /// Puts `item` on the queue. Never blocks: the item is serialized now and sent by this
    /// process's feeder thread. Errors: [`QueueError::TooLarge`] over the queue's item limit
    /// ([`MAX_ITEM_BYTES`] unless [`Queue::with_item_limit`] set another),
    /// [`QueueError::Serde`] with the serializer's own message, or
    /// [`QueueError::Disconnected`] once the reader is gone.
    pub fn put(&self, item: T) -> Result<(), QueueError> {
        let feed = self.feed()?;
        if feed.broken.lock().map(|b| b.is_some()).unwrap_or(true) {
            return Err(QueueError::Disconnected);
        }
        let mut buf = feed.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let need_new = buf.chunks.back().is_none_or(|c| c.len() >= CHUNK_BYTES);
        if need_new {
            let mut chunk = Vec::with_capacity(256);
            chunk.extend_from_slice(&0u32.to_le_bytes());
            buf.chunks.push_back(chunk);
        }
        let chunk = buf.chunks.back_mut().expect("a chunk exists");
        let before = chunk.len();
        // One byte for the length, widened below in the rare case the item needs more.
        chunk.push(0);
        let written = wire::encoding(|| postcard::to_io(&item, &mut *chunk).map(|_| ()));
        let size = chunk.len() - before - 1;
        if let Err((e, refusal)) = written {
            chunk.truncate(before);
            drop(buf);
            let why = refusal
                .or_else(|| wire::serialize_error(&item))
                .unwrap_or_else(|| e.to_string());
            return Err(QueueError::Serde(why));
        }
        let limit = self.shared.limit;
        if size > limit {
            chunk.truncate(before);
            return Err(QueueError::TooLarge { size, limit });
        }
        if let Err(len) = write_len(chunk, before, size) {
            write_long_len(chunk, before, len);
        }
        let count = count_items(chunk) as u32 + 1;
        chunk[..4].copy_from_slice(&count.to_le_bytes());
        feed.pending.fetch_add(1, Ordering::AcqRel);
        let wake = buf.idle;
        drop(buf);
        if wake {
            feed.more.notify_one();
        }
        Ok(())
    }

    /// Blocks until every item this process put through this handle has been handed to the
    /// socket (Python's `join_thread`). With no reader and a full socket this waits for one.
    pub fn flush(&self) {
        if let Some(feed) = self.shared.feed.get() {
            feed.wait_drained(None);
        }
    }

    /// Like [`flush`](Self::flush) for at most `timeout`; `Err(Timeout)` if items remain.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), QueueError> {
        match self.shared.feed.get() {
            Some(feed) if !feed.wait_drained(Some(Instant::now() + timeout)) => {
                Err(QueueError::Timeout(timeout))
            }
            _ => Ok(()),
        }
    }
}

impl<T> Serialize for QueueSender<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !ipc_transfer_allowed() {
            return Err(refuse(TRANSFER_ONLY));
        }
        (&self.shared.ipc, self.shared.limit as u64).serialize(s)
    }
}

impl<'de, T: Serialize> Deserialize<'de> for QueueSender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (ipc, limit) = <(IpcSender<ByteBuf>, u64)>::deserialize(d)?;
        let limit = usize::try_from(limit).unwrap_or(MAX_ITEM_BYTES);
        Ok(QueueSender::from_ipc(ipc, limit.min(MAX_ITEM_BYTES)))
    }
}

struct Reader {
    rx: Option<IpcReceiver<ByteBuf>>,
    chunk: Vec<u8>,
    pos: usize,
    left: usize,
    /// Chunks already taken off the socket (by `qsize`) and not started yet, in order.
    pending: VecDeque<Vec<u8>>,
}

/// `multiprocessing.Queue`: a FIFO of serde values between processes.
///
/// The queue owns the reading end; [`sender`](Queue::sender) hands out put-only handles for
/// other processes, and moving the `Queue` itself into a [`Process`](crate::Process)'s arguments
/// moves the reading end there (one reading process at a time; any number of threads in it may
/// `get`). `put` never blocks (see the module notes). [`close`](Queue::close) drops this
/// handle's own putting end, so that once every producer has finished, `get` reports
/// [`QueueError::Disconnected`] instead of waiting forever.
///
/// ```
/// let q = process_ipc::Queue::<String>::new().unwrap();
/// q.put("hello".to_string()).unwrap();
/// assert_eq!(q.get().unwrap(), "hello");
/// assert_eq!(q.get_nowait(), Err(process_ipc::QueueError::Empty));
/// ```
///
/// An item that fails to decode (its `Deserialize` refuses the bytes) fails only its own
/// `get`, with [`QueueError::Serde`] saying so; the next `get` returns the next item.
///
/// [`qsize`](Queue::qsize) and [`empty`](Queue::empty) are approximate, as Python's: they count
/// what has reached this reading end, not what is still in a producer's feeder.
///
/// Byte payloads: wrap them in `serde_bytes::ByteBuf` (re-exported as
/// [`ByteBuf`]); a plain `Vec<u8>` is encoded byte by byte, about 4x slower.
pub struct Queue<T> {
    sender: Mutex<Option<QueueSender<T>>>,
    reader: TimedMutex<Reader>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

enum Wait {
    Forever,
    Until(Instant, Duration),
    No,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A new, empty queue.
    pub fn new() -> Result<Self, QueueError> {
        Self::with_item_limit(MAX_ITEM_BYTES)
    }

    /// A new, empty queue whose `put` (through this handle and every [`QueueSender`] made from
    /// it, in any process) refuses items over `limit` bytes serialized with
    /// [`QueueError::TooLarge`]. A limit over [`MAX_ITEM_BYTES`] is [`MAX_ITEM_BYTES`].
    ///
    /// ```
    /// use process_ipc::{Queue, QueueError};
    ///
    /// let q = Queue::<String>::with_item_limit(16).unwrap();
    /// let err = q.put("x".repeat(100)).unwrap_err();
    /// assert!(matches!(err, QueueError::TooLarge { limit: 16, .. }));
    /// q.put("small".into()).unwrap();
    /// assert_eq!(q.get().unwrap(), "small");
    /// ```
    pub fn with_item_limit(limit: usize) -> Result<Self, QueueError> {
        let (tx, rx) = ipc::channel::<ByteBuf>().map_err(|e| QueueError::Io(e.to_string()))?;
        Ok(Queue {
            sender: Mutex::new(Some(QueueSender::from_ipc(tx, limit.min(MAX_ITEM_BYTES)))),
            reader: TimedMutex::new(Reader {
                rx: Some(rx),
                chunk: Vec::new(),
                pos: 0,
                left: 0,
                pending: VecDeque::new(),
            }),
        })
    }

    /// A put-only handle for another process (or thread). Fails after [`close`](Self::close).
    pub fn sender(&self) -> Result<QueueSender<T>, QueueError> {
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(QueueError::Closed)
    }

    /// Puts `item`; never blocks. See [`QueueSender::put`].
    pub fn put(&self, item: T) -> Result<(), QueueError> {
        self.sender()?.put(item)
    }

    /// `Queue.close()`: this handle will put no more. Items already put are still delivered;
    /// once every other putting handle is gone too, `get` returns `Disconnected`.
    pub fn close(&self) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(sender);
    }

    /// Removes and returns the next item, waiting as long as it takes.
    /// `Err(Disconnected)` when every putting handle is gone and the queue is empty.
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_inner(Wait::Forever)
    }

    /// Like [`get`](Self::get), giving up after `timeout` with `Err(Timeout)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_inner(Wait::Until(Instant::now() + timeout, timeout))
    }

    /// Python's `get_nowait()`: the next item if one is ready, else `Err(Empty)`.
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.get_inner(Wait::No)
    }

    fn get_inner(&self, wait: Wait) -> Result<T, QueueError> {
        let mut reader = match wait {
            Wait::Forever => self.reader.lock(),
            Wait::Until(at, timeout) => self
                .reader
                .try_lock_until(at)
                .ok_or(QueueError::Timeout(timeout))?,
            Wait::No => self.reader.try_lock().ok_or(QueueError::Empty)?,
        };
        loop {
            if reader.left > 0 {
                return reader.next_item();
            }
            if let Some(chunk) = reader.pending.pop_front() {
                reader.start(chunk);
                continue;
            }
            let rx = reader.rx.as_ref().ok_or(QueueError::NoReader(
                "the reading end was passed to another process",
            ))?;
            let got = match wait {
                Wait::Forever => rx.recv().map_err(TryRecvError::IpcError),
                Wait::Until(at, _) => {
                    rx.try_recv_timeout(at.saturating_duration_since(Instant::now()))
                }
                Wait::No => rx.try_recv(),
            };
            let chunk = match got {
                Ok(chunk) => chunk.into_vec(),
                Err(TryRecvError::Empty) => {
                    if let Wait::Until(at, _) = wait {
                        if Instant::now() < at {
                            continue; // woke early (the socket wait rounds to milliseconds)
                        }
                    }
                    return Err(match wait {
                        Wait::Until(_, timeout) => QueueError::Timeout(timeout),
                        _ => QueueError::Empty,
                    });
                }
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => {
                    return Err(QueueError::Disconnected);
                }
                Err(TryRecvError::IpcError(e)) => return Err(QueueError::Io(e.to_string())),
            };
            reader.start(chunk);
        }
    }

    /// Python's `qsize()`: how many items have reached this reading end and wait to be taken
    /// (it takes what the socket holds now, without waiting). Approximate, as Python's: items
    /// still in a producer's feeder are not counted yet, and while another thread waits in
    /// `get` on this queue the answer is 0 (nothing is ready, or it would not wait).
    ///
    /// ```
    /// let q = process_ipc::Queue::new().unwrap();
    /// let tx = q.sender().unwrap();
    /// for i in 0..3u8 {
    ///     tx.put(i).unwrap();
    /// }
    /// tx.flush(); // handed to the socket
    /// assert_eq!(q.qsize(), 3);
    /// assert_eq!(q.get().unwrap(), 0);
    /// assert_eq!(q.qsize(), 2);
    /// assert!(!q.empty());
    /// ```
    pub fn qsize(&self) -> usize {
        let Some(mut reader) = self.reader.try_lock() else {
            return 0;
        };
        reader.take_ready();
        reader.left + reader.pending.iter().map(|c| count_items(c)).sum::<usize>()
    }

    /// Python's `empty()`: no item is ready for this reading end now (see [`qsize`](Self::qsize)).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Python's `full()`: always false, the queue is unbounded (`put` never blocks).
    pub fn full(&self) -> bool {
        false
    }

    /// Python's `maxsize`: `None`, the queue is unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        None
    }
}

impl Reader {
    /// Makes `chunk` the current one.
    fn start(&mut self, chunk: Vec<u8>) {
        self.left = count_items(&chunk);
        self.pos = 4;
        self.chunk = chunk;
    }

    /// Takes every chunk the socket holds now into `pending`, without waiting. Errors are left
    /// for the next `get` to find.
    fn take_ready(&mut self) {
        let Some(rx) = self.rx.as_ref() else {
            return;
        };
        while let Ok(chunk) = rx.try_recv() {
            self.pending.push_back(chunk.into_vec());
        }
    }

    /// Takes the next item of the current chunk (`left > 0`); a bad item is stepped over.
    fn next_item<T: DeserializeOwned>(&mut self) -> Result<T, QueueError> {
        let pos = self.pos;
        self.left -= 1;
        let rest = self.chunk.get(pos..).unwrap_or_default();
        let framed = read_len(rest)
            .and_then(|(len, head)| rest.get(head..head + len).map(|b| (head + len, b)));
        let Some((len, bytes)) = framed else {
            // A truncated chunk: nothing after this point can be found again.
            self.left = 0;
            return Err(QueueError::Serde(
                "a queue chunk ended inside an item; the rest of that chunk is lost".into(),
            ));
        };
        let item = postcard::from_bytes::<T>(bytes);
        self.pos = pos + len;
        item.map_err(|e| {
            QueueError::Serde(format!(
                "this item could not be decoded ({e}); only it is lost, the next get returns \
                 the next item"
            ))
        })
    }
}

impl<T> Serialize for Queue<T> {
    /// Moves the reading end (and any items already buffered on this side) with the handle.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        if !ipc_transfer_allowed() {
            return Err(refuse(TRANSFER_ONLY));
        }
        let mut reader = self.reader.lock();
        let rx = reader
            .rx
            .take()
            .ok_or_else(|| refuse("this queue's reading end was already moved"))?;
        let total = reader.left + reader.pending.iter().map(|c| count_items(c)).sum::<usize>();
        let mut rest = (total as u32).to_le_bytes().to_vec();
        if reader.left > 0 {
            let pos = reader.pos.min(reader.chunk.len());
            rest.extend_from_slice(&reader.chunk[pos..]);
        }
        for chunk in reader.pending.drain(..) {
            rest.extend_from_slice(&chunk[4..]);
        }
        reader.left = 0;
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&sender)?;
        t.serialize_element(&rx)?;
        t.serialize_element(&ByteBuf::from(rest))?;
        t.end()
    }
}

impl<'de, T: Serialize> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Parts<T> = (Option<QueueSender<T>>, IpcReceiver<ByteBuf>, ByteBuf);
        let (sender, rx, rest): Parts<T> = Deserialize::deserialize(d)?;
        let rest = rest.into_vec();
        Ok(Queue {
            sender: Mutex::new(sender),
            reader: TimedMutex::new(Reader {
                rx: Some(rx),
                left: count_items(&rest),
                chunk: rest,
                pos: 4,
                pending: VecDeque::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{read_len, write_len, write_long_len};

    #[test]
    fn lengths_round_trip_at_every_width() {
        for len in [
            0usize,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 21,
            u32::MAX as usize,
        ] {
            // A reserved byte, then a stand-in for the item (only its first bytes matter here).
            let body = len.min(600);
            let mut chunk = vec![9u8; 3];
            chunk.push(0);
            chunk.extend((0..body).map(|i| i as u8));
            if write_len(&mut chunk, 3, len).is_err() {
                write_long_len(&mut chunk, 3, len);
            }
            let (got, head) = read_len(&chunk[3..]).unwrap();
            assert_eq!(got, len);
            assert_eq!(&chunk[..3], &[9, 9, 9]);
            let item: Vec<u8> = (0..body).map(|i| i as u8).collect();
            assert_eq!(&chunk[3 + head..], &item[..]);
        }
        assert_eq!(read_len(&[0x80, 0x80]), None);
    }
}
