//! The soak's processes (see main.rs): what each one does, and its history file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use process_ipc::{Lock, ManagedQueue, Queue, QueueError, QueueSender, SharedError, current_pid};

pub(crate) const PUT: Duration = Duration::from_millis(500);
pub(crate) const FLUSH: Duration = Duration::from_secs(2);
pub(crate) const GET: Duration = Duration::from_millis(200);
pub(crate) const LOCK: Duration = Duration::from_secs(2);
pub(crate) const TASK: Duration = Duration::from_secs(2);
/// The longest SIGSTOP.
pub(crate) const MAX_STOP_MS: u64 = 300;
/// How long a process asked to stop may take.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(15);

/// Nanoseconds of CLOCK_MONOTONIC: comparable between processes.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds this thread has spent runnable but not running (waiting for a CPU), from
/// `/proc/thread-self/schedstat`: a call's time in the run queue is the scheduler's, not the
/// call's, and the checker takes it off. 0 where the kernel does not say.
fn run_queue_ns() -> u64 {
    use std::cell::RefCell;
    use std::os::unix::fs::FileExt;
    thread_local! {
        // Opened by the thread that reads it (the path names the opening thread), and again
        // after a fork.
        static STAT: RefCell<Option<(u32, File)>> = const { RefCell::new(None) };
    }
    STAT.with(|stat| {
        let mut stat = stat.borrow_mut();
        let pid = current_pid();
        if stat.as_ref().is_none_or(|(p, _)| *p != pid) {
            *stat = File::open("/proc/thread-self/schedstat")
                .ok()
                .map(|f| (pid, f));
        }
        let Some((_, file)) = stat.as_ref() else {
            return 0;
        };
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    })
}

