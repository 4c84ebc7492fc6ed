//! multiprocessing's everyday calls on the shared primitives (#25): `locked()` and an owner in
//! a lock's `Debug`, `Condition::wait_for`, `Barrier::reset`, `Value`/`Array` sharing one
//! `Lock` (Python's `lock=`) and `get_obj()`. Real child processes; every wait is bounded, and
//! children are synchronised on events and counts, never on sleeps.

use std::time::{Duration, Instant};

use process_ipc::{
    Array, Barrier, Condition, Event, Lock, Process, RLock, RawArray, RawValue, SharedError,
    SharedMemory, Value,
};

const WAIT: Duration = Duration::from_secs(20);

/// Takes `lock`, says so, and holds it until `done` is set.
fn hold_lock_until(lock: Lock, held: Event, done: Event) -> u32 {
    let _guard = lock.acquire().unwrap();
    held.set().unwrap();
    assert!(done.wait_timeout(WAIT).unwrap(), "the parent let go");
    std::process::id()
}

#[test]
fn lock_locked_and_debug_name_the_holding_process_and_thread() {
    let lock = Lock::new().unwrap();
    assert!(!lock.locked());
    assert_eq!(lock.owner(), None);
    assert!(format!("{lock:?}").contains("owner: None"), "{lock:?}");
    {
        let _held = lock.acquire().unwrap();
        assert!(lock.locked());
        // SAFETY: gettid cannot fail.
        let me = unsafe { libc::gettid() } as u32;
        assert_eq!(lock.owner(), Some((std::process::id(), me)));
        let shown = format!("{lock:?}");
        assert!(
            shown.contains(&format!("pid {}, thread {me}", std::process::id())),
            "{shown}"
        );
    }
    assert!(!lock.locked());

    // Held by a child: this process sees the child's pid.
    let (held, done) = (Event::new().unwrap(), Event::new().unwrap());
    let mut child = Process::new(hold_lock_until, (lock.clone(), held.clone(), done.clone()))
        .start()
        .unwrap();
    assert!(held.wait_timeout(WAIT).unwrap(), "the child took the lock");
    assert!(lock.locked());
    let (pid, tid) = lock.owner().expect("held by the child");
    assert_eq!(pid, child.pid());
    assert_ne!(tid, 0);
    assert!(
        format!("{lock:?}").contains(&format!("pid {pid}")),
        "{lock:?}"
    );
    done.set().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), pid);
    assert!(!lock.locked(), "released when the child let go");
}

#[test]
fn rlock_locked_and_debug_show_the_owner_and_depth() {
    let lock = RLock::new().unwrap();
    assert!(!lock.locked());
    assert!(
        format!("{lock:?}").contains("owner: None, depth: 0"),
        "{lock:?}"
    );
    let outer = lock.acquire().unwrap();
    let inner = lock.acquire().unwrap();
    assert!(lock.locked());
    let shown = format!("{lock:?}");
    assert!(
        shown.contains(&format!("pid {}", std::process::id())),
        "{shown}"
    );
    assert!(shown.contains("depth: 2"), "{shown}");
    drop(inner);
    assert!(lock.locked(), "still held once");
    drop(outer);
    assert!(!lock.locked());
}

/// Sets the value to 1..=n, notifying after each step under the condition's lock.
fn count_up(cond: Condition, value: Value<u32>, n: u32) {
    for i in 1..=n {
        let _held = cond.acquire().unwrap();
        value.get_obj().set(i);
        cond.notify_all();
    }
}

