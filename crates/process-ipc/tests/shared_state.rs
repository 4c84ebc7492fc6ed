//! State shared between processes: SharedMemory, Value/Array, and process-wide locks and
//! events, across real child processes. Every wait is bounded.

use std::time::Duration;

use process_ipc::{
    Array, Barrier, Condition, Event, Lock, Process, RLock, RawArray, RawValue, Semaphore,
    SharedError, SharedMemory, Value,
};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let mut block = SharedMemory::create(64).unwrap();
    block.as_mut_slice()[0] = 42;
    let other = SharedMemory::attach(block.name()).unwrap();
    assert_eq!(other.as_slice()[0], 42);
}

fn write_greeting(mut block: SharedMemory) -> usize {
    block.as_mut_slice()[..6].copy_from_slice(b"hello!");
    block.size()
}

#[test]
fn a_block_moved_into_a_child_argument_stays_attachable_until_unlinked() {
    let block = SharedMemory::create(4096).unwrap();
    let name = block.name().to_string();
    // The creating handle moves into the argument and is dropped once sent; the name must
    // outlive it, or the child could not attach.
    let mut child = Process::new(write_greeting, (block,)).start().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 4096);
    let mut view = SharedMemory::attach(&name).unwrap();
    assert_eq!(&view.as_slice()[..6], b"hello!");
    view.unlink();
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(SharedError::NotFound { .. })
    ));
}

fn write_at(block: SharedMemory, at: usize, byte: u8) {
    let mut block = block;
    block.as_mut_slice()[at] = byte;
}

#[test]
fn a_child_attaches_by_handle_and_the_parent_sees_its_writes() {
    let block = SharedMemory::create(4096).unwrap();
    let view = SharedMemory::attach(block.name()).unwrap();
    let mut child = Process::new(
        write_at,
        (SharedMemory::attach(block.name()).unwrap(), 100, 7),
    )
    .start()
    .unwrap();
    child.join_timeout(WAIT).unwrap();
    assert_eq!(view.as_slice()[100], 7);
    drop(block);
}

#[test]
fn bad_names_and_sizes_are_clear_errors() {
    assert!(matches!(
        SharedMemory::create(0),
        Err(SharedError::ZeroSize)
    ));
    let err = SharedMemory::attach("no-such-block").unwrap_err();
    assert!(matches!(err, SharedError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("no-such-block"), "{err}");
    // A well-formed name whose creator does not exist.
    let err = SharedMemory::attach("mt_psm_999999999_5_00000000000000aa").unwrap_err();
    assert!(matches!(err, SharedError::NotFound { .. }), "{err}");
}

#[test]
fn unlink_and_drop_end_the_name_but_not_the_mapping() {
    let mut block = SharedMemory::create(16).unwrap();
    let name = block.name().to_string();
    let mut attached = SharedMemory::attach(&name).unwrap();
    block.unlink();
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(SharedError::NotFound { .. })
    ));
    attached.as_mut_slice()[3] = 9;
    assert_eq!(block.as_slice()[3], 9, "both still map the same memory");

    let block = SharedMemory::create(16).unwrap();
    let name = block.name().to_string();
    drop(block);
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(SharedError::NotFound { .. })
    ));
}

