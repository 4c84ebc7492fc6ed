//! The Pool on Redis (feature `redis`): tasks per second through `apply_async` (then `get`
//! each) and `map` (one item per task), with 1 and 4 local workers, beside the Redis round trip
//! measured in the same run (a PING loop on the same Unix socket, and `redis-benchmark -t ping`
//! when it is installed). Starts its own `redis-server`; skips with a message without one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use process_ipc::{MapOptions, Pool, PoolWorkers};

const TASKS: u64 = 2_000;

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

struct Server {
    child: Child,
    dir: std::path::PathBuf,
    sock: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Option<Server> {
    let dir = std::env::temp_dir().join(format!("redis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let sock = dir.join("r.sock");
    let child = Command::new("redis-server")
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
        .ok()?;
    let server = Server { child, dir, sock };
    let client = redis::Client::open(server.url()).ok()?;
    let started = Instant::now();
    while client
        .get_connection_with_timeout(Duration::from_secs(1))
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(server)
}

impl Server {
    fn url(&self) -> String {
        format!("redis+unix://{}", self.sock.display())
    }
}

fn round_trip(c: &mut Criterion, server: &Server) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut g = c.benchmark_group("redis_round_trip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ping", |b| {
        b.iter(|| redis::cmd("PING").query::<String>(&mut conn).unwrap())
    });
    g.finish();
    match Command::new("redis-benchmark")
        .args(["-t", "ping", "-q", "-n", "50000", "-c", "1", "-s"])
        .arg(&server.sock)
        .output()
    {
        Ok(out) => {
            // `-q` redraws its progress with carriage returns: keep each test's last word.
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                let last = line.rsplit('\r').find(|s| !s.trim().is_empty());
                println!(
                    "redis-benchmark -c 1 (same server): {}",
                    last.unwrap_or("").trim()
                );
            }
        }
        Err(e) => println!("redis-benchmark not run: {e}"),
    }
}

fn pool_tasks(c: &mut Criterion, server: &Server, workers: usize) {
    let url = server.url();
    let serving = PoolWorkers::start(&url, workers).unwrap();
    let pool = Pool::builder()
        .redis(&url)
        .processes(workers)
        .build()
        .unwrap();
    let started = Instant::now();
    while pool.pids().len() < workers && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut g = c.benchmark_group(format!("redis_pool_{workers}_workers"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(TASKS));
    g.bench_function("apply_async_then_get", |b| {
        b.iter(|| {
            let pending: Vec<_> = (0..TASKS)
                .map(|x| pool.apply_async(square, (x,)).unwrap())
                .collect();
            for p in pending {
                p.get().unwrap();
            }
        })
    });
    g.bench_function("map_one_item_per_task", |b| {
        b.iter(|| {
            let out = pool
                .map_with(square, 0..TASKS, MapOptions::new().chunksize(1))
                .unwrap();
            assert_eq!(out.len(), TASKS as usize);
        })
    });
    g.finish();
    drop(pool);
    serving.terminate();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let Some(server) = start_server() else {
        println!(
            "redis_pool bench skipped: no redis-server on the PATH (apt-get install redis-server)"
        );
        return;
    };
    round_trip(&mut c, &server);
    pool_tasks(&mut c, &server, 1);
    pool_tasks(&mut c, &server, 4);
    round_trip(&mut c, &server);
    c.final_summary();
}
