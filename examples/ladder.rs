//! The measuring side of `cargo xtask bench`: the cost ladder process > thread > coroutine,
//! measured through multitask's own APIs, one JSON line per result on stdout.
//!
//! The workloads are defined in `xtask/src/bench.rs` and mirrored by `xtask/python/ladder.py`.
//! Run it through `cargo xtask bench [--quick]`; alone, `--quick` shrinks the counts and
//! `LADDER_ONLY=message/process,switch` runs only the rungs named (all kinds of a bare rung).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use multitask::{coro, process, threads};

/// How big and how often: the full run or `--quick`.
struct Sizes {
    reps: usize,
    processes: usize,
    threads: usize,
    coroutines: usize,
    round_trips: u64,
    yields: u64,
    messages: u64,
}

const FULL: Sizes = Sizes {
    reps: 5,
    processes: 200,
    threads: 2000,
    coroutines: 100_000,
    round_trips: 20_000,
    yields: 1_000_000,
    messages: 200_000,
};
const QUICK: Sizes = Sizes {
    reps: 3,
    processes: 50,
    threads: 500,
    coroutines: 10_000,
    round_trips: 2_000,
    yields: 100_000,
    messages: 20_000,
};
/// The number of results printed, announced first so the caller can show progress.
const PLAN: usize = 9;
/// No single wait in the ladder may take longer than this: a hang is an error, not a stall.
const WAIT: Duration = Duration::from_secs(60);
/// Ends the echo loops.
const STOP: u64 = u64::MAX;

fn main() -> Result<()> {
    let sizes = if std::env::args().any(|a| a == "--quick") {
        &QUICK
    } else {
        &FULL
    };
    println!("{{\"plan\": {PLAN}}}");
    let n = sizes.processes;
    emit("spawn_join", "process", "", n as u64, || {
        repeat(sizes, || spawn_join_process(n))
    })?;
    let n = sizes.threads;
    emit("spawn_join", "thread", "", n as u64, || {
        repeat(sizes, || spawn_join_thread(n))
    })?;
    let n = sizes.coroutines;
    emit("spawn_join", "coroutine", "", n as u64, || {
        repeat(sizes, || spawn_join_coroutine(n))
    })?;
    let n = sizes.round_trips;
    for (variant, cpu) in [("samecpu", Some(0)), ("unpinned", None)] {
        // a round trip is two switches
        emit("switch", "process", variant, 2 * n, || {
            repeat(sizes, || switch_process(n, cpu))
        })?;
        emit("switch", "thread", variant, 2 * n, || {
            repeat(sizes, || switch_thread(n, cpu))
        })?;
    }
    let n = sizes.yields;
    emit("switch", "coroutine", "samecpu", n, || {
        repeat(sizes, || switch_coroutine(n))
    })?;
    let n = sizes.messages;
    emit("message", "process", "", n, || {
        repeat(sizes, || message_process(n))
    })?;
    emit("message", "thread", "", n, || {
        repeat(sizes, || message_thread(n))
    })?;
    emit("message", "coroutine", "", n, || {
        repeat(sizes, || message_coroutine(n))
    })?;
    Ok(())
}

/// Whether `LADDER_ONLY` (a comma-separated list of `rung` or `rung/kind`, e.g.
/// `message/process`) names this rung; every rung when it is unset.
fn selected(rung: &str, kind: &str) -> bool {
    let Ok(only) = std::env::var("LADDER_ONLY") else {
        return true;
    };
    only.split(',')
        .any(|want| want == rung || want == format!("{rung}/{kind}"))
}

fn repeat(sizes: &Sizes, mut run: impl FnMut() -> Result<Duration>) -> Result<Vec<Duration>> {
    (0..sizes.reps).map(|_| run()).collect()
}

/// Prints the median over repetitions, in nanoseconds per unit of work.
/// Skips the rung unless it is selected (see [`selected`]).
fn emit(
    rung: &str,
    kind: &str,
    variant: &str,
    n: u64,
    measure: impl FnOnce() -> Result<Vec<Duration>>,
) -> Result<()> {
    if !selected(rung, kind) {
        return Ok(());
    }
    let reps = measure().with_context(|| format!("{rung} {kind} {variant}"))?;
    let mut per: Vec<f64> = reps
        .iter()
        .map(|d| d.as_nanos() as f64 / n as f64)
        .collect();
    let shown = format!("{per:?}");
    per.sort_by(f64::total_cmp);
    let median = per[per.len() / 2];
    println!(
        "{{\"rung\": \"{rung}\", \"kind\": \"{kind}\", \"variant\": \"{variant}\", \"n\": {n}, \
         \"value_ns\": {median}, \"reps_ns\": {shown}}}"
    );
    Ok(())
}

fn noop() {}

// --- spawn + join: start n, then join all n ----------------------------------------

fn spawn_join_process(n: usize) -> Result<Duration> {
    let start = Instant::now();
    let children = (0..n)
        .map(|_| process::Process::new(noop, ()).start())
        .collect::<Result<Vec<_>, _>>()?;
    for mut child in children {
        child.join_timeout(WAIT)?;
    }
    Ok(start.elapsed())
}

