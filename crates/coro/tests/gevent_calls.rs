//! The calls a gevent port reaches for: `Queue.peek*`, `joinall(raise_error=True)`,
//! `Pool.kill/add/discard/free_count/wait_available`, `Greenlet.exception`.
//! Translated from gevent's `test__queue.py` (`test_send_first`,
//! `test_peek_empty`, `test_peek_multi_greenlet`) and `test__greenlet.py`
//! (`test_wait_error`, `test_joinall_exception_order`) where they fit.

use std::time::Duration;

use coro::{CoroError, Empty, Event, GetError, JoinAllOptions, JoinableQueue, Pool, Queue};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn test_send_first() {
    let q = Queue::new();
    q.put("hi").unwrap();
    assert_eq!(q.peek(), Ok("hi"));
    assert_eq!(q.peek_nowait(), Ok("hi"));
    assert_eq!(q.peek_timeout(WAIT), Ok("hi"));
    assert_eq!(q.qsize(), 1, "peek leaves the item");
    assert_eq!(q.get(), Ok("hi"));
}

#[test]
fn test_peek_empty() {
    let q: Queue<u8> = Queue::new();
    assert_eq!(q.peek_nowait(), Err(GetError::Empty(Empty)));
    let waiter = coro::spawn(move || q.peek_timeout(Duration::from_millis(10))).unwrap();
    assert_eq!(waiter.into_value().unwrap(), Err(GetError::Empty(Empty)));
}

#[test]
fn test_peek_multi_greenlet() {
    let q = Queue::new();
    let peeker = {
        let q = q.clone();
        coro::spawn(move || q.peek()).unwrap()
    };
    q.put(1).unwrap();
    assert_eq!(peeker.into_value().unwrap(), Ok(1));
    assert_eq!(q.peek(), Ok(1));
}

/// Polls (bounded) until `n` gets or peeks wait on `q`.
fn waiting<T>(q: &JoinableQueue<T>, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while q.__getters_waiting() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} waiters never came"
        );
        std::thread::yield_now();
    }
}

/// A peeker woken by a put passes the wake-up on: a getter waiting beside it
/// still gets the item (without the hand-on it would sleep forever).
#[test]
fn a_peek_does_not_leave_a_waiting_getter_asleep() {
    let q = JoinableQueue::new();
    let (qp, qg) = (q.clone(), q.clone());
    // The peeker waits first, then the getter, and only then comes the put. Otherwise a getter
    // that waited first, or had not started waiting by the put, takes the item and leaves the
    // peeker waiting for the next (it hung CI once).
    let peeker = coro::spawn(move || qp.peek()).unwrap();
    waiting(&q, 1);
    let getter = coro::spawn(move || qg.get()).unwrap();
    waiting(&q, 2);
    q.put(7u32).unwrap();
    assert!(peeker.join_timeout(WAIT), "the peeker was left asleep");
    assert_eq!(peeker.into_value().unwrap(), Ok(7));
    assert!(getter.join_timeout(WAIT), "the getter was left asleep");
    assert_eq!(getter.into_value().unwrap(), Ok(7));
    assert_eq!(q.peek_nowait(), Err(GetError::Empty(Empty)));
}

#[test]
fn test_wait_error() {
    let gate = Event::new();
    let x = {
        let gate = gate.clone();
        coro::spawn(move || {
            gate.wait();
            1
        })
        .unwrap()
    };
    let y = coro::spawn(|| -> i32 { panic!("test_wait_error") }).unwrap();
    let raise = JoinAllOptions::new().raise_error(true).timeout(WAIT);
    let first = coro::joinall_with([&x, &y], raise);
    assert!(
        matches!(&first, Err(CoroError::Panicked { message, .. }) if message == "test_wait_error"),
        "{first:?}"
    );
    assert!(!x.ready(), "the others are left running, as in gevent");
    assert!(coro::joinall_with([&y], raise).is_err());
    gate.set();
    assert!(coro::joinall_with([&x], raise).is_ok());
    assert!(x.exception().is_none());
}

#[test]
fn test_joinall_exception_order() {
    let gate = Event::new();
    let a = {
        let gate = gate.clone();
        coro::spawn(move || {
            gate.wait();
            panic!("first")
        })
        .unwrap()
    };
    let b = coro::spawn(|| panic!("second")).unwrap();
    let raise = JoinAllOptions::new().raise_error(true).timeout(WAIT);
    let err = coro::joinall_with([&a, &b], raise).unwrap_err();
    assert!(matches!(err, CoroError::Panicked { ref message, .. } if message == "second"));
    gate.set();
    coro::joinall([&a, &b], Some(WAIT)).unwrap();
    let err = coro::joinall_with([&a, &b], raise).unwrap_err();
    assert!(matches!(err, CoroError::Panicked { ref message, .. } if message == "first"));
}

