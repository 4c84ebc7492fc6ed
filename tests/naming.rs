//! ARCHITECTURE.md's "One concept, one name" table, held by the compiler: each row is a small
//! trait, and each crate's type implements it by calling its own methods *by the table's
//! names*. A crate that renames or reshapes one of them breaks this file; the generic checks
//! then run the same behaviour through every crate.

use std::time::Duration;

use multitask::{coro, process, threads};

const WAIT: Duration = Duration::from_secs(20);

/// The queue row: `put`, `get_timeout`, `get_nowait`, `qsize`, `empty`, `full`, `maxsize`.
/// (Calls that cross a process boundary return `Result`; that is the one allowed difference.)
trait QueueRow<T> {
    fn put_(&self, item: T);
    fn get_timeout_(&self, timeout: Duration) -> Option<T>;
    fn get_nowait_(&self) -> Option<T>;
    fn qsize_(&self) -> usize;
    fn empty_(&self) -> bool;
    fn full_(&self) -> bool;
    fn maxsize_(&self) -> Option<usize>;
}

macro_rules! queue_row {
    ($ty:ty, plain) => {
        queue_row!($ty, |q, item| q.put(item));
    };
    // A queue with Python 3.13's `shutdown`: `put` hands the item back once it is shut down.
    ($ty:ty, shutdown) => {
        queue_row!($ty, |q, item| q.put(item).unwrap());
    };
    ($ty:ty, |$q:ident, $item:ident| $put:expr) => {
        impl QueueRow<u32> for $ty {
            fn put_(&self, $item: u32) {
                let $q = self;
                $put
            }
            fn get_timeout_(&self, timeout: Duration) -> Option<u32> {
                self.get_timeout(timeout).ok()
            }
            fn get_nowait_(&self) -> Option<u32> {
                self.get_nowait().ok()
            }
            fn qsize_(&self) -> usize {
                self.qsize()
            }
            fn empty_(&self) -> bool {
                self.empty()
            }
            fn full_(&self) -> bool {
                self.full()
            }
            fn maxsize_(&self) -> Option<usize> {
                self.maxsize()
            }
        }
    };
}

queue_row!(threads::Queue<u32>, shutdown);
queue_row!(coro::Queue<u32>, shutdown);
queue_row!(coro::JoinableQueue<u32>, shutdown);

impl QueueRow<u32> for process::Queue<u32> {
    fn put_(&self, item: u32) {
        self.put(item).unwrap()
    }
    fn get_timeout_(&self, timeout: Duration) -> Option<u32> {
        self.get_timeout(timeout).ok()
    }
    fn get_nowait_(&self) -> Option<u32> {
        self.get_nowait().ok()
    }
    fn qsize_(&self) -> usize {
        self.qsize()
    }
    fn empty_(&self) -> bool {
        self.empty()
    }
    fn full_(&self) -> bool {
        self.full()
    }
    fn maxsize_(&self) -> Option<usize> {
        self.maxsize()
    }
}

impl QueueRow<u32> for process::ManagedQueue<u32> {
    fn put_(&self, item: u32) {
        self.put(item).unwrap()
    }
    fn get_timeout_(&self, timeout: Duration) -> Option<u32> {
        self.get_timeout(timeout).ok()
    }
    fn get_nowait_(&self) -> Option<u32> {
        self.get_nowait().ok()
    }
    fn qsize_(&self) -> usize {
        self.qsize().unwrap()
    }
    fn empty_(&self) -> bool {
        self.empty().unwrap()
    }
    fn full_(&self) -> bool {
        self.full().unwrap()
    }
    fn maxsize_(&self) -> Option<usize> {
        self.maxsize()
    }
}

/// FIFO order, sizes, and an unbounded queue's `maxsize`, through any queue of the table.
fn check_fifo_queue(q: &impl QueueRow<u32>) {
    assert!(q.empty_());
    assert_eq!(q.maxsize_(), None, "made unbounded");
    for i in 1..=3 {
        q.put_(i);
    }
    assert!(!q.full_());
    let got: Vec<_> = (0..3).filter_map(|_| q.get_timeout_(WAIT)).collect();
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(q.get_nowait_(), None);
    assert_eq!(q.qsize_(), 0);
    assert!(q.empty_());
}

