//! spawn + join: coro vs raw may vs tokio current_thread, one run (gevent: ~15.6 µs).
//!
//! Two shapes: one at a time (spawn, join, repeat: a stack from may's pool each
//! time), and 100 000 started then joined (every stack mapped afresh).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const MANY: u64 = 100_000;

fn coro_one_at_a_time(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let g = coro::spawn(move || i).unwrap();
        black_box(g.into_value().unwrap());
    }
    start.elapsed()
}

fn may_one_at_a_time(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let h = may::go!(move || i);
        black_box(h.join().unwrap());
    }
    start.elapsed()
}

fn tokio_one_at_a_time(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for i in 0..iters {
            black_box(tokio::spawn(async move { i }).await.unwrap());
        }
        start.elapsed()
    })
}

/// Per-task time of `MANY` started then joined, `iters` tasks' worth.
fn per_task(iters: u64, run: impl Fn() -> Duration) -> Duration {
    let rounds = iters.div_ceil(MANY).max(1);
    let total: Duration = (0..rounds).map(|_| run()).sum();
    total.mul_f64(iters as f64 / (rounds * MANY) as f64)
}

fn coro_many() -> Duration {
    let start = Instant::now();
    let gs: Vec<_> = (0..MANY).map(|i| coro::spawn(move || i).unwrap()).collect();
    for g in gs {
        black_box(g.into_value().unwrap());
    }
    start.elapsed()
}

fn may_many() -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..MANY).map(|i| may::go!(move || i)).collect();
    for h in hs {
        black_box(h.join().unwrap());
    }
    start.elapsed()
}

fn tokio_many(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let hs: Vec<_> = (0..MANY).map(|i| tokio::spawn(async move { i })).collect();
        for h in hs {
            black_box(h.await.unwrap());
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    common::configure_pool();
    coro::spawn(|| ()).unwrap().join();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("coro_spawn_join_one");
    g.bench_function("coro", |b| b.iter_custom(coro_one_at_a_time));
    g.bench_function("may_raw", |b| b.iter_custom(may_one_at_a_time));
    g.bench_function("tokio_current_thread", |b| {
        b.iter_custom(|iters| tokio_one_at_a_time(&rt, iters))
    });
    g.finish();
    let mut g = c.benchmark_group("coro_spawn_join_100k");
    g.sample_size(10);
    g.bench_function("coro", |b| b.iter_custom(|i| per_task(i, coro_many)));
    g.bench_function("may_raw", |b| b.iter_custom(|i| per_task(i, may_many)));
    g.bench_function("tokio_current_thread", |b| {
        b.iter_custom(|i| per_task(i, || tokio_many(&rt)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
