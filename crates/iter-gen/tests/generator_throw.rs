//! `Generator::throw`: Python's `gen.throw(exc)`, caught at `yield_catching`, uncaught elsewhere.

use std::cell::Cell;
use std::rc::Rc;

use iter_gen::{GenState, Generator, Thrown, Yielder};

/// Counts how often a body's cleanup ran (Python: a `finally:` block).
struct OnExit(Rc<Cell<u32>>);

impl Drop for OnExit {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Yields 0, 1, 2, ... at a catching yield; on a thrown error yields its message and goes on.
fn resilient(limit: u32) -> Generator<String, (), u32> {
    Generator::boxed(move |co: Yielder<String>| async move {
        let mut caught = 0;
        for i in 0..limit {
            if let Err(e) = co.yield_catching(i.to_string()).await {
                caught += 1;
                co.yield_(format!("caught {e}")).await;
            }
        }
        caught
    })
}

#[test]
fn smoke() {
    let mut g = resilient(2);
    assert_eq!(g.next().as_deref(), Some("0"));
    assert_eq!(g.throw("oops").unwrap().as_deref(), Some("caught oops"));
}

#[test]
fn a_caught_error_lets_the_body_go_on_and_is_counted_in_its_return_value() {
    let mut g = resilient(3);
    assert_eq!(g.next().as_deref(), Some("0"));
    assert_eq!(g.throw("first").unwrap().as_deref(), Some("caught first"));
    assert_eq!(g.next().as_deref(), Some("1"));
    assert_eq!(g.throw("second").unwrap().as_deref(), Some("caught second"));
    assert_eq!(g.by_ref().collect::<Vec<_>>(), ["2"]);
    assert_eq!(g.return_value(), Some(&2));
    assert_eq!(g.state(), GenState::Closed);
}

#[test]
fn a_body_that_returns_on_the_error_ends_the_throw_with_none_and_keeps_the_value() {
    let mut g = Generator::new(|co: Yielder<u8>| async move {
        match co.yield_catching(1).await {
            Err(e) => format!("stopped by {e}"),
            Ok(_) => "ran out".to_string(),
        }
    });
    assert_eq!(g.next(), Some(1));
    assert_eq!(g.throw("halt").unwrap(), None);
    assert_eq!(
        g.return_value().map(String::as_str),
        Some("stopped by halt")
    );
    assert_eq!(g.next(), None);
}

#[test]
fn an_error_at_a_plain_yield_is_not_caught_it_comes_back_and_cleanup_runs_once() {
    let cleanups = Rc::new(Cell::new(0));
    let seen = cleanups.clone();
    let mut g = Generator::new(move |co| async move {
        let _guard = OnExit(seen);
        co.yield_(1).await;
        co.yield_(2).await;
    });
    assert_eq!(g.next(), Some(1));
    let err = g.throw(std::io::Error::other("disk gone")).unwrap_err();
    assert_eq!(err.to_string(), "disk gone");
    assert!(
        err.downcast_ref::<std::io::Error>().is_some(),
        "the error keeps its type"
    );
    assert_eq!(cleanups.get(), 1);
    assert_eq!(g.state(), GenState::Closed);
    assert_eq!(g.next(), None);
    g.close();
    assert_eq!(cleanups.get(), 1, "cleanup ran exactly once");
}

#[test]
fn throw_into_an_unstarted_generator_raises_at_once_and_closes_it() {
    let ran = Rc::new(Cell::new(false));
    let seen = ran.clone();
    let mut g = Generator::new(move |co: Yielder<u8>| async move {
        seen.set(true);
        let _ = co.yield_catching(1).await;
    });
    assert_eq!(g.throw("early").unwrap_err().to_string(), "early");
    assert!(!ran.get(), "the body never ran");
    assert_eq!(g.state(), GenState::Closed);
    assert_eq!(g.next(), None);
}

#[test]
fn throw_into_a_finished_generator_gives_the_error_back() {
    let mut g = resilient(1);
    assert_eq!(g.by_ref().count(), 1);
    assert_eq!(g.return_value(), Some(&0));
    let err: Thrown = g.throw("late").unwrap_err();
    assert_eq!(err.to_string(), "late");
    assert_eq!(g.return_value(), Some(&0), "the return value is kept");
}

#[test]
fn yield_from_forwards_a_throw_to_an_inner_generator_that_catches_it() {
    let mut outer = Generator::new(|co: Yielder<String>| async move {
        let caught = co.yield_from(resilient(2)).await;
        co.yield_("outer done".to_string()).await;
        caught
    });
    assert_eq!(outer.next().as_deref(), Some("0"));
    assert_eq!(
        outer.throw("inner, please").unwrap().as_deref(),
        Some("caught inner, please")
    );
    assert_eq!(
        outer.by_ref().collect::<Vec<_>>(),
        ["1", "outer done"],
        "delegation goes on after the caught error"
    );
    assert_eq!(outer.return_value(), Some(&Some(1)));
}

#[test]
fn yield_from_an_inner_generator_that_does_not_catch_ends_both() {
    let cleanups = Rc::new(Cell::new(0));
    let (inner_seen, outer_seen) = (cleanups.clone(), cleanups.clone());
    let inner = Generator::new(move |co| async move {
        let _guard = OnExit(inner_seen);
        co.yield_(1).await;
        co.yield_(2).await;
    });
    let mut outer = Generator::new(move |co| async move {
        let _guard = OnExit(outer_seen);
        co.yield_from(inner).await;
        co.yield_(3).await;
    });
    assert_eq!(outer.next(), Some(1));
    assert_eq!(outer.throw("boom").unwrap_err().to_string(), "boom");
    assert_eq!(cleanups.get(), 2, "both bodies were dropped");
    assert_eq!(outer.next(), None);
}

#[test]
fn the_threadsafe_flavour_throws_across_threads() {
    use iter_gen::threadsafe::{Generator as SendGenerator, Yielder as SendYielder};

    let mut g = SendGenerator::new(|co: SendYielder<u32>| async move {
        let mut n = 0;
        loop {
            match co.yield_catching(n).await {
                Ok(_) => n += 1,
                Err(_) => return n,
            }
        }
    });
    assert_eq!(g.next(), Some(0));
    let mut g = std::thread::spawn(move || {
        assert_eq!(g.next(), Some(1));
        g
    })
    .join()
    .unwrap();
    assert_eq!(g.throw("enough").unwrap(), None);
    assert_eq!(g.return_value(), Some(&1));
}
