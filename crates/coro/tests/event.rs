//! `Event` (clearable) and `AsyncResult` (a value for many waiters).

use std::time::Duration;

use coro::{AsyncResult, CoroError, Event};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let ev = Event::new();
    assert!(!ev.is_set());
    ev.set();
    assert!(ev.is_set());
    assert!(ev.wait_timeout(Duration::ZERO));
}

#[test]
fn clear_then_wait_blocks_until_set_again() {
    let ev = Event::new();
    ev.set();
    ev.clear();
    assert!(!ev.wait_timeout(Duration::from_millis(10)));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let ev = ev.clone();
            coro::spawn(move || ev.wait_timeout(WAIT)).unwrap()
        })
        .collect();
    ev.set();
    for mut w in waiters {
        assert!(w.get_timeout(WAIT).unwrap());
    }
    // Reusable: clear and set once more.
    ev.clear();
    assert!(!ev.is_set());
    let ev2 = ev.clone();
    let setter = coro::spawn(move || ev2.set()).unwrap();
    assert!(ev.wait_timeout(WAIT));
    assert!(setter.join_timeout(WAIT));
}

#[test]
fn async_result_delivers_to_every_waiter() {
    let r: AsyncResult<String> = AsyncResult::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let r = r.clone();
            coro::spawn(move || r.get()).unwrap()
        })
        .collect();
    assert!(!r.ready());
    assert!(matches!(
        r.get_timeout(Duration::from_millis(5)),
        Err(CoroError::Timeout { .. })
    ));
    r.set("hello".to_string());
    assert_eq!(r.successful(), Some(true));
    for mut w in waiters {
        assert_eq!(w.get_timeout(WAIT).unwrap().unwrap(), "hello");
    }
}

#[test]
fn async_result_exception_is_an_err() {
    let r: AsyncResult<u8> = AsyncResult::new();
    r.set_exception("no luck");
    assert!(r.ready());
    assert_eq!(r.successful(), Some(false));
    let err = r.get_timeout(WAIT).unwrap_err();
    assert_eq!(err.to_string(), "the AsyncResult failed: no luck");
}
