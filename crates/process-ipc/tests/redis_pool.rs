//! The Pool on Redis (feature `redis`): each test starts its own `redis-server` in a temporary
//! directory and its own workers, and stops them. The API as the local pool's; a worker killed
//! mid-map fails exactly its task; retries; builds that differ; frames that do not decode;
//! Redis killed and restarted; and a "host" in its own network namespace killed mid-map.

#[path = "redis_pool/server.rs"]
mod server;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use process_ipc::{
    MapOptions, Pool, PoolError, PoolWorkers, RedisOptions, ReturnWhen, as_completed, build_id,
    current_pid, wait,
};
use server::{Host, Netns, RedisServer, TempDir, WAIT, until};

/// One test at a time: each runs its own server and workers, and the frame-scribbling hook is
/// process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn fast() -> RedisOptions {
    RedisOptions::new()
        .heartbeat_timeout(Duration::from_millis(900))
        .io_timeout(Duration::from_secs(2))
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid_of(_: u32) -> u32 {
    current_pid()
}

fn boom(x: u32) -> u32 {
    assert!(x % 2 == 0, "odd input {x}");
    x
}

/// Item 7 records its worker's pid in `dir/held` and then waits to be killed; the others are
/// squared.
fn square_or_hold_7(x: u64, dir: String) -> u64 {
    if x == 7 {
        std::fs::write(format!("{dir}/held.tmp"), current_pid().to_string()).unwrap();
        std::fs::rename(format!("{dir}/held.tmp"), format!("{dir}/held")).unwrap();
        std::thread::sleep(Duration::from_secs(600));
    }
    x * x
}

/// Ends its own worker the first time it runs (marker file absent), returns `x` after.
fn die_once(x: u64, dir: String) -> u64 {
    let marker = format!("{dir}/ran-{x}");
    if std::fs::metadata(&marker).is_err() {
        std::fs::write(&marker, b"1").unwrap();
        std::process::abort();
    }
    x
}

