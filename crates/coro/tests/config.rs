//! Runtime configuration before the first spawn: workers, stack size, bad values.
//!
//! Its own test binary: the configuration is fixed when the runtime starts,
//! and every test in one binary shares that runtime.

use std::sync::Mutex;
use std::time::Duration;

use coro::{Config, CoroError};

const WAIT: Duration = Duration::from_secs(20);

// Tests in this file run in parallel threads; the one that configures must
// finish configuring before any spawns.
static ORDER: Mutex<()> = Mutex::new(());

#[test]
fn the_stack_pool_defaults_to_sixteen_thousand_stacks() {
    assert_eq!(Config::new().stack_pool(), coro::DEFAULT_STACK_POOL);
    assert_eq!(coro::DEFAULT_STACK_POOL, 16_384);
    assert_eq!(Config::new().with_stack_pool(0).stack_pool(), 0);
}

#[test]
fn smoke_configure_before_start_then_reject_after() {
    let _order = ORDER.lock().unwrap();
    assert!(!coro::is_started());
    assert!(matches!(
        // SAFETY: refused (0 workers); nothing runs with it.
        coro::configure(unsafe { Config::new().with_workers(0) }),
        Err(CoroError::InvalidArgument(_))
    ));
    assert!(matches!(
        coro::configure(Config::new().with_stack_size(1)),
        Err(CoroError::InvalidStackSize { bytes: 1, .. })
    ));
    // SAFETY: no coroutine of this test binary holds a thread-local across a switch.
    let cfg = unsafe { Config::new().with_workers(2) }
        .with_stack_size(1024 * 1024)
        .with_pin_workers(false);
    coro::configure(cfg).unwrap();
    assert_eq!(coro::runtime_config(), cfg);

    // A frame of 64 KiB would overflow may's default 32 KiB stack.
    let mut g = coro::spawn(|| {
        let big = std::hint::black_box([1u8; 64 * 1024]);
        big.iter().map(|&b| u32::from(b)).sum::<u32>()
    })
    .unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), 64 * 1024);
    assert!(coro::is_started());
    assert_eq!(coro::runtime_config().workers(), 2);
    assert!(matches!(
        coro::configure(Config::new()),
        Err(CoroError::AlreadyStarted { workers: 2 })
    ));

    // Two workers: two coroutines that each wait for the other to start can
    // both be running at once (on one worker the second would never start
    // while the first spins; here both finish).
    let a_started = coro::Event::new();
    let b_started = coro::Event::new();
    let (a2, b2) = (a_started.clone(), b_started.clone());
    let mut a = coro::spawn(move || {
        a2.set();
        // Spin without yielding: only a second worker can run `b` meanwhile.
        let t = std::time::Instant::now();
        while !b2.is_set() && t.elapsed() < WAIT {
            std::hint::spin_loop();
        }
        b2.is_set()
    })
    .unwrap();
    let (a3, b3) = (a_started.clone(), b_started.clone());
    let mut b = coro::spawn(move || {
        a3.wait();
        b3.set();
    })
    .unwrap();
    assert!(
        a.get_timeout(WAIT).unwrap(),
        "the second worker never ran b"
    );
    b.get_timeout(WAIT).unwrap();
}