#[test]
fn every_queue_spells_the_row_the_same_and_behaves_the_same() {
    check_fifo_queue(&threads::Queue::new());
    check_fifo_queue(&coro::Queue::new());
    check_fifo_queue(&coro::JoinableQueue::new());
    check_fifo_queue(&process::Queue::new().unwrap());
    let manager = process::Manager::new().unwrap();
    check_fifo_queue(&manager.queue().unwrap());
}

#[test]
fn a_bounded_queue_of_maxsize_zero_is_an_error_and_a_full_one_hands_the_item_back() {
    assert!(threads::Queue::<u8>::bounded(0).is_err());
    assert!(coro::Queue::<u8>::bounded(0).is_err());

    let t = threads::Queue::bounded(1).unwrap();
    t.put(1u8).unwrap();
    assert!(t.full());
    assert_eq!(t.put_nowait(2).unwrap_err().into_inner(), 2);
    assert_eq!(
        t.put_timeout(3, Duration::ZERO).unwrap_err().into_inner(),
        3
    );
    assert!(matches!(t.get_timeout(WAIT), Ok(1)));

    let c = coro::Queue::bounded(1).unwrap();
    c.put(1u8).unwrap();
    assert!(c.full());
    assert_eq!(c.put_nowait(2).unwrap_err().into_inner(), 2);
    assert_eq!(
        c.put_timeout(3, Duration::ZERO).unwrap_err().into_inner(),
        3
    );
    assert_eq!(c.maxsize(), Some(1));
}

/// The shutdown row (Python 3.13's `Queue.shutdown(immediate)`): `shutdown`, `is_shutdown`,
/// a `put` after it that hands its item back, a `get` that drains then fails.
trait ShutdownRow<T> {
    fn shutdown_(&self, immediate: bool);
    fn is_shutdown_(&self) -> bool;
    /// `Err(item)`: refused as shut down, the item handed back.
    fn put_or_back(&self, item: T) -> Result<(), T>;
    /// `None` once shut down and empty.
    fn get_or_shut(&self) -> Option<T>;
}

macro_rules! shutdown_row_like_threads {
    ($($ty:ty),*) => {$(
        impl ShutdownRow<u32> for $ty {
            fn shutdown_(&self, immediate: bool) {
                self.shutdown(immediate)
            }
            fn is_shutdown_(&self) -> bool {
                self.is_shutdown()
            }
            fn put_or_back(&self, item: u32) -> Result<(), u32> {
                self.put(item).map_err(|e| e.into_inner())
            }
            fn get_or_shut(&self) -> Option<u32> {
                self.get().ok()
            }
        }
    )*};
}

shutdown_row_like_threads!(
    threads::Queue<u32>,
    coro::Queue<u32>,
    coro::JoinableQueue<u32>
);

impl ShutdownRow<u32> for process::Queue<u32> {
    fn shutdown_(&self, immediate: bool) {
        self.shutdown(immediate).unwrap()
    }
    fn is_shutdown_(&self) -> bool {
        self.is_shutdown()
    }
    fn put_or_back(&self, item: u32) -> Result<(), u32> {
        self.put(item).map_err(|e| {
            assert_eq!(e.error, process::QueueError::ShutDown);
            e.into_inner().unwrap()
        })
    }
    fn get_or_shut(&self) -> Option<u32> {
        match self.get() {
            Ok(item) => Some(item),
            Err(process::QueueError::ShutDown) => None,
            Err(e) => panic!("{e}"),
        }
    }
}

fn check_shutdown(q: &(impl ShutdownRow<u32> + QueueRow<u32>)) {
    q.put_(1);
    q.put_(2);
    assert!(!q.is_shutdown_());
    q.shutdown_(false);
    assert!(q.is_shutdown_());
    assert_eq!(q.put_or_back(3), Err(3));
    assert_eq!(q.get_or_shut(), Some(1));
    q.shutdown_(true);
    assert_eq!(q.get_or_shut(), None);
    assert_eq!(q.qsize_(), 0);
}

#[test]
fn every_queue_with_shutdown_spells_it_the_same() {
    check_shutdown(&threads::Queue::new());
    check_shutdown(&coro::Queue::new());
    check_shutdown(&coro::JoinableQueue::new());
    check_shutdown(&process::Queue::new().unwrap());
}

