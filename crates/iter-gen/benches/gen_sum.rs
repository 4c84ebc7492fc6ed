//! Sum of 10 000 000 `u64`s from: a hand-written `Iterator`, raw genawaiter (`rc`, `sync`), ours.
//!
//! The same workload as the anchors' `generator_sum` (../shared/anchors/): the consumer does
//! `s = s.wrapping_add(black_box(x))`. Criterion reports time per iteration and, through the
//! throughput setting, items per second; divide the iteration time by N for ns per item.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: u64 = 10_000_000;

fn consume(items: impl Iterator<Item = u64>) -> u64 {
    items.fold(0u64, |s, x| s.wrapping_add(black_box(x)))
}

/// The floor: the state is two numbers and the compiler sees all of it.
struct Counter {
    next: u64,
    end: u64,
}

impl Iterator for Counter {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next < self.end {
            self.next += 1;
            Some(self.next - 1)
        } else {
            None
        }
    }
}

fn gen_sum(c: &mut Criterion) {
    let mut group = c.benchmark_group("gen_sum");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    let expected = (0..N).fold(0u64, u64::wrapping_add);

    group.bench_function("hand_written_iterator", |b| {
        b.iter(|| {
            let s = consume(Counter {
                next: 0,
                end: black_box(N),
            });
            assert_eq!(s, expected);
        })
    });
    group.bench_function("raw_genawaiter_rc", |b| {
        b.iter(|| {
            let n = black_box(N);
            let g = genawaiter::rc::Gen::new(|co| async move {
                let mut i = 0;
                while i < n {
                    co.yield_(i).await;
                    i += 1;
                }
            });
            assert_eq!(consume(g.into_iter()), expected);
        })
    });
    group.bench_function("ours_rc", |b| {
        b.iter(|| {
            let n = black_box(N);
            let g = iter_gen::local::Generator::new(|co| async move {
                let mut i = 0;
                while i < n {
                    co.yield_(i).await;
                    i += 1;
                }
            });
            assert_eq!(consume(g), expected);
        })
    });
    group.bench_function("ours_rc_boxed", |b| {
        b.iter(|| {
            let n = black_box(N);
            let g: iter_gen::local::Generator<u64> =
                iter_gen::local::Generator::boxed(|co| async move {
                    let mut i = 0;
                    while i < n {
                        co.yield_(i).await;
                        i += 1;
                    }
                });
            assert_eq!(consume(g), expected);
        })
    });
    group.bench_function("raw_genawaiter_sync", |b| {
        b.iter(|| {
            let n = black_box(N);
            let g = genawaiter::sync::Gen::new(|co| async move {
                let mut i = 0;
                while i < n {
                    co.yield_(i).await;
                    i += 1;
                }
            });
            assert_eq!(consume(g.into_iter()), expected);
        })
    });
    group.bench_function("ours_sync", |b| {
        b.iter(|| {
            let n = black_box(N);
            let g = iter_gen::threadsafe::Generator::new(|co| async move {
                let mut i = 0;
                while i < n {
                    co.yield_(i).await;
                    i += 1;
                }
            });
            assert_eq!(consume(g), expected);
        })
    });
    group.finish();
}

criterion_group!(benches, gen_sum);
criterion_main!(benches);
