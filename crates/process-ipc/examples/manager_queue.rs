//! Four pool tasks put into one queue that a `Manager` owns; the parent drains it — Python's
//! `Manager().Queue()` passed to `Pool` workers, with the workers' pids and the counts printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use process_ipc::manager::{ManagedQueue, Manager, ManagerError};
use process_ipc::{Pool, current_pid};

const TASKS: u32 = 4;
const PER_TASK: u64 = 5_000;
const WAIT: Duration = Duration::from_secs(20);

/// Runs in a pool worker: the handle arrived as a task argument, like a pickled proxy.
fn produce(queue: ManagedQueue<(u32, u64)>, task: u32, n: u64) -> (u32, u32) {
    for i in 0..n {
        queue.put((task, i)).expect("put into the manager queue");
    }
    (task, current_pid())
}

fn main() -> anyhow::Result<()> {
    let manager = Manager::new()?;
    let queue = manager.queue::<(u32, u64)>()?;
    let pool = Pool::new(2)?;
    println!(
        "parent pid {}: the manager serves the queue from this process; pool workers {:?}",
        current_pid(),
        pool.pids()
    );

    let started = Instant::now();
    let tasks = (0..TASKS).map(|task| (queue.clone(), task, PER_TASK));
    let result = pool.starmap_async(produce, tasks)?;

    // Drain everything; each task's items must come out in its own put order.
    let total = u64::from(TASKS) * PER_TASK;
    let mut next_of: BTreeMap<u32, u64> = BTreeMap::new();
    for _ in 0..total {
        let (task, i) = queue.get_timeout(WAIT).context("draining the queue")?;
        let next = next_of.entry(task).or_insert(0);
        ensure!(i == *next, "task {task}: got item {i}, expected {next}");
        *next += 1;
    }
    let elapsed = started.elapsed();

    for (task, pid) in result.get_timeout(WAIT)? {
        println!(
            "  task {task} ran in worker pid {pid}: put {PER_TASK}, the parent got {}",
            next_of[&task]
        );
        ensure!(next_of[&task] == PER_TASK, "task {task}: counts differ");
    }
    ensure!(
        matches!(queue.get_nowait(), Err(ManagerError::Empty { .. })),
        "items left over"
    );
    println!(
        "drained {total} items exactly once in {:.1} ms: {:.0} msgs/s",
        elapsed.as_secs_f64() * 1e3,
        total as f64 / elapsed.as_secs_f64()
    );

    // A manager that is gone is an error, not a hang.
    manager.shutdown();
    match queue.get_timeout(WAIT) {
        Err(e @ ManagerError::Gone { .. }) => println!("after shutdown: {e}"),
        other => anyhow::bail!("expected Gone after shutdown, got {other:?}"),
    }
    Ok(())
}
