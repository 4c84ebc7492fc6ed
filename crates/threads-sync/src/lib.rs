//! `threads_sync`: Python's `threading` toolkit in Rust, with deadlocks reported instead of hung.
//!
//! # Hello, thread
//! A thread runs a *target* with *args*:
//! ```python
//! def add(a, b): return a + b
//! t = threading.Thread(target=add, args=(2, 3)); t.start(); t.join()
//! ```
//! Here the target's return value comes back from `join`, and a panic comes back as an `Err`:
//! ```
//! use threads_sync::{Thread, ThreadError};
//! fn add(a: i32, b: i32) -> i32 { a + b }
//! let t = Thread::new(add, (2, 3)).start()?; // start() hands back a ThreadHandle
//! assert_eq!(t.join()?, 5);
//!
//! let bad = Thread::new(|| -> i32 { panic!("boom") }, ()).named("bad").start()?;
//! match bad.join() {
//!     Err(ThreadError::Panicked { thread, message }) => {
//!         assert_eq!((thread.as_str(), message.as_str()), ("bad", "boom"));
//!     }
//!     other => panic!("expected a panic, got {other:?}"),
//! }
//! # Ok::<(), ThreadError>(())
//! ```
//!
//! # Shared state needs a lock
//! Threads share memory. `counter += 1` is a read then a write, so two threads can lose each
//! other's updates (the `threads_race` example shows it without undefined behaviour). A lock
//! makes the count exact, and like Python's module-level lock it can be a `static`:
//! ```python
//! g_num = 0
//! lock = threading.Lock()
//! def work():
//!     global g_num
//!     with lock:
//!         g_num += 1
//! ```
//! ```
//! use threads_sync::{Mutex, Thread};
//! static G_NUM: Mutex<u64> = Mutex::named("g_num", 0);
//! fn work(times: u64) -> Result<(), threads_sync::LockError> {
//!     for _ in 0..times { *G_NUM.lock()? += 1; }
//!     Ok(())
//! }
//! let threads = (0..4)
//!     .map(|_| Thread::new(work, (1000,)).start())
//!     .collect::<Result<Vec<_>, _>>()?;
//! for t in threads { t.join()?.unwrap(); }
//! assert_eq!(*G_NUM.lock().unwrap(), 4000);
//! # Ok::<(), threads_sync::ThreadError>(())
//! ```
//!
//! # Deadlocks are errors
//! Two threads taking two locks in opposite orders can wait for each other forever. Python
//! hangs; here, the thread whose wait would close the cycle gets [`LockError::Deadlock`],
//! naming every thread and lock in it, and the other proceeds once the victim lets go:
//! ```
//! use std::sync::Arc;
//! use threads_sync::{Barrier, Lock, LockError, Thread};
//! let (a, b) = (Arc::new(Lock::named("A")), Arc::new(Lock::named("B")));
//! let both_hold_one = Arc::new(Barrier::new(2).unwrap());
//! let worker = |first: Arc<Lock>, second: Arc<Lock>, barrier: Arc<Barrier>| {
//!     move || -> Result<(), LockError> {
//!         let _first = first.acquire()?;
//!         barrier.wait().unwrap();
//!         let _second = second.acquire()?; // one of the two threads gets Err(Deadlock) here
//!         Ok(())
//!     }
//! };
//! let t1 = Thread::new(worker(a.clone(), b.clone(), both_hold_one.clone()), ()).named("t1");
//! let t2 = Thread::new(worker(b, a, both_hold_one), ()).named("t2");
//! let (t1, t2) = (t1.start().unwrap(), t2.start().unwrap());
//! let outcomes = [t1.join().unwrap(), t2.join().unwrap()];
//! let report = outcomes.iter().find_map(|o| o.as_ref().err()).expect("one victim");
//! let text = report.to_string();
//! assert!(text.contains("t1") && text.contains("t2") && text.contains("\"A\"") && text.contains("\"B\""));
//! assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
//! ```
//! The [`deadlock`] module also checks lock *order* (on by default in debug builds):
//! taking B while holding A in one place and A while holding B in another is reported
//! (through `log` and [`deadlock::lock_order_violations`]) even in a run where the timing
//! was lucky and nothing deadlocked.
//!
//! Limits: only this crate's locks take part (`std` and `parking_lot` locks, channels and
//! joins are invisible to the graph), and re-taking a [`Condition`]'s lock after a wake-up
//! is not checked.
//!
//! # The rest of Python's toolkit
//! From `threading`: [`RLock`], [`Condition`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Event`], [`Barrier`], [`Timer`], [`Local`] (`threading.local`), [`current_thread`],
//! [`main_thread`], [`enumerate`], [`active_count`], and daemon threads with
//! [`join_non_daemon`] for Python's exit rule. From `queue`: [`Queue`], [`LifoQueue`],
//! [`PriorityQueue`], [`SimpleQueue`]. `multiprocessing.pool.ThreadPool` as [`ThreadPool`],
//! with `concurrent.futures`' [`wait`] and [`as_completed`] over its [`AsyncResult`]s:
//! ```
//! use threads_sync::{Queue, ThreadPool, as_completed};
//! let q = Queue::new();
//! q.put("job")?; // Err(ShutDown) hands the item back once q.shutdown(..) was called
//! assert_eq!(q.get()?, "job");
//!
//! let pool = ThreadPool::new(2)?;
//! let squares: Vec<u64> = pool.imap(|x: u64| x * x, 1..=3)?.collect::<Result<_, _>>()?;
//! assert_eq!(squares, [1, 4, 9]);
//! let results = vec![pool.apply_async(|| 7, ())?];
//! for done in as_completed(results, None) {
//!     assert_eq!(done?.get()?, 7);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! # What the compiler refuses
//! A guard must be released by the thread that took it, so it cannot be sent to another:
//! ```compile_fail
//! let m = threads_sync::Mutex::new(0);
//! let guard = m.lock().unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || drop(guard));
//! });
//! ```
//! A thread's target and value must be `Send` (an `Rc` cannot cross threads):
//! ```compile_fail
//! let t = threads_sync::Thread::new(|| std::rc::Rc::new(1), ());
//! ```
//! A started thread is a [`ThreadHandle`]: it cannot be started again, and `join` consumes it:
//! ```compile_fail,E0382
//! let t = threads_sync::Thread::new(|| 1, ()).start().unwrap();
//! t.join().unwrap();
//! t.join().unwrap(); // refused: the handle was consumed by the first join
//! ```
//!
//! Every blocking call has a timed variant (`join_timeout`, `try_lock_for`, `acquire_timeout`,
//! `wait_timeout`, `get_timeout`, ...).