#[test]
fn to_vec_copies_a_large_block_exactly() {
    // Large enough for huge pages, and not a whole number of them.
    let size = (40 << 20) + 12_345;
    let mut block = SharedMemory::create(size).unwrap();
    for (i, byte) in block.as_mut_slice().iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    let copy = block.to_vec();
    assert_eq!(copy.len(), size);
    assert!(copy.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    block.as_mut_slice()[7] = 0;
    assert_eq!(copy[7], 7, "a copy, not a view");
}

#[test]
fn a_block_made_again_after_a_drop_is_zeroed_and_the_old_name_is_gone() {
    for _ in 0..4 {
        let mut old = SharedMemory::create(4096).unwrap();
        old.as_mut_slice().fill(0xAB);
        let name = old.name().to_string();
        // Still mapped here through `kept`: the memory must not be handed out again.
        let kept = SharedMemory::attach(&name).unwrap();
        drop(old);
        let mut other = SharedMemory::create(4096).unwrap();
        other.as_mut_slice().fill(1);
        assert!(
            kept.as_slice().iter().all(|&b| b == 0xAB),
            "still its own memory"
        );
        drop(kept);
        let new = SharedMemory::create(4096).unwrap();
        assert!(
            new.as_slice().iter().all(|&b| b == 0),
            "a new block is zeroed"
        );
        assert_ne!(new.name(), name);
        assert!(matches!(
            SharedMemory::attach(&name),
            Err(SharedError::NotFound { .. })
        ));
    }
}

fn hold_and_report(block: SharedMemory, ready: Event, go: Event) -> u8 {
    ready.set().unwrap();
    assert!(go.wait_timeout(WAIT).unwrap());
    block.as_slice().iter().fold(0, |acc, &b| acc | b)
}

#[test]
fn a_block_another_process_maps_is_not_handed_out_again() {
    let (ready, go) = (Event::new().unwrap(), Event::new().unwrap());
    let mut block = SharedMemory::create(4096).unwrap();
    block.as_mut_slice().fill(0x11);
    let mut child = Process::new(
        hold_and_report,
        (
            block.try_clone().unwrap(),
            postcard_round_trip(&ready),
            postcard_round_trip(&go),
        ),
    )
    .start()
    .unwrap();
    assert!(ready.wait_timeout(WAIT).unwrap(), "the child attached");
    block.unlink();
    drop(block);
    // Blocks of the same size made now must all be new memory, not the child's.
    let mut made: Vec<_> = (0..4)
        .map(|_| SharedMemory::create(4096).unwrap())
        .collect();
    for m in &mut made {
        m.as_mut_slice().fill(0x22);
    }
    go.set().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 0x11);
}

/// In a child (umask is per process): makes a block under umask 000 and reports its mode,
/// and whether /dev/shm gained an entry of ours.
fn mode_under_umask_zero() -> (u32, bool) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: umask only changes this (child) process's file-creation mask.
    unsafe { libc::umask(0) };
    let block = SharedMemory::create(4096).unwrap();
    let fd = block.name().split('_').nth(3).unwrap().to_string();
    let mode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .mode();
    let in_dev_shm = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(&fd))
        })
        .unwrap_or(false);
    (mode, in_dev_shm)
}

#[test]
fn blocks_are_private_whatever_the_umask_and_leave_nothing_in_dev_shm() {
    let mut child = Process::new(mode_under_umask_zero, ()).start().unwrap();
    let (mode, in_dev_shm) = child.join_timeout(WAIT).unwrap();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    assert!(!in_dev_shm);
}

fn count_up(counter: Value<u64>, times: u64) {
    for _ in 0..times {
        *counter.lock().unwrap() += 1;
    }
}

#[test]
fn two_processes_add_under_the_value_lock_and_lose_nothing() {
    let counter = Value::new(0u64).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Process::new(count_up, (counter.clone(), 5_000))
                .start()
                .unwrap()
        })
        .collect();
    for mut child in children {
        child.join_timeout(WAIT).unwrap();
    }
    assert_eq!(counter.get().unwrap(), 10_000);
}

fn count_up_in_threads(counter: Value<u64>, threads: u64, times: u64) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..times {
                    let mut v = counter.lock().unwrap();
                    *v += 1;
                    // A holder that gives up its CPU now and then makes the others run out of
                    // spins and sleep, so releases have sleepers to wake.
                    if i % 8 == 0 {
                        std::thread::yield_now();
                    }
                }
            });
        }
    });
}

#[test]
fn nine_threads_in_three_processes_that_sleep_on_the_lock_lose_no_wake_up() {
    let counter = Value::new(0u64).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Process::new(count_up_in_threads, (counter.clone(), 3, 3_000))
                .start()
                .unwrap()
        })
        .collect();
    for mut child in children {
        // A lost wake-up leaves a thread asleep on a free lock: its process never ends.
        child.join_timeout(WAIT).unwrap();
    }
    assert_eq!(counter.get().unwrap(), 27_000);
}

