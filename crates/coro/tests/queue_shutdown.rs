//! Python 3.13's `Queue.shutdown(immediate)` on coro's `Queue` and `JoinableQueue`: the
//! scenarios of CPython's test_queue shutdown tests (as `threads-sync`'s
//! `tests/queue_shutdown.rs` runs them on threads), with coroutines waiting, and a thread
//! waiting beside them.

use std::time::Duration;

use coro::{GetError, JoinableQueue, PutError, Queue, ShutDown};

const LONG: Duration = Duration::from_secs(20);

macro_rules! shutdown_semantics {
    ($module:ident, $queue:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn an_empty_queue_shut_down_refuses_put_get_and_peek() {
                let q: $queue<u32> = $queue::new();
                assert!(!q.is_shutdown());
                q.shutdown(false);
                assert!(q.is_shutdown());
                assert_eq!(q.put(7).unwrap_err().into_inner(), 7);
                assert!(
                    matches!(q.put_nowait(8), Err(PutError::ShutDown(s)) if s.into_inner() == 8)
                );
                assert!(matches!(q.put_timeout(9, LONG), Err(PutError::ShutDown(_))));
                assert_eq!(q.get(), Err(ShutDown::default()));
                assert_eq!(q.get_nowait(), Err(GetError::ShutDown(ShutDown::default())));
                // A timed get on a shut-down empty queue does not wait out its timeout.
                assert_eq!(q.get_timeout(LONG), Err(GetError::ShutDown(ShutDown::default())));
                assert_eq!(q.peek(), Err(ShutDown::default()));
                assert_eq!(q.peek_timeout(LONG), Err(GetError::ShutDown(ShutDown::default())));
                assert_eq!(q.peek_nowait(), Err(GetError::ShutDown(ShutDown::default())));
            }

            #[test]
            fn a_non_empty_queue_shut_down_drains_then_refuses() {
                let q = $queue::new();
                q.put(1).unwrap();
                q.put(2).unwrap();
                q.shutdown(false);
                assert_eq!(q.qsize(), 2);
                assert_eq!(q.peek(), Ok(1));
                assert_eq!(q.get(), Ok(1));
                assert_eq!(q.get_timeout(LONG), Ok(2));
                assert_eq!(q.get(), Err(ShutDown::default()));
            }

            #[test]
            fn a_full_queue_shut_down_refuses_put_nowait_as_shut_down_not_full() {
                let q = $queue::bounded(1).unwrap();
                q.put(1).unwrap();
                assert!(q.put_nowait(2).unwrap_err().is_full());
                q.shutdown(false);
                let refused = q.put_nowait(3).unwrap_err();
                assert!(!refused.is_full());
                assert_eq!(refused.into_inner(), 3);
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
            fn blocked_getters_and_peekers_wake_with_shut_down() {
                let q: $queue<u32> = $queue::new();
                let getters: Vec<_> = (0..3)
                    .map(|_| {
                        let q = q.clone();
                        coro::spawn(move || q.get()).unwrap()
                    })
                    .collect();
                let mut timed = {
                    let q = q.clone();
                    coro::spawn(move || q.get_timeout(LONG * 10)).unwrap()
                };
                let mut peeker = {
                    let q = q.clone();
                    coro::spawn(move || q.peek()).unwrap()
                };
                // A thread waits beside the coroutines.
                let thread = {
                    let q = q.clone();
                    std::thread::spawn(move || q.get())
                };
                // Every waiter is parked once the queue has seen them all; shutdown must
                // wake them whether they parked yet or not.
                q.shutdown(false);
                for mut getter in getters {
                    assert_eq!(getter.get_timeout(LONG).unwrap(), Err(ShutDown::default()));
                }
                assert_eq!(
                    timed.get_timeout(LONG).unwrap(),
                    Err(GetError::ShutDown(ShutDown::default()))
                );
                assert_eq!(peeker.get_timeout(LONG).unwrap(), Err(ShutDown::default()));
                assert_eq!(thread.join().unwrap(), Err(ShutDown::default()));
            }

            #[test]
            fn blocked_putters_wake_with_their_items() {
                let q = $queue::bounded(1).unwrap();
                q.put(0).unwrap();
                let seen = Queue::new();
                let putters: Vec<_> = (1..=3)
                    .map(|i| {
                        let (q, seen) = (q.clone(), seen.clone());
                        coro::spawn(move || {
                            seen.put(i).unwrap();
                            q.put(i).map_err(ShutDown::into_inner)
                        })
                        .unwrap()
                    })
                    .collect();
                // Each putter has started (a put then either waits or is refused).
                for _ in 0..3 {
                    seen.get_timeout(LONG).unwrap();
                }
                q.shutdown(false);
                let mut back: Vec<u32> = putters
                    .into_iter()
                    .map(|mut p| p.get_timeout(LONG).unwrap().unwrap_err())
                    .collect();
                back.sort();
                // No putter got in: each woke with its own item.
                assert_eq!(back, [1, 2, 3]);
                assert_eq!(q.get(), Ok(0));
                assert_eq!(q.get(), Err(ShutDown::default()));
            }

            #[test]
            fn producers_and_consumers_end_cleanly_at_shutdown() {
                // CPython's "all methods in many threads", with coroutines: producers put
                // until refused, consumers get until refused; everything put was got.
                let q = $queue::bounded(4).unwrap();
                let producers: Vec<_> = (0..2u64)
                    .map(|p| {
                        let q = q.clone();
                        coro::spawn(move || {
                            let mut put = 0u64;
                            for i in 0.. {
                                if q.put(p * 1_000_000 + i).is_err() {
                                    break;
                                }
                                put += 1;
                            }
                            put
                        })
                        .unwrap()
                    })
                    .collect();
                let consumers: Vec<_> = (0..2)
                    .map(|_| {
                        let q = q.clone();
                        coro::spawn(move || {
                            let mut got = 0u64;
                            while q.get().is_ok() {
                                got += 1;
                            }
                            got
                        })
                        .unwrap()
                    })
                    .collect();
                // Let some items go through first (this thread takes 20 of them).
                let mut taken = 0;
                while taken < 20 {
                    if q.get_timeout(LONG).is_ok() {
                        taken += 1;
                    }
                }
                q.shutdown(false);
                let put: u64 =
                    producers.into_iter().map(|mut p| p.get_timeout(LONG).unwrap()).sum();
                let got: u64 =
                    consumers.into_iter().map(|mut c| c.get_timeout(LONG).unwrap()).sum();
                assert_eq!(put, got + 20, "a graceful shutdown hands out everything put");
            }
        }
    };
}

