//! Queues: Python's queue.Queue semantics (maxsize, timeouts, nowait, task_done/join) for
//! Queue, LifoQueue and PriorityQueue alike; each one's order; SimpleQueue.

use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use threads_sync::{
    Empty, GetError, LifoQueue, MaxsizeError, PriorityQueue, PutError, Queue, SimpleQueue,
    TaskDoneError, Thread,
};

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(30);

#[test]
fn smoke() {
    let q = Queue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get_timeout(LONG), Ok(1));
    assert_eq!(q.get_timeout(LONG), Ok(2));
    assert!(q.empty());
}

#[test]
fn each_queue_hands_items_out_in_its_order() {
    let (fifo, lifo, prio) = (Queue::new(), LifoQueue::new(), PriorityQueue::new());
    for x in [3, 1, 2] {
        fifo.put(x).unwrap();
        lifo.put(x).unwrap();
        prio.put(x).unwrap();
    }
    let drain = |get: &dyn Fn() -> Result<i32, GetError>| -> Vec<i32> {
        std::iter::from_fn(|| get().ok()).collect()
    };
    assert_eq!(drain(&|| fifo.get_nowait()), [3, 1, 2]);
    assert_eq!(drain(&|| lifo.get_nowait()), [2, 1, 3]);
    assert_eq!(drain(&|| prio.get_nowait()), [1, 2, 3]);
}

#[test]
fn priority_queue_takes_python_style_tuples() {
    let q = PriorityQueue::bounded(3).unwrap();
    q.put((5, "low")).unwrap();
    q.put((1, "urgent")).unwrap();
    q.put((3, "normal")).unwrap();
    assert!(q.full());
    assert_eq!(q.get_timeout(LONG), Ok((1, "urgent")));
    assert_eq!(q.get_timeout(LONG), Ok((3, "normal")));
}

#[test]
fn fifo_across_threads_and_clones() {
    let q = Queue::bounded(4).unwrap();
    let producer_q = q.clone();
    let producer = Thread::new(
        move || {
            for i in 0..1000 {
                producer_q.put(i).unwrap();
            }
        },
        (),
    )
    .start()
    .unwrap();
    let got: Vec<i32> = (0..1000).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    producer.join().unwrap();
}

#[test]
fn bounded_zero_is_an_error_naming_it() {
    let err = Queue::<u8>::bounded(0).unwrap_err();
    assert_eq!(err, MaxsizeError { maxsize: 0 });
    assert!(err.to_string().contains("maxsize"), "{err}");
    assert!(LifoQueue::<u8>::bounded(0).is_err());
    assert!(PriorityQueue::<u8>::bounded(0).is_err());
    assert_eq!(Queue::<u8>::new().maxsize(), None);
    assert_eq!(LifoQueue::<u8>::bounded(7).unwrap().maxsize(), Some(7));
}

/// The same semantics for every queue with a bound: a generic test instantiated per queue.
macro_rules! bounded_semantics {
    ($module:ident, $queue:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn maxsize_blocks_put_until_a_get() {
                let q = $queue::bounded(1).unwrap();
                assert_eq!(q.maxsize(), Some(1));
                q.put("first").unwrap();
                assert!(q.full());
                let full = q.put_nowait("second").unwrap_err();
                assert!(matches!(&full, PutError::Full(f) if f.maxsize() == 1));
                assert_eq!(full.into_inner(), "second");
                let full = q.put_timeout("third", SHORT).unwrap_err();
                assert!(full.to_string().contains("full"));
                assert_eq!(full.into_inner(), "third");

                let (done_tx, done_rx) = crossbeam_channel::bounded(1);
                let putter_q = q.clone();
                let putter = Thread::new(
                    move || {
                        putter_q.put("blocked").unwrap();
                        done_tx.send(()).unwrap();
                    },
                    (),
                )
                .start()
                .unwrap();
                // The putter cannot finish while the queue is full.
                assert_eq!(done_rx.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
                assert_eq!(q.get_timeout(LONG), Ok("first"));
                done_rx.recv_timeout(LONG).unwrap();
                assert_eq!(q.get_timeout(LONG), Ok("blocked"));
                putter.join().unwrap();
            }

            #[test]
            fn get_timeouts_and_nowait_on_empty() {
                let q: $queue<u8> = $queue::default();
                assert_eq!(q.get_nowait(), Err(GetError::Empty(Empty)));
                assert_eq!(q.get_timeout(SHORT), Err(GetError::Empty(Empty)));
                assert!(!q.full(), "an unbounded queue is never full");
                q.put_nowait(5).unwrap();
                assert_eq!(q.get_nowait(), Ok(5));
            }

            #[test]
            fn task_done_and_join() {
                let q = $queue::new();
                for i in 0..10 {
                    q.put(i).unwrap();
                }
                assert_eq!(q.unfinished_tasks(), 10);
                match q.join_timeout(SHORT) {
                    Err(TaskDoneError::Timeout { unfinished, .. }) => assert_eq!(unfinished, 10),
                    other => panic!("expected Timeout, got {other:?}"),
                }
                let worker_q = q.clone();
                let worker = Thread::new(
                    move || -> u32 {
                        let mut sum = 0;
                        for _ in 0..10 {
                            sum += worker_q.get_timeout(LONG).unwrap();
                            worker_q.task_done().unwrap();
                        }
                        sum
                    },
                    (),
                )
                .start()
                .unwrap();
                q.join_timeout(LONG).unwrap();
                assert_eq!(q.unfinished_tasks(), 0);
                assert_eq!(worker.join().unwrap(), 45);
                assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
            }

            #[test]
            fn failed_puts_do_not_count_as_tasks() {
                let q = $queue::bounded(1).unwrap();
                q.put(1).unwrap();
                let _ = q.put_nowait(2);
                let _ = q.put_timeout(3, SHORT);
                assert_eq!(q.unfinished_tasks(), 1);
                q.get_timeout(LONG).unwrap();
                q.task_done().unwrap();
                q.join_timeout(LONG).unwrap();
            }
        }
    };
}

bounded_semantics!(fifo, Queue);
bounded_semantics!(lifo, LifoQueue);
bounded_semantics!(priority, PriorityQueue);

#[test]
fn simple_queue_is_a_plain_fifo() {
    let q = SimpleQueue::new();
    assert_eq!(q.get_nowait(), Err(GetError::Empty(Empty)));
    assert_eq!(q.get_timeout(SHORT), Err(GetError::Empty(Empty)));
    let producer_q = q.clone();
    let producer = Thread::new(
        move || (0..100).for_each(|i| producer_q.put(i).unwrap()),
        (),
    )
    .start()
    .unwrap();
    let got: Vec<i32> = (0..100).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
    producer.join().unwrap();
}
