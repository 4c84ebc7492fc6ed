//! The symbol-level patch: unchanged `std::thread::sleep` yields inside coroutines once patched.
//!
//! Its own test binary (`required-features = ["patch"]`): patching is
//! process-wide, so no other test shares this process.

use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn std_sleepers(n: usize, each: Duration) -> Duration {
    let start = Instant::now();
    let gs: Vec<_> = (0..n)
        .map(|_| coro::spawn(move || std::thread::sleep(each)).unwrap())
        .collect();
    coro::joinall(&gs, Some(WAIT)).unwrap();
    start.elapsed()
}

// One test function: the steps share the process-wide patch state, so they
// run in a fixed order.
#[test]
fn smoke_patch_makes_std_sleep_cooperative() {
    // Before patching: forwarded to glibc, so 10 sleepers run in a line on one worker.
    assert!(!coro::monkey::is_patched());
    let serial = std_sleepers(10, Duration::from_millis(20));
    assert!(
        serial >= Duration::from_millis(200),
        "unpatched took {serial:?}"
    );

    coro::monkey::patch_all().unwrap();
    assert!(coro::monkey::is_patched());

    // Outside a coroutine the patched call still sleeps for real.
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(30));
    assert!(t.elapsed() >= Duration::from_millis(30));

    // 100 coroutines x 20 ms: far sooner than the 2 s a line would take.
    let patched = std_sleepers(100, Duration::from_millis(20));
    assert!(
        patched < Duration::from_millis(1000),
        "patched 100 x 20 ms took {patched:?}, expected about 20 ms, serial is 2 s"
    );

    // Each coroutine still sleeps at least its duration.
    let mut g = coro::spawn(|| {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(15));
        t.elapsed()
    })
    .unwrap();
    assert!(g.get_timeout(WAIT).unwrap() >= Duration::from_millis(15));

    // While one coroutine sleeps through std, another runs on the same worker:
    // the quick one finishes while the sleeper (spawned first) is still asleep.
    let sleeper = coro::spawn(|| std::thread::sleep(Duration::from_millis(500))).unwrap();
    let mut quick = coro::spawn(|| 42).unwrap();
    assert_eq!(quick.get_timeout(WAIT).unwrap(), 42);
    assert!(!sleeper.ready(), "the sleeper should still be asleep");
    assert!(sleeper.join_timeout(WAIT));

    a_greenlet_killed_in_a_std_sleep_loop_ends_and_drops();

    coro::monkey::unpatch_all();
    assert!(!coro::monkey::is_patched());
}

/// A `loop { std::thread::sleep(..) }` killed mid-sleep ends (it does not
/// spin on a sleep that returns at once), runs its drops and ends killed.
fn a_greenlet_killed_in_a_std_sleep_loop_ends_and_drops() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let laps = Arc::new(AtomicUsize::new(0));
    let (d, l) = (dropped.clone(), laps.clone());
    let mut g = coro::spawn(move || {
        let _guard = Guard(d);
        loop {
            std::thread::sleep(Duration::from_secs(60));
            l.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    coro::spawn(|| ()).unwrap().join(); // it sleeps now (one worker)
    assert!(g.kill_timeout(WAIT), "the killed sleep loop did not end");
    assert_eq!(
        laps.load(Ordering::SeqCst),
        0,
        "a sleep returned to the loop"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(g.successful(), Some(true));
    assert!(g.get().unwrap_err().is_killed());
}
