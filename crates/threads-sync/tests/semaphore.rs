//! Semaphore and BoundedSemaphore: counting, timeouts, and over-release as an error.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::{BoundedSemaphore, Semaphore, SemaphoreOverRelease, Thread};

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(20);

#[test]
fn smoke() {
    let s = Semaphore::new(1);
    s.acquire();
    assert_eq!(s.value(), 0);
    s.release();
    assert_eq!(s.value(), 1);
}

#[test]
fn counts_and_times_out() {
    let s = Semaphore::new(2);
    assert!(s.try_acquire());
    assert!(s.acquire_timeout(LONG));
    assert!(!s.try_acquire());
    assert!(!s.acquire_timeout(SHORT));
    s.release_n(2);
    assert_eq!(s.value(), 2);
    // A plain semaphore may grow past its start value.
    s.release();
    assert_eq!(s.value(), 3);
}

#[test]
fn release_wakes_a_waiter() {
    let s = Arc::new(Semaphore::new(0));
    let other = s.clone();
    let t = Thread::new(move || other.acquire_timeout(LONG), ());
    let mut t = t.start().unwrap();
    s.release();
    assert!(t.join_timeout(LONG).unwrap());
    assert_eq!(s.value(), 0);
}

#[test]
fn limits_concurrency() {
    let slots = Arc::new(Semaphore::new(2));
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (slots, inside, max) = (slots.clone(), inside.clone(), max.clone());
            Thread::new(
                move || {
                    for _ in 0..200 {
                        assert!(slots.acquire_timeout(LONG));
                        let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        max.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        slots.release();
                    }
                },
                (),
            )
        })
        .collect();
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    for t in &mut threads {
        t.join_timeout(LONG).unwrap();
    }
    assert!(max.load(std::sync::atomic::Ordering::SeqCst) <= 2);
}

#[test]
fn bounded_semaphore_refuses_over_release() {
    let s = BoundedSemaphore::new(2);
    assert_eq!(s.bound(), 2);
    assert_eq!(s.release(), Err(SemaphoreOverRelease { bound: 2 }));
    s.acquire();
    assert!(s.try_acquire());
    assert!(!s.acquire_timeout(SHORT));
    assert_eq!(s.release_n(3), Err(SemaphoreOverRelease { bound: 2 }));
    assert_eq!(s.value(), 0, "a refused release changes nothing");
    s.release_n(2).unwrap();
    let err = s.release().unwrap_err();
    assert!(err.to_string().contains("released too many times"));
    assert_eq!(s.value(), 2);
}

#[test]
fn semaphores_can_be_statics() {
    static SLOTS: Semaphore = Semaphore::new(1);
    static BOUNDED: BoundedSemaphore = BoundedSemaphore::new(1);
    assert!(SLOTS.try_acquire());
    assert!(!SLOTS.try_acquire());
    SLOTS.release();
    assert!(BOUNDED.try_acquire());
    assert!(BOUNDED.release().is_ok());
    assert!(BOUNDED.release().is_err());
}
