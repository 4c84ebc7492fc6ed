//! Wall time of 1 000 coroutines each calling unchanged `std::thread::sleep(10 ms)`
//! after `monkey::patch_all()` (gevent patched `time.sleep`: ~21 ms); needs `--features patch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const N: usize = 1000;
const EACH: Duration = Duration::from_millis(10);

fn run(sleep: fn(Duration)) -> Duration {
    let start = Instant::now();
    let gs: Vec<_> = (0..N)
        .map(|_| coro::spawn(move || sleep(EACH)).unwrap())
        .collect();
    coro::joinall(&gs, None).unwrap();
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    coro::spawn(|| ()).unwrap().join();
    coro::monkey::patch_all().unwrap();
    let mut g = c.benchmark_group("coro_sleep10ms_x1000");
    g.sample_size(10);
    g.bench_function("patched_std_thread_sleep", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| black_box(run(std::thread::sleep))).sum())
    });
    g.bench_function("coro_sleep", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| black_box(run(coro::sleep))).sum())
    });
    g.finish();
    coro::monkey::unpatch_all();
}

criterion_group!(benches, bench);
criterion_main!(benches);