#[test]
fn condition_wait_for_returns_once_another_process_makes_the_predicate_true() {
    let cond = Condition::new().unwrap();
    let value = Value::new(0u32).unwrap();
    let raw = value.get_obj();
    let mut held = cond.acquire().unwrap();
    let mut child = Process::new(count_up, (cond.clone(), value.clone(), 5))
        .start()
        .unwrap();
    let start = Instant::now();
    assert!(
        cond.wait_for_timeout(&mut held, || raw.get() >= 5, WAIT)
            .unwrap(),
        "the predicate became true"
    );
    assert!(start.elapsed() < WAIT);
    assert_eq!(raw.get(), 5);
    drop(held);
    child.join_timeout(WAIT).unwrap();

    // Already true: no wait. Never true: false after the timeout, the lock held again.
    let mut held = cond.acquire().unwrap();
    cond.wait_for(&mut held, || raw.get() == 5).unwrap();
    let start = Instant::now();
    let became = cond
        .wait_for_timeout(&mut held, || raw.get() == 6, Duration::from_millis(50))
        .unwrap();
    assert!(!became, "nobody set 6");
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(start.elapsed() < WAIT);
    drop(held);
}

#[test]
fn condition_wait_for_refuses_another_conditions_guard() {
    let (a, b) = (Condition::new().unwrap(), Condition::new().unwrap());
    let mut held = b.acquire().unwrap();
    let err = a.wait_for(&mut held, || true).unwrap_err();
    assert!(matches!(err, SharedError::Refused { .. }), "{err}");
}

/// Waits at the barrier; the index it got, or what broke it.
fn wait_at(barrier: Barrier, arrived: Event) -> Result<u32, String> {
    arrived.set().unwrap();
    barrier.wait_timeout(WAIT).map_err(|e| e.to_string())
}

fn until_waiting(barrier: &Barrier, n: u32) {
    let deadline = Instant::now() + WAIT;
    while barrier.n_waiting() < n {
        assert!(Instant::now() < deadline, "{n} parties never waited");
        std::thread::yield_now();
    }
}

#[test]
fn barrier_reset_breaks_current_waiters_and_makes_it_usable_again() {
    let barrier = Barrier::new(2).unwrap();
    // A waiter in another process is woken by the reset with a broken barrier.
    let arrived = Event::new().unwrap();
    let mut child = Process::new(wait_at, (barrier.clone(), arrived.clone()))
        .start()
        .unwrap();
    assert!(arrived.wait_timeout(WAIT).unwrap());
    until_waiting(&barrier, 1);
    barrier.reset().unwrap();
    let got = child.join_timeout(WAIT).unwrap();
    assert!(got.as_ref().is_err_and(|e| e.contains("broken")), "{got:?}");
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);

    // Broken by a timeout, then reset: two parties pass it together again.
    assert!(barrier.wait_timeout(Duration::from_millis(5)).is_err());
    assert!(barrier.broken());
    assert!(matches!(
        barrier.wait_timeout(WAIT),
        Err(SharedError::BrokenBarrier { dead_party: None })
    ));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
    let arrived = Event::new().unwrap();
    let mut child = Process::new(wait_at, (barrier.clone(), arrived.clone()))
        .start()
        .unwrap();
    let mine = barrier.wait_timeout(WAIT).unwrap();
    let theirs = child.join_timeout(WAIT).unwrap().unwrap();
    let mut both = [mine, theirs];
    both.sort_unstable();
    assert_eq!(both, [0, 1]);
}

fn die_waiting(barrier: Barrier, arrived: Event) {
    arrived.set().unwrap();
    let _ = barrier.wait();
    std::process::abort();
}

#[test]
fn barrier_reset_after_a_party_died_lets_live_parties_pass() {
    let barrier = Barrier::new(2).unwrap();
    let arrived = Event::new().unwrap();
    let mut doomed = Process::new(die_waiting, (barrier.clone(), arrived.clone()))
        .start()
        .unwrap();
    let pid = doomed.pid();
    assert!(arrived.wait_timeout(WAIT).unwrap());
    until_waiting(&barrier, 1);
    doomed.kill().unwrap();
    assert!(doomed.join_timeout(WAIT).is_err());
    assert!(matches!(
        barrier.wait_timeout(WAIT),
        Err(SharedError::BrokenBarrier { dead_party: Some(p) }) if p == pid
    ));
    barrier.reset().unwrap();
    let arrived = Event::new().unwrap();
    let mut child = Process::new(wait_at, (barrier.clone(), arrived.clone()))
        .start()
        .unwrap();
    barrier.wait_timeout(WAIT).unwrap();
    child.join_timeout(WAIT).unwrap().unwrap();
}

