//! The trace file (feature `trace`) of a program that starts threads, a process Pool and
//! coroutines, checked against the trace-event format: every event has `ph`, `ts`, `pid` and
//! `tid`; the Pool workers' pids are present with their tasks; `B`/`E` spans nest on every
//! track; threads and coroutines have tracks of their own.
//!
//! A plain `main` (no libtest harness): the program must start traced before any other thread
//! exists, so this binary runs itself as the program (in a fresh process, with
//! [`PROGRAM`] set) and reads what it wrote. Two runs: one that calls `trace::to_file`, one
//! unchanged program traced through `MULTITASK_TRACE` alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use multitask::{coro, process, threads};
use serde::Deserialize;

/// Set in the program's environment: `to_file` or `env` (how it traces).
const PROGRAM: &str = "MULTITASK_TRACE_TEST_PROGRAM";

const WAIT: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn sum_to(n: u64) -> u64 {
    (0..n).sum()
}

/// The traced program: a named thread, a Pool of two running eight tasks, three coroutines
/// that each park once. Prints the workers' pids for the checker.
fn program(how: &str) -> anyhow::Result<()> {
    let guard = match how {
        "to_file" => {
            let path = std::env::var("TRACE_TEST_PATH")?;
            Some(multitask::trace::to_file(path)?)
        }
        _ => None, // MULTITASK_TRACE is in the environment
    };
    let mut thread = threads::Thread::new(sum_to, (1000,))
        .named("summer")
        .start()?;
    let sum = thread.join_timeout(WAIT)?;
    anyhow::ensure!(sum == 499_500);

    let pool = process::Pool::new(2)?;
    let pids = pool.pids();
    let squares = pool.map(square, 0..8u64)?;
    anyhow::ensure!(squares == (0..8u64).map(|x| x * x).collect::<Vec<_>>());
    pool.close();
    pool.join_timeout(WAIT)?;
    println!(
        "WORKERS {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let greenlets: Vec<_> = (0..3u64)
        .map(|i| {
            coro::spawn(move || {
                coro::sleep(Duration::from_millis(1));
                i
            })
        })
        .collect::<Result<_, _>>()?;
    for mut g in greenlets {
        g.get_timeout(WAIT)?;
    }
    drop(guard);
    Ok(())
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<serde_json::Value>,
}

/// Runs this binary as the program, with the trace going to `path`; returns the workers' pids.
fn run_program(how: &str, path: &Path) -> Vec<u32> {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env(PROGRAM, how).env("TRACE_TEST_PATH", path);
    match how {
        "env" => cmd.env(multitask::trace::ENV, path),
        _ => cmd.env_remove(multitask::trace::ENV),
    };
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the program");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = match rx.recv_timeout(WAIT * 2) {
        Ok(out) => out.expect("wait for the program"),
        Err(_) => {
            // SAFETY: kill(2) of our own child, which has not been reaped (its waiter hangs).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!(
                "the traced program ({how}) did not finish in {:?}",
                WAIT * 2
            );
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the program ({how}) failed: {stdout}"
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("WORKERS "))
        .expect("the program names its workers")
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect()
}

/// The checks of the module's docs, on the file at `path`.
fn check(how: &str, path: &Path, workers: &[u32]) {
    let text = std::fs::read_to_string(path).expect("the merged trace file exists");
    let doc: Doc = serde_json::from_str(&text).expect("the file is one JSON document");
    let events = doc.trace_events;
    assert!(!events.is_empty(), "{how}: no events");
    let me_pid = events
        .iter()
        .find(|e| e["name"] == "thread" && e["args"]["name"] == "summer")
        .map(|e| e["pid"].as_u64().unwrap())
        .unwrap_or_else(|| panic!("{how}: the thread `summer` has no span"));

    let mut tracks: BTreeMap<(u64, u64), Vec<&serde_json::Value>> = BTreeMap::new();
    for e in &events {
        let ph = e["ph"].as_str();
        assert!(
            matches!(ph, Some("B" | "E" | "X" | "i" | "M")),
            "{how}: bad ph in {e}"
        );
        assert!(e["ts"].is_number(), "{how}: no ts in {e}");
        let (pid, tid) = (e["pid"].as_u64(), e["tid"].as_u64());
        let (Some(pid), Some(tid)) = (pid, tid) else {
            panic!("{how}: no pid/tid in {e}");
        };
        if ph == Some("X") {
            assert!(
                e["dur"].as_f64().is_some_and(|d| d >= 0.0),
                "{how}: X without dur: {e}"
            );
        }
        tracks.entry((pid, tid)).or_default().push(e);
    }

    // B/E nest on every track, in the order of time.
    for ((pid, tid), list) in &mut tracks {
        list.sort_by(|a, b| {
            a["ts"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["ts"].as_f64().unwrap())
        });
        let mut open: Vec<&str> = Vec::new();
        for e in list.iter() {
            match e["ph"].as_str().unwrap() {
                "B" => open.push(e["name"].as_str().unwrap_or("?")),
                "E" => assert!(
                    open.pop().is_some(),
                    "{how}: track {pid}/{tid}: an E with no open B at {}",
                    e["ts"]
                ),
                _ => {}
            }
        }
        assert!(
            open.is_empty(),
            "{how}: track {pid}/{tid}: spans never closed: {open:?}"
        );
    }

    // The workers: their pids are present, each process named, their tasks on their tracks.
    let pids: BTreeSet<u64> = tracks.keys().map(|&(pid, _)| pid).collect();
    let mut tasks = 0;
    for &w in workers {
        assert!(
            pids.contains(&u64::from(w)),
            "{how}: worker {w} has no events"
        );
        assert!(
            events
                .iter()
                .any(|e| e["pid"] == w && e["name"] == "process_name"),
            "{how}: worker {w} is not named"
        );
        assert!(
            events.iter().any(|e| e["pid"] == me_pid
                && e["name"] == "process start"
                && e["args"]["pid"] == w),
            "{how}: the parent did not record worker {w}'s start"
        );
        tasks += events
            .iter()
            .filter(|e| e["pid"] == w && e["name"] == "task" && e["ph"] == "B")
            .inspect(|e| assert_eq!(e["args"]["worker"], w, "{how}: {e}"))
            .count();
    }
    assert!(tasks >= 1, "{how}: no task ran in a worker's span");

    // Three coroutines, each on its own named track with a run bar and an end.
    let coro_tracks: Vec<u64> = tracks
        .keys()
        .filter(|&&(pid, tid)| pid == me_pid && tid >= u64::from(timeline_base()))
        .map(|&(_, tid)| tid)
        .collect();
    assert!(
        coro_tracks.len() >= 3,
        "{how}: coroutine tracks {coro_tracks:?}"
    );
    for tid in coro_tracks {
        let list = &tracks[&(me_pid, tid)];
        for name in ["thread_name", "spawn", "run", "end"] {
            assert!(
                list.iter().any(|e| e["name"] == name),
                "{how}: coroutine track {tid} lacks {name}"
            );
        }
    }
    assert!(
        !path.with_extension("json.parts").exists(),
        "{how}: the parts directory is left behind"
    );
}

/// Where coroutine tracks start (timeline's `CORO_TRACK_BASE`).
fn timeline_base() -> u32 {
    0x4000_0000
}

fn main() {
    if let Ok(how) = std::env::var(PROGRAM) {
        if let Err(e) = program(&how) {
            eprintln!("traced program: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("multitask-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for how in ["to_file", "env"] {
        let path = dir.join(format!("{how}.json"));
        let workers = run_program(how, &path);
        check(how, &path, &workers);
        println!("test trace::{how} ... ok ({} workers)", workers.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