/// On the host tagged `doomed`, records its pid and waits to be killed; elsewhere doubles.
fn double_unless_doomed(x: u64, dir: String) -> u64 {
    if std::env::var("MT_REDIS_HOST_TAG").as_deref() == Ok("doomed") {
        let path = format!("{dir}/doomed-{}", current_pid());
        std::fs::write(format!("{path}.tmp"), b"").unwrap();
        std::fs::rename(format!("{path}.tmp"), path).unwrap();
        std::thread::sleep(Duration::from_secs(600));
    }
    x * 2
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Not a test: the entry of a "host" process [`Host`] starts (this binary, run with
/// `--exact host_entry --ignored`). Serves pool workers until killed.
#[test]
#[ignore = "entry point of the worker hosts the other tests start"]
fn host_entry() {
    let Ok(url) = std::env::var("MT_REDIS_HOST_URL") else {
        return;
    };
    let workers = std::env::var("MT_REDIS_HOST_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let workers = PoolWorkers::start_with(&url, workers, fast()).unwrap();
    workers.wait();
}

fn pool(url: &str) -> Pool {
    Pool::builder()
        .processes(2)
        .redis(url)
        .redis_options(fast())
        .build()
        .unwrap()
}

#[test]
fn the_local_api_works_on_redis() {
    let _one = serial();
    let dir = TempDir::new("api");
    let server = RedisServer::unix(&dir.0);
    let workers = PoolWorkers::start_with(&server.url, 2, fast()).unwrap();
    let pool = pool(&server.url);
    assert_eq!(pool.apply(add, (40, 2)).unwrap(), 42);
    let pending = pool.apply_async(square, (9,)).unwrap();
    assert_eq!(pending.get_timeout(WAIT).unwrap(), 81);
    assert_eq!(
        pool.map(square, 0..100u64).unwrap(),
        (0..100u64).map(|x| x * x).collect::<Vec<_>>()
    );
    let chunked = pool
        .map_with(square, 0..50u64, MapOptions::new().chunksize(7))
        .unwrap();
    assert_eq!(chunked[49], 49 * 49);
    assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    let mut ordered = pool.imap(square, 0..10u64).unwrap();
    for want in 0..10u64 {
        assert_eq!(ordered.next_timeout(WAIT).unwrap().unwrap(), want * want);
    }
    let mut any: Vec<u64> = pool
        .imap_unordered(square, 0..10u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    any.sort_unstable();
    assert_eq!(any, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    // Errors as the local pool's: a panic names its worker, which is not us.
    match pool.apply(boom, (3,)) {
        Err(PoolError::Panicked { pid, message, .. }) => {
            assert!(message.contains("odd input 3"), "{message}");
            assert!(workers.pids().contains(&pid));
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    let pids: HashSet<u32> = pool.map(pid_of, 0..40u32).unwrap().into_iter().collect();
    assert!(pids.iter().all(|p| workers.pids().contains(p)), "{pids:?}");
    assert!(!pids.contains(&current_pid()));
    let mut live = Vec::new();
    until("the pool to see both workers", || {
        live = pool.pids();
        live.len() == 2
    });
    let mut mine = workers.pids();
    mine.sort_unstable();
    assert_eq!(live, mine);
    // wait / as_completed over results of this pool.
    let results: Vec<_> = (0..4u64)
        .map(|x| pool.apply_async(square, (x,)).unwrap())
        .collect();
    let all = wait(&results, ReturnWhen::AllCompleted, Some(WAIT));
    assert_eq!(all.done.len(), 4);
    let done: Vec<_> = as_completed(results, Some(WAIT))
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(done.len(), 4);
    pool.close();
    assert!(matches!(pool.apply(square, (1,)), Err(PoolError::Closed)));
    pool.join_timeout(WAIT).unwrap();
}

#[test]
fn a_killed_worker_fails_exactly_its_task() {
    let _one = serial();
    let dir = TempDir::new("kill");
    let server = RedisServer::unix(&dir.0);
    let workers = PoolWorkers::start_with(&server.url, 3, fast()).unwrap();
    let pool = pool(&server.url);
    let d = dir.0.display().to_string();
    let items: Vec<(u64, String)> = (0..40u64).map(|x| (x, d.clone())).collect();
    let results: Vec<_> = items
        .into_iter()
        .map(|args| pool.apply_async(square_or_hold_7, args).unwrap())
        .collect();
    let held = dir.0.join("held");
    until("item 7 to start", || held.exists());
    let victim: u32 = std::fs::read_to_string(&held).unwrap().parse().unwrap();
    assert!(workers.pids().contains(&victim));
    let status = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for (x, r) in results.iter().enumerate() {
        let got = r.get_timeout(WAIT);
        if x == 7 {
            match got {
                Err(PoolError::WorkerDied {
                    pid, signal, cause, ..
                }) => {
                    assert_eq!(pid, victim);
                    assert_eq!(signal, Some(9), "{cause}");
                    assert!(cause.contains("on host"), "{cause}");
                }
                other => panic!("item 7: expected WorkerDied, got {other:?}"),
            }
        } else {
            assert_eq!(got, Ok(x as u64 * x as u64), "item {x}");
        }
    }
    // The replacement serves the pool.
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    assert!(!workers.pids().contains(&victim));
}

#[test]
fn retries_run_a_lost_task_again_only_when_asked() {
    let _one = serial();
    let dir = TempDir::new("retry");
    let server = RedisServer::unix(&dir.0);
    let _workers = PoolWorkers::start_with(&server.url, 2, fast()).unwrap();
    let d = dir.0.display().to_string();
    let plain = pool(&server.url);
    match plain
        .apply_async(die_once, (1, d.clone()))
        .unwrap()
        .get_timeout(WAIT)
    {
        Err(PoolError::WorkerDied { signal, .. }) => assert_eq!(signal, Some(6)),
        other => panic!("without retries: expected WorkerDied, got {other:?}"),
    }
    let retrying = Pool::builder()
        .redis(&server.url)
        .redis_options(fast())
        .retries(1)
        .build()
        .unwrap();
    let r = retrying.apply_async(die_once, (2, d.clone())).unwrap();
    assert_eq!(r.get_timeout(WAIT), Ok(2));
}

#[test]
fn a_worker_of_another_build_refuses_the_task() {
    let _one = serial();
    let dir = TempDir::new("build");
    let server = RedisServer::unix(&dir.0);
    let _workers =
        PoolWorkers::start_with(&server.url, 1, fast().__build_id("0123456789abcdef")).unwrap();
    let pool = pool(&server.url);
    match pool.apply_async(square, (3,)).unwrap().get_timeout(WAIT) {
        Err(e @ PoolError::BuildMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains("0123456789abcdef"), "{text}");
            assert!(text.contains(build_id()), "{text}");
        }
        other => panic!("expected BuildMismatch, got {other:?}"),
    }
}

#[test]
fn a_frame_that_does_not_decode_fails_only_its_task() {
    let _one = serial();
    let dir = TempDir::new("frame");
    let server = RedisServer::unix(&dir.0);
    let workers = PoolWorkers::start_with(&server.url, 2, fast()).unwrap();
    let pool = pool(&server.url);
    // Garbage entries on the tasks stream, naming no pool: removed, nothing else changes.
    let mut c = server.connection();
    for fields in [
        vec![("x", "y")],
        vec![("p", "!!"), ("t", "1")],
        vec![("p", "abc"), ("t", "zz")],
    ] {
        let _: String = redis::cmd("XADD")
            .arg("mt:pool:tasks")
            .arg("*")
            .arg(&fields)
            .query(&mut c)
            .unwrap();
    }
    // The third task of the next submission goes out scribbled.
    process_ipc::__scribble_redis_task(3);
    let mut results = pool.imap(square, 0..10u64).unwrap();
    for x in 0..10u64 {
        let got = results.next_timeout(WAIT).unwrap();
        if x == 2 {
            match got {
                Err(PoolError::Serde(why)) => assert!(why.contains("frame"), "{why}"),
                other => panic!("item 2: expected Serde, got {other:?}"),
            }
        } else {
            assert_eq!(got, Ok(x * x));
        }
    }
    assert_eq!(workers.pids().len(), 2);
    assert_eq!(pool.map(square, 0..20u64).unwrap()[19], 361);
}

#[test]
fn redis_killed_and_restarted() {
    let _one = serial();
    let dir = TempDir::new("restart");
    let mut server = RedisServer::unix(&dir.0);
    let _workers = PoolWorkers::start_with(&server.url, 2, fast()).unwrap();
    let pool = pool(&server.url);
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    let in_flight = pool.apply_async(nap, (3000,)).unwrap();
    server.kill();
    // The task in flight fails, naming Redis; new calls fail within the I/O timeout.
    match in_flight.get_timeout(WAIT) {
        Err(PoolError::Broker(why)) => assert!(why.contains("redis"), "{why}"),
        other => panic!("in flight: expected Broker, got {other:?}"),
    }
    let start = Instant::now();
    match pool.apply_async(square, (4,)) {
        Err(PoolError::Broker(_)) => {}
        other => panic!("Redis down: expected Broker, got {other:?}"),
    }
    assert!(
        start.elapsed() < WAIT,
        "the call hung for {:?}",
        start.elapsed()
    );
    server.restart();
    // A Redis that accepts but never answers (stopped): calls fail within the I/O timeout too.
    assert_eq!(
        pool.apply(square, (6,)),
        Ok(36),
        "a fresh connection after the restart"
    );
    server.signal("-STOP");
    let start = Instant::now();
    match pool.apply_async(square, (4,)) {
        Err(PoolError::Broker(why)) => assert!(why.contains("redis"), "{why}"),
        other => panic!("Redis stopped: expected Broker, got {other:?}"),
    }
    assert!(
        start.elapsed() < WAIT,
        "the call hung for {:?}",
        start.elapsed()
    );
    server.signal("-CONT");
    // Work resumes: workers and pool reconnect on their own.
    let mut answer = None;
    until("work to resume after Redis came back", || {
        match pool.apply_async(square, (5,)) {
            Ok(r) => {
                answer = Some(r.get_timeout(WAIT));
                true
            }
            Err(PoolError::Broker(_)) => false,
            Err(e) => panic!("{e}"),
        }
    });
    assert_eq!(answer, Some(Ok(25)));
    assert_eq!(pool.map(square, 0..30u64).unwrap()[29], 841);
}

/// Two hosts serve a map; one, in its own network namespace when the kernel allows, is killed
/// mid-map: exactly the items its workers held fail with `WorkerDied` naming them.
#[test]
fn a_host_killed_mid_map_fails_only_its_items() {
    let _one = serial();
    let dir = TempDir::new("host");
    let netns = match Netns::create() {
        Ok(ns) => Some(ns),
        Err(why) => {
            eprintln!("no network namespace ({why}): the hosts are separate process groups");
            None
        }
    };
    let server = match &netns {
        Some(ns) => RedisServer::tcp(
            &dir.0,
            &ns.outer_addr,
            20_000 + (std::process::id() % 20_000) as u16,
        ),
        None => RedisServer::unix(&dir.0),
    };
    let d = dir.0.display().to_string();
    let mut doomed = Host::start(
        &server.url,
        2,
        "doomed",
        &dir.0,
        netns.as_ref().map(|n| n.name.as_str()),
    );
    let _kept = Host::start(&server.url, 2, "kept", &dir.0, None);
    let pool = pool(&server.url);
    // Both hosts serve before the map starts, so the doomed one takes items too.
    until("the four workers of both hosts", || pool.pids().len() == 4);
    let items: Vec<(u64, String)> = (0..200u64).map(|x| (x, d.clone())).collect();
    let mut results = pool
        .imap_with(
            double_unless_doomed_1,
            items,
            MapOptions::new().chunksize(1),
        )
        .unwrap();
    let started = |dir: &std::path::Path| -> Vec<u32> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("doomed-")?.parse().ok()
            })
            .collect()
    };
    until("both doomed workers to hold an item", || {
        started(&dir.0).len() == 2
    });
    let held: HashSet<u32> = started(&dir.0).into_iter().collect();
    doomed.kill();
    let mut failed = Vec::new();
    for x in 0..200u64 {
        match results.next_timeout(WAIT).expect("every item answers") {
            Ok(v) => assert_eq!(v, x * 2),
            Err(PoolError::WorkerDied { pid, cause, .. }) => {
                assert!(held.contains(&pid), "{pid} not among {held:?}");
                assert!(cause.contains("no heartbeat from host"), "{cause}");
                failed.push(x);
            }
            Err(e) => panic!("item {x}: {e}"),
        }
    }
    assert_eq!(failed.len(), 2, "failed: {failed:?}");
}

fn double_unless_doomed_1(args: (u64, String)) -> u64 {
    double_unless_doomed(args.0, args.1)
}

#[test]
fn an_authkey_signs_every_frame() {
    let _one = serial();
    let dir = TempDir::new("authkey");
    let server = RedisServer::unix(&dir.0);
    let _workers = PoolWorkers::start_with(&server.url, 1, fast().authkey("s3cret")).unwrap();
    let build = |options: RedisOptions| {
        Pool::builder()
            .redis(&server.url)
            .redis_options(options)
            .build()
            .unwrap()
    };
    let signed = build(fast().authkey("s3cret"));
    assert_eq!(signed.apply(square, (12,)).unwrap(), 144);
    for wrong in [fast().authkey("guess"), fast()] {
        match build(wrong)
            .apply_async(square, (3,))
            .unwrap()
            .get_timeout(WAIT)
        {
            Err(PoolError::Serde(why)) => assert!(why.contains("authkey"), "{why}"),
            other => panic!("expected a refusal naming the authkey, got {other:?}"),
        }
    }
    // And the worker still serves the right key.
    assert_eq!(signed.apply(square, (5,)).unwrap(), 25);
}