/// Adds 1 to both counters `n` times, each time under their one shared lock.
fn add_to_both(count: Value<u64>, items: Array<u64>, n: u64) {
    for _ in 0..n {
        let _held = count.get_lock().acquire().unwrap();
        // Under the shared lock, the raw views are enough: nobody else writes meanwhile.
        count.get_obj().set(count.get_obj().get() + 1);
        let raw = items.get_obj();
        raw.set(0, raw.get(0).unwrap() + 1);
    }
}

#[test]
fn values_made_with_one_lock_share_it_across_processes() {
    let lock = Lock::new().unwrap();
    let count = Value::with_lock(0u64, &lock).unwrap();
    let items = Array::zeroed_with_lock(3, &lock).unwrap();
    {
        let _held = lock.acquire().unwrap();
        assert!(count.get_lock().try_acquire().unwrap().is_none());
        assert!(items.get_lock().try_acquire().unwrap().is_none());
    }
    const EACH: u64 = 2_000;
    let children: Vec<_> = (0..2)
        .map(|_| {
            Process::new(add_to_both, (count.clone(), items.clone(), EACH))
                .start()
                .unwrap()
        })
        .collect();
    add_to_both(count.clone(), items.clone(), EACH);
    for mut child in children {
        child.join_timeout(WAIT).unwrap();
    }
    // Unlocked read-modify-writes under one lock in three processes lost nothing: the lock
    // the children used was the one passed in.
    assert_eq!(count.get().unwrap(), 3 * EACH);
    assert_eq!(items.to_vec().unwrap(), [3 * EACH, 0, 0]);
    let other = Array::from_slice_with_lock(&[1u8, 2], &lock).unwrap();
    let _held = lock.acquire().unwrap();
    assert!(other.get_lock().try_acquire().unwrap().is_none());
}

fn write_raw(value: RawValue<i64>, items: RawArray<i64>) {
    value.set(-5);
    items.set(2, 30);
}

#[test]
fn get_obj_views_travel_to_a_child_and_write_the_same_memory() {
    let value = Value::new(1i64).unwrap();
    let items = Array::from_slice(&[1i64, 2, 3]).unwrap();
    let mut child = Process::new(write_raw, (value.get_obj(), items.get_obj()))
        .start()
        .unwrap();
    child.join_timeout(WAIT).unwrap();
    assert_eq!(value.get().unwrap(), -5);
    assert_eq!(items.to_vec().unwrap(), [1, 2, 30]);
    assert_eq!(items.get_obj().len(), 3);
}

/// Writes `i * 3` into every `u32` of the block a child attached.
fn fill_u32(mut block: SharedMemory) {
    for (i, v) in block
        .as_mut_slice_of::<u32>()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        *v = i as u32 * 3;
    }
}

#[test]
fn typed_views_of_shared_memory_see_a_childs_writes_as_whole_values() {
    // 10 u32s and 2 bytes more: the view has the 10 whole ones.
    let block = SharedMemory::create(42).unwrap();
    let mut child = Process::new(fill_u32, (block.try_clone().unwrap(),))
        .start()
        .unwrap();
    child.join_timeout(WAIT).unwrap();
    let view = block.as_slice_of::<u32>().unwrap();
    assert_eq!(view.len(), 10);
    assert_eq!(view[9], 27);
    assert_eq!(block.as_slice_of::<u64>().unwrap().len(), 5);
    assert_eq!(block.as_slice_of::<[u8; 64]>().unwrap().len(), 0);
}

#[test]
fn a_typed_view_refuses_what_the_block_cannot_hold() {
    #[derive(Clone, Copy, Debug, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(128))]
    struct Wide([u8; 128]);
    let block = SharedMemory::create(4096).unwrap();
    let err = block.as_slice_of::<Wide>().unwrap_err();
    assert!(matches!(err, SharedError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("128-byte alignment"), "{err}");
    assert!(matches!(
        block.as_slice_of::<()>(),
        Err(SharedError::Refused { .. })
    ));
}
