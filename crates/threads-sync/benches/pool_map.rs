//! `ThreadPool::map` against rayon's `(0..n).into_par_iter().map(f).collect::<Vec<_>>()`, both
//! on 2 threads, in one run: 1 M tiny items, and 2 000 items of about 100 µs of CPU each; and
//! `imap` over 1 M tiny items (one task per item, Python's default `chunksize=1`, and with
//! `chunksize=1024`).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use threads_sync::{MapOptions, ThreadPool};

const TINY: u64 = 1_000_000;
const HEAVY: u64 = 2_000;

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// About 100 µs of dependent multiply-adds (200 000 rounds, one multiply's latency each).
fn spin(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..black_box(200_000u32) {
        h = h
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    h
}

fn pools() -> (ThreadPool, rayon::ThreadPool) {
    let ours = ThreadPool::new(2).unwrap();
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    (ours, rayon)
}

fn map_tiny(c: &mut Criterion) {
    let (ours, rayon) = pools();
    let mut group = c.benchmark_group("pool_map_tiny_1M");
    group.sample_size(20);
    group.throughput(Throughput::Elements(TINY));
    group.bench_function("rayon_collect", |b| {
        b.iter(|| {
            black_box(rayon.install(|| (0..TINY).into_par_iter().map(square).collect::<Vec<_>>()))
        })
    });
    group.bench_function("threadpool_map", |b| {
        b.iter(|| black_box(ours.map(square, 0..TINY).unwrap()))
    });
    group.finish();
}

fn map_heavy(c: &mut Criterion) {
    let (ours, rayon) = pools();
    let mut group = c.benchmark_group("pool_map_100us_2000");
    group.sample_size(10);
    group.throughput(Throughput::Elements(HEAVY));
    group.bench_function("rayon_collect", |b| {
        b.iter(|| {
            black_box(rayon.install(|| (0..HEAVY).into_par_iter().map(spin).collect::<Vec<_>>()))
        })
    });
    group.bench_function("threadpool_map", |b| {
        b.iter(|| black_box(ours.map(spin, 0..HEAVY).unwrap()))
    });
    group.finish();
}

fn imap_tiny(c: &mut Criterion) {
    let ours = ThreadPool::new(2).unwrap();
    let mut group = c.benchmark_group("pool_imap_tiny_1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TINY));
    group.bench_function("threadpool_imap", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let sum: u64 = ours
                    .imap(square, 0..TINY)
                    .unwrap()
                    .map(Result::unwrap)
                    .fold(0, u64::wrapping_add);
                black_box(sum);
            }
            t0.elapsed()
        })
    });
    group.bench_function("threadpool_imap_chunksize_1024", |b| {
        b.iter(|| {
            let sum: u64 = ours
                .imap_with(square, 0..TINY, MapOptions::new().chunksize(1024))
                .unwrap()
                .map(Result::unwrap)
                .fold(0, u64::wrapping_add);
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, map_tiny, map_heavy, imap_tiny);
criterion_main!(benches);
