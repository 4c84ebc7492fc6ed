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

fn do_nothing() {}

/// Fresh anonymous memory of `len` bytes, every page faulted in (as `create` does for a block).
fn populated_anon(len: usize) -> &'static mut [u8] {
    // SAFETY: a private anonymous mapping of `len` bytes, checked, never unmapped (leaked on
    // purpose: the bench makes one per sample).
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        );
        assert_ne!(ptr, libc::MAP_FAILED);
        std::slice::from_raw_parts_mut(ptr.cast(), len)
    }
}

fn unmap(buf: &'static mut [u8]) {
    // SAFETY: a mapping made by `populated_anon` with this length, unmapped once.
    unsafe { libc::munmap(buf.as_mut_ptr().cast(), buf.len()) };
}

/// Creates a block of `size` and has a child fill it in `chunk` slices: the parent's view of
/// the block and the time the child started (the block's creation is not timed, as in Python).
fn block_filled_by_a_child(size: usize, chunk: usize) -> (SharedMemory, Instant) {
    let block = SharedMemory::create(size).unwrap();
    let view = SharedMemory::attach(block.name()).unwrap();
    let start = Instant::now();
    Process::new(fill, (block, chunk))
        .start()
        .unwrap()
        .join()
        .unwrap();
    (view, start)
}

/// A child writes 256 MiB in 64 KiB slices; the parent copies it all out (Python:
/// `SharedMemory` + `bytes(shm.buf)`). Throughput counts both passes.
///
/// Beside it, what bounds it on this machine: `floor_raw_fork_child` is the same work done
/// with the fewest system calls: a bare `fork` whose child maps a raw memfd (every page mapped
/// at once), fills it and `_exit`s, then the same copy out; `floor_no_process` does the same two passes in
/// one process with no shared memory (64 KiB slices into a populated anonymous buffer, made
/// before the timer as the block is, then one copy into a new `Vec` readied as `to_vec`
/// readies its own); `child_start_exit_only` is the process start and join alone, no bytes
/// moved; `child_fill_only` and `copy_only` are the two halves of `process_ipc` (the child's
/// attach, fill and exit; the parent's `to_vec` of a filled block). Their throughput figures
/// count both passes too, so compare their times.
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
                    let (view, start) = block_filled_by_a_child(SIZE, CHUNK);
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
    g.bench_function("floor_no_process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let buf = populated_anon(SIZE);
                let start = Instant::now();
                let pattern = vec![b'x'; CHUNK];
                for part in buf.chunks_mut(CHUNK) {
                    part.copy_from_slice(&pattern[..part.len()]);
                }
                let copy = huge_vec_copy(buf);
                total += start.elapsed();
                assert_eq!(copy[SIZE - 1], b'x');
                unmap(buf);
            }
            total
        })
    });
    g.bench_function("floor_raw_fork_child", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (fd, parent_view) = raw_memfd_block(SIZE);
                let start = Instant::now();
                raw_child_fill(fd, SIZE, CHUNK);
                let copy = huge_vec_copy(parent_view);
                total += start.elapsed();
                assert_eq!(copy[SIZE - 1], b'x');
                unmap(parent_view);
                // SAFETY: our own descriptor, closed once.
                unsafe { libc::close(fd) };
            }
            total
        })
    });
    g.bench_function("child_fill_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (view, start) = block_filled_by_a_child(SIZE, CHUNK);
                total += start.elapsed();
                assert_eq!(view.as_slice()[SIZE - 1], b'x');
            }
            total
        })
    });
    g.bench_function("copy_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut block = SharedMemory::create(SIZE).unwrap();
                fill(block.try_clone().unwrap(), CHUNK);
                let start = Instant::now();
                let copy = block.to_vec();
                total += start.elapsed();
                assert_eq!(copy[SIZE - 1], b'x');
                block.unlink();
            }
            total
        })
    });
    g.bench_function("child_start_exit_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                Process::new(do_nothing, ())
                    .start()
                    .unwrap()
                    .join()
                    .unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// The least a block can be made with: a memfd of `len` bytes with every page allocated, and
/// this process's mapping of it with every page mapped (as `SharedMemory::create` makes one).
fn raw_memfd_block(len: usize) -> (libc::c_int, &'static mut [u8]) {
    // SAFETY: a new memfd, sized and allocated, then mapped shared for `len` bytes; each
    // step checked. The mapping is unmapped by `unmap`.
    unsafe {
        let fd = libc::memfd_create(c"floor".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0);
        assert_eq!(libc::fallocate(fd, 0, 0, len as libc::off_t), 0);
        let ptr = map_shared(fd, len);
        assert_ne!(ptr, libc::MAP_FAILED);
        (fd, std::slice::from_raw_parts_mut(ptr.cast(), len))
    }
}

/// `len` bytes of memfd `fd` mapped shared and writable, every page mapped at once
/// (`MAP_FAILED` if refused).
///
/// # Safety
/// `fd` is an open memfd of at least `len` bytes.
unsafe fn map_shared(fd: libc::c_int, len: usize) -> *mut libc::c_void {
    // SAFETY: per the caller; a new mapping, touching none of ours.
    unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            0,
        )
    }
}

/// The least a child can do to fill a block: a bare `fork`, whose child maps the memfd with
/// every page mapped at once, writes it in `chunk` slices and `_exit`s; the parent `waitpid`s.
fn raw_child_fill(fd: libc::c_int, len: usize, chunk: usize) {
    let pattern = vec![b'x'; chunk];
    // SAFETY: the child only maps, copies into its own mapping and leaves with `_exit` (no
    // allocation, no lock a thread of the parent could hold); the parent reaps it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let ptr = map_shared(fd, len);
            if ptr == libc::MAP_FAILED {
                libc::_exit(1);
            }
            let mut at = 0;
            while at < len {
                let n = chunk.min(len - at);
                std::ptr::copy_nonoverlapping(pattern.as_ptr(), ptr.cast::<u8>().add(at), n);
                at += n;
            }
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert_eq!(status, 0);
    }
}

/// A copy of `src` into a new `Vec` readied as `SharedMemory::to_vec` readies its own: huge
/// pages, all supplied before the copy.
fn huge_vec_copy(src: &[u8]) -> Vec<u8> {
    const HUGE: usize = 2 << 20;
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    let at = out.as_ptr() as usize;
    let (start, end) = (at.next_multiple_of(HUGE), (at + src.len()) & !(HUGE - 1));
    let (page_start, page_end) = (at.next_multiple_of(4096), (at + src.len()) & !4095);
    // SAFETY: advice on whole pages inside our own allocation, not yet written; contents and
    // access unchanged.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        libc::madvise(
            page_start as *mut libc::c_void,
            page_end - page_start,
            libc::MADV_POPULATE_WRITE,
        );
    }
    out.extend_from_slice(src);
    out
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