thread_local! {
    /// The run-queue time when this thread's current call started.
    static CALL_RUN_QUEUE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The start of a call with a timeout: now, in [`now_ns`]'s clock (and the thread's run-queue
/// time, kept for [`Log::call`]).
pub(crate) fn call_start() -> u64 {
    CALL_RUN_QUEUE.with(|c| c.set(run_queue_ns()));
    now_ns()
}

/// A tiny xorshift generator (the soak needs no more).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A process's history file: one `write(2)` per line.
pub(crate) struct Log(pub(crate) File);

impl Log {
    pub(crate) fn open(dir: &str, role: &str, slot: u32, generation: u32) -> Log {
        let pid = current_pid();
        let path = Path::new(dir).join(format!("{role}-{slot}-{generation}-{pid}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let mut log = Log(file);
        log.line(format_args!("S {role} {pid} {slot} {generation}"));
        log
    }

    pub(crate) fn line(&mut self, what: std::fmt::Arguments<'_>) {
        let _ = self.0.write_all(format!("{what}\n").as_bytes());
    }

    /// A call with a timeout (`start` from [`call_start`]): when it started and ended, its
    /// timeout, how it went, and how long the thread waited for a CPU meanwhile.
    pub(crate) fn call(&mut self, op: &str, start: u64, timeout: Duration, outcome: &str) {
        let end = now_ns();
        let queued = run_queue_ns().saturating_sub(CALL_RUN_QUEUE.with(|c| c.get()));
        let timeout = timeout.as_nanos();
        self.line(format_args!(
            "C {op} {start} {end} {timeout} {outcome} {queued}"
        ));
    }
}

pub(crate) fn stopping(dir: &str) -> bool {
    Path::new(dir).join("stop").exists()
}

/// Item ids: unique over the run (slot, generation, sequence).
pub(crate) fn item_id(slot: u32, generation: u32, seq: u64) -> u64 {
    (u64::from(slot) << 48) | (u64::from(generation) << 32) | seq
}

pub(crate) fn queue_outcome(e: &QueueError) -> &'static str {
    match e {
        QueueError::Empty | QueueError::Timeout(_) => "timeout",
        QueueError::Disconnected => "disconnected",
        QueueError::Serde(_) => "serde",
        _ => "error",
    }
}

/// Puts items in runs of 1 to 16 and flushes after each run. `stream`: `Q` (the shared
/// queue) or `L` (the queue with a lone reader).
pub(crate) fn producer(
    dir: String,
    stream: String,
    slot: u32,
    generation: u32,
    tx: QueueSender<u64>,
) {
    let role = if stream == "Q" {
        "producer"
    } else {
        "lproducer"
    };
    let mut log = Log::open(&dir, role, slot, generation);
    let mut rng = Rng(now_ns() | 1);
    let mut seq = 0;
    while !stopping(&dir) {
        for _ in 0..1 + rng.below(16) {
            seq += 1;
            let id = item_id(slot, generation, seq);
            let start = call_start();
            match tx.put_timeout(id, PUT) {
                Ok(()) => {
                    log.line(format_args!("P {stream} {id}"));
                    log.call("put", start, PUT, "ok");
                }
                Err(e) => {
                    log.call("put", start, PUT, "error");
                    log.line(format_args!("X put: {e}"));
                }
            }
        }
        let start = call_start();
        match tx.flush_timeout(FLUSH) {
            Ok(()) => {
                log.call("flush", start, FLUSH, "ok");
                log.line(format_args!(
                    "F {stream} {}",
                    item_id(slot, generation, seq)
                ));
            }
            Err(e) => log.call("flush", start, FLUSH, queue_outcome(&e)),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = call_start();
    if tx.flush_timeout(FLUSH).is_ok() {
        log.call("flush", start, FLUSH, "ok");
        log.line(format_args!(
            "F {stream} {}",
            item_id(slot, generation, seq)
        ));
    }
    drop(tx);
    log.line(format_args!("E"));
}

/// Gets items; on stream `L` (the lone reader) it also returns normally now and then, after
/// up to 5000 items, and a new one takes its place.
pub(crate) fn consumer(dir: String, stream: String, slot: u32, generation: u32, q: Queue<u64>) {
    let role = if stream == "Q" {
        "consumer"
    } else {
        "lconsumer"
    };
    let mut log = Log::open(&dir, role, slot, generation);
    let mut left = if stream == "L" {
        1 + Rng(now_ns() | 1).below(5000)
    } else {
        u64::MAX
    };
    while !stopping(&dir) && left > 0 {
        let start = call_start();
        match q.get_timeout(GET) {
            Ok(id) => {
                log.line(format_args!("G {stream} {id}"));
                log.call("get", start, GET, "ok");
                left -= 1;
            }
            Err(e) => {
                log.call("get", start, GET, queue_outcome(&e));
                if !matches!(e, QueueError::Empty | QueueError::Timeout(_)) {
                    log.line(format_args!("X get: {e}"));
                }
            }
        }
    }
    drop(q);
    log.line(format_args!("E"));
}

/// Takes the lock, holds it up to 2 ms, lets go; after an `OwnerDied` takes it again at once.
pub(crate) fn locker(dir: String, slot: u32, generation: u32, lock: Lock) {
    let mut log = Log::open(&dir, "locker", slot, generation);
    let mut rng = Rng(now_ns() | 1);
    while !stopping(&dir) {
        let start = call_start();
        match lock.acquire_timeout(LOCK) {
            Ok(guard) => {
                log.call("lock", start, LOCK, "ok");
                log.line(format_args!("L acquired"));
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
                drop(guard);
            }
            Err(SharedError::OwnerDied { pid }) => {
                log.call("lock", start, LOCK, "owner-died");
                log.line(format_args!("L owner-died {pid}"));
                let start = call_start();
                match lock.acquire_timeout(LOCK) {
                    Ok(guard) => {
                        log.call("lock", start, LOCK, "ok");
                        log.line(format_args!("L after-death ok"));
                        drop(guard);
                    }
                    Err(SharedError::OwnerDied { pid }) => {
                        // Another holder died meanwhile: usable, and reported again.
                        log.call("lock", start, LOCK, "owner-died");
                        log.line(format_args!("L after-death ok"));
                        log.line(format_args!("L owner-died {pid}"));
                    }
                    Err(e) => {
                        log.call("lock", start, LOCK, "timeout");
                        log.line(format_args!("L after-death failed {e}"));
                    }
                }
            }
            Err(SharedError::Timeout(_)) => log.call("lock", start, LOCK, "timeout"),
            Err(e) => {
                log.call("lock", start, LOCK, "error");
                log.line(format_args!("X lock: {e}"));
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(1000)));
    }
    log.line(format_args!("E"));
}

pub(crate) fn mproducer(dir: String, slot: u32, generation: u32, q: ManagedQueue<u64>) {
    let mut log = Log::open(&dir, "mproducer", slot, generation);
    let mut rng = Rng(now_ns() | 1);
    let mut seq = 0;
    let flush = |log: &mut Log, seq: u64| {
        let start = call_start();
        match q.flush_timeout(FLUSH) {
            Ok(()) => {
                log.call("mflush", start, FLUSH, "ok");
                log.line(format_args!("F M {}", item_id(slot, generation, seq)));
            }
            Err(e) => {
                log.call("mflush", start, FLUSH, "error");
                log.line(format_args!("X mflush: {e}"));
            }
        }
    };
    while !stopping(&dir) {
        for _ in 0..1 + rng.below(8) {
            seq += 1;
            let id = item_id(slot, generation, seq);
            let start = call_start();
            match q.put_timeout(id, PUT) {
                Ok(()) => {
                    log.line(format_args!("P M {id}"));
                    log.call("mput", start, PUT, "ok");
                }
                Err(e) => {
                    log.call("mput", start, PUT, "error");
                    log.line(format_args!("X mput: {e}"));
                }
            }
        }
        flush(&mut log, seq);
        std::thread::sleep(Duration::from_millis(2));
    }
    flush(&mut log, seq);
    log.line(format_args!("E"));
}

pub(crate) fn mconsumer(dir: String, slot: u32, generation: u32, q: ManagedQueue<u64>) {
    let mut log = Log::open(&dir, "mconsumer", slot, generation);
    while !stopping(&dir) {
        let start = call_start();
        match q.get_timeout(GET) {
            Ok(id) => {
                log.line(format_args!("G M {id}"));
                log.call("mget", start, GET, "ok");
            }
            Err(process_ipc::ManagerError::Timeout { .. }) => {
                log.call("mget", start, GET, "timeout")
            }
            Err(e) => {
                log.call("mget", start, GET, "error");
                log.line(format_args!("X mget: {e}"));
            }
        }
    }
    log.line(format_args!("E"));
}

/// The warm-up's consumer.
pub(crate) fn consumer_probe(q: Queue<u64>) -> Option<u64> {
    q.get_timeout(Duration::from_secs(10)).ok()
}

/// A pool task.
pub(crate) fn task(x: u64) -> u64 {
    x * 2 + 1
}
