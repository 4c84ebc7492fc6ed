//! The crates used together, as a user would: pool tasks that run generators, coroutines inside
//! a child process, threads feeding a manager queue that a coroutine drains. Every wait is
//! bounded, so a hang fails the test instead of stalling CI.

use std::time::{Duration, Instant};

use multitask::{coro, iter, process, threads};

const WAIT: Duration = Duration::from_secs(30);

/// The sum of `0..n`, walked by an iter-gen generator (inside a pool worker process).
fn generator_sum(n: u64) -> (u32, u64) {
    let numbers: iter::Generator<u64> = iter::Generator::boxed(|co| async move {
        for i in 0..n {
            co.yield_(i).await;
        }
    });
    (process::current_pid(), numbers.sum())
}

#[test]
fn pool_tasks_run_generators() {
    let pool = process::Pool::new(2).unwrap();
    let results = pool.map(generator_sum, 0..50u64).unwrap();
    for (n, (pid, sum)) in (0..50u64).zip(&results) {
        assert_eq!(*sum, n * n.saturating_sub(1) / 2, "sum of 0..{n}");
        assert_ne!(
            *pid,
            process::current_pid(),
            "the task ran in a worker process"
        );
    }
    pool.close();
    pool.join_timeout(WAIT).unwrap();
}

/// Runs `n` coroutines in this (child) process, each yielding once before it answers.
fn coroutines_in_child(n: u64) -> (u32, u64) {
    let greenlets: Vec<_> = (0..n)
        .map(|i| {
            coro::spawn(move || {
                coro::sleep(Duration::ZERO); // a cooperative yield to the others
                i
            })
            .expect("spawn a coroutine")
        })
        .collect();
    let sum = greenlets
        .into_iter()
        .map(|mut g| g.get_timeout(WAIT).expect("the coroutine answers"))
        .sum();
    (process::current_pid(), sum)
}

#[test]
fn coroutines_run_inside_a_child_process() {
    let mut child = process::Process::new(coroutines_in_child, (1000,))
        .start()
        .unwrap();
    let pid = child.pid();
    let (seen_pid, sum) = child.join_timeout(WAIT).unwrap();
    assert_eq!(seen_pid, pid);
    assert_ne!(pid, process::current_pid());
    assert_eq!(sum, 999 * 1000 / 2);
}

#[test]
fn threads_feed_a_manager_queue_that_a_coroutine_drains() {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 1000;
    let manager = process::Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    let mut producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = queue.clone();
            threads::Thread::new(
                move || -> Result<(), process::ManagerError> {
                    for i in 0..EACH {
                        q.put(p * EACH + i)?;
                    }
                    q.flush_timeout(WAIT)
                },
                (),
            )
        })
        .collect();
    for t in &mut producers {
        t.start().unwrap();
    }
    let mut drain = coro::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while seen.len() < (PRODUCERS * EACH) as usize && Instant::now() < deadline {
            match queue.get_nowait() {
                Ok(x) => seen.push(x),
                // nothing yet: let other coroutines run rather than block the worker
                Err(_) => coro::sleep(Duration::from_millis(1)),
            }
        }
        seen
    })
    .unwrap();
    for t in &mut producers {
        t.join_timeout(WAIT).unwrap().unwrap();
    }
    let mut seen = drain.get_timeout(WAIT + WAIT).unwrap();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..PRODUCERS * EACH).collect::<Vec<_>>(),
        "each item exactly once"
    );
}
