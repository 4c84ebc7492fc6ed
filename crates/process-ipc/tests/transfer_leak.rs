//! Blocks sent to a child at its start are held for the child only until it has attached
//! them: a program that makes a queue and a lock per job and hands them to a short child does
//! not run out of descriptors, and neither does one that makes and ends pools. The tests of
//! this binary take turns (a lock), so that no other test's descriptors come and go while one
//! counts.

use std::time::Duration;

use std::sync::Mutex;

use process_ipc::{Lock, Pool, Process, Queue};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(30);
const JOBS: usize = 300;
/// Blocks this process may keep for reuse (`REUSE_MAX_COUNT` in `shared/mapping.rs`), each an
/// open descriptor, plus a few for whatever the library opens once (the fork server's socket,
/// a channel kept by a thread).
const ALLOWED_GROWTH: usize = 16 + 8;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// One job: put into the queue and take the lock.
fn job(q: Queue<u64>, lock: Lock, n: u64) {
    let _guard = lock.acquire_timeout(WAIT).unwrap();
    q.put(n).unwrap();
}

fn run_job(n: u64) {
    let q = Queue::<u64>::new().unwrap();
    let lock = Lock::new().unwrap();
    let mut child = Process::new(job, (q.handle(), lock.clone(), n))
        .start()
        .unwrap();
    assert_eq!(q.get_timeout(WAIT).unwrap(), n);
    child.join_timeout(WAIT).unwrap();
}

#[test]
fn a_queue_and_a_lock_per_child_leave_no_descriptor_behind() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The first job starts what lives on (the fork server, its socket).
    run_job(0);
    let before = open_descriptors();
    for n in 1..=JOBS as u64 {
        run_job(n);
    }
    let after = open_descriptors();
    assert!(
        after <= before + ALLOWED_GROWTH,
        "{JOBS} jobs left {} more descriptors open (from {before} to {after})",
        after.saturating_sub(before)
    );
}

fn square(x: u64) -> u64 {
    x * x
}

/// Makes a pool of two, runs a task, and ends it the way `end` says.
fn run_pool(n: u64, end: usize) {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(square, (n,)).unwrap(), n * n);
    match end {
        0 => {
            pool.close();
            pool.join_timeout(WAIT).unwrap();
        }
        1 => {
            pool.terminate();
            pool.join_timeout(WAIT).unwrap();
        }
        _ => drop(pool),
    }
}

#[test]
fn pools_made_and_ended_leave_no_result_ring_or_lock_behind() {
    // Each pool gives each worker a result ring with two lock blocks: 60 pools of two would
    // leave 240 lock descriptors if the blocks sent to workers stayed pinned.
    const POOLS: u64 = 60;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_pool(0, 0);
    let before = open_descriptors();
    for n in 1..=POOLS {
        run_pool(n, n as usize % 3);
    }
    let after = open_descriptors();
    assert!(
        after <= before + ALLOWED_GROWTH,
        "{POOLS} pools left {} more descriptors open (from {before} to {after})",
        after.saturating_sub(before)
    );
}