#[test]
fn joinall_raise_error_counts_a_kill_as_an_end_and_times_out_as_joinall() {
    let killed = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
    killed.kill();
    let fine = coro::spawn(|| ()).unwrap();
    let raise = JoinAllOptions::new().raise_error(true);
    coro::joinall_with([&killed, &fine], raise.timeout(WAIT)).unwrap();
    let slow = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
    let err = coro::joinall_with([&fine, &slow], raise.timeout(Duration::from_millis(10)));
    assert!(
        matches!(err, Err(CoroError::JoinAllTimeout { ref finished, total: 2, .. }) if finished == &[0])
    );
    slow.kill();
}

#[test]
fn pool_kill_stops_every_member_and_frees_their_slots() {
    let pool = Pool::new(3).unwrap();
    let sleepers: Vec<_> = (0..3)
        .map(|_| pool.spawn(|| coro::sleep(Duration::from_secs(60))).unwrap())
        .collect();
    assert_eq!(pool.free_count(), 0);
    assert_eq!(pool.greenlets().len(), 3);
    assert!(pool.kill_timeout(WAIT));
    assert!(sleepers.iter().all(|g| g.killed()));
    assert_eq!(pool.free_count(), 3);
    assert!(pool.greenlets().is_empty());
    let again = pool.spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
    pool.kill();
    assert!(again.killed());
}

#[test]
fn pool_add_takes_a_slot_and_discard_gives_it_back() {
    let pool = Pool::new(1).unwrap();
    let gate = Event::new();
    let spawn_gated = || {
        let gate = gate.clone();
        coro::spawn(move || gate.wait()).unwrap()
    };
    let (g, h) = (spawn_gated(), spawn_gated());
    pool.add(&g.as_ref());
    pool.add(&g.as_ref()); // a member already: no second slot
    assert_eq!(pool.free_count(), 0);
    let refused = pool.add_timeout(&h.as_ref(), Duration::from_millis(10));
    assert!(matches!(refused, Err(CoroError::Timeout { .. })));
    assert!(pool.discard(&g.as_ref()));
    assert!(!pool.discard(&g.as_ref()));
    assert_eq!(pool.free_count(), 1);
    pool.add_timeout(&h.as_ref(), WAIT).unwrap();
    assert_eq!(pool.free_count(), 0);
    gate.set();
    assert!(pool.join_timeout(WAIT), "h's end frees its slot");
    assert_eq!(pool.free_count(), 1);
    assert!(g.join_timeout(WAIT), "a discarded greenlet runs on");
    // A greenlet that already ended takes its slot and gives it back at once.
    pool.add(&g.as_ref());
    assert_eq!(pool.free_count(), 1);
}

#[test]
fn pool_wait_available_waits_for_a_slot() {
    let pool = Pool::new(1).unwrap();
    let gate = Event::new();
    let busy = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait()).unwrap()
    };
    assert_eq!(pool.wait_available_timeout(Duration::from_millis(10)), 0);
    let waiter = {
        let pool = pool.clone();
        coro::spawn(move || pool.wait_available()).unwrap()
    };
    gate.set();
    assert_eq!(waiter.into_value().unwrap(), 1);
    assert!(busy.join_timeout(WAIT));
    assert_eq!(pool.wait_available_timeout(WAIT), 1);
}

#[test]
fn exception_is_the_failure_and_none_for_a_value_or_a_kill() {
    let bad = coro::spawn(|| -> u8 { panic!("no") }).unwrap();
    let good = coro::spawn(|| 1u8).unwrap();
    let killed = coro::spawn(|| -> u8 {
        coro::sleep(Duration::from_secs(60));
        0
    })
    .unwrap();
    killed.kill();
    coro::joinall([&bad, &good, &killed], Some(WAIT)).unwrap();
    assert!(
        matches!(bad.exception(), Some(CoroError::Panicked { message, .. }) if message == "no")
    );
    assert_eq!(good.exception(), None);
    assert_eq!(killed.exception(), None);
    assert_eq!(bad.as_ref().exception(), bad.exception());
}
