//! Pool basics: a few worker processes are started once and reused for many tasks; a worker
//! killed mid-task fails only its own task, and the pool carries on.
//!
//! Python's version:
//! ```python
//! with Pool(2) as pool:
//!     results = [pool.apply_async(work, (i,)) for i in range(8)]
//!     print([r.get() for r in results])
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use process_ipc::{Pool, PoolError, current_pid};

/// Returns the input squared and the pid of the worker that computed it.
fn work(x: u64) -> (u64, u32) {
    (x * x, current_pid())
}

fn die_on(x: u64, victim: u64) -> u64 {
    if x == victim {
        // SAFETY: kill(2) on our own pid, to show what a crashed worker looks like.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x
}

fn main() -> anyhow::Result<()> {
    let pool = Pool::new(2)?;
    println!(
        "parent pid {}, worker pids {:?}",
        current_pid(),
        pool.pids()
    );

    let pending: Vec<_> = (0..8u64)
        .map(|i| pool.apply_async(work, (i,)))
        .collect::<Result<_, _>>()?;
    let mut used = BTreeSet::new();
    for (i, r) in pending.into_iter().enumerate() {
        let (square, pid) = r.get_timeout(Duration::from_secs(10))?;
        println!("task {i}: {i}^2 = {square:2}, computed by worker {pid}");
        used.insert(pid);
    }
    println!("8 tasks ran on {} reused worker processes", used.len());

    println!("\nnow task 3 of 6 kills its own worker:");
    let pending: Vec<_> = (0..6u64)
        .map(|i| pool.apply_async(die_on, (i, 3)))
        .collect::<Result<_, _>>()?;
    for (i, r) in pending.into_iter().enumerate() {
        match r.get_timeout(Duration::from_secs(10)) {
            Ok(v) => println!("task {i}: ok {v}"),
            Err(e @ PoolError::WorkerDied { .. }) => println!("task {i}: {e}"),
            Err(e) => anyhow::bail!("task {i}: unexpected {e}"),
        }
    }
    println!("the pool replaced the worker: pids now {:?}", pool.pids());
    println!("and keeps working: map -> {:?}", pool.map(work, 0..3u64)?);
    pool.close();
    pool.join_timeout(Duration::from_secs(10))?;
    Ok(())
}
