//! Shared state: threads that increment one counter lose updates; a Mutex makes the count exact.
//!
//! Python's `counter += 1` is a read, an add and a write; two threads can read the same value
//! and both write value + 1. `RacyCounter` does exactly that with two separate atomic steps
//! (a race condition, without the undefined behaviour of a data race).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use threads_sync::{Barrier, LockError, Mutex};

/// A counter whose [`increment`](RacyCounter::increment) reads, then writes, as two separate
/// steps, like Python's `counter += 1` (a load, an add, a store). Two threads can both read 41
/// and both write 42: one update is lost. Each step is an atomic operation, so this is a race
/// condition, not a data race: no `unsafe`, no undefined behaviour, just wrong counts.
#[derive(Debug, Default)]
struct RacyCounter {
    value: AtomicU64,
}

impl RacyCounter {
    /// A counter at 0.
    fn new() -> Self {
        RacyCounter::default()
    }

    /// Reads the value, then stores value + 1: not one indivisible step.
    #[inline]
    fn increment(&self) {
        let seen = self.value.load(Ordering::Relaxed);
        // Another thread may store here, between our load and our store; its update is lost.
        self.value
            .store(std::hint::black_box(seen) + 1, Ordering::Relaxed);
    }

    /// The current value.
    fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// `threads` threads each call [`RacyCounter::increment`] `per_thread` times, all starting
/// together; returns the final count, usually below `threads * per_thread` on a multi-core machine.
fn count_racy(threads: usize, per_thread: u64) -> u64 {
    let counter = RacyCounter::new();
    let Ok(start) = Barrier::new(threads) else {
        return 0;
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // A broken barrier only means the threads start less together.
                let _ = start.wait();
                for _ in 0..per_thread {
                    counter.increment();
                }
            });
        }
    });
    counter.get()
}

/// Like [`count_racy`], with every increment done under a [`Mutex`]: the count is exact.
fn count_locked(threads: usize, per_thread: u64) -> Result<u64, LockError> {
    let counter = Mutex::named("counter", 0u64);
    let Ok(start) = Barrier::new(threads) else {
        return Ok(0);
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), LockError> {
                    let _ = start.wait();
                    for _ in 0..per_thread {
                        *counter.lock()? += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        // A worker's panic is passed on, not swallowed.
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    Ok(counter.into_inner())
}

const THREADS: usize = 4;
const PER_THREAD: u64 = 1_000_000;

fn main() -> anyhow::Result<()> {
    let expected = THREADS as u64 * PER_THREAD;
    println!(
        "{THREADS} threads each add 1 to a shared counter {PER_THREAD} times: expected {expected}."
    );

    println!("\nWithout a lock (read, then write):");
    for round in 1..=3 {
        let started = Instant::now();
        let got = count_racy(THREADS, PER_THREAD);
        let lost = expected - got;
        println!(
            "  round {round}: counter = {got:>8}, {lost:>8} updates lost ({:.1}%), {:?}",
            100.0 * lost as f64 / expected as f64,
            started.elapsed()
        );
        if lost == 0 {
            println!("           (the threads did not overlap this time: races are intermittent)");
        }
    }

    println!("\nWith a Mutex around each increment:");
    let started = Instant::now();
    let got = count_locked(THREADS, PER_THREAD)?;
    println!(
        "  counter = {got}, {} updates lost, {:?}",
        expected - got,
        started.elapsed()
    );
    anyhow::ensure!(got == expected, "the locked count must be exact");
    println!("\nThe lock costs time, but the count is right.");
    Ok(())
}
