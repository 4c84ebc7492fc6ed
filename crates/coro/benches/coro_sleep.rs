//! Wall time of 10 000 coroutines each sleeping 10 ms: coro vs raw may vs tokio
//! current_thread, one run (gevent: ~178 ms).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const N: usize = 10_000;
const EACH: Duration = Duration::from_millis(10);

fn coro_run() -> Duration {
    let start = Instant::now();
    let gs: Vec<_> = (0..N)
        .map(|_| coro::spawn(|| coro::sleep(EACH)).unwrap())
        .collect();
    coro::joinall(&gs, None).unwrap();
    start.elapsed()
}

fn may_run() -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..N)
        .map(|_| may::go!(|| may::coroutine::sleep(EACH)))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

fn tokio_run(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let hs: Vec<_> = (0..N)
            .map(|_| tokio::spawn(tokio::time::sleep(EACH)))
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    common::configure_pool();
    coro::spawn(|| ()).unwrap().join();
    let mut g = c.benchmark_group("coro_sleep10ms_x10000");
    g.sample_size(10);
    // One iteration is one whole run; the reported time is its wall time.
    g.bench_function("coro_sleep", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| black_box(coro_run())).sum())
    });
    g.bench_function("may_sleep_raw", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| black_box(may_run())).sum())
    });
    g.bench_function("tokio_current_thread", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| black_box(tokio_run(&rt))).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
