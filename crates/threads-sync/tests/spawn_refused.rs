//! When the OS refuses a thread, `ThreadPool::new`, `ThreadPool::builder().build()`,
//! `Thread::start` and `Timer::start` return an `Err` naming the OS error; nothing panics.
//!
//! Each case runs in a child process (this test binary again, selecting one test with an
//! environment variable) whose address space is capped just above what it already maps
//! (`RLIMIT_AS`), so a new thread stack cannot be mapped. (`RLIMIT_NPROC` would not do: it
//! does not bind root, and tests may run as root.)
#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use threads_sync::{PoolError, SpawnRefused, Thread, ThreadError, ThreadPool, Timer, active_count};

const MODE: &str = "THREADS_SYNC_SPAWN_REFUSED_MODE";
const LONG: Duration = Duration::from_secs(60);

#[test]
fn smoke() {
    // Unlimited, the same calls succeed (the parent's side of the comparison).
    assert_eq!(ThreadPool::new(2).unwrap().size(), 2);
}

/// Caps the address space at what is mapped now plus 1 MiB and room for `stacks` thread
/// stacks (2 MiB each, `RUST_MIN_STACK` is set by the parent): enough for small
/// allocations, too little for one more thread.
fn cap_address_space(stacks: u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status");
    let limit = (kib + 1024 + stacks * (2048 + 64)) * 1024;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// The child's side: only runs when the parent set `MODE`; prints one `outcome:` line.
#[test]
fn child_side() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process: it dies with the
    // parent test (which waits for it on this very thread's parent thread).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let before = active_count();
    cap_address_space(if mode == "partial" { 3 } else { 0 });
    let outcome = match mode.as_str() {
        "pool" | "partial" => format!("{:?}", ThreadPool::new(64).map(|p| p.size())),
        "builder" => format!(
            "{:?}",
            ThreadPool::builder()
                .threads(2)
                .name("capped")
                .build()
                .map(|p| p.size())
        ),
        "thread" => match Thread::new(|| 1, ()).named("refused").start() {
            Ok(t) => format!("Ok({})", t.ident()),
            Err(err) => format!("Err({err})"),
        },
        "timer" => match Timer::new(Duration::from_secs(1), || (), ()).start() {
            Ok(t) => format!("Ok({})", t.ident()),
            Err(err) => format!("Err({err})"),
        },
        other => panic!("unknown mode {other}"),
    };
    let after = active_count();
    println!("outcome: {outcome}");
    println!("listed threads before/after: {before}/{after}");
}

/// Runs `child_side` in a child process in `mode`; its stdout.
fn run_child(mode: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_side", "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env("RUST_MIN_STACK", "2097152")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((child.wait(), out, err));
    });
    let Ok((status, out, err)) = rx.recv_timeout(LONG) else {
        // SAFETY: kill(2) on the child we spawned (not reaped yet: its waiter is stuck).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("the child in mode {mode} did not finish within {LONG:?}");
    };
    assert!(
        status.unwrap().success(),
        "child in mode {mode} failed:\n{out}\n{err}"
    );
    out
}

fn outcome(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.split_once("outcome: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no outcome line in:\n{out}"))
}

#[test]
fn pool_new_is_an_error_naming_the_os_error() {
    let out = run_child("pool");
    let got = outcome(&out);
    assert!(got.starts_with("Err(Spawn(SpawnRefused {"), "{got}");
    assert!(
        got.contains("threads: 64") && got.contains("worker: 0"),
        "{got}"
    );
    assert!(got.contains("os error"), "the OS error is named: {got}");
    // The message a user sees:
    let err = PoolError::Spawn(Box::new(SpawnRefused {
        threads: 4,
        worker: 0,
        error: "Resource temporarily unavailable (os error 11)".into(),
        kind: std::io::ErrorKind::WouldBlock,
    }));
    assert!(
        err.to_string()
            .contains("could not start worker 0 of a pool of 4 threads")
    );
}

#[test]
fn a_pool_refused_part_way_stops_the_workers_it_started() {
    let out = run_child("partial");
    let got = outcome(&out);
    assert!(
        got.starts_with("Err(Spawn(SpawnRefused {") && got.contains("os error"),
        "{got}"
    );
    assert!(
        !got.contains("worker: 0,"),
        "room was left for some workers: {got}"
    );
    // The workers started before the refusal are stopped and joined, not left running.
    assert!(out.contains("listed threads before/after: 1/1"), "{out}");
}

#[test]
fn pool_builder_is_an_error_too() {
    let out = run_child("builder");
    let got = outcome(&out);
    assert!(
        got.starts_with("Err(Spawn(SpawnRefused {") && got.contains("os error"),
        "{got}"
    );
}

#[test]
fn thread_start_is_an_error_naming_the_thread_and_os_error() {
    let out = run_child("thread");
    let got = outcome(&out);
    assert!(
        got.starts_with("Err(could not spawn thread \"refused\": "),
        "{got}"
    );
    assert!(got.contains("os error"), "the OS error is named: {got}");
    // A refused thread is not left in the registry.
    assert!(out.contains("listed threads before/after: 1/1"), "{out}");
    let message = ThreadError::Spawn {
        thread: "refused".into(),
        source: std::io::Error::from_raw_os_error(libc::EAGAIN),
    }
    .to_string();
    assert!(
        message.contains("could not spawn thread \"refused\""),
        "{message}"
    );
}

#[test]
fn timer_start_is_an_error_too() {
    let out = run_child("timer");
    let got = outcome(&out);
    assert!(
        got.starts_with("Err(could not spawn thread") && got.contains("os error"),
        "{got}"
    );
}
