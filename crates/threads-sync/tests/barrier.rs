//! Barrier: indices, reuse across generations, timeout, broken for every waiter, abort, reset.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::{Barrier, BarrierError, Thread};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn smoke() {
    let b = Barrier::new(1).unwrap();
    assert_eq!(b.wait_timeout(LONG), Ok(0));
    assert_eq!(b.parties(), 1);
}

#[test]
fn zero_parties_is_an_error() {
    assert_eq!(
        Barrier::new(0).unwrap_err(),
        BarrierError::InvalidParties { parties: 0 }
    );
}

#[test]
fn indices_are_distinct_and_reusable() {
    let b = Arc::new(Barrier::new(3).unwrap());
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            Thread::new(
                move || -> Result<Vec<usize>, BarrierError> {
                    (0..50).map(|_| b.wait_timeout(LONG)).collect()
                },
                (),
            )
        })
        .collect();
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    let rounds: Vec<Vec<usize>> = threads
        .iter_mut()
        .map(|t| t.join_timeout(LONG).unwrap().unwrap())
        .collect();
    for round in 0..50 {
        let mut idx: Vec<usize> = rounds.iter().map(|r| r[round]).collect();
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2]);
    }
}

#[test]
fn a_timeout_breaks_it_for_every_waiter() {
    let b = Arc::new(Barrier::new(3).unwrap());
    let waiter_b = b.clone();
    let patient = Thread::new(move || waiter_b.wait_timeout(LONG), ());
    let mut patient = patient.start().unwrap();
    // Wait (bounded) until the patient thread is inside the barrier.
    let deadline = std::time::Instant::now() + LONG;
    while b.n_waiting() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "patient never arrived"
        );
        std::thread::yield_now();
    }
    match b.wait_timeout(Duration::from_millis(20)) {
        Err(BarrierError::Timeout {
            waiting, parties, ..
        }) => assert_eq!((waiting, parties), (2, 3)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(
        patient.join_timeout(LONG).unwrap(),
        Err(BarrierError::Broken { parties: 3 })
    );
    assert!(b.broken());
    assert_eq!(
        b.wait_timeout(LONG),
        Err(BarrierError::Broken { parties: 3 })
    );
    b.reset();
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn abort_and_reset_release_waiters_with_broken() {
    for use_reset in [false, true] {
        let b = Arc::new(Barrier::new(2).unwrap());
        let waiter_b = b.clone();
        let waiter = Thread::new(move || waiter_b.wait_timeout(LONG), ());
        let mut waiter = waiter.start().unwrap();
        let deadline = std::time::Instant::now() + LONG;
        while b.n_waiting() < 1 {
            assert!(std::time::Instant::now() < deadline, "waiter never arrived");
            std::thread::yield_now();
        }
        if use_reset {
            b.reset();
        } else {
            b.abort();
        }
        assert_eq!(
            waiter.join_timeout(LONG).unwrap(),
            Err(BarrierError::Broken { parties: 2 })
        );
        assert_eq!(b.broken(), !use_reset);
    }
}
