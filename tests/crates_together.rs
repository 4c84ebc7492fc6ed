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
            .start()
            .unwrap()
        })
        .collect();
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

/// In a child process: registers the at-exit join of threads-sync, starts a non-daemon thread
/// that waits for `go` and then records that it ran, says it is about to return, and returns.
fn leave_a_non_daemon_thread(
    go: process::Event,
    returning: process::Event,
    ran: process::Value<u32>,
) {
    threads::join_non_daemon_at_exit().unwrap();
    threads::Thread::new(
        move || {
            if go.wait_timeout(WAIT).unwrap() {
                *ran.lock().unwrap() = 1;
            }
        },
        (),
    )
    .daemon(false)
    .start()
    .unwrap();
    returning.set().unwrap();
}

/// The state letter of `pid`'s main thread in /proc (`None` once it is gone).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

#[test]
fn a_child_whose_target_returns_waits_for_its_non_daemon_threads_at_exit() {
    let (go, returning) = (
        process::Event::new().unwrap(),
        process::Event::new().unwrap(),
    );
    let ran = process::Value::new(0u32).unwrap();
    let mut child = process::Process::new(
        leave_a_non_daemon_thread,
        (go.clone(), returning.clone(), ran.clone()),
    )
    .start()
    .unwrap();
    assert!(returning.wait_timeout(WAIT).unwrap());
    // Its target has returned: the child either ends at once (its thread dies with it) or
    // waits in the exit hook for the thread, asleep.
    let deadline = Instant::now() + WAIT;
    let seen = loop {
        match state(child.pid()) {
            Some('S') | Some('Z') | None => break state(child.pid()),
            _ if Instant::now() > deadline => panic!("the child neither slept nor ended"),
            _ => std::thread::yield_now(),
        }
    };
    assert_eq!(
        seen,
        Some('S'),
        "the child ended without waiting for its thread"
    );
    go.set().unwrap();
    child.join_timeout(WAIT).unwrap();
    assert_eq!(ran.get().unwrap(), 1);
}