/// The unfinished-work row: `task_done`, `join_timeout` (Python's `task_done()` and `join()`).
trait TasksRow {
    fn put_one(&self);
    fn get_one(&self);
    /// false: called too many times.
    fn task_done_(&self) -> bool;
    fn join_timeout_(&self, timeout: Duration) -> bool;
}

impl TasksRow for threads::Queue<u32> {
    fn put_one(&self) {
        self.put(1).unwrap()
    }
    fn get_one(&self) {
        self.get_timeout(WAIT).unwrap();
    }
    fn task_done_(&self) -> bool {
        self.task_done().is_ok()
    }
    fn join_timeout_(&self, timeout: Duration) -> bool {
        self.join_timeout(timeout).is_ok()
    }
}

impl TasksRow for process::JoinableQueue<u32> {
    fn put_one(&self) {
        self.put(1).unwrap()
    }
    fn get_one(&self) {
        self.get_timeout(WAIT).unwrap();
    }
    fn task_done_(&self) -> bool {
        self.task_done().is_ok()
    }
    fn join_timeout_(&self, timeout: Duration) -> bool {
        self.join_timeout(timeout).is_ok()
    }
}

fn check_tasks(q: &impl TasksRow) {
    q.put_one();
    assert!(!q.join_timeout_(Duration::from_millis(1)));
    q.get_one();
    assert!(q.task_done_());
    assert!(q.join_timeout_(WAIT));
    assert!(!q.task_done_(), "more task_done than items put");
}

#[test]
fn every_joinable_queue_spells_task_done_and_join_the_same() {
    check_tasks(&threads::Queue::new());
    check_tasks(&process::JoinableQueue::new().unwrap());
}

/// The result row: `ready`, `successful` (`None` until ready), `wait_timeout`, `get_timeout`.
trait ResultRow<R> {
    fn ready_(&self) -> bool;
    fn successful_(&self) -> Option<bool>;
    fn wait_timeout_(&self, timeout: Duration) -> bool;
    fn get_timeout_(&self, timeout: Duration) -> Option<R>;
}

macro_rules! result_row {
    ($($ty:ty),*) => {$(
        impl ResultRow<u64> for $ty {
            fn ready_(&self) -> bool {
                self.ready()
            }
            fn successful_(&self) -> Option<bool> {
                self.successful()
            }
            fn wait_timeout_(&self, timeout: Duration) -> bool {
                self.wait_timeout(timeout)
            }
            fn get_timeout_(&self, timeout: Duration) -> Option<u64> {
                self.get_timeout(timeout).ok()
            }
        }
    )*};
}

result_row!(
    threads::AsyncResult<u64>,
    process::AsyncResult<u64>,
    coro::AsyncResult<u64>
);

