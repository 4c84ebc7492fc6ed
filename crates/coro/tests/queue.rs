//! The bounded `Queue`: FIFO, blocking put/get, timeouts that hand the item back.

use std::time::Duration;

use coro::{GetError, PutError, Queue};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let q = Queue::unbounded();
    q.put(1);
    q.put(2);
    assert_eq!(q.len(), 2);
    assert_eq!(q.get(), 1);
    assert_eq!(q.get_timeout(WAIT), Ok(2));
    assert!(q.is_empty());
}

#[test]
fn bounded_put_times_out_and_hands_the_item_back() {
    let q = Queue::bounded(2).unwrap();
    q.put_nowait("a").unwrap();
    q.put_timeout("b", WAIT).unwrap();
    assert!(q.is_full());
    let err = q.put_timeout("c", Duration::from_millis(10)).unwrap_err();
    assert!(
        matches!(err, PutError::Timeout { maxsize: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("stayed full"), "{err}");
    assert_eq!(err.into_inner(), "c");
    let err = q.put_nowait("d").unwrap_err();
    assert!(matches!(err, PutError::Full { maxsize: 2, .. }));
    assert_eq!(err.into_inner(), "d");
}

#[test]
fn get_times_out_on_empty() {
    let q: Queue<u8> = Queue::bounded(1).unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_millis(10)),
        Err(GetError::Timeout(Duration::from_millis(10)))
    );
    assert_eq!(q.get_nowait(), Err(GetError::Empty));
}

#[test]
fn a_full_queue_blocks_the_producer_until_the_consumer_takes() {
    let q = Queue::bounded(1).unwrap();
    let q2 = q.clone();
    let mut producer = coro::spawn(move || {
        for i in 0..100 {
            q2.put(i);
            // The bound holds while the producer runs.
            assert!(q2.len() <= 1);
        }
        "produced"
    })
    .unwrap();
    let mut consumer = coro::spawn(move || (0..100).map(|_| q.get()).collect::<Vec<_>>()).unwrap();
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
            q2.put(i);
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
