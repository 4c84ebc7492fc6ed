//! ThreadPool::map on inputs it reaches by index (a `Vec`, an integer range): every item once,
//! in order; a panicking item an error, and every input item and value made dropped once by
//! the time `map` returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use threads_sync::{MapOptions, PoolError, ThreadPool};

const LONG: Duration = Duration::from_secs(10);

/// A value that counts how many of its kind are alive (a drop too many makes it negative).
struct Counted {
    alive: Arc<AtomicIsize>,
    value: u64,
}

impl Counted {
    fn new(alive: &Arc<AtomicIsize>, value: u64) -> Self {
        alive.fetch_add(1, Ordering::SeqCst);
        Counted {
            alive: Arc::clone(alive),
            value,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn integer_ranges_of_every_kind_map_in_order() {
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(
        pool.map(|x: i8| i16::from(x), -128..=127i8).unwrap(),
        (-128..=127).collect::<Vec<i16>>()
    );
    assert_eq!(
        pool.map(|x: u8| x, 0..=255u8).unwrap(),
        (0..=255).collect::<Vec<u8>>()
    );
    let big = u128::MAX - 10_000;
    assert_eq!(
        pool.map(move |x: u128| x - big, big..=u128::MAX).unwrap(),
        (0..=10_000).collect::<Vec<u128>>()
    );
    assert_eq!(
        pool.map(|x: i64| x * 2, -5_000..5_000i64).unwrap(),
        (-5_000..5_000).map(|x| x * 2).collect::<Vec<i64>>()
    );
    assert_eq!(
        pool.map(|x: usize| x, 7..7usize).unwrap(),
        Vec::<usize>::new()
    );
    // A range already partly used starts where it stands.
    let mut range = 0..100u32;
    range.next();
    let mut inclusive = 0..=100u32;
    inclusive.next();
    inclusive.next_back();
    assert_eq!(
        pool.map(|x: u32| x, range).unwrap(),
        (1..100).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.map(|x: u32| x, inclusive).unwrap(),
        (1..100).collect::<Vec<_>>()
    );
}

#[test]
fn a_vec_hands_each_item_over_once() {
    let pool = ThreadPool::new(2).unwrap();
    let alive = Arc::new(AtomicIsize::new(0));
    let items: Vec<Counted> = (0..50_000).map(|i| Counted::new(&alive, i)).collect();
    let got = pool.map(|c: Counted| c.value * 3, items).unwrap();
    assert_eq!(got, (0..50_000).map(|i| i * 3).collect::<Vec<_>>());
    assert_eq!(alive.load(Ordering::SeqCst), 0);
    // A vec::IntoIter already advanced maps what is left.
    let mut items = (0..1_000)
        .map(|i| Counted::new(&alive, i))
        .collect::<Vec<_>>()
        .into_iter();
    drop(items.next());
    let got = pool
        .map_with(|c: Counted| c.value, items, MapOptions::new().chunksize(7))
        .unwrap();
    assert_eq!(got, (1..1_000).collect::<Vec<_>>());
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}

#[test]
fn zero_sized_items_and_values_map_too() {
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(
        pool.map(|(): ()| (), vec![(); 10_000]).unwrap().len(),
        10_000
    );
    assert_eq!(pool.map(|x: u32| x, vec![7u32; 3]).unwrap(), [7, 7, 7]);
    assert_eq!(pool.map(|(): ()| 1u8, vec![(); 5]).unwrap(), [1; 5]);
}

#[test]
fn a_panicking_item_drops_every_input_and_value_once() {
    let pool = ThreadPool::new(2).unwrap();
    let alive = Arc::new(AtomicIsize::new(0));
    for bad in [0, 1, 4_095, 4_096, 25_000, 49_999] {
        let items: Vec<Counted> = (0..50_000).map(|i| Counted::new(&alive, i)).collect();
        let values = Arc::clone(&alive);
        let err = pool.map(
            move |c: Counted| {
                if c.value == bad {
                    panic!("item {bad}");
                }
                Counted::new(&values, c.value)
            },
            items,
        );
        match err {
            Err(PoolError::TaskPanicked { message, .. }) => {
                assert_eq!(message, format!("item {bad}"))
            }
            other => panic!(
                "item {bad}: expected a panic, got {:?}",
                other.map(|v| v.len())
            ),
        }
        // Every input item and every value made is dropped by the time `map` returns.
        assert_eq!(alive.load(Ordering::SeqCst), 0, "item {bad}");
    }
}

#[test]
fn a_given_chunksize_is_one_workers_run_for_a_vec_too() {
    let pool = ThreadPool::new(2).unwrap();
    for _ in 0..20 {
        let threads = pool
            .map_with(
                |_: u64| threads_sync::current_thread().ident(),
                (0..64).collect::<Vec<u64>>(),
                MapOptions::new().chunksize(16),
            )
            .unwrap();
        for run in threads.chunks(16) {
            assert!(run.iter().all(|t| *t == run[0]), "a run was split: {run:?}");
        }
    }
}

#[test]
fn a_cancelled_map_async_drops_its_input() {
    let pool = ThreadPool::new(1).unwrap();
    let alive = Arc::new(AtomicIsize::new(0));
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let blocker = pool
        .apply_async(move || wait.recv_timeout(LONG).is_ok(), ())
        .unwrap();
    let items: Vec<Counted> = (0..1_000).map(|i| Counted::new(&alive, i)).collect();
    let mapped = pool.map_async(|c: Counted| c.value, items).unwrap();
    assert!(mapped.cancel(), "queued behind the blocker, so cancellable");
    release.send(()).unwrap();
    assert!(blocker.get_timeout(LONG).unwrap());
    assert!(matches!(
        mapped.get_timeout(LONG),
        Err(PoolError::Cancelled { .. })
    ));
    pool.close();
    pool.join_timeout(LONG).unwrap();
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}

#[test]
fn starmap_and_map_async_take_the_indexed_path_too() {
    let pool = ThreadPool::new(2).unwrap();
    let pairs: Vec<(u64, u64)> = (0..10_000).map(|i| (i, 2 * i)).collect();
    let sums = pool.starmap(|a: u64, b: u64| a + b, pairs).unwrap();
    assert_eq!(sums, (0..10_000).map(|i| 3 * i).collect::<Vec<_>>());
    let squares = pool.map_async(|x: u64| x * x, 0..10_000u64).unwrap();
    assert_eq!(
        squares.get_timeout(LONG).unwrap(),
        (0..10_000u64).map(|x| x * x).collect::<Vec<_>>()
    );
}
