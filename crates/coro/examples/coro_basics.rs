//! Three coroutines taking turns on one worker: gevent's classic first example.
//!
//! ```python
//! def worker(name):
//!     for step in range(3):
//!         print(f"{name}: step {step}")
//!         gevent.sleep(0)          # let the others run
//!     return f"{name} done"
//! jobs = [gevent.spawn(worker, n) for n in "abc"]
//! gevent.joinall(jobs, timeout=5)
//! ```

use std::time::Duration;

use anyhow::Context;

fn worker(name: &'static str) -> String {
    for step in 0..3 {
        println!("  {name}: step {step} (then yield)");
        coro::yield_now(); // gevent.sleep(0)
    }
    format!("{name} done")
}

fn main() -> anyhow::Result<()> {
    // Keep the demo's intended panic to one line (coro chains this hook).
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string payload>");
        eprintln!("  [panic hook] a coroutine panicked: {what}");
    }));
    println!(
        "coro_basics: three greenlets on {} worker(s)",
        coro::runtime_config().workers()
    );
    println!("interleaved output, one step each, in turn:");
    // A parent greenlet spawns the three, so all exist before any runs.
    let mut parent = coro::spawn(|| {
        let mut jobs: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| coro::Builder::new().name(name).spawn(move || worker(name)))
            .collect::<Result<_, _>>()?;
        coro::joinall(&jobs, Some(Duration::from_secs(5)))?;
        jobs.iter_mut()
            .map(|g| g.get())
            .collect::<Result<Vec<_>, _>>()
    })?;
    let values = parent
        .get_timeout(Duration::from_secs(10))?
        .context("a worker failed")?;
    println!("values: {values:?}");

    println!("\na panic is a value, and the others go on:");
    let mut bad = coro::Builder::new()
        .name("unlucky")
        .spawn(|| -> u32 { panic!("division by zero, on purpose") })?;
    let mut good = coro::spawn(|| 6 * 7)?;
    match bad.get_timeout(Duration::from_secs(5)) {
        Err(e) => println!("  unlucky -> Err: {e}"),
        Ok(v) => anyhow::bail!("expected a panic, got {v}"),
    }
    println!(
        "  good    -> Ok({})",
        good.get_timeout(Duration::from_secs(5))?
    );

    println!("\nwith_timeout gives up on slow work (and kills it):");
    let slow = coro::with_timeout(Duration::from_millis(50), || {
        coro::sleep(Duration::from_secs(30));
    });
    println!("  {}", slow.err().context("the slow job should time out")?);
    Ok(())
}
