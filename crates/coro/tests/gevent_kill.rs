//! gevent's kill and link rules, translated from gevent's own
//! `src/gevent/tests/test__greenlet.py` (`TestKill` and its subclasses,
//! `TestReturn_link`/`TestReturn_link_value`, `TestRaise_link`/
//! `TestRaise_link_exception`), plus the Rust side of "a kill unwinds
//! silently": drops run, no error value, nothing on stderr.
//!
//! gevent's tests wait `DELAY` to show a callback did *not* run; here every
//! link runs in order of registration on the ending greenlet, so a marker
//! linked last proves the earlier links have had their turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coro::{CoroError, Greenlet, GreenletRef, Queue};

const WAIT: Duration = Duration::from_secs(20);

/// Which link calls ran, and the marker that says all links have had their turn.
struct Links {
    heard: Queue<&'static str>,
}

impl Links {
    /// gevent's `set_links` with `link_method`, plus a `set_links_timeout`
    /// on the method that must stay silent, then the marker.
    fn attach<T>(g: &Greenlet<T>) -> Links {
        let heard = Queue::new();
        let (a, b, c, d) = (heard.clone(), heard.clone(), heard.clone(), heard.clone());
        g.link(move |_| a.put("link").unwrap());
        g.link_value(move |_| b.put("link_value").unwrap());
        g.link_exception(move |_| c.put("link_exception").unwrap());
        g.link(move |_| d.put("done").unwrap());
        Links { heard }
    }

    /// Every callback that ran, in order, up to the marker.
    fn heard(&self) -> Vec<&'static str> {
        let mut got = Vec::new();
        loop {
            match self.heard.get_timeout(WAIT).expect("links never ran") {
                "done" => return got,
                x => got.push(x),
            }
        }
    }
}

/// gevent's `__assertKilled(g, successful=True)`.
fn assert_killed<T>(g: &Greenlet<T>) {
    assert!(g.ready());
    assert!(!g.is_alive());
    assert!(g.killed());
    assert_eq!(
        g.successful(),
        Some(true),
        "a plain kill is a successful end"
    );
    assert!(g.as_ref().killed());
    assert_eq!(g.as_ref().successful(), Some(true));
}

/// gevent's `TestKill._do_test`: a greenlet that would append to `result`,
/// killed (block or not, by `kill` or `killall`), twice. Run from a
/// greenlet, as gevent's tests run in the hub's thread: a greenlet spawned
/// there does not start before its spawner yields (one worker).
fn do_kill_test(start_later: bool, sleep_first: bool, block: bool, killall: bool) {
    let mut test = coro::spawn(move || in_greenlet(start_later, sleep_first, block, killall))
        .expect("spawn the test's greenlet");
    if let Err(e) = test.get_timeout(WAIT) {
        panic!("{e}");
    }
}

fn in_greenlet(start_later: bool, sleep_first: bool, block: bool, killall: bool) {
    let result = Arc::new(AtomicUsize::new(0));
    let r = result.clone();
    let body = move || {
        if sleep_first {
            coro::sleep(Duration::from_secs(10));
        }
        r.fetch_add(1, Ordering::SeqCst);
    };
    let mut g = if start_later {
        coro::spawn_later(Duration::from_secs(10), body).unwrap()
    } else {
        coro::spawn(body).unwrap()
    };
    let linked = Queue::new();
    let tx = linked.clone();
    g.link(move |me: &GreenletRef| tx.put(me.clone()).unwrap());
    if sleep_first {
        // TestKillWhileRunning: let it reach its sleep.
        coro::spawn(|| ()).unwrap().join();
    }
    let kill = |g: &Greenlet<()>| match (block, killall) {
        (true, false) => g.kill(),
        (false, false) => {
            g.kill_nowait();
            assert!(g.join_timeout(WAIT));
        }
        (true, true) => assert!(coro::killall([g], Some(WAIT))),
        (false, true) => {
            assert!(coro::killall([g], None));
            assert!(g.join_timeout(WAIT));
        }
    };
    kill(&g);
    assert_killed(&g);
    kill(&g); // "kill second time must not hurt"
    assert_killed(&g);
    assert_eq!(result.load(Ordering::SeqCst), 0, "the body must not finish");
    assert_eq!(linked.get_timeout(WAIT).unwrap(), g.as_ref());
    let err = g.get().unwrap_err();
    assert!(err.is_killed(), "{err}");
    assert!(matches!(err, CoroError::Killed { .. }));
}

#[test]
fn test_kill_block() {
    do_kill_test(false, false, true, false);
}

#[test]
fn test_kill_non_block() {
    do_kill_test(false, false, false, false);
}

#[test]
fn test_kill_block_killall() {
    do_kill_test(false, false, true, true);
}

#[test]
fn test_kill_non_block_killall() {
    do_kill_test(false, false, false, true);
}

#[test]
fn test_kill_after_start_later_block_and_killall() {
    for (block, killall) in [(true, false), (false, false), (true, true), (false, true)] {
        do_kill_test(true, false, block, killall);
    }
}

#[test]
fn test_kill_while_running_block_and_killall() {
    for (block, killall) in [(true, false), (false, false), (true, true), (false, true)] {
        do_kill_test(false, true, block, killall);
    }
}