fn check_result(r: &impl ResultRow<u64>, expected: u64) {
    assert!(r.wait_timeout_(WAIT));
    assert!(r.ready_());
    assert_eq!(r.successful_(), Some(true));
    assert_eq!(r.get_timeout_(WAIT), Some(expected));
    assert_eq!(
        r.successful_(),
        Some(true),
        "unchanged after the value is taken"
    );
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn every_async_result_spells_the_row_the_same() {
    let pool = threads::ThreadPool::new(2).unwrap();
    check_result(&pool.apply_async(square, (7,)).unwrap(), 49);
    assert_eq!(pool.size(), 2);

    let pool = process::Pool::new(1).unwrap();
    check_result(&pool.apply_async(square, (8,)).unwrap(), 64);
    assert_eq!(pool.size(), 1);

    let r = coro::AsyncResult::new();
    assert_eq!(r.successful(), None, "not ready yet");
    r.set(81);
    check_result(&r, 81);
    assert_eq!(coro::Pool::new(3).unwrap().size(), 3);
}

/// The running-unit row: a `name`, `is_alive`, and the target's value with a timeout.
trait HandleRow<R> {
    fn name_(&self) -> String;
    fn is_alive_(&mut self) -> bool;
    fn value_timeout(&mut self, timeout: Duration) -> Option<R>;
}

macro_rules! handle_row {
    ($($ty:ty),*) => {$(
        impl HandleRow<u64> for $ty {
            fn name_(&self) -> String {
                self.name().to_string()
            }
            fn is_alive_(&mut self) -> bool {
                self.is_alive()
            }
            fn value_timeout(&mut self, timeout: Duration) -> Option<u64> {
                self.join_timeout(timeout).ok()
            }
        }
    )*};
}

handle_row!(threads::ThreadHandle<u64>, process::ProcessHandle<u64>);

impl HandleRow<u64> for coro::Greenlet<u64> {
    fn name_(&self) -> String {
        self.name().to_string()
    }
    fn is_alive_(&mut self) -> bool {
        self.is_alive()
    }
    fn value_timeout(&mut self, timeout: Duration) -> Option<u64> {
        self.get_timeout(timeout).ok()
    }
}

fn check_handle(mut h: impl HandleRow<u64>, name: &str, expected: u64) {
    assert_eq!(h.name_(), name);
    assert_eq!(h.value_timeout(WAIT), Some(expected));
    assert!(!h.is_alive_());
}

#[test]
fn threads_processes_and_coroutines_start_the_same_way() {
    // X::new(target, args).named(name).start() -> handle, for each kind of task.
    let t = threads::Thread::new(square, (3,))
        .named("t")
        .start()
        .unwrap();
    check_handle(t, "t", 9);
    let p = process::Process::new(square, (4,))
        .named("p")
        .start()
        .unwrap();
    check_handle(p, "p", 16);
    let g = coro::Coroutine::new(square, (5,))
        .named("g")
        .start()
        .unwrap();
    check_handle(g, "g", 25);
}

/// The barrier row (Python's `Barrier(parties, action=None, timeout=None)`):
/// `new(parties)?.with_action(f).with_timeout(t)`, `timeout()`, `wait()` giving the arrival
/// index (`parties - 1` for the last, which runs the action first), `parties()`, `broken()`.
/// The one difference: process' action is a `fn()` (processes share code, not closures).
trait BarrierRow: Sized {
    fn new_(parties: u32) -> Self;
    fn with_action_(self, action: fn()) -> Self;
    fn with_timeout_(self, timeout: Duration) -> Self;
    fn timeout_(&self) -> Option<Duration>;
    fn wait_(&self) -> Option<u32>;
    fn parties_(&self) -> u32;
    fn broken_(&self) -> bool;
}

macro_rules! barrier_row {
    ($ty:ty, $parties:ty) => {
        impl BarrierRow for $ty {
            fn new_(parties: u32) -> Self {
                <$ty>::new(<$parties>::try_from(parties).unwrap()).unwrap()
            }
            fn with_action_(self, action: fn()) -> Self {
                self.with_action(action)
            }
            fn with_timeout_(self, timeout: Duration) -> Self {
                self.with_timeout(timeout)
            }
            fn timeout_(&self) -> Option<Duration> {
                self.timeout()
            }
            fn wait_(&self) -> Option<u32> {
                self.wait().ok().map(|i| u32::try_from(i).unwrap())
            }
            fn parties_(&self) -> u32 {
                u32::try_from(self.parties()).unwrap()
            }
            fn broken_(&self) -> bool {
                self.broken()
            }
        }
    };
}

barrier_row!(threads::Barrier, usize);
barrier_row!(process::Barrier, u32);

fn check_barrier<B: BarrierRow>(actions: &'static std::sync::atomic::AtomicU32, action: fn()) {
    use std::sync::atomic::Ordering;
    let alone = B::new_(1).with_action_(action).with_timeout_(WAIT);
    assert_eq!((alone.parties_(), alone.timeout_()), (1, Some(WAIT)));
    assert_eq!(alone.wait_(), Some(0));
    assert_eq!(alone.wait_(), Some(0));
    assert_eq!(
        actions.load(Ordering::SeqCst),
        2,
        "the action ran once per round"
    );
    // A lone party of two with a short default timeout breaks the barrier.
    let pair = B::new_(2).with_timeout_(Duration::from_millis(5));
    assert_eq!(pair.timeout_(), Some(Duration::from_millis(5)));
    assert_eq!(pair.wait_(), None);
    assert!(pair.broken_());
    assert_eq!(B::new_(2).timeout_(), None);
}

static THREAD_ACTIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static PROCESS_ACTIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[test]
fn threads_and_process_barriers_take_action_and_timeout_the_same_way() {
    check_barrier::<threads::Barrier>(&THREAD_ACTIONS, || {
        THREAD_ACTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    check_barrier::<process::Barrier>(&PROCESS_ACTIONS, || {
        PROCESS_ACTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
}

/// The `join` row: waiting for a running unit by the table's name. A thread's `join(self)`
/// waits and hands back the target's value (or the panic as an `Err`). The one exception is
/// coro's `Greenlet`, which keeps gevent's shape (`g.join()` waits and returns nothing,
/// `g.get()` then returns the value), because gevent code reads that way; the process
/// handle's row joins this one when its exit code stays readable after `join`.
trait JoinRow<R> {
    fn join_(self) -> Option<R>;
}

impl JoinRow<u64> for threads::ThreadHandle<u64> {
    fn join_(self) -> Option<u64> {
        self.join().ok()
    }
}

impl JoinRow<u64> for coro::Greenlet<u64> {
    fn join_(mut self) -> Option<u64> {
        let () = self.join();
        self.get().ok()
    }
}

#[test]
fn threads_and_coroutines_join_by_the_tables_name() {
    let t = threads::Thread::new(square, (6,)).start().unwrap();
    assert_eq!(t.join_(), Some(36));
    let g = coro::Coroutine::new(square, (7,)).start().unwrap();
    assert_eq!(g.join_(), Some(49));
}

/// `join_non_daemon_at_exit` has one error type in both crates that start units which
/// Python joins at exit: `std::io::Error`, so one `?` serves both.
#[cfg(unix)]
#[test]
fn join_non_daemon_at_exit_has_one_error_type() {
    let _: fn() -> std::io::Result<()> = threads::join_non_daemon_at_exit;
    let _: fn() -> std::io::Result<()> = process::join_non_daemon_at_exit;
}

/// The `as_completed` row (Python: `concurrent.futures.as_completed(fs, timeout)`): it takes
/// the results and yields each done one, to `get` without waiting; a timeout is one
/// `Err(PoolError::Timeout { .. })` (the same variant as `get_timeout`'s), then the end.
/// The process pool's `as_completed` takes the same shape.
#[test]
fn as_completed_yields_done_results_and_one_timeout() {
    let pool = threads::ThreadPool::new(2).unwrap();
    let results: Vec<_> = (1..=3u64)
        .map(|x| pool.apply_async(square, (x,)).unwrap())
        .collect();
    let mut values: Vec<u64> = threads::as_completed(results, Some(WAIT))
        .map(|done| done.unwrap().get_timeout(Duration::ZERO).unwrap())
        .collect();
    values.sort();
    assert_eq!(values, [1, 4, 9]);

    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let stuck = pool
        .apply_async(move || hold_rx.recv_timeout(WAIT).is_ok(), ())
        .unwrap();
    let mut waited = threads::as_completed(vec![stuck], Some(Duration::from_millis(10)));
    assert!(matches!(
        waited.next(),
        Some(Err(threads::PoolError::Timeout { .. }))
    ));
    assert!(waited.next().is_none());
    hold_tx.send(()).unwrap();

    let pool = process::Pool::new(2).unwrap();
    let results: Vec<_> = (1..=3u64)
        .map(|x| pool.apply_async(square, (x,)).unwrap())
        .collect();
    let mut values: Vec<u64> = process::as_completed(results, Some(WAIT))
        .map(|done| done.unwrap().get_timeout(Duration::ZERO).unwrap())
        .collect();
    values.sort();
    assert_eq!(values, [1, 4, 9]);
    let stuck = pool.apply_async(nap, (WAIT.as_millis() as u64,)).unwrap();
    let mut waited = process::as_completed(vec![stuck], Some(Duration::from_millis(10)));
    assert!(matches!(
        waited.next(),
        Some(Err(process::PoolError::Timeout { .. }))
    ));
    assert!(waited.next().is_none());
    assert_eq!(waited.into_remaining().len(), 1);
    pool.terminate();
}

fn nap(ms: u64) -> bool {
    std::thread::sleep(Duration::from_millis(ms));
    true
}
