//! Python 3.13's `Queue.shutdown(immediate)` on a Manager's queue, from the manager's process
//! and from others: a put after it hands its item back, a get drains then fails, immediate
//! drops the rest, and a get or bounded put waiting in the manager for another process wakes
//! with `ShutDown`.

use std::time::Duration;

use process_ipc::manager::{ManagedQueue, Manager, ManagerError};
use process_ipc::{Process, Queue, QueueSender};

const WAIT: Duration = Duration::from_secs(30);

fn is_shut<T>(r: &Result<T, ManagerError>) -> bool {
    matches!(r, Err(ManagerError::ShutDown { .. }))
}

#[test]
fn smoke() {
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u32>().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    q.shutdown(false).unwrap();
    let refused = q.put(9).unwrap_err();
    assert!(matches!(refused.error, ManagerError::ShutDown { .. }));
    assert_eq!(refused.into_inner(), Some(9));
    let got: Vec<u32> = (0..3).map(|_| q.get_timeout(WAIT).unwrap()).collect();
    assert_eq!(got, [0, 1, 2]);
    assert!(is_shut(&q.get()));
    assert!(is_shut(&q.get_nowait()));
    assert!(is_shut(&q.get_timeout(WAIT)));
    // Shutting down is not the manager's end: the queue still answers.
    assert_eq!(q.qsize().unwrap(), 0);
}

/// Says it is about to get, then reports whether its get ended with `ShutDown`.
fn get_once(q: ManagedQueue<u32>, ready: QueueSender<()>) -> bool {
    ready.put(()).unwrap();
    ready.flush();
    is_shut(&q.get())
}

#[test]
fn a_child_waiting_in_get_wakes_with_shutdown() {
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut child = Process::new(get_once, (q.clone(), ready.sender().unwrap()))
        .start()
        .unwrap();
    ready.get_timeout(WAIT).unwrap();
    q.shutdown(false).unwrap();
    assert!(child.join_timeout(WAIT).unwrap());
}

/// Fills a bounded queue of one, says so, then puts again: what its refused put came to.
fn put_into_full(q: ManagedQueue<u32>, ready: QueueSender<()>) -> (bool, Option<u32>) {
    q.put(1).unwrap();
    ready.put(()).unwrap();
    ready.flush();
    match q.put(2) {
        Ok(()) => (false, None),
        Err(e) => (
            matches!(e.error, ManagerError::ShutDown { .. }),
            e.into_inner(),
        ),
    }
}

#[test]
fn a_child_waiting_in_a_bounded_put_wakes_with_its_item_back() {
    let manager = Manager::new().unwrap();
    let q = manager.bounded_queue::<u32>(1).unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut child = Process::new(put_into_full, (q.clone(), ready.sender().unwrap()))
        .start()
        .unwrap();
    ready.get_timeout(WAIT).unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), (true, Some(2)));
    assert_eq!(q.get_timeout(WAIT).unwrap(), 1);
    assert!(is_shut(&q.get_nowait()));
}

/// Puts into an unbounded queue another process shut down: the first put is one-way and
/// accepted, the flush reports the shutdown, and the next put hands its item back.
fn put_after_shutdown(q: ManagedQueue<u32>) -> (bool, bool, Option<u32>) {
    let first = q.put(1).is_ok();
    let flushed = matches!(q.flush(), Err(ManagerError::ShutDown { .. }));
    let again = q.put(2).unwrap_err();
    assert!(matches!(again.error, ManagerError::ShutDown { .. }));
    (first, flushed, again.into_inner())
}

#[test]
fn a_one_way_put_in_another_process_learns_of_the_shutdown_at_its_flush() {
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u32>().unwrap();
    q.shutdown(false).unwrap();
    let got = Process::new(put_after_shutdown, (q.clone(),))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(got, (true, true, Some(2)));
    assert_eq!(q.qsize().unwrap(), 0, "the refused batch never got in");
}

/// Shuts the queue down from this (non-manager) process, immediately.
fn shut_immediately(q: ManagedQueue<u32>) -> bool {
    q.shutdown(true).is_ok() && is_shut(&q.get_nowait())
}

#[test]
fn an_immediate_shutdown_from_another_process_drops_what_is_left() {
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u32>().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let done = Process::new(shut_immediately, (q.clone(),))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert!(done);
    assert_eq!(q.qsize().unwrap(), 0);
    assert!(is_shut(&q.get()));
    assert_eq!(q.put(5).unwrap_err().into_inner(), Some(5));
}
