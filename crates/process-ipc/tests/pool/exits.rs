//! A task that ends its worker process itself (`std::process::exit`, `libc::_exit`), with any
//! code, 0 included: only that task fails, with `WorkerDied` naming the pid and the code; it is
//! never run again unless the pool was built with `retries(n)` (then up to n more times), and
//! the pool keeps answering.

use std::io::Write;

use process_ipc::{MapOptions, Pool, PoolError, current_pid};

use super::{WAIT, square};

/// How a task ends its worker.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Exit {
    /// `std::process::exit(code)` (runs the exit handlers).
    Std(i32),
    /// `libc::_exit(code)` (ends the process at once).
    Raw(i32),
}

impl Exit {
    fn code(self) -> i32 {
        match self {
            Exit::Std(c) | Exit::Raw(c) => c,
        }
    }
}

/// Appends one line to `path` (one line per run of the task), then ends the worker as `how`.
fn mark_then_exit(path: String, how: Exit) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open the run count");
    f.write_all(b"run\n").expect("count the run");
    drop(f);
    match how {
        Exit::Std(code) => std::process::exit(code),
        // SAFETY: _exit(2) ends the process; nothing runs after it.
        Exit::Raw(code) => unsafe { libc::_exit(code) },
    }
}

/// Item `k` of a map ends its worker with `_exit(0)` after counting its run in `path`.
fn square_or_exit(x: u64, k: u64, path: String) -> u64 {
    if x == k {
        return mark_then_exit(path, Exit::Raw(0));
    }
    x * x
}

/// A fresh file path for run counting.
fn run_count_path(tag: &str) -> String {
    let path = std::env::temp_dir().join(format!("pipc-exit-{tag}-{}", current_pid()));
    let _ = std::fs::remove_file(&path);
    path.to_string_lossy().into_owned()
}

fn runs(path: &str) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// Checks that `got` is the `WorkerDied` of one of `pids`, naming exit code `code`.
fn assert_died_with_code(got: &Result<impl std::fmt::Debug, PoolError>, pids: &[u32], code: i32) {
    match got {
        Err(PoolError::WorkerDied {
            pid, cause, signal, ..
        }) => {
            assert!(pids.contains(pid), "pid {pid} is not a worker of {pids:?}");
            assert_eq!(cause, &format!("exited with code {code}"));
            assert_eq!(*signal, None);
        }
        other => panic!("expected WorkerDied with code {code}, got {other:?}"),
    }
}

