//! Two threads x 500 000 locked increments (time / 1e6 increments), as in the anchors:
//! ours with deadlock detection (and lock-order checking) on, ours with each switched off,
//! `std::sync::Mutex`, and `parking_lot::Mutex` (the raw lock ours is built on).
//! Plus the uncontended single-thread cost.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use threads_sync::Mutex;
use threads_sync::deadlock::{set_detection, set_lock_order_checking};

const THREADS: usize = 2;
const PER_THREAD: u64 = 500_000;

/// Spawns the threads, lines them up, and times start..all joined.
fn run_contended(increment: &(dyn Fn() + Sync)) -> Duration {
    let start = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                for _ in 0..PER_THREAD {
                    increment();
                }
            });
        }
        start.wait();
        Instant::now()
    })
    // The scope joined the workers when it ended: this is start..all joined.
    .elapsed()
}

fn timed(iters: u64, increment: &(dyn Fn() + Sync)) -> Duration {
    (0..iters).map(|_| run_contended(increment)).sum()
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("mutex_counter_2x500k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(THREADS as u64 * PER_THREAD));

    let std_m = std::sync::Mutex::new(0u64);
    group.bench_function("std_mutex", |b| {
        b.iter_custom(|iters| timed(iters, &|| *std_m.lock().unwrap() += 1));
    });
    let pl = parking_lot::Mutex::new(0u64);
    group.bench_function("parking_lot", |b| {
        b.iter_custom(|iters| timed(iters, &|| *pl.lock() += 1));
    });
    let ours = Mutex::named("counter", 0u64);
    for (label, detection, order) in [
        ("ours_detection_on_order_on", true, true),
        ("ours_detection_on_order_off", true, false),
        ("ours_detection_off_order_off", false, false),
    ] {
        set_detection(detection);
        set_lock_order_checking(order);
        group.bench_function(label, |b| {
            b.iter_custom(|iters| timed(iters, &|| *ours.lock().unwrap() += 1));
        });
    }
    set_detection(true);
    set_lock_order_checking(true);
    group.finish();
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("mutex_uncontended");
    let pl = parking_lot::Mutex::new(0u64);
    group.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).lock() += 1));
    let std_m = std::sync::Mutex::new(0u64);
    group.bench_function("std_mutex", |b| {
        b.iter(|| *black_box(&std_m).lock().unwrap() += 1)
    });
    let ours = Mutex::new(0u64);
    group.bench_function("ours", |b| {
        b.iter(|| *black_box(&ours).lock().unwrap() += 1)
    });
    set_lock_order_checking(false);
    group.bench_function("ours_order_off", |b| {
        b.iter(|| *black_box(&ours).lock().unwrap() += 1)
    });
    set_detection(false);
    group.bench_function("ours_detection_off_order_off", |b| {
        b.iter(|| *black_box(&ours).lock().unwrap() += 1)
    });
    set_detection(true);
    set_lock_order_checking(true);
    // Lock-order checking records an edge only for nested locks; this is its per-lock cost
    // when one lock is already held.
    let outer = Mutex::new(());
    let _held = outer.lock().unwrap();
    group.bench_function("ours_nested_under_another", |b| {
        b.iter(|| *black_box(&ours).lock().unwrap() += 1)
    });
    group.finish();
}

criterion_group!(benches, contended, uncontended);
criterion_main!(benches);