#![deny(missing_docs)]

mod barrier;
mod condition;
pub mod deadlock;
mod error;
mod event;
mod futures;
mod identity;
mod imap;
mod indexed;
mod lifo_priority;
mod local;
mod lock;
mod lock_meta;
mod lock_order;
mod map_options;
mod mode;
mod output;
mod pool;
mod queue;
mod registry;
mod results;
mod semaphore;
mod split;
mod thread;
mod timer;

pub use barrier::Barrier;
pub use condition::Condition;
pub use error::{
    BarrierError, Deadlock, Empty, Full, GetError, LockError, MaxsizeError, PoolError, PutError,
    SemaphoreOverRelease, ShutDown, SpawnRefused, TaskDoneError, ThreadError, WaitLink,
};
pub use event::Event;
pub use futures::{AsCompleted, DoneAndNotDone, ReturnWhen, as_completed, wait};
pub use identity::ThreadInfo;
pub use imap::IMap;
pub use lifo_priority::{LifoQueue, PriorityQueue};
pub use local::Local;
pub use lock::{Lock, LockGuard, Mutex, MutexGuard, RLock, RLockGuard};
pub use pool::{MapOptions, ThreadPool, ThreadPoolBuilder};
pub use queue::{Queue, SimpleQueue};
#[cfg(unix)]
pub use registry::join_non_daemon_at_exit;
pub use registry::{
    active_count, enumerate, join_non_daemon, join_non_daemon_timeout, main_thread,
};
pub use results::AsyncResult;
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use thread::{Target, Thread, ThreadHandle, current_thread, get_ident};
pub use timer::{Timer, TimerHandle};

/// `now + timeout`, where a timeout too long to represent (`Duration::MAX`, Python's `None`)
/// is a deadline a century away: no limit, where `Instant + Duration` would panic.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> std::time::Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    let now = std::time::Instant::now();
    now.checked_add(timeout.min(CENTURY)).unwrap_or(now)
}
