//! Where events go: a buffer per thread, appended to this process's part file
//! (`<path>.parts/<pid>.json`, one event per line) when it fills, when its oldest event is
//! [`FLUSH_AGE_NS`] old, at the thread's end and at the process's exit.
//!
//! A process started by `fork` without `exec` inherits its parent's buffers and pid: every
//! buffer carries the pid it was made for, and [`configure`] in the new process drops what it
//! inherited, so nothing is written twice or under the wrong pid.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::json;

/// A buffer is written out once it holds this many bytes.
const FLUSH_BYTES: usize = 64 * 1024;

/// ... or once its oldest event is this old (1 ms), checked at each event: a process killed
/// loses at most its last millisecond of events, and a busy thread writes at most once a
/// millisecond.
pub(crate) const FLUSH_AGE_NS: u64 = 1_000_000;

/// The pid events are recorded for; 0 while recording is off in this process.
static PID: AtomicU32 = AtomicU32::new(0);

/// This process's part file (opened at the first flush).
struct Part {
    pid: u32,
    path: PathBuf,
    file: Option<File>,
}

static PART: Mutex<Option<Part>> = Mutex::new(None);

/// Every live thread's buffer, so that the exit flush reaches them all.
static BUFFERS: Mutex<Vec<Arc<Mutex<Buf>>>> = Mutex::new(Vec::new());

/// The coroutine tracks already named in this process (a `thread_name` event each).
static NAMED_COROS: Mutex<Option<(u32, HashSet<u64>)>> = Mutex::new(None);

#[derive(Default)]
struct Buf {
    bytes: Vec<u8>,
    /// When the oldest unwritten event was recorded.
    since_ns: u64,
}

/// A thread's handle on its buffer.
struct Local {
    buf: Arc<Mutex<Buf>>,
    pid: u32,
    tid: u32,
}

impl Drop for Local {
    fn drop(&mut self) {
        BUFFERS.lock().retain(|b| !Arc::ptr_eq(b, &self.buf));
        if PID.load(Ordering::Relaxed) == self.pid {
            write_out(&mut self.buf.lock());
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Whether events are being recorded in this process.
#[inline]
pub(crate) fn on() -> bool {
    PID.load(Ordering::Relaxed) != 0
}

/// The pid events are recorded under (0 when off).
pub(crate) fn pid() -> u32 {
    PID.load(Ordering::Relaxed)
}

/// Starts recording for this process (`pid`) into `parts/<pid>.json`, dropping anything a
/// forked process inherited from its parent.
pub(crate) fn configure(parts: PathBuf, pid: u32) {
    for buf in BUFFERS.lock().drain(..) {
        buf.lock().bytes.clear();
    }
    *NAMED_COROS.lock() = Some((pid, HashSet::new()));
    *PART.lock() = Some(Part {
        pid,
        path: parts.join(format!("{pid}.json")),
        file: None,
    });
    PID.store(pid, Ordering::Release);
}

/// Stops recording in this process (after the merge).
pub(crate) fn stop() {
    PID.store(0, Ordering::Release);
    *PART.lock() = None;
}

/// Calls `f` with this thread's buffer, the pid and the thread's track, then writes the buffer
/// out if it is full or old. Does nothing when recording is off or re-entered.
#[inline]
pub(crate) fn record(now_ns: u64, f: impl FnOnce(&mut Vec<u8>, u32, u32)) {
    let pid = PID.load(Ordering::Relaxed);
    if pid == 0 {
        return;
    }
    let _ = LOCAL.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return;
        };
        if slot.as_ref().is_none_or(|l| l.pid != pid) {
            if let Some(stale) = slot.take() {
                // Inherited through fork: its events are the parent's.
                stale.buf.lock().bytes.clear();
            }
            *slot = Some(Local::new(pid));
        }
        let local = slot.as_ref().expect("just made");
        let mut buf = local.buf.lock();
        if buf.bytes.is_empty() {
            buf.since_ns = now_ns;
        }
        f(&mut buf.bytes, pid, local.tid);
        if buf.bytes.len() >= FLUSH_BYTES || now_ns.saturating_sub(buf.since_ns) >= FLUSH_AGE_NS {
            write_out(&mut buf);
        }
    });
}

impl Local {
    fn new(pid: u32) -> Local {
        let tid = thread_id();
        let mut buf = Buf::default();
        let current = std::thread::current();
        let name = match current.name() {
            Some(name) => name.to_owned(),
            // A child's first thread, before std's `main` named it.
            None if tid == pid => "main".to_owned(),
            None => format!("thread {tid}"),
        };
        json::metadata(&mut buf.bytes, "thread_name", pid, tid, &name);
        let buf = Arc::new(Mutex::new(buf));
        BUFFERS.lock().push(Arc::clone(&buf));
        Local { buf, pid, tid }
    }
}

/// True the first time coroutine `id` is seen in this process: its track needs a name.
pub(crate) fn first_sight_of_coro(id: u64) -> bool {
    let pid = PID.load(Ordering::Relaxed);
    let mut named = NAMED_COROS.lock();
    match named.as_mut() {
        Some((p, set)) if *p == pid => set.insert(id),
        _ => false,
    }
}

/// Appends `buf`'s bytes to the part file and empties it.
fn write_out(buf: &mut Buf) {
    if buf.bytes.is_empty() {
        return;
    }
    let mut part = PART.lock();
    if let Some(part) = part
        .as_mut()
        .filter(|p| p.pid == PID.load(Ordering::Relaxed))
    {
        if part.file.is_none() {
            part.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&part.path)
                .ok();
        }
        if let Some(file) = part.file.as_mut() {
            // One write per flush of whole lines: appends of the threads do not interleave.
            let _ = file.write_all(&buf.bytes);
        }
    }
    buf.bytes.clear();
}

/// Writes out every thread's buffer of this process.
pub(crate) fn flush_all() {
    let bufs: Vec<Arc<Mutex<Buf>>> = BUFFERS.lock().clone();
    for buf in bufs {
        write_out(&mut buf.lock());
    }
}

/// The kernel's id of the calling thread: its track.
fn thread_id() -> u32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as u32 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock every process of the machine shares.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
