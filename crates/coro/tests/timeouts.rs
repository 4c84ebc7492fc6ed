//! Timed waits inside coroutines end on time, sub-millisecond ones included.
//!
//! may 0.3.51's coroutine park timeout is truncated to whole milliseconds (a
//! 700 µs wait never ends, 1.7 ms ends at 1 ms) and racy under load; coro's
//! timed waits use coro's own timer instead. These tests hung (and failed at
//! their bound) on may's timed park.

use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let mut g = coro::spawn(|| {
        let q: coro::Queue<u8> = coro::Queue::new();
        q.get_timeout(Duration::from_micros(300)).is_err()
    })
    .unwrap();
    assert!(g.get_timeout(WAIT).unwrap());
}

#[test]
fn repeated_short_timeouts_in_one_coroutine_never_end_early_or_hang() {
    let mut g = coro::spawn(|| {
        let q: coro::Queue<u8> = coro::Queue::bounded(1).unwrap();
        q.put(0).unwrap();
        let ev = coro::Event::new();
        let r: coro::AsyncResult<u8> = coro::AsyncResult::new();
        let pool = coro::Pool::new(1).unwrap();
        let hold = coro::Event::new();
        let hold2 = hold.clone();
        let holder = pool.spawn(move || hold2.wait()).unwrap();
        let other = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
        for step in 0..8u64 {
            let d = Duration::from_micros(200 + step * 250); // 0.2 .. 1.95 ms
            let t = Instant::now();
            assert!(q.put_timeout(1, d).is_err());
            assert!(q.get_timeout(d).is_ok());
            q.put(0).unwrap();
            assert!(!ev.wait_timeout(d));
            assert!(r.get_timeout(d).is_err());
            assert!(pool.spawn_timeout(d, || ()).is_err());
            assert!(!other.join_timeout(d));
            // Five timed-out waits, none may end early.
            assert!(
                t.elapsed() >= d * 5,
                "step {step}: {:?} < 5 x {d:?}",
                t.elapsed()
            );
        }
        hold.set();
        assert!(holder.join_timeout(WAIT));
        other.kill();
        true
    })
    .unwrap();
    assert!(g.get_timeout(WAIT).unwrap());
}

#[test]
fn zero_timeouts_return_at_once() {
    let mut g = coro::spawn(|| {
        let other = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
        let done = other.join_timeout(Duration::ZERO);
        other.kill();
        let ev = coro::Event::new();
        (done, ev.wait_timeout(Duration::ZERO))
    })
    .unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), (false, false));
}

#[test]
fn kill_during_a_timed_wait_ends_the_waiter() {
    let q: coro::Queue<u8> = coro::Queue::new();
    let started = coro::Event::new();
    let s2 = started.clone();
    let q2 = q.clone();
    let mut g = coro::spawn(move || {
        s2.set();
        q2.get_timeout(Duration::from_secs(60))
    })
    .unwrap();
    assert!(started.wait_timeout(WAIT));
    assert!(g.kill_timeout(WAIT));
    assert!(matches!(g.get(), Err(coro::CoroError::Killed { .. })));
    // The queue still works for others afterwards.
    q.put(7).unwrap();
    let mut h = coro::spawn(move || q.get_timeout(WAIT)).unwrap();
    assert_eq!(h.get_timeout(WAIT).unwrap(), Ok(7));
}

#[test]
fn a_notification_skips_a_waiter_that_already_timed_out() {
    let q: coro::Queue<u8> = coro::Queue::new();
    // First in line, but gives up quickly.
    let (q1, q2) = (q.clone(), q.clone());
    let mut quitter = coro::spawn(move || q1.get_timeout(Duration::from_millis(5))).unwrap();
    assert_eq!(
        quitter.get_timeout(WAIT).unwrap(),
        Err(coro::GetError::Empty(coro::Empty))
    );
    // Second in line waits without a limit; the one item must reach it.
    let mut stayer = coro::spawn(move || q2.get()).unwrap();
    coro::spawn(move || q.put(7).unwrap()).unwrap().join();
    assert_eq!(stayer.get_timeout(WAIT).unwrap(), Ok(7));
}

#[test]
fn a_killed_getter_does_not_swallow_an_item() {
    let q: coro::Queue<u8> = coro::Queue::new();
    let (q1, q2) = (q.clone(), q.clone());
    let doomed = coro::spawn(move || q1.get()).unwrap();
    let survivor_ready = coro::Event::new();
    let ready = survivor_ready.clone();
    let mut survivor = coro::spawn(move || {
        ready.set();
        q2.get_timeout(WAIT)
    })
    .unwrap();
    assert!(survivor_ready.wait_timeout(WAIT));
    doomed.kill();
    q.put(1).unwrap();
    assert_eq!(survivor.get_timeout(WAIT).unwrap(), Ok(1));
}

#[test]
fn timed_waits_from_plain_threads_end_on_time() {
    let q: coro::Queue<u8> = coro::Queue::new();
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(Duration::from_millis(15)),
        Err(coro::GetError::Empty(coro::Empty))
    );
    assert!(t.elapsed() >= Duration::from_millis(15));
    let ev = coro::Event::new();
    assert!(!ev.wait_timeout(Duration::from_millis(1)));
}
