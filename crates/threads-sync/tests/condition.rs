//! Condition: wait / wait_for with and without timeout, notify(n), notify_all, wrong lock.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::{Condition, LockError, Mutex, Thread};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn smoke() {
    let c = Condition::new(0);
    let mut g = c.lock().unwrap();
    *g = 1;
    assert!(c.wait_for_timeout(&mut g, |v| *v == 1, LONG).unwrap());
}

#[test]
fn producer_consumer() {
    let c = Arc::new(Condition::named("items", Vec::new()));
    let consumer_c = c.clone();
    let consumer = Thread::new(
        move || -> Result<Vec<u32>, LockError> {
            let mut got = Vec::new();
            let mut items = consumer_c.try_lock_for(LONG)?;
            while got.len() < 100 {
                if !consumer_c.wait_for_timeout(
                    &mut items,
                    |v: &mut Vec<u32>| !v.is_empty(),
                    LONG,
                )? {
                    break;
                }
                got.append(&mut items);
            }
            Ok(got)
        },
        (),
    );
    let mut consumer = consumer.start().unwrap();
    for i in 0..100 {
        c.try_lock_for(LONG).unwrap().push(i);
        c.notify(1);
    }
    assert_eq!(
        consumer.join_timeout(LONG).unwrap().unwrap(),
        (0..100).collect::<Vec<_>>()
    );
}

#[test]
fn wait_timeout_without_notify() {
    let c = Condition::new(());
    let mut g = c.lock().unwrap();
    assert!(
        !c.wait_for_timeout(&mut g, |_| false, Duration::from_millis(20))
            .unwrap()
    );
    // A plain wait_timeout returns Ok(false) on timeout (or Ok(true) on a spurious wake-up).
    let _ = c.wait_timeout(&mut g, Duration::from_millis(5)).unwrap();
    assert_eq!(c.notify_all(), 0);
}

#[test]
fn notify_all_wakes_everyone() {
    // (waiting, go): waiters count themselves in, then wait for `go`.
    let c = Arc::new(Condition::new((0usize, false)));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            Thread::new(
                move || -> Result<bool, LockError> {
                    let mut state = c.try_lock_for(LONG)?;
                    state.0 += 1;
                    c.notify_all();
                    c.wait_for_timeout(&mut state, |s| s.1, LONG)
                },
                (),
            )
        })
        .collect();
    let mut waiters: Vec<_> = waiters.into_iter().map(|w| w.start().unwrap()).collect();
    {
        let mut state = c.try_lock_for(LONG).unwrap();
        // All three are inside wait_for once they are counted and we hold the lock.
        assert!(c.wait_for_timeout(&mut state, |s| s.0 == 3, LONG).unwrap());
        state.1 = true;
    }
    c.notify_all();
    for w in &mut waiters {
        assert!(w.join_timeout(LONG).unwrap().unwrap());
    }
}

#[test]
fn a_guard_of_another_lock_is_refused() {
    let c = Condition::named("cond", ());
    let other = Mutex::named("stranger", ());
    let mut g = other.lock().unwrap();
    match c.wait_timeout(&mut g, Duration::from_millis(1)) {
        Err(LockError::WrongLock { condition, given }) => {
            assert_eq!((condition.as_str(), given.as_str()), ("cond", "stranger"));
        }
        other => panic!("expected WrongLock, got {other:?}"),
    }
}