/// TestReturn_link.test_return / TestReturn_link_value.test_return: a
/// greenlet that returns 25 runs `link` and `link_value`, never `link_exception`.
#[test]
fn test_return_link_and_link_value() {
    let mut p = coro::spawn(|| {
        coro::sleep(Duration::from_millis(1));
        25
    })
    .unwrap();
    let links = Links::attach(&p);
    assert_eq!(links.heard(), ["link", "link_value"]);
    assert_eq!(p.successful(), Some(true));
    assert!(!p.killed());
    // Linked after the end: run at once, with the same rule ("for _ in range(3)").
    for _ in 0..3 {
        assert_eq!(Links::attach(&p).heard(), ["link", "link_value"]);
    }
    assert_eq!(p.get().unwrap(), 25);
}

/// TestReturn_link.test_kill / TestReturn_link_value.test_kill: a kill runs
/// `link` and `link_value` (gevent passes the `GreenletExit` as the value),
/// and `link_exception` stays silent.
#[test]
fn test_kill_runs_link_value_not_link_exception() {
    let p = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
    let links = Links::attach(&p);
    p.kill();
    assert_eq!(links.heard(), ["link", "link_value"]);
    for _ in 0..3 {
        assert_eq!(Links::attach(&p).heard(), ["link", "link_value"]);
    }
    assert_killed(&p);
}

/// TestRaise_link.test_raise / TestRaise_link_exception: a greenlet that
/// raises runs `link` and `link_exception`, never `link_value`.
#[test]
fn test_raise_runs_link_exception_not_link_value() {
    let mut p = coro::spawn(|| -> u32 { panic!("test_raise") }).unwrap();
    let links = Links::attach(&p);
    assert_eq!(links.heard(), ["link", "link_exception"]);
    for _ in 0..3 {
        assert_eq!(Links::attach(&p).heard(), ["link", "link_exception"]);
    }
    assert_eq!(p.successful(), Some(false));
    assert!(!p.killed());
    match p.get() {
        Err(e @ CoroError::Panicked { .. }) => assert!(!e.is_killed()),
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// Counts its drops: shows that a kill unwinds the greenlet's frames.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A greenlet killed in the shim's `accept` unwinds: no error value reaches
/// the code after the call, its drops run, and it ends killed.
#[test]
fn a_greenlet_killed_in_a_shim_accept_unwinds_and_drops() {
    let listener = coro::monkey::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let saw = Arc::new(AtomicUsize::new(0));
    let (d, s) = (dropped.clone(), saw.clone());
    let mut g = coro::spawn(move || {
        let _guard = Guard(d);
        // Only a kill ends this wait; any outcome of the call would count.
        let r = listener.accept();
        s.fetch_add(1, Ordering::SeqCst);
        drop(r);
    })
    .unwrap();
    coro::spawn(|| ()).unwrap().join(); // it parks in accept first (one worker)
    assert!(g.kill_timeout(WAIT));
    assert_eq!(
        saw.load(Ordering::SeqCst),
        0,
        "user code saw the call return"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_killed(&g);
    assert!(g.get().unwrap_err().is_killed());
}

/// The same for a shim read, and for the crate's own waits (a queue get).
#[test]
fn a_greenlet_killed_in_a_shim_read_or_a_queue_get_unwinds_and_drops() {
    let listener = coro::monkey::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let saw = Arc::new(AtomicUsize::new(0));
    let (d, s) = (dropped.clone(), saw.clone());
    let reader = coro::spawn(move || {
        use std::io::Read;
        let _guard = Guard(d);
        let mut c = coro::monkey::net::TcpStream::connect(addr).unwrap();
        let r = c.read(&mut [0u8; 4]);
        s.fetch_add(1, Ordering::SeqCst);
        drop(r);
    })
    .unwrap();
    let _server_side = listener.accept().unwrap();
    let q: Queue<u8> = Queue::new();
    let (d, s) = (dropped.clone(), saw.clone());
    let getter = coro::spawn(move || {
        let _guard = Guard(d);
        let _ = q.get();
        s.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    coro::spawn(|| ()).unwrap().join();
    assert!(reader.kill_timeout(WAIT));
    assert!(getter.kill_timeout(WAIT));
    assert_eq!(saw.load(Ordering::SeqCst), 0);
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    assert_killed(&reader);
    assert_killed(&getter);
}

const CHILD: &str = "CORO_GEVENT_KILL_CHILD";

/// Run in a child process by `kills_print_nothing_and_other_panics_still_print`:
/// a user's panic hook set before coro starts, three kills, one real panic.
#[test]
fn child_kills_and_one_real_panic() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("{:?}", info.payload().type_id()));
        eprintln!("user hook: {msg}");
    }));
    let listener = coro::monkey::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_accept = coro::spawn(move || listener.accept().map(|_| ())).unwrap();
    let sleeper = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
    let unwrapper = coro::spawn(|| {
        let q: Queue<u8> = Queue::new();
        q.get_timeout(Duration::from_secs(60)).unwrap();
    })
    .unwrap();
    coro::spawn(|| ()).unwrap().join();
    for g in [in_accept.as_ref(), sleeper.as_ref(), unwrapper.as_ref()] {
        g.kill_nowait();
        assert!(g.join_timeout(WAIT));
        assert_eq!(g.successful(), Some(true));
    }
    let mut real = coro::spawn(|| -> u8 { panic!("a real panic") }).unwrap();
    assert!(matches!(real.get(), Err(CoroError::Panicked { .. })));
    println!("child done");
}

/// A kill prints nothing on stderr (no panic message, no backtrace), while a
/// real panic still reaches the user's own hook.
#[test]
fn kills_print_nothing_and_other_panics_still_print() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_kills_and_one_real_panic", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("child done"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, ["user hook: a real panic"], "stderr:\n{stderr}");
}
