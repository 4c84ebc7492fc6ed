//! Deadlock detection: AB/BA every time, a three-thread cycle, self-deadlock, and the survivors proceed.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::{Barrier, Lock, LockError, Mutex, RLock, Thread, ThreadHandle};

const LONG: Duration = Duration::from_secs(10);

/// Holds `first`, waits for every party to hold its own first lock, then takes `second`
/// (bounded by `LONG`, so a missed detection fails as a timeout instead of hanging).
fn take_in_order(
    first: Arc<Lock>,
    second: Arc<Lock>,
    all_hold_one: Arc<Barrier>,
) -> impl FnOnce() -> Result<(), LockError> + Send + 'static {
    move || {
        let _first = first.acquire_timeout(LONG)?;
        all_hold_one.wait_timeout(LONG).expect("barrier");
        let _second = second.acquire_timeout(LONG)?;
        Ok(())
    }
}

fn join_all(threads: &mut [ThreadHandle<Result<(), LockError>>]) -> Vec<Result<(), LockError>> {
    threads
        .iter_mut()
        .map(|t| t.join_timeout(LONG).expect("thread finished"))
        .collect()
}

#[test]
fn smoke() {
    let lock = Lock::named("solo");
    let guard = lock.acquire().unwrap();
    drop(guard);
    assert!(lock.acquire_timeout(LONG).is_ok());
}

