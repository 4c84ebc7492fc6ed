//! How many coroutines can park at once and the RSS each costs, each in a fresh process:
//! coro (timed and untimed waits), raw may, tokio current_thread, gevent.
//!
//! Not a criterion bench (memory, not time): `cargo bench -p coro --bench coro_rss`.
//! Each measurement re-runs this binary as a child (`CORO_RSS_CHILD`), because
//! RSS must come from a fresh process. gevent's row needs `python3` with gevent.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Parked at once by raw may (which aborts past vm.max_map_count) and gevent.
const N: usize = 30_000;
/// Tried by coro (which stops with an error) and tokio (no limit).
const MAX: usize = 100_000;
const REPS: usize = 3;
/// Coroutines in the burst whose kept memory is measured.
const BURST: usize = 10_000;

fn status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn wait_for(count: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "coroutines did not park in 60 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Child: park up to N coroutines (until the first spawn error), print
/// `before_kib parked_kib hwm_kib count`.
fn child(mode: &str, n: usize) {
    if let Some(pool) = std::env::var("CORO_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        coro::configure(coro::Config::new().with_stack_pool(pool)).unwrap();
    }
    coro::spawn(|| ()).unwrap().join(); // runtime + may's stack pool, before the baseline
    let before = status_kib("VmRSS:");
    let parked = Arc::new(AtomicUsize::new(0));
    let (after, hwm, count);
    if mode == "coro_burst" {
        // RSS the stack pool keeps once a burst of coroutines, all alive at
        // once (each sleeps 1 ms, then waits for the gate), has ended.
        let gate = coro::Event::new();
        let gs: Vec<_> = (0..n)
            .map(|_| {
                let (gate, parked) = (gate.clone(), parked.clone());
                coro::spawn(move || {
                    coro::sleep(Duration::from_millis(1));
                    parked.fetch_add(1, Ordering::Release);
                    gate.wait();
                })
                .unwrap()
            })
            .collect();
        wait_for(&parked, n);
        gate.set();
        coro::joinall(&gs, Some(Duration::from_secs(60))).unwrap();
        drop(gs);
        count = n;
        after = status_kib("VmRSS:");
        hwm = status_kib("VmHWM:");
    } else if mode.starts_with("coro") {
        let timed = mode == "coro_timed";
        let gate = coro::Event::new();
        let mut gs = Vec::with_capacity(n);
        for _ in 0..n {
            let (gate, parked) = (gate.clone(), parked.clone());
            let spawned = coro::spawn(move || {
                parked.fetch_add(1, Ordering::Release);
                if timed {
                    gate.wait_timeout(Duration::from_secs(120));
                } else {
                    gate.wait();
                }
            });
            match spawned {
                Ok(g) => gs.push(g),
                Err(_) => break,
            }
        }
        count = gs.len();
        wait_for(&parked, count);
        coro::yield_now();
        after = status_kib("VmRSS:");
        hwm = status_kib("VmHWM:");
        gate.set();
        coro::joinall(&gs, Some(Duration::from_secs(60))).unwrap();
    } else if mode == "tokio" {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (a, h, c) = rt.block_on(async move {
            let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let mut rx = tx.subscribe();
                    let parked = parked.clone();
                    tokio::spawn(async move {
                        parked.fetch_add(1, Ordering::Release);
                        let _ = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await;
                    })
                })
                .collect();
            while parked.load(Ordering::Acquire) < n {
                tokio::task::yield_now().await;
            }
            let (a, h) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
            tx.send(()).unwrap();
            for h in hs {
                h.await.unwrap();
            }
            (a, h, n)
        });
        (after, hwm, count) = (a, h, c);
    } else {
        let (tx, rx) = may::sync::mpmc::channel::<()>();
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (rx, parked) = (rx.clone(), parked.clone());
                may::go!(move || {
                    parked.fetch_add(1, Ordering::Release);
                    let _ = rx.recv();
                })
            })
            .collect();
        count = n;
        wait_for(&parked, n);
        after = status_kib("VmRSS:");
        hwm = status_kib("VmHWM:");
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
    }
    println!("{before} {after} {hwm} {count}");
}

const GEVENT: &str = r#"
import sys, gevent, gevent.event
def kib(f):
    for l in open('/proc/self/status'):
        if l.startswith(f): return float(l.split()[1])
n = int(sys.argv[1]); ev = gevent.event.Event()
gevent.sleep(0)
before = kib('VmRSS:')
gs = [gevent.spawn(ev.wait) for _ in range(n)]
gevent.sleep(0)
after, hwm = kib('VmRSS:'), kib('VmHWM:')
ev.set(); gevent.joinall(gs, timeout=60)
print(before, after, hwm, n)
"#;

/// KiB per parked coroutine, peak RSS in MiB, and how many were parked.
fn measure(mut cmd: Command) -> Option<(f64, f64, f64)> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [before, after, hwm, count] = v[..] else {
        return None;
    };
    Some(((after - before) / count, hwm / 1024.0, count))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(label: &str, runs: &[(f64, f64, f64)]) {
    if runs.is_empty() {
        println!("{label:<34} failed or unavailable");
        return;
    }
    println!(
        "{label:<34} {:>10.0} {:>14.2} {:>12.1}",
        median(runs.iter().map(|r| r.2).collect()),
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect())
    );
}

fn main() {
    if let Ok(mode) = std::env::var("CORO_RSS_CHILD") {
        let n = std::env::var("CORO_RSS_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(N);
        child(&mode, n);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("coro_rss: skipped (run it with `cargo bench -p coro --bench coro_rss`)");
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    println!(
        "parked coroutines/tasks (up to {MAX}, until the first spawn error), fresh process each, median of {REPS}"
    );
    println!(
        "{:<34} {:>10} {:>14} {:>12}",
        "runtime", "live", "KiB each", "VmHWM MiB"
    );
    for (mode, label) in [
        ("coro_timed", "coro (Event.wait_timeout 120 s)"),
        ("coro", "coro (Event.wait)"),
        ("may", "raw may (mpmc recv)"),
        ("tokio", "tokio current_thread (timeout recv)"),
    ] {
        let runs: Vec<_> = (0..REPS)
            .filter_map(|_| {
                let mut cmd = Command::new(&exe);
                let n = if mode == "may" { N } else { MAX };
                cmd.env("CORO_RSS_CHILD", mode)
                    .env("CORO_RSS_N", n.to_string());
                measure(cmd)
            })
            .collect();
        report(label, &runs);
    }
    let runs: Vec<_> = (0..REPS)
        .filter_map(|_| {
            let mut cmd = Command::new("python3");
            cmd.args(["-c", GEVENT, &N.to_string()]);
            measure(cmd)
        })
        .collect();
    report("gevent (Event.wait)", &runs);
    println!(
        "memory kept once {BURST} coroutines, alive at once, each having slept 1 ms, have ended (KiB each: kept / {BURST})"
    );
    for (pool, label) in [
        (coro::DEFAULT_STACK_POOL, "coro, default stack pool"),
        (1000, "coro, stack pool 1000 (may's default)"),
    ] {
        let runs: Vec<_> = (0..REPS)
            .filter_map(|_| {
                let mut cmd = Command::new(&exe);
                cmd.env("CORO_RSS_CHILD", "coro_burst")
                    .env("CORO_RSS_N", BURST.to_string())
                    .env("CORO_BENCH_POOL", pool.to_string());
                measure(cmd)
            })
            .collect();
        report(label, &runs);
    }
}
