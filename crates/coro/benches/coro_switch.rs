//! Two coroutines yielding back and forth on one worker: coro vs raw may (gevent `sleep(0)`: ~950 ns).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

/// Two coroutines, `iters / 2` yields each; returns the spawn..join time.
fn coro_pingpong(iters: u64) -> Duration {
    let half = iters.div_ceil(2);
    let start = Instant::now();
    let a = coro::spawn(move || {
        for _ in 0..half {
            coro::yield_now();
        }
    })
    .unwrap();
    let b = coro::spawn(move || {
        for _ in 0..half {
            coro::yield_now();
        }
    })
    .unwrap();
    coro::joinall([&a, &b], None).unwrap();
    start.elapsed()
}

fn may_pingpong(iters: u64) -> Duration {
    let half = iters.div_ceil(2);
    let start = Instant::now();
    let a = may::go!(move || {
        for _ in 0..half {
            may::coroutine::yield_now();
        }
    });
    let b = may::go!(move || {
        for _ in 0..half {
            may::coroutine::yield_now();
        }
    });
    a.join().unwrap();
    b.join().unwrap();
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    // coro configures may (one worker) at its first spawn; do it before raw may runs.
    coro::spawn(|| ()).unwrap().join();
    let mut g = c.benchmark_group("coro_switch");
    g.bench_function("coro_yield_now", |b| {
        b.iter_custom(|iters| black_box(coro_pingpong(iters)))
    });
    g.bench_function("may_yield_now_raw", |b| {
        b.iter_custom(|iters| black_box(may_pingpong(iters)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
