//! What one recorded event costs with a trace open: an instant, a span entered and exited,
//! and an event on a coroutine's track (the budget is 1 µs each).

use criterion::{Criterion, criterion_group, criterion_main};

fn events(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("timeline-bench-{}.json", std::process::id()));
    let guard = timeline::to_file(&path).expect("open the trace");
    let mut group = c.benchmark_group("timeline");
    // The floor every event pays (a vDSO clock read): on a loaded machine it grows too, so
    // read the others against it.
    group.bench_function("clock read (reference)", |b| b.iter(timeline::now_ns));
    group.bench_function("instant event", |b| {
        b.iter(|| tracing::info!(task = 7u64, "tick"));
    });
    group.bench_function("span enter+exit (two events)", |b| {
        let span = tracing::info_span!("run", task = 7u64);
        b.iter(|| {
            let _e = span.enter();
        });
    });
    group.bench_function("new span, enter, exit", |b| {
        b.iter(|| {
            let _e = tracing::info_span!("task", id = 3u64).entered();
        });
    });
    group.bench_function("coroutine event", |b| {
        b.iter(|| tracing::info!(coro = 12u64, "park"));
    });
    group.bench_function("wait (X event)", |b| {
        b.iter(|| tracing::info!(dur_us = 150u64, "lock wait"));
    });
    group.finish();
    drop(guard);
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, events);
criterion_main!(benches);
