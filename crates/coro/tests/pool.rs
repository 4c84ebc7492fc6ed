//! `Pool(n)`: never more than n greenlets at once, waiting for a slot with a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coro::{CoroError, Pool};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let pool = Pool::new(2).unwrap();
    let mut g = pool.spawn(|| "hi").unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), "hi");
    assert!(pool.join_timeout(WAIT));
    assert_eq!(pool.free_count(), 2);
}

#[test]
fn never_runs_more_than_n_at_once() {
    let pool = Pool::new(3).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut all = Vec::new();
    for _ in 0..30 {
        let (running, peak) = (running.clone(), peak.clone());
        all.push(
            pool.spawn(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                coro::sleep(Duration::from_millis(1));
                coro::yield_now();
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .unwrap(),
        );
        assert!(pool.running() <= 3);
    }
    assert!(pool.join_timeout(WAIT));
    coro::joinall(&all, Some(WAIT)).unwrap();
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "the pool should fill up, and no more"
    );
    assert_eq!(pool.free_count(), 3);
}

#[test]
fn spawn_timeout_when_full_and_slots_come_back_after_panics() {
    let pool = Pool::new(1).unwrap();
    let ev = coro::Event::new();
    let ev2 = ev.clone();
    let holder = pool.spawn(move || ev2.wait()).unwrap();
    let err = pool
        .spawn_timeout(Duration::from_millis(20), || ())
        .unwrap_err();
    assert!(matches!(err, CoroError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("Pool(1)"), "{err}");
    ev.set();
    assert!(holder.join_timeout(WAIT));
    // A panicking greenlet gives its slot back too.
    let mut bad = pool.spawn(|| panic!("nope")).unwrap();
    assert!(bad.get_timeout(WAIT).is_err());
    let mut ok = pool.spawn_timeout(WAIT, || 1).unwrap();
    assert_eq!(ok.get_timeout(WAIT).unwrap(), 1);
}

#[test]
fn pool_join_timeout_reports_busy_pool() {
    let pool = Pool::new(2).unwrap();
    let ev = coro::Event::new();
    let ev2 = ev.clone();
    let g = pool.spawn(move || ev2.wait()).unwrap();
    assert!(!pool.join_timeout(Duration::from_millis(20)));
    ev.set();
    assert!(pool.join_timeout(WAIT));
    assert!(g.ready());
}

#[test]
fn zero_size_is_an_err() {
    let err = Pool::new(0).unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}