fn an_exiting_apply_fails_once(how: Exit) {
    let path = run_count_path(&format!("{how:?}"));
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    let got = pool
        .apply_async(mark_then_exit, (path.clone(), how))
        .unwrap()
        .get_timeout(WAIT);
    assert_died_with_code(&got, &pids, how.code());
    // The pool keeps answering, with a replacement worker.
    for i in 0..20u64 {
        assert_eq!(
            pool.apply_async(square, (i,)).unwrap().get_timeout(WAIT),
            Ok(i * i)
        );
    }
    assert_eq!(pool.pids().len(), 2);
    // The tasks above ran after the exit was judged: a re-queued task would have run by now.
    assert_eq!(runs(&path), 1, "the exiting task ran again");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_task_calling_exit_0_fails_with_worker_died_and_never_reruns() {
    an_exiting_apply_fails_once(Exit::Std(0));
}

#[test]
fn a_task_calling_raw_exit_0_fails_with_worker_died_and_never_reruns() {
    an_exiting_apply_fails_once(Exit::Raw(0));
}

#[test]
fn a_task_calling_exit_3_fails_with_worker_died_and_never_reruns() {
    an_exiting_apply_fails_once(Exit::Std(3));
}

#[test]
fn a_map_item_calling_exit_0_fails_only_its_chunk() {
    let path = run_count_path("map");
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    let items: Vec<(u64, u64, String)> = (0..40u64).map(|x| (x, 17, path.clone())).collect();
    let got = pool.starmap_async(square_or_exit, items).unwrap();
    let got = got.get_timeout(WAIT);
    assert_died_with_code(&got, &pids, 0);
    if let Err(PoolError::WorkerDied { what, .. }) = &got {
        assert!(what.contains("items"), "{what}");
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap()[9], 81);
    assert_eq!(runs(&path), 1, "the exiting chunk ran again");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_worker_retiring_between_tasks_is_replaced_and_loses_nothing() {
    // max_tasks_per_child: a clean exit while idle is not a death.
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    for i in 0..5u64 {
        assert_eq!(
            pool.apply_async(square, (i,)).unwrap().get_timeout(WAIT),
            Ok(i * i)
        );
    }
    let pids = pool
        .map_with(super::pid_of, 0..6u32, MapOptions::new().chunksize(1))
        .unwrap();
    let distinct: std::collections::HashSet<u32> = pids.into_iter().collect();
    assert_eq!(distinct.len(), 6, "each worker ran one task");
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn replacing_workers_reuses_their_result_rings_and_leaks_no_descriptor() {
    // Every task retires its worker: 150 replacements. A replacement takes its predecessor's
    // result ring (read to its end), so the parent's descriptors do not grow with them.
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    for i in 0..5u64 {
        assert_eq!(
            pool.apply_async(square, (i,)).unwrap().get_timeout(WAIT),
            Ok(i * i)
        );
    }
    let before = open_descriptors();
    for i in 0..150u64 {
        assert_eq!(
            pool.apply_async(square, (i,)).unwrap().get_timeout(WAIT),
            Ok(i * i)
        );
    }
    let after = open_descriptors();
    // Other tests of this binary run at the same time and hold descriptors of their own for a
    // while (a bounded number); a leak of two lock blocks per new ring would be 300 more.
    assert!(
        after < before + 200,
        "{before} descriptors before, {after} after"
    );
}

/// Ends its worker with `_exit(0)` on its first run (no run file yet), returns `x * x` on any
/// later run; every run leaves a line in `path`.
fn exit_on_first_run(x: u64, path: String) -> u64 {
    let first = runs(&path) == 0;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open the run count");
    f.write_all(b"run\n").expect("count the run");
    drop(f);
    if first {
        // SAFETY: _exit(2) ends the process; nothing runs after it.
        unsafe { libc::_exit(0) };
    }
    x * x
}

#[test]
fn with_retries_2_a_task_that_always_exits_runs_3_times_then_fails() {
    let path = run_count_path("retries2");
    let pool = Pool::builder().processes(2).retries(2).build().unwrap();
    let got = pool
        .apply_async(mark_then_exit, (path.clone(), Exit::Raw(0)))
        .unwrap()
        .get_timeout(WAIT);
    match &got {
        Err(PoolError::WorkerDied { cause, signal, .. }) => {
            assert!(cause.starts_with("exited with code 0"), "{cause}");
            assert!(cause.contains("3 runs"), "{cause}");
            assert_eq!(*signal, None);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // Later tasks run after the failure was judged: a fourth run would have happened by now.
    for i in 0..10u64 {
        assert_eq!(
            pool.apply_async(square, (i,)).unwrap().get_timeout(WAIT),
            Ok(i * i)
        );
    }
    assert_eq!(runs(&path), 3, "one run plus two retries");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn with_retries_1_a_task_that_exits_only_on_its_first_run_succeeds() {
    let path = run_count_path("retries1");
    let pool = Pool::builder().processes(1).retries(1).build().unwrap();
    let first_pid = pool.pids();
    let got = pool
        .apply_async(exit_on_first_run, (9, path.clone()))
        .unwrap()
        .get_timeout(WAIT);
    assert_eq!(got, Ok(81));
    assert_eq!(runs(&path), 2);
    assert_ne!(
        pool.pids(),
        first_pid,
        "the second run was on a fresh worker"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn with_retries_a_map_chunk_whose_worker_exits_once_runs_again_whole() {
    let path = run_count_path("retries-map");
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    let items: Vec<(u64, String)> = (0..40u64).map(|x| (x, path.clone())).collect();
    // Only the first run of any item exits (the file is shared by every item); its chunk runs
    // again whole and every result arrives.
    let got = pool
        .starmap_async(exit_on_first_run, items)
        .unwrap()
        .get_timeout(WAIT)
        .unwrap();
    assert_eq!(got, (0..40u64).map(|x| x * x).collect::<Vec<_>>());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn by_default_an_exiting_task_fails_at_once_with_no_retry() {
    let path = run_count_path("retries0");
    let pool = Pool::builder().processes(1).build().unwrap();
    let pids = pool.pids();
    let got = pool
        .apply_async(exit_on_first_run, (9, path.clone()))
        .unwrap()
        .get_timeout(WAIT);
    assert_died_with_code(&got, &pids, 0);
    assert_eq!(pool.apply(square, (3,)), Ok(9));
    assert_eq!(runs(&path), 1);
    let _ = std::fs::remove_file(&path);
}

/// As [`exit_on_first_run`], returning the pid of the worker that ran it.
fn pid_after_exit_on_first_run(path: String) -> u32 {
    exit_on_first_run(0, path);
    current_pid()
}

#[test]
fn a_retried_task_runs_on_a_fresh_worker_not_an_idle_used_one() {
    let path = run_count_path("retries-fresh");
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    let before = pool.pids();
    // Both workers run a task first (two idle workers get one each), so neither is fresh.
    let ran = pool
        .map_with(super::pid_of, 0..2u32, MapOptions::new().chunksize(1))
        .unwrap();
    assert_eq!(ran.len(), 2);
    assert_ne!(ran[0], ran[1], "each worker ran one");
    let pid = pool
        .apply_async(pid_after_exit_on_first_run, (path.clone(),))
        .unwrap()
        .get_timeout(WAIT)
        .unwrap();
    // The other worker was idle, and used: the retry went to the dead one's replacement.
    assert!(
        !before.contains(&pid),
        "{pid} ran in a worker of {before:?}"
    );
    assert!(pool.pids().contains(&pid));
    assert_eq!(runs(&path), 2);
    let _ = std::fs::remove_file(&path);
}
