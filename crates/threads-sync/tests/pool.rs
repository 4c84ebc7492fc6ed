//! ThreadPool: apply, apply_async, map order, imap, a panicking task among many, close/join.

use std::time::Duration;

use threads_sync::{MapOptions, PoolError, ThreadPool};

const LONG: Duration = Duration::from_secs(10);

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn smoke() {
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
}

#[test]
fn zero_threads_is_an_error() {
    let err = ThreadPool::new(0).unwrap_err();
    assert_eq!(err, PoolError::NoThreads { threads: 0 });
    assert!(err.to_string().contains("at least one"));
}

#[test]
fn map_keeps_input_order() {
    let pool = ThreadPool::new(3).unwrap();
    let got = pool.map(square, 0..1000).unwrap();
    assert_eq!(got, (0..1000).map(square).collect::<Vec<_>>());
    assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<u64>::new());
    let chunked = pool
        .map_with(square, 0..10, MapOptions::new().chunksize(3))
        .unwrap();
    assert_eq!(chunked, (0..10).map(square).collect::<Vec<_>>());
    assert_eq!(
        pool.map_with(square, 0..10, MapOptions::new().chunksize(0)),
        Err(PoolError::ZeroChunksize)
    );
}

#[test]
fn apply_async_get_ready_successful_wait() {
    let pool = ThreadPool::new(2).unwrap();
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let blocked = pool
        .apply_async(move || go_rx.recv_timeout(LONG).map(|()| 5), ())
        .unwrap();
    assert!(!blocked.ready());
    assert_eq!(blocked.successful(), None);
    assert!(matches!(
        blocked.get_timeout(Duration::from_millis(20)),
        Err(PoolError::Timeout { .. })
    ));
    assert!(!blocked.wait_timeout(Duration::from_millis(1)));
    go_tx.send_timeout((), LONG).unwrap();
    assert!(blocked.wait_timeout(LONG));
    assert!(blocked.ready());
    assert_eq!(blocked.successful(), Some(true));
    assert_eq!(blocked.get_timeout(LONG).unwrap(), Ok(5));
    assert_eq!(blocked.get_timeout(LONG), Err(PoolError::AlreadyTaken));
    assert_eq!(blocked.successful(), Some(true));

    let sum = pool
        .apply_async(|a: u64, b: u64, c: u64| a + b + c, (1, 2, 3))
        .unwrap();
    assert_eq!(sum.get().unwrap(), 6);
}

#[test]
fn a_panicking_task_fails_alone() {
    let pool = ThreadPool::new(2).unwrap();
    let results: Vec<_> = (0..20u64)
        .map(|i| {
            pool.apply_async(
                move |i: u64| {
                    if i == 7 {
                        panic!("task seven fails");
                    }
                    i * 10
                },
                (i,),
            )
            .unwrap()
        })
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.wait_timeout(LONG));
        let ok = r.successful().expect("ready");
        match r.get() {
            Ok(v) => {
                assert!(ok);
                assert_eq!(v, i as u64 * 10);
            }
            Err(PoolError::TaskPanicked { message, .. }) => {
                assert!(!ok);
                assert_eq!(i, 7);
                assert_eq!(message, "task seven fails");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    // The pool goes on.
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    let err = pool.map(
        |x: u64| if x == 500 { panic!("bad item") } else { x },
        0..1000,
    );
    assert!(
        matches!(err, Err(PoolError::TaskPanicked { ref message, .. }) if message == "bad item")
    );
}

#[test]
fn starmap_unpacks_argument_tuples_in_order() {
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }
    let pool = ThreadPool::new(2).unwrap();
    let sums = pool.starmap(add, (0..100).map(|i| (i, 2 * i))).unwrap();
    assert_eq!(sums, (0..100).map(|i| 3 * i).collect::<Vec<_>>());
}

