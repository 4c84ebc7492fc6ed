//! `close()` and drop: the body's cleanup runs exactly once, wherever the body stands.

use std::cell::Cell;
use std::rc::Rc;

use iter_gen::{GenState, Generator};

/// Counts how many times it was dropped: a body's `finally:`.
struct Cleanup(Rc<Cell<u32>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

fn guarded(count: &Rc<Cell<u32>>) -> Generator<u32> {
    let count = count.clone();
    Generator::boxed(move |co| async move {
        let _cleanup = Cleanup(count);
        for i in 0..10 {
            co.yield_(i).await;
        }
    })
}

#[test]
fn smoke() {
    let count = Rc::new(Cell::new(0));
    let mut g = guarded(&count);
    g.next();
    g.close();
    assert_eq!(count.get(), 1);
}

#[test]
fn close_of_a_suspended_generator_runs_cleanup_exactly_once() {
    let count = Rc::new(Cell::new(0));
    let mut g = guarded(&count);
    assert_eq!(g.next(), Some(0));
    assert_eq!(g.next(), Some(1));
    assert_eq!(count.get(), 0, "cleanup must wait for close");
    g.close();
    assert_eq!(count.get(), 1);
    assert_eq!(g.state(), GenState::Closed);
    assert_eq!(g.next(), None);
    g.close();
    drop(g);
    assert_eq!(
        count.get(),
        1,
        "closing again and dropping must not run it again"
    );
}

#[test]
fn drop_of_a_suspended_generator_runs_cleanup_exactly_once() {
    let count = Rc::new(Cell::new(0));
    let mut g = guarded(&count);
    g.next();
    drop(g);
    assert_eq!(count.get(), 1);
}

#[test]
fn cleanup_runs_once_when_the_body_finishes() {
    let count = Rc::new(Cell::new(0));
    let mut g = guarded(&count);
    assert_eq!(g.by_ref().count(), 10);
    assert_eq!(count.get(), 1, "a finished body has cleaned up");
    g.close();
    drop(g);
    assert_eq!(count.get(), 1);
}

#[test]
fn close_before_start_drops_what_the_body_captured() {
    let count = Rc::new(Cell::new(0));
    let captured = Cleanup(count.clone());
    let mut g = Generator::new(move |co| async move {
        let _keep = captured;
        co.yield_(1).await;
    });
    g.close();
    assert_eq!(count.get(), 1);
    assert_eq!(g.next(), None);
    assert_eq!(g.state(), GenState::Closed);
}

#[test]
fn close_keeps_a_return_value_already_produced() {
    let mut g = Generator::new(|co| async move {
        co.yield_(1).await;
        "ret"
    });
    g.by_ref().for_each(drop);
    g.close();
    assert_eq!(g.return_value(), Some(&"ret"));
}

#[test]
fn close_skips_the_rest_of_the_body() {
    let reached_end = Rc::new(Cell::new(false));
    let flag = reached_end.clone();
    let mut g = Generator::new(move |co| async move {
        co.yield_(1).await;
        flag.set(true);
        "ret"
    });
    g.next();
    g.close();
    assert!(!reached_end.get());
    assert_eq!(g.return_value(), None);
}
