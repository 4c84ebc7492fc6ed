//! The Manager served over TCP (127.0.0.1) with an authkey, beside Python's twins in
//! `shared/anchors/python/extra/remote_manager.py` (run it in the same window):
//!
//! - `dict_set_get`: a connected client does 5 000 `insert` + `get` pairs on a dict the server
//!   registered (Python: `remote_manager_dict_set_get`, a DictProxy in a client process; both
//!   count 2 ops per pair). Here the client is a thread of the bench process: its calls take
//!   the same TCP round trip a client process's would.
//! - `job_queue_4_workers`: the docs' recipe. 4 worker processes connect, look up the `jobs`
//!   and `results` queues and answer `x * x`; the bench process, itself a connected client,
//!   puts 5 000 jobs and takes 5 000 results (timed from the first put to the last result,
//!   as Python's; the workers start just before).
//! - `tcp_round_trips_floor`, `tcp_round_trips_one_thread`: the loopback floor in the same
//!   run, as many bare 16-byte round trips as `dict_set_get` makes: between two threads
//!   (each wakes the other), and all in one thread (the TCP stack's own cost, no wake-ups).
//! - `connect_auth_call`: `Manager::connect` (TCP connect and the two-way HMAC handshake),
//!   `lookup` of the dict and one `get` (Python: `remote_manager_connect_auth_call`).

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use process_ipc::Process;
use process_ipc::manager::{ManagedDict, ManagedQueue, Manager};

const KEY: &[u8] = b"multitask-anchor";
const PAIRS: u64 = 5_000;
const JOBS: u64 = 5_000;
const WORKERS: usize = 4;
const LIMIT: Duration = Duration::from_secs(60);

fn serve() -> Manager {
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .serve()
        .expect("serve on TCP");
    let shared = manager.dict::<u64, u64>().expect("dict");
    manager.register("shared", &shared).expect("register");
    let jobs = manager.queue::<Option<u64>>().expect("queue");
    manager.register("jobs", &jobs).expect("register");
    let results = manager.queue::<u64>().expect("queue");
    manager.register("results", &results).expect("register");
    manager
}

/// A worker process of the recipe: squares jobs until it gets `None`.
fn worker(addr: String) -> u64 {
    let client = Manager::connect(addr.as_str(), KEY).expect("connect");
    let jobs: ManagedQueue<Option<u64>> = client.lookup("jobs").expect("jobs");
    let results: ManagedQueue<u64> = client.lookup("results").expect("results");
    let mut done = 0;
    while let Some(x) = jobs.get().expect("get") {
        results.put(x * x).expect("put");
        done += 1;
    }
    results.flush().expect("flush");
    done
}

fn manager_remote(c: &mut Criterion) {
    let manager = serve();
    let addr = manager.local_addr().expect("address");
    let mut group = c.benchmark_group("manager_remote");

    let client = Manager::connect(addr, KEY).expect("connect");
    let d: ManagedDict<u64, u64> = client.lookup("shared").expect("lookup");
    group.throughput(Throughput::Elements(2 * PAIRS));
    group.bench_function("dict_set_get", |b| {
        b.iter(|| {
            for i in 0..PAIRS {
                d.insert(i % 64, i).expect("insert");
                assert_eq!(d.get(&(i % 64)).expect("get"), Some(i));
            }
        });
    });

    // The same pairs on a manager on its Unix socket, through a decoded handle (every call a
    // round trip, as over TCP): what the transport and the handshake-free path cost.
    let unix = Manager::new().expect("manager");
    let local: ManagedDict<u64, u64> = unix.dict().expect("dict");
    let decoded: ManagedDict<u64, u64> =
        postcard::from_bytes(&postcard::to_stdvec(&local).expect("encode")).expect("decode");
    group.bench_function("dict_set_get_unix_socket", |b| {
        b.iter(|| {
            for i in 0..PAIRS {
                decoded.insert(i % 64, i).expect("insert");
                assert_eq!(decoded.get(&(i % 64)).expect("get"), Some(i));
            }
        });
    });

    // The floor: as many bare 16-byte TCP round trips between two threads over loopback
    // (blocking reads, as a plain client and server would do them).
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let floor_addr = listener.local_addr().expect("address");
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 16];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).expect("echo");
        }
    });
    let mut ping = TcpStream::connect(floor_addr).expect("connect");
    ping.set_nodelay(true).expect("nodelay");
    group.bench_function("tcp_round_trips_floor", |b| {
        b.iter(|| {
            let mut buf = [0u8; 16];
            for i in 0..2 * PAIRS {
                buf[..8].copy_from_slice(&i.to_le_bytes());
                ping.write_all(&buf).expect("ping");
                ping.read_exact(&mut buf).expect("pong");
            }
        });
    });
    drop(ping);
    echo.join().expect("echo thread");

    // What the loopback TCP stack alone costs per round trip: the same two 16-byte writes and
    // two reads, all in one thread (each read finds its bytes already there), so no thread
    // ever sleeps or wakes. A round trip between two threads or processes costs at least this.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut a = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (mut z, _) = listener.accept().expect("accept");
    a.set_nodelay(true).expect("nodelay");
    z.set_nodelay(true).expect("nodelay");
    group.bench_function("tcp_round_trips_one_thread", |b| {
        b.iter(|| {
            let mut buf = [0u8; 16];
            for _ in 0..2 * PAIRS {
                a.write_all(&buf).expect("ping");
                z.read_exact(&mut buf).expect("ping in");
                z.write_all(&buf).expect("pong");
                a.read_exact(&mut buf).expect("pong in");
            }
        });
    });
    drop((a, z));

    let jobs: ManagedQueue<Option<u64>> = client.lookup("jobs").expect("jobs");
    let results: ManagedQueue<u64> = client.lookup("results").expect("results");
    group.throughput(Throughput::Elements(JOBS));
    group.bench_function("job_queue_4_workers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let workers: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        Process::new(worker, (addr.to_string(),))
                            .start()
                            .expect("start worker")
                    })
                    .collect();
                let start = Instant::now();
                for i in 0..JOBS {
                    jobs.put(Some(i)).expect("put");
                }
                let mut got = 0u64;
                for _ in 0..JOBS {
                    got += results.get_timeout(LIMIT).expect("result");
                }
                total += start.elapsed();
                assert_eq!(got, (0..JOBS).map(|i| i * i).sum::<u64>());
                for _ in 0..WORKERS {
                    jobs.put(None).expect("stop");
                }
                let done: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
                assert_eq!(done, JOBS);
            }
            total
        });
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("connect_auth_call", |b| {
        b.iter(|| {
            let client = Manager::connect(addr, KEY).expect("connect");
            let d: ManagedDict<u64, u64> = client.lookup("shared").expect("lookup");
            black_box(d.get(&0).expect("get"));
        });
    });
    group.finish();
}

criterion_group!(benches, manager_remote);
criterion_main!(benches);
