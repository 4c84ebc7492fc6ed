//! Thread spawn+join: ours (`Thread::new(f, ()).start()?.join()`) against `std::thread`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use threads_sync::Thread;

fn noop() -> u64 {
    black_box(1)
}

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("thread_spawn_join");
    group.bench_function("std_thread", |b| {
        b.iter(|| std::thread::spawn(noop).join().unwrap());
    });
    group.bench_function("ours", |b| {
        b.iter(|| Thread::new(noop, ()).start().unwrap().join().unwrap());
    });
    group.finish();
}

criterion_group!(benches, spawn_join);
criterion_main!(benches);
