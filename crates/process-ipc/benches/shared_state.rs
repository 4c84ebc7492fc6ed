//! State shared between processes, on the workloads of the Python twins
//! (`shared/anchors/python/extra/shared_state.py`), each timed the same way: process starts
//! and joins are inside the timing where Python's are.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use process_ipc::{Event, Lock, Process, SharedMemory, Value};

fn add_locked(counter: Value<u64>, times: u64) {
    for _ in 0..times {
        *counter.lock().unwrap() += 1;
    }
}

/// 2 processes x 100 000 locked increments on one Value (Python: `with v.get_lock(): v.value += 1`).
fn value_locked_incr(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("value_locked_incr_2proc");
    g.sample_size(10).throughput(Throughput::Elements(2 * N));
    g.bench_function("process_ipc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let counter = Value::new(0u64).unwrap();
                let start = Instant::now();
                let children: Vec<_> = (0..2)
                    .map(|_| {
                        Process::new(add_locked, (clone_value(&counter), N))
                            .start()
                            .unwrap()
                    })
                    .collect();
                for child in children {
                    child.join().unwrap();
                }
                total += start.elapsed();
                assert_eq!(counter.get().unwrap(), 2 * N);
            }
            total
        })
    });
    g.finish();
}

fn clone_value(v: &Value<u64>) -> Value<u64> {
    postcard::from_bytes(&postcard::to_allocvec(v).unwrap()).unwrap()
}

/// One process, acquire + release of a process-wide lock (Python: `mp.Lock`).
fn lock_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_uncontended");
    let lock = Lock::new().unwrap();
    g.bench_function("process_ipc", |b| b.iter(|| drop(lock.acquire().unwrap())));
    let std_lock = std::sync::Mutex::new(());
    g.bench_function("std_mutex_in_process", |b| {
        b.iter(|| drop(std_lock.lock().unwrap()))
    });
    // What the lock was built on before: libc's robust, process-shared mutex, in a block.
    let mut block = SharedMemory::create(4096).unwrap();
    let mutex = block
        .as_mut_slice()
        .as_mut_ptr()
        .cast::<libc::pthread_mutex_t>();
    // SAFETY: the block is zeroed, aligned and larger than a mutex; it outlives every use.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        assert_eq!(libc::pthread_mutex_init(mutex, &attr), 0);
    }
    g.bench_function("libc_robust_pthread_mutex", |b| {
        // SAFETY: an initialised mutex in a live block; locked and unlocked by this thread.
        b.iter(|| unsafe {
            libc::pthread_mutex_lock(mutex);
            libc::pthread_mutex_unlock(mutex);
        })
    });
    g.finish();
}

fn echo_events(ping: Event, pong: Event, rounds: u32) {
    for _ in 0..rounds {
        ping.wait().unwrap();
        ping.clear().unwrap();
        pong.set().unwrap();
    }
}

/// Event ping-pong between two processes: set, wait, clear on each side (Python: `mp.Event`).
fn event_pingpong(c: &mut Criterion) {
    const ROUNDS: u32 = 5_000;
    let mut g = c.benchmark_group("event_pingpong");
    g.sample_size(10)
        .throughput(Throughput::Elements(u64::from(ROUNDS)));
    g.bench_function("process_ipc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
                let child = Process::new(
                    echo_events,
                    (clone_event(&ping), clone_event(&pong), ROUNDS),
                )
                .start()
                .unwrap();
                let start = Instant::now();
                for _ in 0..ROUNDS {
                    ping.set().unwrap();
                    pong.wait().unwrap();
                    pong.clear().unwrap();
                }
                total += start.elapsed();
                child.join().unwrap();
            }
            total
        })
    });
    g.finish();
}

fn clone_event(e: &Event) -> Event {
    postcard::from_bytes(&postcard::to_allocvec(e).unwrap()).unwrap()
}

fn fill(block: SharedMemory, chunk: usize) {
    let mut block = block;
    let slice = block.as_mut_slice();
    let pattern = vec![b'x'; chunk];
    for part in slice.chunks_mut(chunk) {
        part.copy_from_slice(&pattern[..part.len()]);
    }
}

/// A child writes 256 MiB in 64 KiB slices; the parent copies it all out (Python:
/// `SharedMemory` + `bytes(shm.buf)`). Throughput counts both passes.
fn shm_bandwidth(c: &mut Criterion) {
    const SIZE: usize = 256 << 20;
    const CHUNK: usize = 64 << 10;
    let mut g = c.benchmark_group("shared_memory_bandwidth");
    g.sample_size(10)
        .throughput(Throughput::Bytes(2 * SIZE as u64));
    // `to_vec` (huge pages for the new buffer) beside the plain `as_slice().to_vec()`.
    for (name, huge) in [("process_ipc", true), ("process_ipc_slice_to_vec", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let block = SharedMemory::create(SIZE).unwrap();
                    let view = SharedMemory::attach(block.name()).unwrap();
                    let start = Instant::now();
                    Process::new(fill, (block, CHUNK))
                        .start()
                        .unwrap()
                        .join()
                        .unwrap();
                    let copy = if huge {
                        view.to_vec()
                    } else {
                        view.as_slice().to_vec()
                    };
                    total += start.elapsed();
                    assert_eq!(copy[SIZE - 1], b'x');
                }
                total
            })
        });
    }
    g.finish();
}

/// create + attach + close + unlink of a 4 KiB block (Python: `SharedMemory(create=True)`, then
/// `SharedMemory(name=...)`, `close`, `unlink`).
fn shm_create_attach(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_memory_create_attach_unlink");
    g.bench_function("process_ipc", |b| {
        b.iter(|| {
            let mut block = SharedMemory::create(4096).unwrap();
            let other = SharedMemory::attach(block.name()).unwrap();
            drop(other);
            block.unlink();
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    lock_uncontended,
    shm_create_attach,
    event_pingpong,
    value_locked_incr,
    shm_bandwidth
);
criterion_main!(benches);