shutdown_semantics!(fifo, Queue);
shutdown_semantics!(joinable, JoinableQueue);

#[test]
fn immediate_drops_what_is_left_and_counts_it_done() {
    let q = JoinableQueue::new();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    assert_eq!(q.get(), Ok(0));
    q.shutdown(true);
    assert!(q.empty());
    assert_eq!(q.get(), Err(ShutDown::default()));
    // The four dropped items count as done; the one taken does not.
    assert_eq!(q.unfinished_tasks(), 1);
    q.task_done().unwrap();
    assert!(q.join_timeout(LONG));
}

#[test]
fn a_join_waiting_for_dropped_items_wakes_at_immediate_shutdown() {
    let q = JoinableQueue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let joiner = q.clone();
    let mut join = coro::spawn(move || joiner.join_timeout(LONG)).unwrap();
    let thread_joiner = q.clone();
    let thread = std::thread::spawn(move || thread_joiner.join_timeout(LONG));
    q.shutdown(true);
    assert_eq!(join.get_timeout(LONG), Ok(true));
    assert!(thread.join().unwrap());
}

#[test]
fn a_put_refused_at_shutdown_is_not_an_unfinished_task() {
    let q = JoinableQueue::bounded(1).unwrap();
    q.put(1).unwrap();
    q.shutdown(false);
    assert!(q.put(2).is_err());
    assert!(q.put_nowait(3).is_err());
    assert!(q.put_timeout(4, LONG).is_err());
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.get(), Ok(1));
    q.task_done().unwrap();
    assert!(q.join_timeout(LONG));
}

#[test]
fn immediate_shutdown_drops_items_outside_the_lock() {
    // An item whose Drop uses the queue (here: asks its size) must not deadlock.
    struct Probe(Queue<Probe>);
    impl Drop for Probe {
        fn drop(&mut self) {
            let _ = self.0.qsize();
        }
    }
    let q = Queue::new();
    q.put(Probe(q.clone())).unwrap();
    let mut g = {
        let q = q.clone();
        coro::spawn(move || q.shutdown(true)).unwrap()
    };
    assert!(g.get_timeout(LONG).is_ok(), "the shutdown finished");
    assert!(q.empty());
}

#[test]
fn a_killed_getter_does_not_keep_shutdown_from_waking_the_rest() {
    let q: Queue<u8> = Queue::new();
    let victim = {
        let q = q.clone();
        coro::spawn(move || q.get()).unwrap()
    };
    let mut other = {
        let q = q.clone();
        coro::spawn(move || q.get()).unwrap()
    };
    victim.kill();
    q.shutdown(false);
    assert_eq!(other.get_timeout(LONG).unwrap(), Err(ShutDown::default()));
}
