//! Greenlets: spawn, values and panics, joinall, kill, spawn_later, with_timeout, configuration.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coro::{Builder, CoroError};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let mut g = coro::spawn(|| 2 + 2).unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), 4);
    assert!(g.ready());
    assert!(matches!(g.get(), Err(CoroError::ValueTaken { .. })));
}

#[test]
fn default_runtime_is_one_worker_and_cannot_be_reconfigured_after_start() {
    coro::spawn(|| ()).unwrap().join();
    assert!(coro::is_started());
    assert_eq!(coro::runtime_config().workers(), 1);
    let err = coro::configure(
        // SAFETY: this configuration is refused, nothing runs with it.
        unsafe { coro::Config::new().with_workers(2) },
    )
    .unwrap_err();
    assert!(
        matches!(err, CoroError::AlreadyStarted { workers: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("before the first spawn"));
}

#[test]
fn interleaving_is_deterministic_on_one_worker() {
    // gevent's classic: three greenlets that print, yield, print again.
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    // A parent coroutine spawns the three, so none starts before all exist.
    let mut parent = coro::spawn(move || {
        let kids: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let log = log2.clone();
                coro::spawn(move || {
                    for i in 0..3 {
                        log.lock().unwrap().push(format!("{name}{i}"));
                        coro::yield_now();
                    }
                })
                .unwrap()
            })
            .collect();
        coro::joinall(&kids, Some(WAIT))
    })
    .unwrap();
    parent.get_timeout(WAIT).unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    );
}

#[test]
fn panic_is_an_err_with_its_message_and_others_go_on() {
    let mut bad = Builder::new()
        .name("doomed")
        .spawn(|| -> u32 { panic!("disk on fire: {}", 42) })
        .unwrap();
    let mut good: Vec<_> = (0..10u32)
        .map(|i| {
            coro::spawn(move || {
                coro::sleep(Duration::from_millis(1));
                i
            })
            .unwrap()
        })
        .collect();
    let err = bad.get_timeout(WAIT).unwrap_err();
    assert_eq!(
        err,
        CoroError::Panicked {
            name: "doomed".into(),
            message: "disk on fire: 42".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "coroutine 'doomed' panicked: disk on fire: 42"
    );
    let sum: u32 = good.iter_mut().map(|g| g.get_timeout(WAIT).unwrap()).sum();
    assert_eq!(sum, 45);
}

#[test]
fn unnamed_greenlets_are_numbered() {
    let g = coro::spawn(|| ()).unwrap();
    assert!(g.name().starts_with("Greenlet-"), "{}", g.name());
    g.join();
}

#[test]
fn joinall_times_out_and_says_how_many_finished() {
    let quick = coro::spawn(|| ()).unwrap();
    let stuck_ev = coro::Event::new();
    let ev = stuck_ev.clone();
    let stuck = coro::spawn(move || ev.wait()).unwrap();
    assert!(quick.join_timeout(WAIT));
    let err = coro::joinall([&quick, &stuck], Some(Duration::from_millis(30))).unwrap_err();
    assert_eq!(
        err,
        CoroError::JoinAllTimeout {
            finished: vec![0],
            total: 2,
            timeout: Duration::from_millis(30)
        }
    );
    stuck_ev.set();
    coro::joinall([&quick, &stuck], Some(WAIT)).unwrap();
}

#[test]
fn get_timeout_leaves_a_running_greenlet_alone() {
    let ev = coro::Event::new();
    let ev2 = ev.clone();
    let mut g = coro::spawn(move || {
        ev2.wait();
        "done"
    })
    .unwrap();
    let err = g.get_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(matches!(err, CoroError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 10ms"), "{err}");
    assert!(g.value().is_none());
    ev.set();
    assert_eq!(g.get_timeout(WAIT).unwrap(), "done");
}

#[test]
fn kill_stops_a_sleeping_greenlet_and_runs_its_destructors() {
    struct Flag(Arc<Mutex<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = true;
        }
    }
    let dropped = Arc::new(Mutex::new(false));
    let d2 = dropped.clone();
    let started = coro::Event::new();
    let started2 = started.clone();
    let mut g = coro::spawn(move || {
        let _flag = Flag(d2);
        started2.set();
        coro::sleep(Duration::from_secs(60));
        1
    })
    .unwrap();
    assert!(started.wait_timeout(WAIT));
    assert!(g.kill_timeout(WAIT));
    assert!(*dropped.lock().unwrap());
    let err = g.get().unwrap_err();
    assert!(matches!(err, CoroError::Killed { .. }), "{err}");
}

#[test]
fn kill_before_start_never_runs_the_body() {
    let ran = Arc::new(Mutex::new(false));
    let ran2 = ran.clone();
    let mut g = coro::spawn_later(Duration::from_secs(60), move || {
        *ran2.lock().unwrap() = true;
    })
    .unwrap();
    assert!(g.kill_timeout(WAIT));
    assert!(!*ran.lock().unwrap());
    assert!(matches!(g.get(), Err(CoroError::Killed { .. })));
}

#[test]
fn spawn_later_waits_before_running() {
    let start = Instant::now();
    let mut g = coro::spawn_later(Duration::from_millis(30), Instant::now).unwrap();
    let ran_at = g.get_timeout(WAIT).unwrap();
    assert!(ran_at.duration_since(start) >= Duration::from_millis(30));
}

#[test]
fn with_timeout_kills_slow_work_and_returns_fast_work() {
    let slow = coro::with_timeout(Duration::from_millis(20), || {
        coro::sleep(Duration::from_secs(60));
    });
    assert!(matches!(slow, Err(CoroError::Timeout { .. })), "{slow:?}");
    assert_eq!(coro::with_timeout(WAIT, || 5).unwrap(), 5);
    let t = coro::Timeout::new(WAIT);
    assert_eq!(t.run(|| "ok").unwrap(), "ok");
    assert!(!t.expired());
}

#[test]
fn sleep_zero_yields_and_sleep_outside_a_coroutine_blocks() {
    let start = Instant::now();
    coro::sleep(Duration::from_millis(5));
    assert!(start.elapsed() >= Duration::from_millis(5));
    assert!(!coro::is_coroutine());
    let mut g = coro::spawn(|| {
        coro::sleep(Duration::ZERO);
        coro::is_coroutine()
    })
    .unwrap();
    assert!(g.get_timeout(WAIT).unwrap());
}

#[test]
fn custom_stack_size_holds_a_big_frame() {
    let mut g = Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let big = std::hint::black_box([7u8; 100 * 1024]);
            big.iter().map(|&b| u64::from(b)).sum::<u64>()
        })
        .unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), 7 * 100 * 1024);
}

