//! Event: set / clear / is_set / wait with timeout.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::{Event, Thread};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn smoke() {
    let e = Event::new();
    assert!(!e.is_set());
    e.set();
    assert!(e.is_set());
    assert!(e.wait_timeout(LONG));
}

#[test]
fn wait_times_out_when_not_set() {
    let e = Event::new();
    assert!(!e.wait_timeout(Duration::from_millis(20)));
    e.set();
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn set_wakes_every_waiter() {
    let e = Arc::new(Event::new());
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            Thread::new(move || e.wait_timeout(LONG), ())
        })
        .collect();
    let mut waiters: Vec<_> = waiters.into_iter().map(|w| w.start().unwrap()).collect();
    e.set();
    for w in &mut waiters {
        assert!(w.join_timeout(LONG).unwrap());
    }
}

#[test]
fn an_event_can_be_a_static() {
    static READY: Event = Event::new();
    let waiter = Thread::new(|| READY.wait_timeout(LONG), ())
        .start()
        .unwrap();
    READY.set();
    assert!(waiter.join().unwrap());
}
