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
queue_row!(coro::Queue<u32>, plain);
queue_row!(coro::JoinableQueue<u32>, plain);

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
    c.put(1u8);
    assert!(c.full());
    assert_eq!(c.put_nowait(2).unwrap_err().into_inner(), 2);
    assert_eq!(
        c.put_timeout(3, Duration::ZERO).unwrap_err().into_inner(),
        3
    );
    assert_eq!(c.maxsize(), Some(1));
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