fn ab_ba_once(round: usize) {
    let a = Arc::new(Lock::with_name(format!("A{round}")));
    let b = Arc::new(Lock::with_name(format!("B{round}")));
    let barrier = Arc::new(Barrier::new(2).unwrap());
    let threads = [
        Thread::new(take_in_order(a.clone(), b.clone(), barrier.clone()), ())
            .named(format!("left-{round}")),
        Thread::new(take_in_order(b, a, barrier), ()).named(format!("right-{round}")),
    ];
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    let outcomes = join_all(&mut threads);
    let errors: Vec<&LockError> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(
        errors.len(),
        1,
        "round {round}: exactly one victim, got {outcomes:?}"
    );
    let deadlock = errors[0].as_deadlock().expect("a deadlock, not a timeout");
    let mut threads = deadlock.threads();
    threads.sort_unstable();
    assert_eq!(threads, [format!("left-{round}"), format!("right-{round}")]);
    let mut locks = deadlock.locks();
    locks.sort_unstable();
    assert_eq!(locks, [format!("A{round}"), format!("B{round}")]);
    let text = errors[0].to_string();
    for name in ["left-", "right-", "\"A", "\"B"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn ab_ba_detected_100_out_of_100() {
    for round in 0..100 {
        ab_ba_once(round);
    }
}

#[test]
fn three_thread_cycle() {
    let locks: Vec<Arc<Lock>> = ["L0", "L1", "L2"]
        .iter()
        .map(|n| Arc::new(Lock::named(n)))
        .collect();
    let barrier = Arc::new(Barrier::new(3).unwrap());
    let threads: Vec<_> = (0..3)
        .map(|i| {
            Thread::new(
                take_in_order(
                    locks[i].clone(),
                    locks[(i + 1) % 3].clone(),
                    barrier.clone(),
                ),
                (),
            )
            .named(format!("T{i}"))
        })
        .collect();
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    let outcomes = join_all(&mut threads);
    let errors: Vec<&LockError> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{outcomes:?}");
    let deadlock = errors[0].as_deadlock().expect("deadlock");
    assert_eq!(deadlock.cycle.len(), 3);
    let text = deadlock.to_string();
    for name in ["T0", "T1", "T2", "L0", "L1", "L2"] {
        assert!(text.contains(name), "{text}");
    }
    // The cycle is consistent: each thread waits for the lock the next one holds.
    for (i, link) in deadlock.cycle.iter().enumerate() {
        let next = &deadlock.cycle[(i + 1) % 3];
        let t: usize = link.thread[1..].parse().unwrap();
        let n: usize = next.thread[1..].parse().unwrap();
        assert_eq!(link.lock, format!("L{}", (t + 1) % 3));
        assert_eq!(n, (t + 1) % 3);
    }
}

#[test]
fn relocking_a_held_lock_is_reported_not_hung() {
    let lock = Mutex::named("config", 1);
    let _held = lock.lock().unwrap();
    let err = lock.try_lock_for(LONG).unwrap_err();
    let deadlock = err.as_deadlock().expect("self-deadlock");
    assert_eq!(deadlock.cycle.len(), 1);
    assert!(err.to_string().contains("already holds"), "{err}");
    assert!(lock.try_lock().is_none());
}

#[test]
fn rlocks_take_part_in_cycles() {
    let a = Arc::new(RLock::named("RA"));
    let b = Arc::new(RLock::named("RB"));
    let barrier = Arc::new(Barrier::new(2).unwrap());
    let side = |first: Arc<RLock>, second: Arc<RLock>, barrier: Arc<Barrier>| {
        move || -> Result<(), LockError> {
            let _first = first.acquire_timeout(LONG)?;
            let _again = first.acquire_timeout(LONG)?; // re-entrant: fine
            barrier.wait_timeout(LONG).expect("barrier");
            let _second = second.acquire_timeout(LONG)?;
            Ok(())
        }
    };
    let threads = [
        Thread::new(side(a.clone(), b.clone(), barrier.clone()), ()).named("r1"),
        Thread::new(side(b, a, barrier), ()).named("r2"),
    ];
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    let outcomes = join_all(&mut threads);
    assert_eq!(
        outcomes.iter().filter(|o| o.is_err()).count(),
        1,
        "{outcomes:?}"
    );
    let text = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .unwrap()
        .to_string();
    assert!(
        text.contains("RA") && text.contains("RB") && text.contains("r1") && text.contains("r2")
    );
}

#[test]
fn contention_without_a_cycle_is_not_a_deadlock() {
    let counter = Arc::new(Mutex::named("shared", 0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            Thread::new(
                move || -> Result<(), LockError> {
                    for _ in 0..20_000 {
                        *counter.try_lock_for(LONG)? += 1;
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
    assert_eq!(*counter.lock().unwrap(), 80_000);
}

/// Threads take random pairs and triples of shared locks in random orders. Every wait is
/// bounded by `LONG`: a `Timeout` means a cycle went undetected (the threads would have hung).
/// A `Deadlock` makes the thread back off, as a caller should, and try again.
#[test]
fn random_lock_orders_never_hang() {
    const THREADS: u64 = 4;
    const ROUNDS: u32 = 1_500;
    let locks: Arc<Vec<Mutex<u64>>> = Arc::new(
        (0..4)
            .map(|i| Mutex::with_name(format!("R{i}"), 0))
            .collect(),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|seed| {
            let locks = locks.clone();
            Thread::new(
                move || -> Result<(u32, u32), String> {
                    // xorshift: a different, reproducible order of locks per thread.
                    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut next = move || {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state
                    };
                    let (mut done, mut refused) = (0, 0);
                    while done < ROUNDS {
                        let mut order: Vec<usize> = (0..locks.len()).collect();
                        for i in (1..order.len()).rev() {
                            order.swap(i, (next() % (i as u64 + 1)) as usize);
                        }
                        order.truncate(2 + (next() % 2) as usize);
                        let mut guards = Vec::new();
                        let mut backed_off = false;
                        for &i in &order {
                            match locks[i].try_lock_for(LONG) {
                                Ok(guard) => guards.push(guard),
                                Err(LockError::Deadlock(_)) => {
                                    backed_off = true;
                                    break;
                                }
                                Err(other) => return Err(format!("missed deadlock? {other}")),
                            }
                        }
                        if backed_off {
                            refused += 1;
                            continue;
                        }
                        for guard in &mut guards {
                            **guard += 1;
                        }
                        done += 1;
                    }
                    Ok((done, refused))
                },
                (),
            )
            .named(format!("random-{seed}"))
        })
        .collect();
    let mut threads: Vec<_> = threads.into_iter().map(|t| t.start().unwrap()).collect();
    for t in &mut threads {
        let (done, refused) = t.join_timeout(LONG * 3).unwrap().unwrap();
        eprintln!("{}: {done} rounds, {refused} refused", t.name());
        assert_eq!(done, ROUNDS);
    }
}

#[test]
fn timed_acquisition_times_out() {
    let lock = Arc::new(Lock::named("busy"));
    let held = lock.acquire().unwrap();
    let other = lock.clone();
    let t = Thread::new(
        move || other.acquire_timeout(Duration::from_millis(20)).map(drop),
        (),
    );
    let mut t = t.start().unwrap();
    match t.join_timeout(LONG).unwrap() {
        Err(LockError::Timeout { lock, .. }) => assert_eq!(lock, "busy"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    drop(held);
}
