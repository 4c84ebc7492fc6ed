//! Queue throughput, child process to parent: `u64` messages and 64 KiB `ByteBuf` messages,
//! against the raw floor (a bare `IpcSender` in the same kind of child). The timer runs from
//! "go" to the last item received, as in the anchors. Then one producer (the parent) and four
//! consumer processes, 200 000 ints (Python's twin: `shared_state.py`
//! `mp_queue_1_producer_4_consumers`).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use process_ipc::{Process, Queue, QueueSender};
use serde_bytes::ByteBuf;

const INTS: u64 = 200_000;
const BIGS: u64 = 2_000;
const BIG: usize = 64 << 10;

fn queue_ints(q: QueueSender<u64>, go: IpcReceiver<()>, n: u64) {
    go.recv().unwrap();
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn raw_ints(tx: IpcSender<u64>, go: IpcReceiver<()>, n: u64) {
    go.recv().unwrap();
    for i in 0..n {
        tx.send(i).unwrap();
    }
}

fn queue_bigs(q: QueueSender<ByteBuf>, go: IpcReceiver<()>, n: u64) {
    let buf = vec![7u8; BIG];
    go.recv().unwrap();
    for _ in 0..n {
        q.put(ByteBuf::from(buf.clone())).unwrap();
    }
}

fn raw_bigs(tx: IpcSender<ByteBuf>, go: IpcReceiver<()>, n: u64) {
    let buf = vec![7u8; BIG];
    go.recv().unwrap();
    for _ in 0..n {
        tx.send(ByteBuf::from(buf.clone())).unwrap();
    }
}

/// A consumer: says it is ready, counts items until the queue ends.
fn count_items(q: Queue<u64>, ready: QueueSender<()>) -> u64 {
    ready.put(()).unwrap();
    ready.flush();
    let mut n = 0;
    while q.get().is_ok() {
        n += 1;
    }
    n
}

/// Runs one producer child per iteration and times go -> last item.
fn timed<S>(
    iters: u64,
    n: u64,
    start: impl Fn(IpcReceiver<()>) -> S,
    drain: impl Fn(u64),
    join: impl Fn(S),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (go_tx, go_rx) = ipc::channel::<()>().unwrap();
        let child = start(go_rx);
        let t = Instant::now();
        go_tx.send(()).unwrap();
        drain(n);
        total += t.elapsed();
        join(child);
    }
    total
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_queue_u64");
    g.sample_size(10);
    g.throughput(Throughput::Elements(INTS));
    g.bench_function("raw_ipc_channel", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = ipc::channel::<u64>().unwrap();
            timed(
                iters,
                INTS,
                |go| {
                    Process::new(raw_ints, (tx.clone(), go, INTS))
                        .start()
                        .unwrap()
                },
                |n| {
                    for i in 0..n {
                        assert_eq!(rx.recv().unwrap(), i);
                    }
                },
                |h| h.join().unwrap(),
            )
        })
    });
    g.bench_function("queue", |b| {
        b.iter_custom(|iters| {
            let q = Queue::<u64>::new().unwrap();
            timed(
                iters,
                INTS,
                |go| {
                    Process::new(queue_ints, (q.sender().unwrap(), go, INTS))
                        .start()
                        .unwrap()
                },
                |n| {
                    for i in 0..n {
                        assert_eq!(q.get().unwrap(), i);
                    }
                },
                |h| h.join().unwrap(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("process_queue_64k");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BIGS * BIG as u64));
    g.bench_function("raw_ipc_channel_bytebuf", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = ipc::channel::<ByteBuf>().unwrap();
            timed(
                iters,
                BIGS,
                |go| {
                    Process::new(raw_bigs, (tx.clone(), go, BIGS))
                        .start()
                        .unwrap()
                },
                |n| {
                    for _ in 0..n {
                        assert_eq!(rx.recv().unwrap().len(), BIG);
                    }
                },
                |h| h.join().unwrap(),
            )
        })
    });
    g.bench_function("queue_bytebuf", |b| {
        b.iter_custom(|iters| {
            let q = Queue::<ByteBuf>::new().unwrap();
            timed(
                iters,
                BIGS,
                |go| {
                    Process::new(queue_bigs, (q.sender().unwrap(), go, BIGS))
                        .start()
                        .unwrap()
                },
                |n| {
                    for _ in 0..n {
                        assert_eq!(q.get().unwrap().len(), BIG);
                    }
                },
                |h| h.join().unwrap(),
            )
        })
    });
    g.finish();
}

fn one_to_four(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_queue_1_producer_4_consumers");
    g.sample_size(10);
    g.throughput(Throughput::Elements(INTS));
    g.bench_function("queue", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let q = Queue::<u64>::new().unwrap();
                let ready = Queue::<()>::new().unwrap();
                let consumers: Vec<_> = (0..4)
                    .map(|_| {
                        Process::new(count_items, (q.handle(), ready.sender().unwrap()))
                            .start()
                            .unwrap()
                    })
                    .collect();
                for _ in 0..4 {
                    ready.get().unwrap();
                }
                let t = Instant::now();
                for i in 0..INTS {
                    q.put(i).unwrap();
                }
                q.close();
                let got: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
                total += t.elapsed();
                assert_eq!(got, INTS);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, one_to_four);
criterion_main!(benches);
