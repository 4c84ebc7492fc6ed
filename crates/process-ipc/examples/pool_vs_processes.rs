//! Why pools exist: starting a process costs far more than a small task, so 200 small tasks
//! run much faster on two reused workers than on one new process per task. The tasks are
//! small (50 us) on purpose: the pool's win is then the start-up it does not pay, which no
//! load on the machine takes away (with long tasks both ways mostly wait for the CPU).

use std::time::{Duration, Instant};

use process_ipc::{Pool, Process};

const TASKS: u64 = 200;

/// About 50 microseconds of CPU work.
fn busy_50us(seed: u64) -> u64 {
    let start = Instant::now();
    let mut x = seed;
    while start.elapsed() < Duration::from_micros(50) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

fn main() -> anyhow::Result<()> {
    // One process per task, two at a time.
    let started = Instant::now();
    let mut done = 0;
    for pair in (0..TASKS).collect::<Vec<_>>().chunks(2) {
        let handles: Vec<_> = pair
            .iter()
            .map(|&i| Process::new(busy_50us, (i,)).start())
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
    let results = pool.map(busy_50us, 0..TASKS)?;
    pool.close();
    pool.join_timeout(Duration::from_secs(10))?;
    let pooled = started.elapsed();
    println!(
        "{} tasks on Pool(2).map:                  {pooled:?}",
        results.len()
    );

    let ratio = per_process.as_secs_f64() / pooled.as_secs_f64();
    println!(
        "the pool took {ratio:.1}x less time: it started 2 processes, not {TASKS} \
         ({:.0} us per task beside {:.0} us per started process)",
        pooled.as_secs_f64() * 1e6 / TASKS as f64,
        per_process.as_secs_f64() * 1e6 / TASKS as f64
    );
    Ok(())
}
