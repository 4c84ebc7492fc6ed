//! Manager dict round trips: a child process does 5 000 `insert` + `get` pairs on a
//! `ManagedDict` — Python's `manager_dict_set_get` anchor (8 511 ops/s, both counted; the
//! child's start and join are inside the time, as in Python's) — beside a child that does one
//! pair (its start, connection and join alone), the same pairs from a decoded handle in a
//! thread (round trips alone), and the floor: a bare Unix-socket ping-pong between two
//! threads with the same number of round trips.
//!
//! Manager queue throughput: 4 producers x 5 000 `put(u64)` into one `ManagedQueue`, the
//! manager's process drains all 20 000 — Python's `manager_queue` anchor (13 000 msgs/s) —
//! beside the raw ipc-channel floor (4 producers sending on clones of one `IpcSender<u64>`).
//!
//! Producers: 4 tasks on a warm `Pool(2)` (Python's workload exactly: submit to last get),
//! threads holding decoded handles (every put then takes the same path as in a child process),
//! and 4 child processes started per iteration (their spawn and join included). Beside them,
//! the other extreme: 2 000 pool tasks that put one item each.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipc_channel::ipc::{self, IpcSender};
use process_ipc::manager::{ManagedDict, ManagedQueue, Manager};
use process_ipc::{Pool, Process};

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 5_000;
const TOTAL: u64 = PRODUCERS * PER_PRODUCER;
const LIMIT: Duration = Duration::from_secs(30);

/// A handle as a child process holds it: decoded from an ipc message.
fn remote(queue: &ManagedQueue<u64>) -> ManagedQueue<u64> {
    let (tx, rx) = ipc::channel::<ManagedQueue<u64>>().expect("ipc channel");
    tx.send(queue.clone()).expect("send handle");
    rx.recv().expect("receive handle")
}

/// Child target: put `PER_PRODUCER` numbers from `base` into the manager queue.
fn put_range(queue: ManagedQueue<u64>, base: u64) -> u64 {
    for i in 0..PER_PRODUCER {
        queue.put(base + i).expect("put");
    }
    base
}

/// Pool task: one put.
fn put_one(queue: ManagedQueue<u64>, i: u64) -> u64 {
    queue.put(i).expect("put");
    i
}

/// Child target: the raw floor, `PER_PRODUCER` sends on a bare ipc-channel sender.
fn send_range(tx: IpcSender<u64>, base: u64) -> u64 {
    for i in 0..PER_PRODUCER {
        tx.send(base + i).expect("send");
    }
    base
}

fn manager_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("manager_queue");
    group.throughput(Throughput::Elements(TOTAL));
    group.sample_size(10);

    let manager = Manager::new().expect("manager");
    let queue = manager.queue::<u64>().expect("queue");
    let producers: Vec<ManagedQueue<u64>> = (0..PRODUCERS).map(|_| remote(&queue)).collect();
    group.bench_function("4x5000_remote_producers_local_drain", |b| {
        b.iter(|| {
            thread::scope(|s| {
                for (p, handle) in producers.iter().enumerate() {
                    s.spawn(move || {
                        let base = p as u64 * PER_PRODUCER;
                        for i in 0..PER_PRODUCER {
                            handle.put(base + i).expect("put");
                        }
                    });
                }
                let mut sum = 0u64;
                for _ in 0..TOTAL {
                    sum += queue.get_timeout(LIMIT).expect("get");
                }
                black_box(sum)
            })
        });
    });

    // A drain through the server as well: the consumer is remote too (a round trip per get).
    let consumer = remote(&queue);
    group.bench_function("4x5000_remote_producers_remote_drain", |b| {
        b.iter(|| {
            thread::scope(|s| {
                for (p, handle) in producers.iter().enumerate() {
                    s.spawn(move || {
                        let base = p as u64 * PER_PRODUCER;
                        for i in 0..PER_PRODUCER {
                            handle.put(base + i).expect("put");
                        }
                    });
                }
                let mut sum = 0u64;
                for _ in 0..TOTAL {
                    sum += consumer.get_timeout(LIMIT).expect("get");
                }
                black_box(sum)
            })
        });
    });

    let pool = Pool::new(2).expect("pool");
    group.bench_function("4x5000_pool_tasks_local_drain", |b| {
        b.iter(|| {
            let tasks = (0..PRODUCERS).map(|p| (queue.clone(), p * PER_PRODUCER));
            let result = pool.starmap_async(put_range, tasks).expect("submit");
            let mut sum = 0u64;
            for _ in 0..TOTAL {
                sum += queue.get_timeout(LIMIT).expect("get");
            }
            result.get_timeout(LIMIT).expect("tasks");
            black_box(sum)
        });
    });

    const TINY: u64 = 2_000;
    group.throughput(Throughput::Elements(TINY));
    group.bench_function("2000_pool_tasks_one_put_each", |b| {
        b.iter(|| {
            let tasks = (0..TINY).map(|i| (queue.clone(), i));
            let result = pool.starmap_async(put_one, tasks).expect("submit");
            let mut sum = 0u64;
            for _ in 0..TINY {
                sum += queue.get_timeout(LIMIT).expect("get");
            }
            result.get_timeout(LIMIT).expect("tasks");
            black_box(sum)
        });
    });
    group.throughput(Throughput::Elements(TOTAL));

    group.bench_function("4x5000_child_processes_local_drain", |b| {
        b.iter(|| {
            let mut children: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    Process::new(put_range, (queue.clone(), p * PER_PRODUCER))
                        .start()
                        .expect("start")
                })
                .collect();
            let mut sum = 0u64;
            for _ in 0..TOTAL {
                sum += queue.get_timeout(LIMIT).expect("get");
            }
            for child in &mut children {
                child.join_timeout(LIMIT).expect("join");
            }
            black_box(sum)
        });
    });

    // The floor: the same four producers on bare ipc-channel, one receiver.
    let (tx, rx) = ipc::channel::<u64>().expect("ipc channel");
    group.bench_function("raw_ipc_channel_4x5000", |b| {
        b.iter(|| {
            thread::scope(|s| {
                for p in 0..PRODUCERS {
                    let tx = tx.clone();
                    s.spawn(move || {
                        let base = p * PER_PRODUCER;
                        for i in 0..PER_PRODUCER {
                            tx.send(base + i).expect("send");
                        }
                    });
                }
                let mut sum = 0u64;
                for _ in 0..TOTAL {
                    sum += rx.try_recv_timeout(LIMIT).expect("recv");
                }
                black_box(sum)
            })
        });
    });
    group.bench_function("raw_ipc_channel_4x5000_child_processes", |b| {
        b.iter(|| {
            let mut children: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    Process::new(send_range, (tx.clone(), p * PER_PRODUCER))
                        .start()
                        .expect("start")
                })
                .collect();
            let mut sum = 0u64;
            for _ in 0..TOTAL {
                sum += rx.try_recv_timeout(LIMIT).expect("recv");
            }
            for child in &mut children {
                child.join_timeout(LIMIT).expect("join");
            }
            black_box(sum)
        });
    });
    group.finish();
}

