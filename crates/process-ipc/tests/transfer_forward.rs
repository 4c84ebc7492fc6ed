//! A block a child received at its start can be passed on to a grandchild after the creator
//! has dropped every handle on it (and so closed its descriptor): the child sends a name that
//! leads to the descriptor it attached by. The parent drops its handles first and only then
//! lets the child go on (an event), so the creator's descriptor is closed when the grandchild
//! attaches. Every wait is bounded.

use std::time::Duration;

use process_ipc::{Event, Lock, Process, Queue};

const WAIT: Duration = Duration::from_secs(30);

/// The grandchild: puts one item.
fn put_one(q: Queue<u64>) {
    q.put(42).unwrap();
}

/// The child: once the parent has let the queue go, starts a grandchild with it and gets
/// what the grandchild put.
fn forward_queue(q: Queue<u64>, go: Event) -> u64 {
    assert!(
        go.wait_timeout(WAIT).unwrap(),
        "the parent let the queue go"
    );
    let mut grandchild = Process::new(put_one, (q.handle(),)).start().unwrap();
    let got = q.get_timeout(WAIT).unwrap();
    grandchild.join_timeout(WAIT).unwrap();
    got
}

#[test]
fn a_queue_forwarded_to_a_grandchild_works_after_its_creator_dropped_it() {
    let go = Event::new().unwrap();
    let q = Queue::<u64>::new().unwrap();
    let mut child = Process::new(forward_queue, (q, go.clone()))
        .start()
        .unwrap();
    // Every handle on the queue is gone here (moved into the arguments, dropped by `start`),
    // and so is the start's hold on its blocks.
    go.set().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 42);
}

/// The grandchild: whether the lock is held elsewhere (it is, by the child).
fn lock_is_taken(lock: Lock) -> bool {
    lock.try_acquire().unwrap().is_none()
}

/// The child: once the parent has let the lock go, takes it and asks a grandchild, given
/// the lock, whether it is taken; then takes it again after the grandchild is done.
fn forward_lock(lock: Lock, go: Event) -> bool {
    assert!(go.wait_timeout(WAIT).unwrap(), "the parent let the lock go");
    let guard = lock.acquire().unwrap();
    let mut grandchild = Process::new(lock_is_taken, (lock.clone(),))
        .start()
        .unwrap();
    let taken = grandchild.join_timeout(WAIT).unwrap();
    drop(guard);
    let free_again = lock.acquire_timeout(WAIT).is_ok();
    taken && free_again
}

#[test]
fn a_lock_forwarded_to_a_grandchild_is_the_same_lock_after_its_creator_dropped_it() {
    let go = Event::new().unwrap();
    let lock = Lock::new().unwrap();
    let mut child = Process::new(forward_lock, (lock, go.clone()))
        .start()
        .unwrap();
    go.set().unwrap();
    assert!(child.join_timeout(WAIT).unwrap());
}
