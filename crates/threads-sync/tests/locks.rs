//! Lock, RLock and Mutex basics: mutual exclusion, re-entrancy, try/timeout variants, names.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::{Lock, LockError, Mutex, RLock, Thread};

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(20);

#[test]
fn smoke() {
    let m = Mutex::new(5);
    *m.lock().unwrap() += 1;
    assert_eq!(m.into_inner(), 6);
}

#[test]
fn names_default_and_given() {
    assert!(Mutex::new(()).name().starts_with("Mutex#"));
    assert!(Lock::new().name().starts_with("Mutex#"));
    assert!(RLock::new().name().starts_with("RLock#"));
    assert_eq!(Lock::named("db").name(), "db");
    let m = Mutex::named("cache", 0);
    assert_eq!(m.lock().unwrap().lock_name(), "cache");
    assert!(format!("{m:?}").contains("cache"));
}

#[test]
fn lock_try_and_timeout_from_another_thread() {
    let lock = Arc::new(Lock::named("gate"));
    let held = lock.acquire().unwrap();
    assert!(lock.locked());
    let other = lock.clone();
    let t = Thread::new(
        move || {
            (
                other.try_acquire().is_none(),
                other.acquire_timeout(SHORT).is_err(),
            )
        },
        (),
    );
    let mut t = t.start().unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), (true, true));
    drop(held);
    assert!(!lock.locked());
    let other = lock.clone();
    let t = Thread::new(move || other.acquire_timeout(LONG).is_ok(), ());
    let mut t = t.start().unwrap();
    assert!(t.join_timeout(LONG).unwrap());
}

#[test]
fn mutex_excludes() {
    let m = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            Thread::new(
                move || -> Result<(), LockError> {
                    for j in 0..500 {
                        m.try_lock_for(LONG)?.push(i * 1000 + j);
                    }
                    Ok(())
                },
                (),
            )
        })
        .collect();
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    for t in &mut threads {
        t.join_timeout(LONG).unwrap().unwrap();
    }
    let mut all = m.lock().unwrap().clone();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 2000);
}

#[test]
fn rlock_is_reentrant_and_exclusive() {
    let r = Arc::new(RLock::named("re"));
    let g1 = r.acquire().unwrap();
    let g2 = r.acquire_timeout(LONG).unwrap();
    let g3 = r.try_acquire().unwrap();
    assert_eq!(r.count(), 3);
    let other = r.clone();
    let t = Thread::new(
        move || {
            (
                other.try_acquire().is_none(),
                other.acquire_timeout(SHORT).is_err(),
            )
        },
        (),
    );
    let mut t = t.start().unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), (true, true));
    // Guards may be dropped in any order; the lock is free after the last.
    drop(g1);
    drop(g3);
    assert_eq!(r.count(), 1);
    let other = r.clone();
    let waiter = Thread::new(move || other.acquire_timeout(LONG).map(drop).is_ok(), ());
    let mut waiter = waiter.start().unwrap();
    drop(g2);
    assert!(waiter.join_timeout(LONG).unwrap());
    assert_eq!(r.count(), 0);
}

#[test]
fn a_panic_while_holding_releases_the_lock() {
    let m = Arc::new(Mutex::named("fragile", 0));
    let other = m.clone();
    let t = Thread::new(
        move || {
            let _g = other.lock().unwrap();
            panic!("while holding");
        },
        (),
    );
    let mut t = t.start().unwrap();
    assert!(t.join_timeout(LONG).is_err());
    assert!(m.try_lock_for(LONG).is_ok());
}

static G_NUM: Mutex<u64> = Mutex::named("g_num", 0);
static STATIC_A: Lock = Lock::named("static-A");
static STATIC_B: Lock = Lock::new();
static STATIC_R: RLock = RLock::named("static-R");

#[test]
fn static_locks_guard_shared_state_like_a_python_global() {
    fn work(times: u64) -> Result<(), LockError> {
        for _ in 0..times {
            *G_NUM.lock()? += 1;
        }
        Ok(())
    }
    let threads: Vec<_> = (0..4)
        .map(|_| Thread::new(work, (1000,)).start().unwrap())
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert_eq!(*G_NUM.lock().unwrap(), 4000);
    assert_eq!(G_NUM.name(), "g_num");
}

#[test]
fn static_locks_have_names_and_distinct_ids() {
    assert_eq!(STATIC_A.name(), "static-A");
    let unnamed = STATIC_B.name();
    assert!(unnamed.starts_with("Mutex#"), "{unnamed}");
    assert_eq!(STATIC_B.name(), unnamed, "the id given on first use stays");
    assert_ne!(Lock::new().name(), unnamed);
    let outer = STATIC_R.acquire().unwrap();
    let inner = STATIC_R.acquire().unwrap();
    assert_eq!(STATIC_R.count(), 2);
    drop((inner, outer));
}

#[test]
fn static_locks_take_part_in_deadlock_reports() {
    let barrier = Arc::new(threads_sync::Barrier::new(2).unwrap());
    let take =
        |first: &'static Lock, second: &'static Lock, barrier: Arc<threads_sync::Barrier>| {
            move || -> Result<(), LockError> {
                let _first = first.acquire_timeout(LONG)?;
                barrier.wait_timeout(LONG).expect("barrier");
                let _second = second.acquire_timeout(LONG)?;
                Ok(())
            }
        };
    let t1 = Thread::new(take(&STATIC_A, &STATIC_B, barrier.clone()), ())
        .start()
        .unwrap();
    let t2 = Thread::new(take(&STATIC_B, &STATIC_A, barrier), ())
        .start()
        .unwrap();
    let outcomes = [t1.join().unwrap(), t2.join().unwrap()];
    let report = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .and_then(LockError::as_deadlock)
        .expect("one thread is refused with a deadlock report");
    assert!(report.locks().contains(&"static-A"), "{report}");
    assert!(
        report.locks().iter().any(|l| l.starts_with("Mutex#")),
        "{report}"
    );
}

#[test]
fn a_mutex_is_one_cache_line_for_small_values() {
    // The owner word, the raw lock and the value share a line (see ARCHITECTURE.md).
    assert_eq!(std::mem::align_of::<Mutex<u64>>(), 64);
    assert_eq!(std::mem::size_of::<Mutex<u64>>(), 64);
    assert_eq!(std::mem::size_of::<Lock>(), 64);
}
