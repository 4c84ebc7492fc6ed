//! Queue: Python's queue.Queue semantics (maxsize, timeouts, nowait, task_done/join).

use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use threads_sync::{Queue, QueueEmpty, TaskDoneError, Thread};

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(30);

#[test]
fn smoke() {
    let q = Queue::new(0);
    q.put(1);
    q.put(2);
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get_timeout(LONG), Ok(1));
    assert_eq!(q.get_timeout(LONG), Ok(2));
    assert!(q.empty());
}

#[test]
fn fifo_across_threads_and_clones() {
    let q = Queue::new(4);
    let producer_q = q.clone();
    let mut producer = Thread::new(
        move || {
            for i in 0..1000 {
                producer_q.put(i);
            }
        },
        (),
    );
    producer.start().unwrap();
    let got: Vec<i32> = (0..1000).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    producer.join_timeout(LONG).unwrap();
}

#[test]
fn maxsize_blocks_put_until_a_get() {
    let q = Queue::new(1);
    assert_eq!(q.maxsize(), 1);
    q.put("first");
    assert!(q.full());
    let full = q.put_nowait("second").unwrap_err();
    assert_eq!(full.item, "second");
    assert_eq!(full.maxsize, 1);
    let full = q.put_timeout("third", SHORT).unwrap_err();
    assert_eq!(full.item, "third");
    assert!(full.to_string().contains("full"));

    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let putter_q = q.clone();
    let mut putter = Thread::new(
        move || {
            putter_q.put("blocked");
            done_tx.send(()).unwrap();
        },
        (),
    );
    putter.start().unwrap();
    // The putter cannot finish while the queue is full.
    assert_eq!(done_rx.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
    assert_eq!(q.get_timeout(LONG), Ok("first"));
    done_rx.recv_timeout(LONG).unwrap();
    assert_eq!(q.get_timeout(LONG), Ok("blocked"));
    putter.join_timeout(LONG).unwrap();
}

#[test]
fn get_timeouts_and_nowait_on_empty() {
    let q: Queue<u8> = Queue::default();
    assert_eq!(q.get_nowait(), Err(QueueEmpty));
    assert_eq!(q.get_timeout(SHORT), Err(QueueEmpty));
    assert!(!q.full(), "an unbounded queue is never full");
    q.put_nowait(5).unwrap();
    assert_eq!(q.get_nowait(), Ok(5));
}

#[test]
fn task_done_and_join() {
    let q = Queue::new(0);
    for i in 0..10 {
        q.put(i);
    }
    assert_eq!(q.unfinished_tasks(), 10);
    match q.join_timeout(SHORT) {
        Err(TaskDoneError::Timeout { unfinished, .. }) => assert_eq!(unfinished, 10),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let worker_q = q.clone();
    let mut worker = Thread::new(
        move || -> u32 {
            let mut sum = 0;
            for _ in 0..10 {
                sum += worker_q.get_timeout(LONG).unwrap();
                worker_q.task_done().unwrap();
            }
            sum
        },
        (),
    );
    worker.start().unwrap();
    q.join_timeout(LONG).unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(worker.join_timeout(LONG).unwrap(), 45);
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
}

#[test]
fn failed_puts_do_not_count_as_tasks() {
    let q = Queue::new(1);
    q.put(1);
    let _ = q.put_nowait(2);
    let _ = q.put_timeout(3, SHORT);
    assert_eq!(q.unfinished_tasks(), 1);
    q.get_timeout(LONG).unwrap();
    q.task_done().unwrap();
    q.join_timeout(LONG).unwrap();
}