fn spawn_join_thread(n: usize) -> Result<Duration> {
    let start = Instant::now();
    let mut all = (0..n)
        .map(|_| threads::Thread::new(noop, ()).start())
        .collect::<Result<Vec<_>, _>>()?;
    for t in &mut all {
        t.join_timeout(WAIT)?;
    }
    Ok(start.elapsed())
}

fn spawn_join_coroutine(n: usize) -> Result<Duration> {
    let start = Instant::now();
    let all = (0..n)
        .map(|_| coro::spawn(noop))
        .collect::<Result<Vec<_>, _>>()?;
    for mut g in all {
        g.get_timeout(WAIT)?;
    }
    Ok(start.elapsed())
}

// --- switch: a ping-pong round trip is two switches; a coroutine yield is one -------

/// Pins the calling thread to `cpu` (threads it starts later inherit the mask), or to every
/// CPU when `cpu` is `None`.
fn pin(cpu: Option<usize>) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0, ..) reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        match cpu {
            Some(cpu) => libc::CPU_SET(cpu, &mut set),
            None => (0..cpus).for_each(|c| libc::CPU_SET(c, &mut set)),
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn echo_process(
    requests: process::Queue<u64>,
    replies: process::QueueSender<u64>,
    cpu: Option<usize>,
) {
    pin(cpu);
    while let Ok(x) = requests.get() {
        if x == STOP {
            break;
        }
        if replies.put(x).is_err() {
            break;
        }
    }
}

fn switch_process(n: u64, cpu: Option<usize>) -> Result<Duration> {
    pin(cpu);
    let requests = process::Queue::<u64>::new()?;
    let replies = process::Queue::<u64>::new()?;
    let ask = requests.sender()?;
    let mut child =
        process::Process::new(echo_process, (requests, replies.sender()?, cpu)).start()?;
    ask.put(0)?;
    replies.get_timeout(WAIT)?; // warm-up round trip
    let start = Instant::now();
    for i in 0..n {
        ask.put(i)?;
        replies.get_timeout(WAIT)?;
    }
    let took = start.elapsed();
    ask.put(STOP)?;
    child.join_timeout(WAIT)?;
    pin(None);
    Ok(took)
}

fn switch_thread(n: u64, cpu: Option<usize>) -> Result<Duration> {
    pin(cpu);
    let requests = threads::Queue::<u64>::new();
    let replies = threads::Queue::<u64>::new();
    let (rq, rp) = (requests.clone(), replies.clone());
    let mut echo = threads::Thread::new(
        move || {
            while let Ok(x) = rq.get_timeout(WAIT) {
                if x == STOP {
                    break;
                }
                if rp.put(x).is_err() {
                    break;
                }
            }
        },
        (),
    )
    .start()?;
    requests.put(0)?;
    replies.get_timeout(WAIT)?;
    let start = Instant::now();
    for i in 0..n {
        requests.put(i)?;
        replies.get_timeout(WAIT)?;
    }
    let took = start.elapsed();
    requests.put(STOP)?;
    echo.join_timeout(WAIT)?;
    pin(None);
    Ok(took)
}

fn switch_coroutine(n: u64) -> Result<Duration> {
    let start = Instant::now();
    let yielders = (0..2)
        .map(|_| {
            coro::spawn(move || {
                for _ in 0..n / 2 {
                    coro::yield_now();
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for mut g in yielders {
        g.get_timeout(WAIT)?;
    }
    Ok(start.elapsed())
}

// --- message: one producer puts n small integers, the consumer gets them all --------

fn produce(q: process::QueueSender<u64>, n: u64) {
    for i in 0..n {
        if q.put(i).is_err() {
            return;
        }
    }
}

fn message_process(n: u64) -> Result<Duration> {
    let q = process::Queue::<u64>::new()?;
    let start = Instant::now();
    let mut child = process::Process::new(produce, (q.sender()?, n)).start()?;
    for i in 0..n {
        let got = q.get_timeout(WAIT)?;
        if got != i {
            return Err(anyhow!("message {i} arrived as {got}"));
        }
    }
    let took = start.elapsed();
    child.join_timeout(WAIT)?;
    Ok(took)
}

fn message_thread(n: u64) -> Result<Duration> {
    let q = threads::Queue::<u64>::new();
    let tx = q.clone();
    let start = Instant::now();
    let mut producer =
        threads::Thread::new(move || (0..n).try_for_each(|i| tx.put(i)), ()).start()?;
    for _ in 0..n {
        q.get_timeout(WAIT)?;
    }
    let took = start.elapsed();
    producer.join_timeout(WAIT)??;
    Ok(took)
}

fn message_coroutine(n: u64) -> Result<Duration> {
    let q = coro::Queue::<u64>::new();
    let tx = q.clone();
    let start = Instant::now();
    // Nobody shuts these queues down, so put and get never fail.
    let producer = coro::spawn(move || (0..n).for_each(|i| tx.put(i).unwrap_or(())))?;
    let mut consumer = coro::spawn(move || (0..n).fold(0, |sum, _| sum + q.get().unwrap_or(0)))?;
    let sum = consumer.get_timeout(WAIT)?;
    if !producer.join_timeout(WAIT) {
        return Err(anyhow!("the producer coroutine did not finish"));
    }
    if sum != n * (n - 1) / 2 {
        return Err(anyhow!(
            "the messages summed to {sum}, not {}",
            n * (n - 1) / 2
        ));
    }
    Ok(start.elapsed())
}