/// A second handle on the same shared object, made the way a child receives one.
fn postcard_round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let bytes = postcard::to_allocvec(value).unwrap();
    postcard::from_bytes(&bytes).unwrap()
}

fn double_all(items: Array<i32>) {
    for x in items.lock().unwrap().iter_mut() {
        *x *= 2;
    }
}

#[test]
fn a_child_changes_an_array_in_place() {
    let items = Array::from_slice(&[1, 2, 3, 4]).unwrap();
    let mut child = Process::new(double_all, (postcard_round_trip(&items),))
        .start()
        .unwrap();
    child.join_timeout(WAIT).unwrap();
    assert_eq!(items.to_vec().unwrap(), [2, 4, 6, 8]);
    assert!(matches!(
        Array::<u8>::from_slice(&[]),
        Err(SharedError::ZeroSize)
    ));
}

#[test]
fn raw_values_and_arrays_are_shared_without_a_lock() {
    let v = RawValue::new(5u32).unwrap();
    let other: RawValue<u32> = postcard_round_trip(&v);
    other.set(6);
    assert_eq!(v.get(), 6);
    let a = RawArray::from_slice(&[0u16; 4]).unwrap();
    assert!(a.set(3, 9));
    assert!(!a.set(4, 9), "past the end");
    assert_eq!(a.get(4), None);
    assert_eq!(postcard_round_trip(&a).to_vec(), [0, 0, 0, 9]);
}

#[test]
fn a_handle_of_another_kind_or_shape_is_refused() {
    let lock = Lock::new().unwrap();
    let bytes = postcard::to_allocvec(&lock).unwrap();
    let err = postcard::from_bytes::<Event>(&bytes).unwrap_err();
    assert!(!err.to_string().is_empty());
    let value = Value::new(1u8).unwrap();
    let bytes = postcard::to_allocvec(&value).unwrap();
    assert!(
        postcard::from_bytes::<Value<u64>>(&bytes).is_err(),
        "u8 block read as u64"
    );
}

fn hold_lock_until_killed(lock: Lock, held: Event) {
    let _guard = lock.acquire().unwrap();
    held.set().unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_lock_whose_holder_is_killed_reports_the_pid_then_works() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut child = Process::new(
        hold_lock_until_killed,
        (postcard_round_trip(&lock), postcard_round_trip(&held)),
    )
    .start()
    .unwrap();
    assert!(held.wait_timeout(WAIT).unwrap(), "the child took the lock");
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(20)),
        Err(SharedError::Timeout(_))
    ));
    let pid = child.pid();
    child.kill().unwrap();
    assert!(child.join_timeout(WAIT).is_err());
    match lock.acquire_timeout(WAIT) {
        Err(SharedError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let again = lock.acquire_timeout(WAIT);
    assert!(again.is_ok(), "usable after the report: {again:?}");
}

#[test]
fn a_thread_that_exits_holding_a_lock_is_reported_as_this_process() {
    let lock = Lock::new().unwrap();
    let (rlock, other) = (RLock::new().unwrap(), Lock::new().unwrap());
    std::thread::scope(|s| {
        s.spawn(|| {
            // Interleaved takes and releases: the kernel's list of this thread must stay whole.
            let outer = other.acquire().unwrap();
            std::mem::forget(lock.acquire().unwrap());
            std::mem::forget(rlock.acquire().unwrap());
            std::mem::forget(rlock.acquire().unwrap());
            drop(outer);
        });
    });
    for result in [
        lock.acquire_timeout(WAIT).map(drop),
        rlock.acquire_timeout(WAIT).map(drop),
    ] {
        match result {
            Err(SharedError::OwnerDied { pid }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
    }
    assert!(lock.acquire_timeout(WAIT).is_ok());
    let again = rlock.acquire_timeout(WAIT).unwrap();
    assert_eq!(rlock.depth(), 1);
    drop(again);
    assert!(
        other.try_acquire().unwrap().is_some(),
        "released before the exit"
    );
}

#[test]
fn a_lock_dropped_while_a_leaked_guard_holds_it_leaves_the_thread_list_whole() {
    let probe = Lock::new().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Taken first: on the list behind the lost lock's entry.
            std::mem::forget(probe.acquire().unwrap());
            let lost = Lock::new().unwrap();
            std::mem::forget(lost.acquire().unwrap());
            drop(lost);
            // New locks of the same size, taken and released on the same thread's list.
            let fresh: Vec<Lock> = (0..8).map(|_| Lock::new().unwrap()).collect();
            for lock in &fresh {
                assert!(lock.try_acquire().unwrap().is_some(), "a new lock is free");
            }
        });
    });
    // The exit of that thread was seen through its list: the probe is reported.
    assert!(matches!(
        probe.acquire_timeout(WAIT),
        Err(SharedError::OwnerDied { .. })
    ));
}

