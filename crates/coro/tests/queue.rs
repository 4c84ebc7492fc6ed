//! The bounded `Queue`: FIFO, blocking put/get, timeouts that hand the item back.

use std::time::Duration;

use coro::{Empty, GetError, JoinableQueue, Queue};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let q = Queue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.get_timeout(WAIT), Ok(2));
    assert!(q.empty());
}

#[test]
fn bounded_put_times_out_and_hands_the_item_back() {
    let q = Queue::bounded(2).unwrap();
    q.put_nowait("a").unwrap();
    q.put_timeout("b", WAIT).unwrap();
    assert!(q.full());
    assert_eq!(q.maxsize(), Some(2));
    let err = q.put_timeout("c", Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.to_string(), "queue full");
    assert_eq!(err.into_inner(), "c");
    let err = q.put_nowait("d").unwrap_err();
    assert_eq!(err.into_inner(), "d");
    assert_eq!(q.qsize(), 2);
}

#[test]
fn get_times_out_on_empty() {
    let q: Queue<u8> = Queue::bounded(1).unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_millis(10)),
        Err(GetError::Empty(Empty))
    );
    assert_eq!(q.get_nowait(), Err(GetError::Empty(Empty)));
    assert_eq!(Queue::<u8>::new().maxsize(), None);
    assert!(!Queue::<u8>::new().full());
}

#[test]
fn a_full_queue_blocks_the_producer_until_the_consumer_takes() {
    let q = Queue::bounded(1).unwrap();
    let q2 = q.clone();
    let mut producer = coro::spawn(move || {
        for i in 0..100 {
            q2.put(i).unwrap();
            // The bound holds while the producer runs.
            assert!(q2.qsize() <= 1);
        }
        "produced"
    })
    .unwrap();
    let mut consumer =
        coro::spawn(move || (0..100).map(|_| q.get().unwrap()).collect::<Vec<_>>()).unwrap();
    assert_eq!(producer.get_timeout(WAIT).unwrap(), "produced");
    assert_eq!(
        consumer.get_timeout(WAIT).unwrap(),
        (0..100).collect::<Vec<_>>()
    );
}

#[test]
fn threads_and_coroutines_share_a_queue() {
    let q = Queue::bounded(4).unwrap();
    let q2 = q.clone();
    let g = coro::spawn(move || {
        for i in 0..50 {
            q2.put(i).unwrap();
        }
    })
    .unwrap();
    // The main thread is not a coroutine: get blocks the thread.
    let got: Vec<i32> = (0..50).map(|_| q.get_timeout(WAIT).unwrap()).collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert!(g.join_timeout(WAIT));
}

#[test]
fn zero_maxsize_is_an_err() {
    assert!(Queue::<u8>::bounded(0).is_err());
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    let q = JoinableQueue::bounded(2).unwrap();
    let worker = {
        let q = q.clone();
        coro::spawn(move || {
            let mut sum = 0;
            for _ in 0..10 {
                sum += q.get().unwrap();
                q.task_done().unwrap();
            }
            sum
        })
        .unwrap()
    };
    for i in 0..10 {
        q.put(i).unwrap();
    }
    assert!(q.join_timeout(WAIT));
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(worker.into_value().unwrap(), 45);
    // More task_done calls than puts is an error naming it, as Python's ValueError.
    let err = q.task_done().unwrap_err();
    assert!(err.to_string().contains("task_done"), "{err}");
}

#[test]
fn joinable_queue_join_times_out_while_work_is_unfinished() {
    let q = JoinableQueue::new();
    q.put(1).unwrap();
    assert!(!q.join_timeout(Duration::from_millis(10)));
    assert_eq!(q.get_nowait(), Ok(1));
    assert!(!q.join_timeout(Duration::from_millis(10)));
    q.task_done().unwrap();
    assert!(q.join_timeout(WAIT));
    // A refused put does not count as unfinished work.
    let b = JoinableQueue::bounded(1).unwrap();
    b.put_nowait(1).unwrap();
    assert_eq!(b.put_nowait(2).unwrap_err().into_inner(), 2);
    assert_eq!(b.unfinished_tasks(), 1);
}
