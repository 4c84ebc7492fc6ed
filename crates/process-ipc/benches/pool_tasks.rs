//! Pool costs: 200 000 tiny tasks through `map` (Python's default chunking), 20 000 tiny
//! `apply_async` calls then `get` each (beside procspawn's `Pool::spawn` then `join` each, the
//! peer crate's pool, in the same run), and 200 tasks of 1 ms on a pool against one process per
//! task, and `Pool::new(4)` until it is ready. The pool is warm (started outside the timer)
//! except in the 1 ms comparison, which times pool creation and shutdown as Python's anchor
//! does.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use process_ipc::{Pool, Process};

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// Calls the procspawn pool takes at once (see `tiny`).
const PEER_TASKS: u64 = 4_000;

fn procspawn_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn busy_1ms(seed: u64) -> u64 {
    let start = Instant::now();
    let mut x = seed;
    while start.elapsed() < Duration::from_millis(1) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    x
}

fn tiny(c: &mut Criterion) {
    let pool = Pool::new(2).unwrap();
    let mut g = c.benchmark_group("pool_map_tiny");
    g.sample_size(10);
    g.throughput(Throughput::Elements(200_000));
    g.bench_function("map_200k_default_chunks", |b| {
        b.iter(|| {
            let out = pool.map(square, 0..200_000u64).unwrap();
            assert_eq!(out.len(), 200_000);
        })
    });
    g.finish();
    // #22's figure: 1 M tiny items, beside Python's Pool(2).map of the same.
    let mut g = c.benchmark_group("pool_map_tiny_1M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("map_1M_default_chunks", |b| {
        b.iter(|| {
            let out = pool.map(square, 0..1_000_000u64).unwrap();
            assert_eq!(out.len(), 1_000_000);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pool_apply_async_tiny");
    g.sample_size(10);
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("apply_async_20k_then_get", |b| {
        b.iter(|| {
            let pending: Vec<_> = (0..20_000u64)
                .map(|i| pool.apply_async(square, (i,)).unwrap())
                .collect();
            for (i, r) in pending.into_iter().enumerate() {
                assert_eq!(r.get().unwrap(), (i as u64).wrapping_mul(i as u64));
            }
        })
    });
    drop(pool);
    // procspawn holds about four descriptors per pending call (two channels), so 20 000 pending
    // calls exceed this machine's limit of 20 000 open files: the peer runs 4 000 (throughput is
    // per task either way; the peers table of 2026-11-29 used 5 000).
    let peer = procspawn::Pool::new(2).unwrap();
    g.throughput(Throughput::Elements(PEER_TASKS));
    g.bench_function("procspawn_pool_spawn_4k_then_join", |b| {
        b.iter(|| {
            let pending: Vec<_> = (0..PEER_TASKS)
                .map(|i| peer.spawn(i, procspawn_square))
                .collect();
            for (i, r) in pending.into_iter().enumerate() {
                assert_eq!(r.join().unwrap(), (i as u64).wrapping_mul(i as u64));
            }
        })
    });
    g.finish();
    peer.shutdown();
}

fn one_ms(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_1ms_x200");
    g.sample_size(10);
    g.bench_function("process_per_task_2_at_a_time", |b| {
        b.iter(|| {
            for pair in (0..200u64).collect::<Vec<_>>().chunks(2) {
                let handles: Vec<_> = pair
                    .iter()
                    .map(|&i| Process::new(busy_1ms, (i,)).start().unwrap())
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
            }
        })
    });
    g.bench_function("pool2_map_incl_create_and_join", |b| {
        b.iter(|| {
            let pool = Pool::new(2).unwrap();
            assert_eq!(pool.map(busy_1ms, 0..200u64).unwrap().len(), 200);
            pool.close();
            pool.join().unwrap();
        })
    });
    g.finish();
}

/// `Pool::new(4)` until it returns, its workers started and ready for tasks (the fork server
/// warm, as after a program's first process); the shutdown is not timed.
fn create(c: &mut Criterion) {
    drop(Pool::new(1).unwrap());
    let mut g = c.benchmark_group("pool_new");
    g.sample_size(20);
    g.bench_function("new_4_ready", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let pool = Pool::new(4).unwrap();
                spent += start.elapsed();
                assert_eq!(pool.pids().len(), 4);
                drop(pool);
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, tiny, one_ms, create);

fn main() {
    // A procspawn worker runs its calls here and never returns; our own workers never reach main.
    procspawn::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
