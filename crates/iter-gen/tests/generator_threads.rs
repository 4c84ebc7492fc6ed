//! The `Send` flavour (`iter_gen::threadsafe`): generators made on one thread and walked on another.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use iter_gen::threadsafe::{Generator, Yielder};
use iter_gen::{GenState, SendError};

/// Long enough for any machine, short enough that a hang fails the test instead of CI.
const TIMEOUT: Duration = Duration::from_secs(30);

fn assert_send<T: Send>(_: &T) {}

#[test]
fn smoke() {
    let g = Generator::new(|co| async move {
        co.yield_(1u8).await;
    });
    assert_send(&g);
    assert_eq!(g.collect::<Vec<_>>(), [1]);
}

#[test]
fn generator_moved_to_another_thread() {
    let mut g = Generator::new(|co| async move {
        for i in 0..100u64 {
            co.yield_(i).await;
        }
        "spent"
    });
    // Half here, half on another thread: the position travels with it.
    let first_half: u64 = g.by_ref().take(50).sum();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let second_half: u64 = g.by_ref().sum();
        tx.send((second_half, g.take_return_value(), g.state()))
            .expect("test alive");
    });
    let (second_half, returned, state) = rx.recv_timeout(TIMEOUT).expect("worker answered");
    worker.join().expect("worker did not panic");
    assert_eq!(first_half, (0..50).sum());
    assert_eq!(second_half, (50..100).sum());
    assert_eq!(returned, Some("spent"));
    assert_eq!(state, GenState::Closed);
}

#[test]
fn send_works_from_another_thread() {
    let mut g = Generator::receiving(|co: Yielder<u32, u32>| async move {
        let mut total = 0;
        while let Some(x) = co.yield_(total).await {
            total += x;
        }
        total
    });
    assert_eq!(g.send(1), Err(SendError::NotStarted(1)));
    assert_eq!(g.next(), Some(0));
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let steps: Vec<_> = (1..=4).map(|x| g.send(x)).collect();
        g.next();
        tx.send((steps, g.into_return_value())).expect("test alive");
    });
    let (steps, total) = rx.recv_timeout(TIMEOUT).expect("worker answered");
    worker.join().expect("worker did not panic");
    assert_eq!(steps, [Ok(Some(1)), Ok(Some(3)), Ok(Some(6)), Ok(Some(10))]);
    assert_eq!(total, Some(10));
}

#[test]
fn boxed_sync_generators_are_send_and_nameable() {
    fn evens(n: u64) -> Generator<u64> {
        Generator::boxed(move |co| async move {
            for i in (0..n).step_by(2) {
                co.yield_(i).await;
            }
        })
    }
    let gens: Vec<Generator<u64>> = vec![evens(5), evens(9)];
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let sums: Vec<u64> = gens.into_iter().map(|g| g.sum()).collect();
        tx.send(sums).expect("test alive");
    });
    let sums = rx.recv_timeout(TIMEOUT).expect("worker answered");
    worker.join().expect("worker did not panic");
    assert_eq!(sums, [2 + 4, 2 + 4 + 6 + 8]);
}

#[test]
fn sync_flavour_is_fused_and_delegates() {
    let mut g = Generator::new(|co| async move {
        let inner = Generator::new(|co| async move {
            co.yield_('x').await;
            7
        });
        co.yield_from(inner).await
    });
    assert_eq!(g.next(), Some('x'));
    for _ in 0..100 {
        assert_eq!(g.next(), None);
    }
    assert_eq!(g.return_value(), Some(&Some(7)));
}
