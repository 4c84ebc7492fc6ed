//! `yield_from`: delegation that forwards `next` and `send` and evaluates to the inner return value.

use std::cell::Cell;
use std::rc::Rc;

use iter_gen::{Generator, Yielder};

/// Echoes what it is sent, tagged; returns how many values it received.
fn echo(tag: &'static str, rounds: usize) -> Generator<String, i32, usize> {
    Generator::boxed(move |co: Yielder<String, i32>| async move {
        let mut received = 0;
        let mut last = None;
        for _ in 0..rounds {
            let sent = co.yield_(format!("{tag}:{last:?}")).await;
            if sent.is_some() {
                received += 1;
            }
            last = sent;
        }
        received
    })
}

#[test]
fn smoke() {
    let mut outer = Generator::new(|co| async move {
        let inner = Generator::new(|co| async move {
            co.yield_(1).await;
            "inner done"
        });
        let result = co.yield_from(inner).await;
        co.yield_(2).await;
        result
    });
    assert_eq!(outer.by_ref().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(outer.return_value(), Some(&Some("inner done")));
}

#[test]
fn delegation_forwards_sends_and_returns_the_inner_value() {
    let mut outer = Generator::receiving(|co: Yielder<String, i32>| async move {
        let first = co.yield_from(echo("a", 3)).await;
        let second = co.yield_from(echo("b", 2)).await;
        (first, second)
    });
    assert_eq!(outer.next().as_deref(), Some("a:None"));
    assert_eq!(outer.send(10).unwrap().as_deref(), Some("a:Some(10)"));
    assert_eq!(outer.send(11).unwrap().as_deref(), Some("a:Some(11)"));
    // `a` has yielded 3 times; the next send finishes it, and `b` starts.
    assert_eq!(outer.send(12).unwrap().as_deref(), Some("b:None"));
    assert_eq!(outer.next().as_deref(), Some("b:None"));
    assert_eq!(outer.send(20), Ok(None));
    assert_eq!(outer.return_value(), Some(&(Some(3), Some(1))));
}

#[test]
fn delegation_nests() {
    fn depth(level: u32) -> Generator<u32, (), u32> {
        Generator::boxed(move |co| async move {
            co.yield_(level).await;
            if level == 0 {
                0
            } else {
                1 + co.yield_from(depth(level - 1)).await.unwrap_or_default()
            }
        })
    }
    let mut g = depth(4);
    assert_eq!(g.by_ref().collect::<Vec<_>>(), [4, 3, 2, 1, 0]);
    assert_eq!(g.return_value(), Some(&4));
}

#[test]
fn delegation_continues_a_half_walked_inner_generator() {
    let mut inner = Generator::new(|co| async move {
        for i in 0..4 {
            co.yield_(i).await;
        }
        "inner"
    });
    assert_eq!(inner.next(), Some(0));
    let mut outer = Generator::new(|co| async move { co.yield_from(inner).await });
    assert_eq!(outer.by_ref().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(outer.return_value(), Some(&Some("inner")));
}

#[test]
fn delegation_to_a_closed_generator_yields_nothing() {
    let mut inner = Generator::new(|co| async move {
        co.yield_(1).await;
        "never"
    });
    inner.close();
    let mut outer = Generator::new(|co| async move { co.yield_from(inner).await });
    assert_eq!(outer.next(), None);
    assert_eq!(outer.return_value(), Some(&None));
}

#[test]
fn closing_the_outer_closes_the_inner() {
    struct Cleanup(Rc<Cell<u32>>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let count = Rc::new(Cell::new(0));
    let seen = count.clone();
    let inner = Generator::new(move |co| async move {
        let _cleanup = Cleanup(seen);
        co.yield_(1).await;
        co.yield_(2).await;
    });
    let mut outer = Generator::new(|co| async move { co.yield_from(inner).await });
    assert_eq!(outer.next(), Some(1));
    outer.close();
    assert_eq!(count.get(), 1);
}

#[test]
fn yield_all_yields_a_plain_iterable() {
    let mut g = Generator::new(|co| async move {
        co.yield_all(vec![1, 2]).await;
        co.yield_all(3..5).await;
    });
    assert_eq!(g.by_ref().collect::<Vec<_>>(), [1, 2, 3, 4]);
}
