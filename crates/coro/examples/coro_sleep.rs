//! 100 coroutines each sleep 10 ms, three ways: cooperative, blocking std, patched std.
//!
//! ```python
//! gevent.joinall([gevent.spawn(gevent.sleep, 0.01) for _ in range(100)])  # ~10 ms
//! gevent.joinall([gevent.spawn(time.sleep, 0.01) for _ in range(100)])    # ~1 s: blocks the hub
//! monkey.patch_all()
//! gevent.joinall([gevent.spawn(time.sleep, 0.01) for _ in range(100)])    # ~10 ms again
//! ```
//!
//! The patched row needs the `patch` feature:
//! `cargo run -p coro --example coro_sleep --features patch`.

use std::time::{Duration, Instant};

const N: usize = 100;
const EACH: Duration = Duration::from_millis(10);

fn run(sleep: fn(Duration)) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let gs = (0..N)
        .map(|_| coro::spawn(move || sleep(EACH)))
        .collect::<Result<Vec<_>, _>>()?;
    coro::joinall(&gs, Some(Duration::from_secs(30)))?;
    Ok(start.elapsed())
}

fn row(what: &str, wall: Duration) {
    println!(
        "  {what:<44} {:>8.1} ms   ({:.0}x the ideal 10 ms)",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() / EACH.as_secs_f64()
    );
}

fn main() -> anyhow::Result<()> {
    // Start the runtime first (threads, may's pool of 1000 ready stacks), untimed.
    coro::spawn(|| ())?.join();
    println!(
        "coro_sleep: {N} coroutines x sleep({EACH:?}) on {} worker",
        coro::runtime_config().workers()
    );
    row("coro::sleep (cooperative)", run(coro::sleep)?);
    row(
        "std::thread::sleep, unpatched (blocks)",
        run(std::thread::sleep)?,
    );
    #[cfg(feature = "patch")]
    {
        coro::monkey::patch_all()?;
        row(
            "std::thread::sleep after monkey::patch_all()",
            run(std::thread::sleep)?,
        );
        coro::monkey::unpatch_all();
    }
    #[cfg(not(feature = "patch"))]
    println!("  (patched row: build with `--features patch`, Linux + glibc)");
    Ok(())
}
