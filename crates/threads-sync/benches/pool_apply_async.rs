//! 20 000 tiny tasks: `ThreadPool::apply_async` then `get` each, against raw `threadpool` with
//! results sent on one crossbeam channel (the rust-raw anchor's workload).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use threads_sync::ThreadPool;

const TASKS: u64 = 20_000;

fn square(x: u64) -> u64 {
    black_box(x) * x
}

fn apply_async(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_apply_async_tiny");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TASKS));

    let raw = threadpool::ThreadPool::new(2);
    group.bench_function("raw_threadpool", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let (tx, rx) = crossbeam_channel::unbounded();
                for i in 0..TASKS {
                    let tx = tx.clone();
                    raw.execute(move || tx.send((i, square(i))).unwrap());
                }
                let sum: u64 = (0..TASKS).map(|_| rx.recv().unwrap().1).sum();
                black_box(sum);
            }
            t0.elapsed()
        });
    });

    let ours = ThreadPool::new(2).unwrap();
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let pending: Vec<_> = (0..TASKS)
                    .map(|i| ours.apply_async(square, (i,)).unwrap())
                    .collect();
                let sum: u64 = pending.into_iter().map(|r| r.get().unwrap()).sum();
                black_box(sum);
            }
            t0.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, apply_async);
criterion_main!(benches);
