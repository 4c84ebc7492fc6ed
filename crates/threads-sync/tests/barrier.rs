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

/// CPython lock_tests' `test_action`: the action runs once per round, in one thread, before
/// any thread of that round is released.
#[test]
fn the_action_runs_once_per_round_before_anyone_passes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const PARTIES: usize = 4;
    const ROUNDS: usize = 5;
    let actions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&actions);
    let barrier = Arc::new(Barrier::new(PARTIES).unwrap().with_action(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let threads: Vec<_> = (0..PARTIES)
        .map(|_| {
            let (barrier, actions) = (Arc::clone(&barrier), Arc::clone(&actions));
            Thread::new(
                move || -> Result<(), String> {
                    for round in 0..ROUNDS {
                        barrier.wait_timeout(LONG).map_err(|e| e.to_string())?;
                        let seen = actions.load(Ordering::SeqCst);
                        if seen != 2 * round + 1 {
                            return Err(format!("round {round} passed with {seen} actions run"));
                        }
                        // Nobody starts the next round's action before all have looked.
                        barrier.wait_timeout(LONG).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                },
                (),
            )
            .start()
            .unwrap()
        })
        .collect();
    // The action runs at every wait that completes a round: two per loop turn.
    for mut t in threads {
        t.join_timeout(LONG)
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(actions.load(Ordering::SeqCst), 2 * ROUNDS);
}

/// A panicking action breaks the barrier: its thread gets the panic, the others Broken.
#[test]
fn a_panicking_action_breaks_the_barrier() {
    let barrier = Arc::new(
        Barrier::new(2)
            .unwrap()
            .with_action(|| panic!("action failed")),
    );
    let other = Arc::clone(&barrier);
    let mut t = Thread::new(move || other.wait_timeout(LONG), ())
        .start()
        .unwrap();
    let mine = barrier.wait_timeout(LONG);
    let theirs = t.join_timeout(LONG).unwrap();
    let (panicked, broken) = if mine.is_ok() || matches!(mine, Err(BarrierError::Broken { .. })) {
        (theirs, mine)
    } else {
        (mine, theirs)
    };
    assert!(
        matches!(panicked, Err(BarrierError::ActionPanicked { ref message, .. }) if message == "action failed"),
        "{panicked:?}"
    );
    assert!(
        matches!(broken, Err(BarrierError::Broken { .. })),
        "{broken:?}"
    );
    assert!(barrier.broken());
}

/// CPython lock_tests' `test_default_timeout`: `wait()` uses the barrier's timeout, and
/// running out of it breaks the barrier for the others.
#[test]
fn wait_uses_the_default_timeout() {
    let barrier = Arc::new(
        Barrier::new(3)
            .unwrap()
            .with_timeout(Duration::from_millis(50)),
    );
    assert_eq!(barrier.timeout(), Some(Duration::from_millis(50)));
    let other = Arc::clone(&barrier);
    let mut t = Thread::new(move || other.wait(), ()).start().unwrap();
    // Only two of three parties come: both waits end (one times out, the other finds the
    // barrier broken or times out too), where without the timeout they would wait forever.
    let mine = barrier.wait();
    let theirs = t.join_timeout(LONG).unwrap();
    for outcome in [mine, theirs] {
        assert!(
            matches!(
                outcome,
                Err(BarrierError::Timeout { .. } | BarrierError::Broken { .. })
            ),
            "{outcome:?}"
        );
    }
    assert!(barrier.broken());
}

#[test]
fn a_wait_of_duration_max_is_a_wait_without_limit() {
    let barrier = Arc::new(Barrier::new(2).unwrap());
    let other = Arc::clone(&barrier);
    let mut t = Thread::new(move || other.wait_timeout(Duration::MAX), ())
        .start()
        .unwrap();
    barrier.wait_timeout(LONG).unwrap();
    t.join_timeout(LONG).unwrap().unwrap();
}
