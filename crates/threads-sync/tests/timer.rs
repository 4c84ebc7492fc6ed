//! Timer: fires after its interval, or never once cancelled; cancel after firing says so.

use std::time::{Duration, Instant};

use threads_sync::{ThreadError, Timer};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn smoke() {
    let t = Timer::new(Duration::from_millis(1), |a: u32, b: u32| a + b, (2, 3))
        .start()
        .unwrap();
    assert_eq!(t.join().unwrap(), Some(5));
}

#[test]
fn fires_no_earlier_than_its_interval() {
    let interval = Duration::from_millis(50);
    let started = Instant::now();
    let mut t = Timer::new(interval, Instant::now, ()).start().unwrap();
    let fired_at = t.join_timeout(LONG).unwrap().expect("not cancelled");
    assert!(fired_at.duration_since(started) >= interval);
    assert!(!t.is_alive());
}

#[test]
fn cancelled_before_it_fires_never_runs() {
    let (ran_tx, ran) = crossbeam_channel::bounded::<()>(1);
    let mut t = Timer::new(
        Duration::from_secs(3600),
        move || ran_tx.send(()).unwrap(),
        (),
    )
    .named("reminder")
    .start()
    .unwrap();
    assert_eq!(t.name(), "reminder");
    assert!(t.cancel());
    assert!(t.cancel(), "a second cancel still says it is cancelled");
    // The hour-long wait ends at the cancel: the join is bounded by LONG, not by the hour.
    assert_eq!(t.join_timeout(LONG).unwrap(), None);
    assert!(ran.try_recv().is_err(), "the target never ran");
}

#[test]
fn cancel_after_it_fired_is_false() {
    let (entered_tx, entered) = crossbeam_channel::bounded::<()>(1);
    let (release, hold) = crossbeam_channel::bounded::<()>(1);
    let mut t = Timer::new(
        Duration::ZERO,
        move || {
            entered_tx.send(()).unwrap();
            hold.recv_timeout(LONG).is_ok()
        },
        (),
    )
    .start()
    .unwrap();
    entered.recv_timeout(LONG).unwrap();
    assert!(!t.cancel(), "the target is running: too late to cancel");
    release.send(()).unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), Some(true));
}

#[test]
fn a_panicking_target_is_an_error_at_join() {
    let t = Timer::new(
        Duration::ZERO,
        || -> u8 { panic!("timer target failed") },
        (),
    )
    .named("bad-timer")
    .start()
    .unwrap();
    match t.join() {
        Err(ThreadError::Panicked { thread, message }) => {
            assert_eq!(
                (thread.as_str(), message.as_str()),
                ("bad-timer", "timer target failed")
            );
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn join_timeout_on_a_waiting_timer_times_out() {
    let mut t = Timer::new(Duration::from_secs(3600), || (), ())
        .start()
        .unwrap();
    assert!(matches!(
        t.join_timeout(Duration::from_millis(10)),
        Err(ThreadError::Timeout { .. })
    ));
    assert!(t.is_alive());
    assert!(t.cancel());
    assert_eq!(t.join_timeout(LONG).unwrap(), None);
}
