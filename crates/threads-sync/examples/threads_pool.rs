//! A thread per task against a ThreadPool: the pool pays thread start-up once, not per task.

use std::hint::black_box;
use std::time::{Duration, Instant};

use threads_sync::{Thread, ThreadPool};

fn square(x: u64) -> u64 {
    black_box(x) * x
}

/// Busy-waits for about `ms` milliseconds (a CPU-bound task), returns `x`.
fn busy(x: u64, ms: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    x
}

fn thread_per_task<F>(tasks: u64, in_flight: usize, f: F) -> anyhow::Result<(u64, Duration)>
where
    F: Fn(u64) -> u64 + Send + Copy + 'static,
{
    let started = Instant::now();
    let mut sum = 0;
    let mut running = Vec::new();
    for i in 0..tasks {
        running.push(Thread::new(f, (i,)).start()?);
        if running.len() == in_flight {
            for t in running.drain(..) {
                sum += t.join()?;
            }
        }
    }
    for t in running {
        sum += t.join()?;
    }
    Ok((sum, started.elapsed()))
}

fn pooled<F>(pool: &ThreadPool, tasks: u64, f: F) -> anyhow::Result<(u64, Duration)>
where
    F: Fn(u64) -> u64 + Send + Sync + Copy + 'static,
{
    let started = Instant::now();
    let pending = (0..tasks)
        .map(|i| pool.apply_async(f, (i,)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sum = 0;
    for result in pending {
        sum += result.get()?;
    }
    Ok((sum, started.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = ThreadPool::new(workers)?;
    println!("ThreadPool of {workers} workers (one per core).");

    let tiny = 5_000;
    println!("\n{tiny} tiny tasks (x * x):");
    let (a, per_thread) = thread_per_task(tiny, workers, square)?;
    println!(
        "  a thread per task:   {per_thread:>10.2?}  ({:.1} us per task)",
        per_thread.as_secs_f64() * 1e6 / tiny as f64
    );
    let (b, in_pool) = pooled(&pool, tiny, square)?;
    println!(
        "  ThreadPool:          {in_pool:>10.2?}  ({:.2} us per task, {:.0}x faster)",
        in_pool.as_secs_f64() * 1e6 / tiny as f64,
        per_thread.as_secs_f64() / in_pool.as_secs_f64()
    );
    anyhow::ensure!(a == b, "both ways compute the same sum");
    // A tiny task is all start-up: what a thread per task pays each time.
    let start_up_us = per_thread.as_secs_f64() * 1e6 / tiny as f64;

    let heavy = 200;
    println!(
        "\n{heavy} tasks of 1 ms CPU each ({workers} at a time; ideal {} ms):",
        heavy / workers as u64
    );
    let (a, per_thread) = thread_per_task(heavy, workers, |x| busy(x, 1))?;
    println!("  a thread per task:   {per_thread:>10.2?}");
    let (b, in_pool) = pooled(&pool, heavy, |x| busy(x, 1))?;
    println!("  ThreadPool:          {in_pool:>10.2?}");
    // The point: with 1 ms tasks the start-ups are a small part, so neither way wins much.
    let start_ups_ms = start_up_us * heavy as f64 / 1e3;
    let apart_ms = (per_thread.as_secs_f64() - in_pool.as_secs_f64()).abs() * 1e3;
    println!(
        "  a thread per task paid about {start_ups_ms:.0} ms of start-ups in all ({start_up_us:.0} us \
         each, from the tiny tasks): small beside {heavy} ms of work"
    );
    if apart_ms > 2.0 * start_ups_ms {
        println!(
            "  (the two runs are {apart_ms:.0} ms apart, more than all the start-ups: that is other \
             load on this machine, not start-up)"
        );
    }
    anyhow::ensure!(a == b, "both ways compute the same sum");

    let squares = pool.map(square, 0..10)?;
    println!("\npool.map(square, 0..10) = {squares:?} (input order kept)");
    pool.close();
    pool.join()?;
    println!("For long tasks the start-up cost hides in the work; for tiny ones the pool wins.");
    Ok(())
}
