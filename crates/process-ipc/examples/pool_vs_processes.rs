//! Why pools exist: starting a process costs about a millisecond, so 200 tasks of 1 ms each
//! run much faster on two reused workers than on one new process per task.
//!
//! Python's measurement (same machine): one process per task 400 ms, `Pool(2).map` 111 ms,
//! a 3.6x win for the pool.

use std::time::{Duration, Instant};

use process_ipc::{Pool, Process};

const TASKS: u64 = 200;

/// About one millisecond of CPU work.
fn busy_1ms(seed: u64) -> u64 {
    let start = Instant::now();
    let mut x = seed;
    while start.elapsed() < Duration::from_millis(1) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

fn main() -> anyhow::Result<()> {
    // One process per task, two at a time (like Python's measurement).
    let started = Instant::now();
    let mut done = 0;
    for pair in (0..TASKS).collect::<Vec<_>>().chunks(2) {
        let handles: Vec<_> = pair
            .iter()
            .map(|&i| Process::new(busy_1ms, (i,)).start())
            .collect::<Result<_, _>>()?;
        for mut h in handles {
            h.join_timeout(Duration::from_secs(10))?;
            done += 1;
        }
    }
    let per_process = started.elapsed();
    println!("{done} tasks, one process each (2 at a time): {per_process:?}");

    // The same tasks on a pool of two, including starting and stopping the pool.
    let started = Instant::now();
    let pool = Pool::new(2)?;
    let results = pool.map(busy_1ms, 0..TASKS)?;
    pool.close();
    pool.join_timeout(Duration::from_secs(10))?;
    let pooled = started.elapsed();
    println!(
        "{} tasks on Pool(2).map:                  {pooled:?}",
        results.len()
    );

    let ratio = per_process.as_secs_f64() / pooled.as_secs_f64();
    println!("the pool is {ratio:.1}x faster (Python on this machine: 3.6x)");
    Ok(())
}
