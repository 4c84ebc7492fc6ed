//! A Pool across "hosts" on Redis (feature `redis`): a `map` over 10 000 items served by two
//! worker groups (each its own process group, as another machine would be), one of them killed
//! with SIGKILL mid-way.
//!
//! Without retries (the default) the items the killed group held fail with `WorkerDied`,
//! reported exactly; every other item is correct. Then the same map with `retries(1)` and
//! another group killed: every item is correct, the lost chunks having run again elsewhere.
//!
//! It starts its own `redis-server` on a Unix socket in a temporary directory. Run with
//! `cargo run --release -p process-ipc --features redis --example cluster_pool`.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use process_ipc::{MapOptions, Pool, PoolError, PoolWorkers, RedisOptions};

const ITEMS: u64 = 10_000;
const CHUNK: usize = 50;

fn options() -> RedisOptions {
    RedisOptions::new().heartbeat_timeout(Duration::from_secs(1))
}

/// A little work per item, so the map takes long enough to be interrupted.
fn square(x: u64) -> u64 {
    let until = Instant::now() + Duration::from_micros(200);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    x * x
}

/// One worker group: this executable again, serving pool workers, in its own process group.
fn start_group(url: &str, name: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    Ok(Command::new(exe)
        .args(["worker-host", url, name])
        .process_group(0)
        .spawn()?)
}

/// SIGKILL to the group's every process: the machine lost power.
fn kill_group(group: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", group.id())])
        .status();
    let _ = group.wait();
}

/// Runs the map, killing `victim` once half the results are in; returns the failed items.
fn map_killing(pool: &Pool, victim: &mut Child, name: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let started = Instant::now();
    let results = pool.imap_with(square, 0..ITEMS, MapOptions::new().chunksize(CHUNK))?;
    let mut failed = Vec::new();
    for (x, r) in (0..ITEMS).zip(results) {
        if x == ITEMS / 2 {
            println!("  {x} results in: killing group {name} (SIGKILL to its process group)");
            kill_group(victim);
        }
        match r {
            Ok(v) if v == x * x => {}
            Ok(v) => bail!("item {x}: got {v}, not {}", x * x),
            Err(e @ PoolError::WorkerDied { .. }) => failed.push((x, e.to_string())),
            Err(e) => bail!("item {x}: {e}"),
        }
    }
    println!(
        "  {ITEMS} items in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(failed)
}

fn report(failed: &[(u64, String)]) {
    println!(
        "  {} items correct, {} failed",
        ITEMS as usize - failed.len(),
        failed.len()
    );
    let mut i = 0;
    while i < failed.len() {
        let mut j = i;
        while j + 1 < failed.len() && failed[j + 1].0 == failed[j].0 + 1 {
            j += 1;
        }
        println!(
            "    items {}..={}: {}",
            failed[i].0, failed[j].0, failed[i].1
        );
        i = j + 1;
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker-host") {
        let workers = PoolWorkers::start_with(&args[2], 2, options())?;
        println!(
            "  group {} serving with workers {:?}",
            args[3],
            workers.pids()
        );
        workers.wait();
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("cluster-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("r.sock");
    let mut server = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&sock)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .context("redis-server on the PATH (apt-get install redis-server)")?;
    let url = format!("redis+unix://{}", sock.display());
    let outcome = run(&url);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn run(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let started = Instant::now();
    while client
        .get_connection_with_timeout(Duration::from_secs(1))
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("redis-server did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut a = start_group(url, "A")?;
    let mut b = start_group(url, "B")?;
    let pool = Pool::builder()
        .redis(url)
        .redis_options(options())
        .processes(4)
        .build()?;
    wait_for_workers(&pool, 4)?;
    println!("map of {ITEMS} items, chunks of {CHUNK}, on groups A and B; no retries:");
    let failed = map_killing(&pool, &mut a, "A")?;
    report(&failed);

    let mut c = start_group(url, "C")?;
    let retrying = Pool::builder()
        .redis(url)
        .redis_options(options())
        .processes(4)
        .retries(1)
        .build()?;
    wait_for_workers(&retrying, 4)?;
    println!("the same map on groups B and C with retries(1):");
    let failed = map_killing(&retrying, &mut b, "B")?;
    report(&failed);
    kill_group(&mut c);
    if !failed.is_empty() {
        bail!("with retries every item should be correct");
    }
    Ok(())
}

fn wait_for_workers(pool: &Pool, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while pool.pids().len() < n {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the worker groups did not come up");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
