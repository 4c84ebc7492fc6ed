//! Shared state shown honestly: a counter that loses updates (without undefined behaviour), and the locked fix.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::barrier::Barrier;
use crate::error::LockError;
use crate::lock::Mutex;

/// A counter whose [`increment`](RacyCounter::increment) reads, then writes, as two separate
/// steps, like Python's `counter += 1` (a load, an add, a store). Two threads can both read 41
/// and both write 42: one update is lost. Each step is an atomic operation, so this is a race
/// condition, not a data race: no `unsafe`, no undefined behaviour, just wrong counts.
#[derive(Debug, Default)]
pub struct RacyCounter {
    value: AtomicU64,
}

impl RacyCounter {
    /// A counter at 0.
    pub fn new() -> Self {
        RacyCounter::default()
    }

    /// Reads the value, then stores value + 1: not one indivisible step.
    #[inline]
    pub fn increment(&self) {
        let seen = self.value.load(Ordering::Relaxed);
        // Another thread may store here, between our load and our store; its update is lost.
        self.value
            .store(std::hint::black_box(seen) + 1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// `threads` threads each call [`RacyCounter::increment`] `per_thread` times, all starting
/// together; returns the final count, usually below `threads * per_thread` on a multi-core machine.
pub fn count_racy(threads: usize, per_thread: u64) -> u64 {
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
pub fn count_locked(threads: usize, per_thread: u64) -> Result<u64, LockError> {
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
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or(Ok(())))
    })?;
    Ok(counter.into_inner())
}
