//! Thread ping-pong: a token goes back and forth between two threads over two queues:
//! our `Queue` against raw `crossbeam-channel` unbounded channels.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use threads_sync::Queue;

const ROUND_TRIPS: u64 = 2_000;

fn ours(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (ping, pong) = (Queue::new(), Queue::new());
        let (their_ping, their_pong) = (ping.clone(), pong.clone());
        let echo = std::thread::spawn(move || {
            for _ in 0..ROUND_TRIPS {
                let v: u64 = their_ping.get().unwrap();
                their_pong.put(v + 1).unwrap();
            }
        });
        let t0 = Instant::now();
        for i in 0..ROUND_TRIPS {
            ping.put(i).unwrap();
            let _ = pong.get().unwrap();
        }
        total += t0.elapsed();
        echo.join().unwrap();
    }
    total
}

fn raw(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (ping_tx, ping_rx) = crossbeam_channel::unbounded::<u64>();
        let (pong_tx, pong_rx) = crossbeam_channel::unbounded::<u64>();
        let echo = std::thread::spawn(move || {
            for _ in 0..ROUND_TRIPS {
                let v = ping_rx.recv().unwrap();
                pong_tx.send(v + 1).unwrap();
            }
        });
        let t0 = Instant::now();
        for i in 0..ROUND_TRIPS {
            ping_tx.send(i).unwrap();
            let _ = pong_rx.recv().unwrap();
        }
        total += t0.elapsed();
        echo.join().unwrap();
    }
    total
}

fn pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("thread_pingpong");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROUND_TRIPS));
    group.bench_function("crossbeam_unbounded", |b| b.iter_custom(raw));
    group.bench_function("ours_queue", |b| b.iter_custom(ours));
    group.finish();
}

criterion_group!(benches, pingpong);
criterion_main!(benches);