/// A libc robust mutex in a shared block, process-shared, set up in place.
fn libc_robust_mutex(block: &mut SharedMemory) -> *mut libc::pthread_mutex_t {
    let mutex = block
        .as_mut_slice()
        .as_mut_ptr()
        .cast::<libc::pthread_mutex_t>();
    // SAFETY: the block is zeroed, page-aligned and larger than a mutex; the attribute object
    // lives on this frame.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            0
        );
        assert_eq!(
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
            0
        );
        assert_eq!(libc::pthread_mutex_init(mutex, &attr), 0);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    mutex
}

fn hold_with_libc_mutex(first: Lock, block: SharedMemory, last: Lock, held: Event) {
    let mut block = block;
    let mutex = block
        .as_mut_slice()
        .as_mut_ptr()
        .cast::<libc::pthread_mutex_t>();
    let a = first.acquire().unwrap();
    // SAFETY: an initialised process-shared robust mutex in a block this process maps.
    assert_eq!(unsafe { libc::pthread_mutex_lock(mutex) }, 0);
    let b = last.acquire().unwrap();
    // Off the middle of the list: libc's entry and ours must be relinked around it.
    drop(a);
    held.set().unwrap();
    let _kept = (b, block);
    loop {
        std::thread::park();
    }
}

#[test]
fn locks_share_the_kernels_robust_list_with_libc_mutexes() {
    let (first, last, held) = (
        Lock::new().unwrap(),
        Lock::new().unwrap(),
        Event::new().unwrap(),
    );
    let mut block = SharedMemory::create(4096).unwrap();
    let mutex = libc_robust_mutex(&mut block);
    let mut child = Process::new(
        hold_with_libc_mutex,
        (
            postcard_round_trip(&first),
            block.try_clone().unwrap(),
            postcard_round_trip(&last),
            postcard_round_trip(&held),
        ),
    )
    .start()
    .unwrap();
    assert!(held.wait_timeout(WAIT).unwrap(), "the child took them");
    let pid = child.pid();
    child.kill().unwrap();
    assert!(child.join_timeout(WAIT).is_err());
    // SAFETY: the mutex lives in `block`, mapped here; EOWNERDEAD hands it over.
    unsafe {
        assert_eq!(libc::pthread_mutex_lock(mutex), libc::EOWNERDEAD);
        assert_eq!(libc::pthread_mutex_consistent(mutex), 0);
        assert_eq!(libc::pthread_mutex_unlock(mutex), 0);
    }
    match last.acquire_timeout(WAIT) {
        Err(SharedError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(
        first.try_acquire().unwrap().is_some(),
        "released before the kill"
    );
    assert!(last.try_acquire().unwrap().is_some());
}

fn echo_events(ping: Event, pong: Event, rounds: u32) -> u32 {
    for _ in 0..rounds {
        assert!(ping.wait_timeout(WAIT).unwrap());
        ping.clear().unwrap();
        pong.set().unwrap();
    }
    rounds
}

#[test]
fn events_ping_pong_between_processes() {
    let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
    let mut child = Process::new(
        echo_events,
        (postcard_round_trip(&ping), postcard_round_trip(&pong), 50),
    )
    .start()
    .unwrap();
    for _ in 0..50 {
        ping.set().unwrap();
        assert!(pong.wait_timeout(WAIT).unwrap());
        pong.clear().unwrap();
    }
    assert_eq!(child.join_timeout(WAIT).unwrap(), 50);
}

fn meet(barrier: Barrier) -> u32 {
    barrier.wait_timeout(WAIT).unwrap()
}

#[test]
fn a_barrier_lets_three_processes_go_on_together() {
    let barrier = Barrier::new(3).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Process::new(meet, (postcard_round_trip(&barrier),))
                .start()
                .unwrap()
        })
        .collect();
    let mut indices = vec![barrier.wait_timeout(WAIT).unwrap()];
    for mut child in children {
        indices.push(child.join_timeout(WAIT).unwrap());
    }
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
    assert!(matches!(Barrier::new(0), Err(SharedError::Refused { .. })));
}

