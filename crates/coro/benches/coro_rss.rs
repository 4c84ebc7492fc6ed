//! Peak RSS per parked coroutine, each count in a fresh process: coro, raw may, gevent.
//!
//! Not a criterion bench (memory, not time): `cargo bench -p coro --bench coro_rss`.
//! Each measurement re-runs this binary as a child (`CORO_RSS_CHILD`), because
//! RSS must come from a fresh process. gevent's row needs `python3` with gevent.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const N: usize = 30_000;
const REPS: usize = 3;

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

/// Child: park N coroutines, print `before_kib parked_kib hwm_kib`.
fn child(mode: &str, n: usize) {
    coro::spawn(|| ()).unwrap().join(); // runtime + may's stack pool, before the baseline
    let before = status_kib("VmRSS:");
    let parked = Arc::new(AtomicUsize::new(0));
    let (after, hwm);
    if mode == "coro" {
        let gate = coro::Event::new();
        let gs: Vec<_> = (0..n)
            .map(|_| {
                let (gate, parked) = (gate.clone(), parked.clone());
                coro::spawn(move || {
                    parked.fetch_add(1, Ordering::Release);
                    gate.wait();
                })
                .unwrap()
            })
            .collect();
        wait_for(&parked, n);
        coro::yield_now();
        after = status_kib("VmRSS:");
        hwm = status_kib("VmHWM:");
        gate.set();
        coro::joinall(&gs, Some(Duration::from_secs(60))).unwrap();
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
        wait_for(&parked, n);
        after = status_kib("VmRSS:");
        hwm = status_kib("VmHWM:");
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
    }
    println!("{before} {after} {hwm}");
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
print(before, after, hwm)
"#;

fn measure(mut cmd: Command) -> Option<(f64, f64)> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [before, after, hwm] = v[..] else {
        return None;
    };
    Some(((after - before) / N as f64, hwm / 1024.0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    println!("peak RSS with {N} parked coroutines, fresh process each, median of {REPS}");
    println!(
        "{:<28} {:>14} {:>12}",
        "runtime", "KiB/coroutine", "VmHWM MiB"
    );
    for mode in ["coro", "may"] {
        let runs: Vec<_> = (0..REPS)
            .filter_map(|_| {
                let mut cmd = Command::new(&exe);
                cmd.env("CORO_RSS_CHILD", mode)
                    .env("CORO_RSS_N", N.to_string());
                measure(cmd)
            })
            .collect();
        if runs.is_empty() {
            println!("{mode:<28} failed");
            continue;
        }
        let label = if mode == "coro" {
            "coro (Event.wait)"
        } else {
            "raw may (mpmc recv)"
        };
        println!(
            "{label:<28} {:>14.2} {:>12.1}",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect())
        );
    }
    let runs: Vec<_> = (0..REPS)
        .filter_map(|_| {
            let mut cmd = Command::new("python3");
            cmd.args(["-c", GEVENT, &N.to_string()]);
            measure(cmd)
        })
        .collect();
    if runs.is_empty() {
        println!(
            "{:<28} unavailable (python3 with gevent not found)",
            "gevent (Event.wait)"
        );
    } else {
        println!(
            "{:<28} {:>14.2} {:>12.1}",
            "gevent (Event.wait)",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect())
        );
    }
}
