//! What a reader that goes away costs: a reader that returns (or drops its handle) loses
//! nothing it did not hand out; a reader killed loses at most the item it was handing out.

use std::time::Duration;

use process_ipc::{Process, Queue, QueueError, QueueSender};

const WAIT: Duration = Duration::from_secs(30);

/// Takes one item and returns it: the child's handle is dropped as its target returns.
fn get_one(q: Queue<u32>) -> u32 {
    q.get().unwrap()
}

/// Everything left in `q`, until a get on the drained queue says so.
fn rest_of(q: &Queue<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        match q.get_timeout(WAIT) {
            Ok(x) => got.push(x),
            Err(QueueError::Disconnected) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_reader_that_takes_one_item_and_returns_leaves_the_others_in_the_queue() {
    let q = Queue::<u32>::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    q.sender().unwrap().flush_timeout(WAIT).unwrap();
    let child = Process::new(get_one, (q.handle(),)).start().unwrap();
    assert_eq!(child.join().unwrap(), 0);
    q.close();
    assert_eq!(rest_of(&q), (1..10).collect::<Vec<_>>());
}

#[test]
fn a_handle_dropped_after_one_get_leaves_the_others_in_the_queue() {
    let q = Queue::<u32>::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    q.sender().unwrap().flush_timeout(WAIT).unwrap();
    let reader = q.handle();
    assert_eq!(reader.get_timeout(WAIT), Ok(0));
    drop(reader);
    q.close();
    assert_eq!(rest_of(&q), (1..10).collect::<Vec<_>>());
}

/// Takes one item, reports it, then waits to be killed.
fn take_one_then_wait(q: Queue<u32>, report: QueueSender<u32>, stop: Queue<()>) -> u32 {
    let x = q.get().unwrap();
    report.put(x).unwrap();
    report.flush();
    let _ = stop.get();
    x
}

#[test]
fn a_killed_consumer_of_a_bounded_queue_loses_only_the_item_it_took() {
    let q = Queue::<u32>::bounded(5).unwrap();
    let report = Queue::<u32>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    q.sender().unwrap().flush_timeout(WAIT).unwrap();
    let mut victim = Process::new(
        take_one_then_wait,
        (q.handle(), report.sender().unwrap(), stop.handle()),
    )
    .start()
    .unwrap();
    assert_eq!(report.get_timeout(WAIT), Ok(0));
    victim.kill().unwrap();
    assert!(victim.join_timeout(WAIT).is_err());
    // Its place is free again, and the four it did not take are still there.
    assert_eq!(q.qsize(), 4);
    q.put_timeout(5, WAIT).unwrap();
    q.close();
    assert_eq!(rest_of(&q), (1..6).collect::<Vec<_>>());
}