#[test]
fn bad_stack_size_is_an_err() {
    let err = Builder::new().stack_size(10).spawn(|| ()).unwrap_err();
    assert!(
        matches!(err, CoroError::InvalidStackSize { bytes: 10, .. }),
        "{err}"
    );
}

#[test]
fn greenlets_can_wait_for_each_other() {
    let mut inner = coro::spawn(|| {
        coro::sleep(Duration::from_millis(2));
        10
    })
    .unwrap();
    let mut outer = coro::spawn(move || inner.get().unwrap() + 1).unwrap();
    assert_eq!(outer.get_timeout(WAIT).unwrap(), 11);
}

#[test]
fn one_worker_means_one_thread_even_after_sleeps_and_timeouts() {
    // may wakes an expired sleep or timeout on its timer thread; coro moves the
    // coroutine back to the worker before your code continues.
    let mut g = coro::spawn(|| {
        let before = std::thread::current().id();
        coro::sleep(Duration::from_millis(2));
        let after_sleep = std::thread::current().id();
        let q: coro::Queue<u8> = coro::Queue::new();
        assert!(q.get_timeout(Duration::from_millis(2)).is_err());
        let after_timeout = std::thread::current().id();
        (before == after_sleep, before == after_timeout)
    })
    .unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), (true, true));
}

#[test]
fn handles_and_primitives_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<coro::Greenlet<u8>>();
    send_sync::<coro::Queue<u8>>();
    send_sync::<coro::Event>();
    send_sync::<coro::AsyncResult<u8>>();
    send_sync::<coro::Pool>();
    send_sync::<coro::Monitor>();
    send_sync::<CoroError>();
}

#[test]
fn is_alive_until_it_ends() {
    let ev = coro::Event::new();
    let ev2 = ev.clone();
    let g = coro::spawn(move || ev2.wait()).unwrap();
    assert!(g.is_alive());
    ev.set();
    assert!(g.join_timeout(WAIT));
    assert!(!g.is_alive());
}

/// The shape the naming table lists as coro's exception: `join` borrows, so
/// several wait for one greenlet at once, `get` takes the value once through
/// `&mut`, and `into_value(self)` is the consuming join.
#[test]
fn join_borrows_so_many_wait_at_once_and_get_takes_the_value_once() {
    let gate = coro::Event::new();
    let g = {
        let gate = gate.clone();
        std::sync::Arc::new(
            coro::spawn(move || {
                gate.wait();
                5u8
            })
            .unwrap(),
        )
    };
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let g = g.clone();
            coro::spawn(move || g.join_timeout(WAIT)).unwrap()
        })
        .collect();
    gate.set();
    for w in waiters {
        assert!(w.into_value().unwrap());
    }
    let mut g = std::sync::Arc::try_unwrap(g).expect("the waiters are gone");
    let join: fn(&coro::Greenlet<u8>) = coro::Greenlet::join;
    join(&g);
    assert_eq!(g.get().unwrap(), 5);
    assert!(matches!(g.get(), Err(CoroError::ValueTaken { .. })));
    let h = coro::spawn(|| 6u8).unwrap();
    assert_eq!(h.into_value().unwrap(), 6);
}
