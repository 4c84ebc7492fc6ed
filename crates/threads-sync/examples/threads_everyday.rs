//! Python's everyday threading calls, one after the other: a static lock, a Timer cancelled
//! before it fires, a thread-local value, a PriorityQueue, concurrent.futures' wait and
//! as_completed over a ThreadPool, and a non-daemon thread joined before `main` returns.

use std::time::Duration;

use anyhow::Context;
use threads_sync::{
    Local, Lock, MapOptions, PriorityQueue, ReturnWhen, Thread, ThreadPool, Timer, as_completed,
    enumerate, join_non_daemon, main_thread, wait,
};

/// Python's module-level `lock = threading.Lock()`: a `static`, built by a `const fn`.
static PRINT_LOCK: Lock = Lock::named("print");
/// Python's `data = threading.local()`: each thread sees its own count.
static SEEN: Local<u32> = Local::new(|| 0);

fn say(line: &str) -> anyhow::Result<()> {
    let _held = PRINT_LOCK.acquire()?;
    println!("{line}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    say("Timer: one fires after 10 ms, one is cancelled before its hour is up.")?;
    let soon = Timer::new(Duration::from_millis(10), || "fired", ()).start()?;
    let mut late = Timer::new(Duration::from_secs(3600), || "never", ()).start()?;
    anyhow::ensure!(late.cancel(), "an hour-long timer is cancelled in time");
    say(&format!(
        "  soon: {:?}, late: {:?}",
        soon.join()?,
        late.join_timeout(Duration::from_secs(10))?
    ))?;

    say("\nthreading.local: every thread counts from its own 0.")?;
    let counters = (1..=3u32)
        .map(|n| {
            Thread::new(
                move || {
                    (0..n).for_each(|_| SEEN.with(|c| *c += 1));
                    SEEN.get()
                },
                (),
            )
            .named(format!("counter-{n}"))
            .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The counters may have finished already; the main thread is always listed first.
    let first_listed = enumerate()[0].clone();
    for t in counters {
        let name = t.name().to_owned();
        say(&format!("  {name} counted {}", t.join()?))?;
    }
    anyhow::ensure!(first_listed == main_thread());
    say(&format!(
        "  the main thread ({:?}, ident {}) has its own count: {}",
        first_listed.name(),
        first_listed.ident(),
        SEEN.get()
    ))?;

    say("\nPriorityQueue: the smallest item first.")?;
    let jobs = PriorityQueue::new();
    for job in [(3, "tidy up"), (1, "answer the pager"), (2, "review")] {
        jobs.put(job)?;
    }
    while let Ok((priority, job)) = jobs.get_nowait() {
        say(&format!("  {priority}: {job}"))?;
    }

    say("\nconcurrent.futures over a ThreadPool of 2:")?;
    let pool = ThreadPool::new(2)?;
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    let slow = pool.apply_async(
        move || hold.recv().map(|()| "slow").unwrap_or("dropped"),
        (),
    )?;
    let quick = pool.apply_async(|| "quick", ())?;
    let results = vec![slow, quick];
    let first = wait(
        &results,
        ReturnWhen::FirstCompleted,
        Some(Duration::from_secs(10)),
    );
    say(&format!(
        "  wait(FIRST_COMPLETED): done {:?}, not done {:?}",
        first.done, first.not_done
    ))?;
    let mut in_order_done = as_completed(results, Some(Duration::from_secs(10)));
    say(&format!(
        "  as_completed: {}",
        in_order_done.next().context("a result")??.get()?
    ))?;
    release.send(())?;
    say(&format!(
        "  as_completed: {}",
        in_order_done.next().context("a result")??.get()?
    ))?;
    let squares = pool.map_with(|x: u64| x * x, 0..8, MapOptions::new().chunksize(3))?;
    say(&format!("  map_with(chunksize=3): {squares:?}"))?;

    say("\nA non-daemon thread whose handle was dropped: join_non_daemon waits for it.")?;
    let goodbye = Thread::new(|| say("  (the last words of a non-daemon thread)"), ())
        .named("goodbye")
        .start()?;
    drop(goodbye);
    join_non_daemon();
    say("Every non-daemon thread is done; main may return.")?;
    Ok(())
}
