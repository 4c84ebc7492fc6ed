//! `next()` on a generator: pausing at `yield`, fused after the end, one pass, the return value.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use iter_gen::{GenState, Generator};

#[test]
fn smoke() {
    let g = Generator::new(|co| async move {
        co.yield_(1).await;
        co.yield_(2).await;
    });
    assert_eq!(g.collect::<Vec<i32>>(), [1, 2]);
}

#[test]
fn body_runs_lazily_and_pauses_at_each_yield() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let body_log = log.clone();
    let mut g = Generator::new(move |co| async move {
        body_log.borrow_mut().push("started");
        co.yield_('a').await;
        body_log.borrow_mut().push("after a");
        co.yield_('b').await;
        body_log.borrow_mut().push("after b");
    });
    assert!(
        log.borrow().is_empty(),
        "nothing runs before the first next()"
    );
    assert_eq!(g.state(), GenState::Created);
    assert_eq!(g.next(), Some('a'));
    assert_eq!(*log.borrow(), ["started"]);
    assert_eq!(g.state(), GenState::Suspended);
    assert_eq!(g.next(), Some('b'));
    assert_eq!(*log.borrow(), ["started", "after a"]);
    assert_eq!(g.next(), None);
    assert_eq!(*log.borrow(), ["started", "after a", "after b"]);
    assert_eq!(g.state(), GenState::Closed);
}

#[test]
fn fused_after_exhaustion() {
    let mut g = Generator::new(|co| async move {
        co.yield_(7u8).await;
        "end"
    });
    assert_eq!(g.next(), Some(7));
    assert_eq!(g.next(), None);
    // Raw genawaiter panics here ("`async fn` resumed after completion"); this must not.
    for _ in 0..1000 {
        assert_eq!(g.next(), None);
    }
    assert_eq!(g.size_hint(), (0, Some(0)));
    assert_eq!(g.return_value(), Some(&"end"));
}

#[test]
fn second_pass_is_empty() {
    let mut g = Generator::new(|co| async move {
        for i in 0..5 {
            co.yield_(i).await;
        }
    });
    let first: Vec<i32> = g.by_ref().collect();
    let second: Vec<i32> = g.by_ref().collect();
    assert_eq!(first, [0, 1, 2, 3, 4]);
    assert!(second.is_empty());
    let mut third = 0;
    for _ in &mut g {
        third += 1;
    }
    assert_eq!(third, 0);
}

#[test]
fn a_partial_walk_is_continued_not_restarted() {
    let mut g = Generator::new(|co| async move {
        for i in 0..6 {
            co.yield_(i).await;
        }
    });
    assert_eq!(g.by_ref().take(2).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(g.by_ref().take(2).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(g.collect::<Vec<_>>(), [4, 5]);
}

#[test]
fn return_value_is_kept() {
    let mut g = Generator::new(|co| async move {
        co.yield_(1).await;
        String::from("finished")
    });
    assert_eq!(
        g.return_value(),
        None,
        "no return value while suspended or not started"
    );
    assert_eq!(g.next(), Some(1));
    assert_eq!(g.return_value(), None);
    assert_eq!(g.next(), None);
    assert_eq!(g.return_value().map(String::as_str), Some("finished"));
    assert_eq!(g.take_return_value().as_deref(), Some("finished"));
    assert_eq!(g.take_return_value(), None);
}

#[test]
fn into_return_value_after_a_walk() {
    let mut g = Generator::new(|co| async move {
        let mut n = 0;
        for i in 0..4 {
            co.yield_(i).await;
            n += 1;
        }
        n
    });
    assert_eq!(g.by_ref().sum::<i32>(), 6);
    assert_eq!(g.into_return_value(), Some(4));
}

#[test]
fn generator_that_never_yields_returns_at_once() {
    let mut g = Generator::new(|_co: iter_gen::Yielder<u8>| async move { 42 });
    assert_eq!(g.next(), None);
    assert_eq!(g.return_value(), Some(&42));
}

#[test]
fn boxed_generators_have_a_nameable_type() {
    fn numbers(n: u32) -> Generator<u32, (), u32> {
        Generator::boxed(move |co| async move {
            for i in 0..n {
                co.yield_(i).await;
            }
            n
        })
    }
    let gens: Vec<Generator<u32, (), u32>> = vec![numbers(2), numbers(3)];
    let mut total = 0;
    for mut g in gens {
        total += g.by_ref().sum::<u32>();
        total += g.take_return_value().unwrap_or_default();
    }
    assert_eq!(total, (1 + 2) + (3 + 3));
}

#[test]
fn a_panicking_body_leaves_a_closed_generator() {
    let mut g = Generator::new(|co| async move {
        co.yield_(1).await;
        panic!("body failed");
    });
    assert_eq!(g.next(), Some(1));
    let caught = catch_unwind(AssertUnwindSafe(|| g.next()));
    let message = caught.expect_err("the body's panic reaches the caller");
    assert_eq!(message.downcast_ref::<&str>(), Some(&"body failed"));
    // Like a Python generator that raised: finished, not poisoned.
    assert_eq!(g.next(), None);
    assert_eq!(g.next(), None);
    assert_eq!(g.state(), GenState::Closed);
}

#[test]
fn debug_shows_the_state() {
    let mut g = Generator::new(|co| async move {
        co.yield_(()).await;
    });
    assert!(format!("{g:?}").contains("Created"));
    g.next();
    assert!(format!("{g:?}").contains("Suspended"));
}

#[test]
fn a_body_awaiting_a_foreign_future_panics_once_then_is_closed() {
    let mut g = Generator::new(|co| async move {
        std::future::pending::<()>().await; // not a yield: nothing will ever wake it
        co.yield_(1).await;
    });
    let caught = catch_unwind(AssertUnwindSafe(|| g.next()));
    assert!(
        caught.is_err(),
        "genawaiter refuses a pending foreign future"
    );
    assert_eq!(g.next(), None);
    assert_eq!(g.state(), GenState::Closed);
}