#[test]
fn semaphores_count_and_a_bounded_one_refuses_an_extra_release() {
    let s = Semaphore::bounded(1).unwrap();
    assert!(matches!(
        s.release(),
        Err(SharedError::OverRelease { bound: 1 })
    ));
    assert!(s.try_acquire().unwrap());
    assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
    s.release().unwrap();
    assert_eq!(s.value(), 1);
}

fn notify_when_set(cond: Condition, flag: Value<u8>) {
    let _held = cond.acquire().unwrap();
    flag.set(1).unwrap();
    cond.notify_all();
}

#[test]
fn a_condition_wakes_a_waiter_in_another_process() {
    let cond = Condition::new().unwrap();
    let flag = Value::new(0u8).unwrap();
    let mut held = cond.acquire().unwrap();
    let mut child = Process::new(
        notify_when_set,
        (postcard_round_trip(&cond), postcard_round_trip(&flag)),
    )
    .start()
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while flag.get().unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "no notify came");
        cond.wait_timeout(&mut held, Duration::from_secs(1))
            .unwrap();
    }
    drop(held);
    child.join_timeout(WAIT).unwrap();
}

#[test]
fn an_rlock_is_reentrant_and_free_after_the_last_guard() {
    let lock = RLock::new().unwrap();
    let a = lock.acquire().unwrap();
    let b = lock.try_acquire().unwrap().expect("re-entrant");
    assert_eq!(lock.depth(), 2);
    drop(b);
    drop(a);
    assert_eq!(lock.depth(), 0);
    let other: RLock = postcard_round_trip(&lock);
    assert!(other.acquire_timeout(WAIT).is_ok());
}

fn wait_on(event: Event, ready: Event) {
    ready.set().unwrap();
    let _ = event.wait();
}

/// Whether `pid` is asleep in the kernel (state `S` in /proc), i.e. parked in its wait.
fn asleep(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('S'))
        })
        .unwrap_or(false)
}

#[test]
fn a_waiter_killed_in_its_wait_does_not_hang_the_next_set() {
    let (event, ready) = (Event::new().unwrap(), Event::new().unwrap());
    let mut child = Process::new(wait_on, (event.clone(), ready.clone()))
        .start()
        .unwrap();
    assert!(ready.wait_timeout(WAIT).unwrap());
    let deadline = std::time::Instant::now() + WAIT;
    while !asleep(child.pid()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never parked"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    assert!(child.join_timeout(WAIT).is_err());
    // glibc's process-shared condition variable would wait here for the dead waiter for ever.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let setter = event.clone();
    std::thread::spawn(move || done_tx.send(setter.set().is_ok()).unwrap());
    assert_eq!(done_rx.recv_timeout(WAIT), Ok(true), "set() returned");
    assert!(event.wait_timeout(WAIT).unwrap());
}
