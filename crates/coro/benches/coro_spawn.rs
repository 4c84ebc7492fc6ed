//! spawn + join per coroutine, 1 000 at a time: coro vs raw may (gevent: ~15.6 µs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const BATCH: u64 = 1000;

fn coro_batch(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let start = Instant::now();
        let mut gs: Vec<_> = (0..n).map(|_| coro::spawn(|| ()).unwrap()).collect();
        for g in &mut gs {
            g.get().unwrap();
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn may_batch(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let start = Instant::now();
        let hs: Vec<_> = (0..n).map(|_| may::go!(|| ())).collect();
        for h in hs {
            h.join().unwrap();
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    coro::spawn(|| ()).unwrap().join();
    let mut g = c.benchmark_group("coro_spawn_join");
    g.bench_function("coro_spawn_get", |b| {
        b.iter_custom(|iters| black_box(coro_batch(iters)))
    });
    g.bench_function("may_go_join_raw", |b| {
        b.iter_custom(|iters| black_box(may_batch(iters)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
