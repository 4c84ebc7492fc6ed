//! Shared state: threads that increment one counter lose updates; a Mutex makes the count exact.
//!
//! Python's `counter += 1` is a read, an add and a write; two threads can read the same value
//! and both write value + 1. `RacyCounter` does exactly that with two separate atomic steps
//! (a race condition, without the undefined behaviour of a data race).

use std::time::Instant;

use threads_sync::race::{count_locked, count_racy};

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