/// Python's `dict_client`: `d[i] = i; _ = d[i]` for `i` in `0..n`.
fn dict_client(dict: ManagedDict<u64, u64>, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        dict.insert(i, i).expect("insert");
        sum += dict.get(&i).expect("get").expect("present");
    }
    sum
}

/// The cross-process floor: `n` round trips of a small message from a child to the parent's
/// echo thread over a bare Unix stream (connected by path: a `Process` argument is data).
fn raw_round_trips(path: String, n: u64) -> u64 {
    let mut stream = UnixStream::connect(path).expect("connect");
    let mut buf = [7u8; 24];
    for _ in 0..n {
        stream.write_all(&buf).expect("write");
        stream.read_exact(&mut buf).expect("read");
    }
    n
}

fn manager_dict(c: &mut Criterion) {
    const PAIRS: u64 = 5_000;
    let mut group = c.benchmark_group("manager_dict");
    group.throughput(Throughput::Elements(2 * PAIRS));
    group.sample_size(10);

    let manager = Manager::new().expect("manager");
    let dict = manager.dict::<u64, u64>().expect("dict");
    group.bench_function("child_process_5000_insert_get", |b| {
        b.iter(|| {
            let mut child = Process::new(dict_client, (dict.clone(), PAIRS))
                .start()
                .expect("start");
            let sum = child.join_timeout(LIMIT).expect("join");
            assert_eq!(dict.len().expect("len"), PAIRS as usize);
            black_box(sum)
        });
    });

    // What the child's start, first connection and join cost by themselves: one pair.
    group.throughput(Throughput::Elements(2));
    group.bench_function("child_process_1_insert_get", |b| {
        b.iter(|| {
            let mut child = Process::new(dict_client, (dict.clone(), 1))
                .start()
                .expect("start");
            black_box(child.join_timeout(LIMIT).expect("join"))
        });
    });
    group.throughput(Throughput::Elements(2 * PAIRS));

    // The round trips alone: a handle decoded as a child's is, used from a thread.
    let (tx, rx) = ipc::channel::<ManagedDict<u64, u64>>().expect("ipc channel");
    tx.send(dict.clone()).expect("send handle");
    let remote = rx.recv().expect("receive handle");
    group.bench_function("decoded_handle_5000_insert_get", |b| {
        b.iter(|| black_box(dict_client(remote.clone(), PAIRS)));
    });

    // The floor across processes: a child does the same number of round trips on a bare Unix
    // stream to an echo thread here (its start and join included, as above).
    let dir = std::env::temp_dir().join(format!("manager-dict-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("echo");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let echoes = thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 24];
            let mut served = false;
            while stream.read_exact(&mut buf).is_ok() {
                served = true;
                if stream.write_all(&buf).is_err() {
                    break;
                }
            }
            if !served {
                // The connection that says the bench is over.
                break;
            }
        }
    });
    let address = path.to_string_lossy().into_owned();
    group.bench_function("raw_unix_stream_child_process_10000_round_trips", |b| {
        b.iter(|| {
            let mut child = Process::new(raw_round_trips, (address.clone(), 2 * PAIRS))
                .start()
                .expect("start");
            black_box(child.join_timeout(LIMIT).expect("join"))
        });
    });
    drop(UnixStream::connect(&path).expect("stop the echo thread"));
    echoes.join().expect("echo thread");
    let _ = std::fs::remove_dir_all(&dir);

    // The floor in one process: 10 000 round trips on a bare Unix stream between two threads.
    let (mut near, mut far) = UnixStream::pair().expect("socket pair");
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 24];
        while far.read_exact(&mut buf).is_ok() {
            if far.write_all(&buf).is_err() {
                break;
            }
        }
    });
    group.bench_function("raw_unix_stream_10000_round_trips", |b| {
        b.iter(|| {
            let mut buf = [7u8; 24];
            for _ in 0..2 * PAIRS {
                near.write_all(&buf).expect("write");
                near.read_exact(&mut buf).expect("read");
            }
            black_box(buf)
        });
    });
    drop(near);
    echo.join().expect("echo thread");
    group.finish();
}

criterion_group!(benches, manager_dict, manager_queue);
criterion_main!(benches);