#[test]
fn imap_with_chunks_in_order_and_unordered() {
    let pool = ThreadPool::new(2).unwrap();
    for chunksize in [1, 3, 7, 100] {
        let ordered: Vec<u64> = pool
            .imap_with(square, 0..20, MapOptions::new().chunksize(chunksize))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ordered, (0..20).map(square).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = pool
            .imap_with(
                square,
                0..20,
                MapOptions::new().chunksize(chunksize).unordered(),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        unordered.sort_unstable();
        assert_eq!(unordered, ordered);
    }
    assert!(matches!(
        pool.imap_with(square, 0..3, MapOptions::new().chunksize(0)),
        Err(PoolError::ZeroChunksize)
    ));
}

#[test]
fn imap_reports_a_panicking_item_in_its_place_only() {
    let pool = ThreadPool::new(2).unwrap();
    let got: Vec<Result<u64, PoolError>> = pool
        .imap_with(
            |x: u64| if x == 4 { panic!("four") } else { x },
            0..8,
            MapOptions::new().chunksize(3),
        )
        .unwrap()
        .collect();
    assert_eq!(got.len(), 8);
    for (i, r) in got.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v, i as u64),
            Err(PoolError::TaskPanicked { message, .. }) => {
                assert_eq!((i, message.as_str()), (4, "four"));
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn imap_in_order_and_unordered_complete() {
    let pool = ThreadPool::new(2).unwrap();
    let ordered: Vec<u64> = pool
        .imap(square, 0..50)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, (0..50).map(square).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..50)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
}

#[test]
fn close_and_join() {
    let pool = ThreadPool::builder()
        .name("close-join")
        .threads(2)
        .build()
        .unwrap();
    assert_eq!(pool.size(), 2);
    assert_eq!(pool.join(), Err(PoolError::StillRunning));
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let pending = pool
        .apply_async(move || go_rx.recv_timeout(LONG).is_ok(), ())
        .unwrap();
    pool.close();
    assert_eq!(pool.apply(square, (2,)), Err(PoolError::Closed));
    assert!(matches!(
        pool.join_timeout(Duration::from_millis(20)),
        Err(PoolError::Timeout { .. })
    ));
    go_tx.send_timeout((), LONG).unwrap();
    pool.join_timeout(LONG).unwrap();
    assert_eq!(pending.get_timeout(LONG), Ok(true));
}

/// A value that counts how many of its kind are alive, to see that a failed `map` drops
/// every value it made, once.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicIsize>);

impl Counted {
    fn new(alive: &std::sync::Arc<std::sync::atomic::AtomicIsize>) -> Self {
        alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted(std::sync::Arc::clone(alive))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_failed_map_drops_the_values_it_made_and_names_the_first_panic() {
    let pool = ThreadPool::new(2).unwrap();
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicIsize::new(0));
    let counter = std::sync::Arc::clone(&alive);
    let err = pool.map(
        move |x: u64| {
            if x == 9_000 {
                panic!("item 9000")
            }
            Counted::new(&counter)
        },
        0..20_000,
    );
    assert!(
        matches!(err, Err(PoolError::TaskPanicked { ref message, .. }) if message == "item 9000")
    );
    assert_eq!(alive.load(std::sync::atomic::Ordering::SeqCst), 0);
    // And a whole map of such values hands every one over.
    let counter = std::sync::Arc::clone(&alive);
    let all = pool
        .map(move |_: u64| Counted::new(&counter), 0..5_000)
        .unwrap();
    assert_eq!(alive.load(std::sync::atomic::Ordering::SeqCst), 5_000);
    drop(all);
    assert_eq!(alive.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn a_given_chunksize_is_the_run_one_worker_maps() {
    let pool = ThreadPool::new(2).unwrap();
    for _ in 0..20 {
        let threads = pool
            .map_with(
                |_: u64| threads_sync::current_thread().ident(),
                0..64,
                MapOptions::new().chunksize(16),
            )
            .unwrap();
        for run in threads.chunks(16) {
            assert!(run.iter().all(|t| *t == run[0]), "a run was split: {run:?}");
        }
    }
}

/// An iterator whose length hint is wrong by `skew` items (in either direction).
struct Liar {
    next: u64,
    end: u64,
    claimed: usize,
}

impl Iterator for Liar {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claimed, Some(self.claimed))
    }
}

#[test]
fn an_input_whose_length_hint_is_wrong_still_maps_every_item_in_order() {
    let pool = ThreadPool::new(2).unwrap();
    for (end, claimed) in [(10_000, 4_000), (4_000, 10_000), (3, 1), (0, 5), (5, 0)] {
        let liar = Liar {
            next: 0,
            end,
            claimed,
        };
        let got = pool.map(square, liar).unwrap();
        assert_eq!(
            got,
            (0..end).map(square).collect::<Vec<_>>(),
            "{end} vs {claimed}"
        );
    }
    // An input of unknown length too.
    let odd = pool.map(square, (0..1_000).filter(|x| x % 2 == 1)).unwrap();
    assert_eq!(
        odd,
        (0..1_000)
            .filter(|x| x % 2 == 1)
            .map(square)
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_input_that_panics_makes_map_an_error() {
    let pool = ThreadPool::new(2).unwrap();
    let err = pool.map(
        square,
        (0..10_000u64).map(|x| if x == 7_777 { panic!("input broke") } else { x }),
    );
    assert!(
        matches!(err, Err(PoolError::TaskPanicked { ref message, .. }) if message == "input broke")
    );
}

#[test]
fn map_inside_a_task_of_its_own_pool_does_not_wait_for_itself() {
    let pool = std::sync::Arc::new(ThreadPool::new(1).unwrap());
    let inner = std::sync::Arc::clone(&pool);
    let sum = pool
        .apply_async(
            move || {
                inner
                    .map(square, 0..1_000)
                    .unwrap()
                    .into_iter()
                    .sum::<u64>()
            },
            (),
        )
        .unwrap()
        .get_timeout(LONG)
        .unwrap();
    assert_eq!(sum, (0..1_000).map(square).sum::<u64>());
}
