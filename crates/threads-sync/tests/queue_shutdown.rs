//! Python 3.13's `Queue.shutdown(immediate)`, the scenarios of CPython's test_queue shutdown
//! tests, for Queue, LifoQueue and PriorityQueue alike, and for SimpleQueue.

use std::time::Duration;

use threads_sync::{
    GetError, LifoQueue, PriorityQueue, PutError, Queue, ShutDown, SimpleQueue, Thread,
};

const LONG: Duration = Duration::from_secs(20);

macro_rules! shutdown_semantics {
    ($module:ident, $queue:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn an_empty_queue_shut_down_refuses_put_and_get() {
                let q: $queue<u32> = $queue::new();
                assert!(!q.is_shutdown());
                q.shutdown(false);
                assert!(q.is_shutdown());
                assert_eq!(q.put(7).unwrap_err().into_inner(), 7);
                assert!(matches!(q.put_nowait(8), Err(PutError::ShutDown(s)) if s.into_inner() == 8));
                assert!(matches!(q.put_timeout(9, LONG), Err(PutError::ShutDown(_))));
                assert_eq!(q.get(), Err(ShutDown::default()));
                assert_eq!(q.get_nowait(), Err(GetError::ShutDown(ShutDown::default())));
                // A timed get on a shut-down empty queue does not wait out its timeout.
                assert_eq!(q.get_timeout(LONG), Err(GetError::ShutDown(ShutDown::default())));
            }

            #[test]
            fn a_non_empty_queue_shut_down_drains_then_refuses() {
                let q = $queue::new();
                q.put(1).unwrap();
                q.put(1).unwrap();
                q.shutdown(false);
                assert_eq!(q.qsize(), 2);
                assert_eq!(q.get(), Ok(1));
                assert_eq!(q.get_timeout(LONG), Ok(1));
                assert_eq!(q.get(), Err(ShutDown::default()));
                // The items taken are still tasks to mark done.
                assert_eq!(q.unfinished_tasks(), 2);
                q.task_done().unwrap();
                q.task_done().unwrap();
                q.join_timeout(LONG).unwrap();
            }

            #[test]
            fn immediate_drops_what_is_left_and_join_returns() {
                let q = $queue::new();
                for i in 0..5 {
                    q.put(i).unwrap();
                }
                assert_eq!(q.get(), Ok(if stringify!($queue) == "LifoQueue" { 4 } else { 0 }));
                q.shutdown(true);
                assert!(q.empty());
                assert_eq!(q.get(), Err(ShutDown::default()));
                // The four dropped items count as done; the one taken does not.
                assert_eq!(q.unfinished_tasks(), 1);
                q.task_done().unwrap();
                q.join_timeout(LONG).unwrap();
            }

            #[test]
            fn a_join_waiting_for_dropped_items_wakes_at_immediate_shutdown() {
                let q = $queue::new();
                q.put(1).unwrap();
                q.put(2).unwrap();
                let joiner = q.clone();
                let mut join = Thread::new(move || joiner.join_timeout(LONG), ()).start().unwrap();
                q.shutdown(true);
                join.join_timeout(LONG).unwrap().unwrap();
            }

            #[test]
            fn every_transition_is_allowed_and_shutdown_twice_is_fine() {
                let q = $queue::new();
                q.put(1).unwrap();
                q.shutdown(false);
                q.shutdown(false);
                assert_eq!(q.qsize(), 1);
                q.shutdown(true);
                assert_eq!(q.qsize(), 0);
                q.shutdown(false);
                assert!(q.is_shutdown());
            }

            #[test]
            fn blocked_getters_wake_with_shut_down() {
                let q: $queue<u32> = $queue::new();
                let getters: Vec<_> = (0..3)
                    .map(|_| {
                        let q = q.clone();
                        Thread::new(move || q.get(), ()).start().unwrap()
                    })
                    .collect();
                let timed = {
                    let q = q.clone();
                    Thread::new(move || q.get_timeout(LONG * 10), ()).start().unwrap()
                };
                q.shutdown(false);
                for mut getter in getters {
                    assert_eq!(getter.join_timeout(LONG).unwrap(), Err(ShutDown::default()));
                }
                let mut timed = timed;
                assert_eq!(
                    timed.join_timeout(LONG).unwrap(),
                    Err(GetError::ShutDown(ShutDown::default()))
                );
            }

            #[test]
            fn blocked_putters_wake_with_their_items() {
                let q = $queue::bounded(1).unwrap();
                q.put(0).unwrap();
                let putters: Vec<_> = (1..=3)
                    .map(|i| {
                        let q = q.clone();
                        Thread::new(move || q.put(i).map_err(ShutDown::into_inner), ())
                            .start()
                            .unwrap()
                    })
                    .collect();
                q.shutdown(false);
                let mut back: Vec<u32> = putters
                    .into_iter()
                    .map(|mut p| p.join_timeout(LONG).unwrap().unwrap_err())
                    .collect();
                back.sort();
                // No putter got in: each woke with its own item.
                assert_eq!(back, [1, 2, 3]);
                assert_eq!(q.get(), Ok(0));
                assert_eq!(q.get(), Err(ShutDown::default()));
            }

            #[test]
            fn producers_and_consumers_end_cleanly_at_shutdown() {
                // CPython's "all methods in many threads": producers put until refused,
                // consumers get until refused, then everything put was got or dropped.
                let q = $queue::bounded(4).unwrap();
                let producers: Vec<_> = (0..2)
                    .map(|p| {
                        let q = q.clone();
                        Thread::new(
                            move || {
                                let mut put = 0u64;
                                for i in 0.. {
                                    if q.put(p * 1_000_000 + i).is_err() {
                                        break;
                                    }
                                    put += 1;
                                }
                                put
                            },
                            (),
                        )
                        .start()
                        .unwrap()
                    })
                    .collect();
                let consumers: Vec<_> = (0..2)
                    .map(|_| {
                        let q = q.clone();
                        Thread::new(
                            move || {
                                let mut got = 0u64;
                                while q.get().is_ok() {
                                    q.task_done().unwrap();
                                    got += 1;
                                }
                                got
                            },
                            (),
                        )
                        .start()
                        .unwrap()
                    })
                    .collect();
                // Let some items go through first (bounded: the producers start at once).
                for _ in 0..20 {
                    if q.get_timeout(LONG).is_ok() {
                        q.task_done().unwrap();
                    }
                }
                q.shutdown(false);
                let put: u64 = producers.into_iter().map(|mut p| p.join_timeout(LONG).unwrap()).sum();
                let got: u64 = consumers.into_iter().map(|mut c| c.join_timeout(LONG).unwrap()).sum();
                assert_eq!(put, got + 20, "a graceful shutdown hands out everything put");
                q.join_timeout(LONG).unwrap();
            }
        }
    };
}

shutdown_semantics!(fifo, Queue);
shutdown_semantics!(lifo, LifoQueue);
shutdown_semantics!(priority, PriorityQueue);

#[test]
fn simple_queue_shuts_down_too() {
    let q = SimpleQueue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.shutdown(false);
    assert_eq!(q.put(3).unwrap_err().into_inner(), 3);
    assert_eq!(q.get(), Ok(1));
    q.shutdown(true);
    assert!(q.empty());
    assert_eq!(q.get_nowait(), Err(GetError::ShutDown(ShutDown::default())));

    let q: SimpleQueue<u8> = SimpleQueue::new();
    let getter = {
        let q = q.clone();
        Thread::new(move || q.get(), ()).start().unwrap()
    };
    q.shutdown(false);
    let mut getter = getter;
    assert_eq!(getter.join_timeout(LONG).unwrap(), Err(ShutDown::default()));
}
