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
//! let mut t = Thread::new(add, (2, 3));
//! t.start()?;
//! assert_eq!(t.join()?, 5);
//!
//! let mut bad = Thread::new(|| -> i32 { panic!("boom") }, ()).named("bad");
//! bad.start()?;
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
//! other's updates ([`RacyCounter`] shows it without undefined behaviour). A lock makes the
//! count exact:
//! ```python
//! with lock:
//!     counter += 1
//! ```
//! ```
//! use std::sync::Arc;
//! use threads_sync::{Mutex, Thread};
//! let counter = Arc::new(Mutex::named("counter", 0u64));
//! let mut threads: Vec<_> = (0..4)
//!     .map(|_| {
//!         let counter = Arc::clone(&counter);
//!         Thread::new(move || -> Result<(), threads_sync::LockError> {
//!             for _ in 0..1000 { *counter.lock()? += 1; }
//!             Ok(())
//!         }, ())
//!     })
//!     .collect();
//! for t in &mut threads { t.start().unwrap(); }
//! for t in &mut threads { t.join().unwrap().unwrap(); }
//! assert_eq!(*counter.lock().unwrap(), 4000);
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
//! let mut t1 = Thread::new(worker(a.clone(), b.clone(), both_hold_one.clone()), ()).named("t1");
//! let mut t2 = Thread::new(worker(b, a, both_hold_one), ()).named("t2");
//! t1.start().unwrap();
//! t2.start().unwrap();
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
//! [`RLock`], [`Condition`], [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Barrier`],
//! `queue.Queue` as [`Queue`], and `multiprocessing.pool.ThreadPool` as [`ThreadPool`]:
//! ```
//! use threads_sync::{Queue, ThreadPool};
//! let q = Queue::new(0);
//! q.put("job");
//! assert_eq!(q.get(), "job");
//!
//! let pool = ThreadPool::new(2)?;
//! let squares: Vec<u64> = pool.imap(|x: u64| x * x, 1..=3)?.collect::<Result<_, _>>()?;
//! assert_eq!(squares, [1, 4, 9]);
//! # Ok::<(), threads_sync::PoolError>(())
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
//! let mut t = threads_sync::Thread::new(|| std::rc::Rc::new(1), ());
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
mod identity;
mod lock;
mod pool;
mod queue;
pub mod race;
mod semaphore;
mod thread;

pub use barrier::Barrier;
pub use condition::Condition;
pub use error::{
    BarrierError, Deadlock, LockError, PoolError, QueueEmpty, QueueFull, SemaphoreOverRelease,
    TaskDoneError, ThreadError, WaitLink,
};
pub use event::Event;
pub use lock::{Lock, LockGuard, Mutex, MutexGuard, RLock, RLockGuard};
pub use pool::{AsyncResult, IMap, IMapUnordered, ThreadPool};
pub use queue::Queue;
pub use race::RacyCounter;
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use thread::{CurrentThread, Target, Thread, current_thread, get_ident};
