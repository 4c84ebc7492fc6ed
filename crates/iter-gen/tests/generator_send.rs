//! `send()`: no value lost, none before the start, all arriving in order.

use iter_gen::{GenState, Generator, SendError, Yielder};

/// Yields how many values it has received, and records them; returns them all.
fn recorder() -> Generator<usize, u32, Vec<u32>> {
    Generator::boxed(|co: Yielder<usize, u32>| async move {
        let mut got = Vec::new();
        while let Some(x) = co.yield_(got.len()).await {
            got.push(x);
        }
        got
    })
}

#[test]
fn smoke() {
    let mut g = recorder();
    assert_eq!(g.next(), Some(0));
    assert_eq!(g.send(9), Ok(Some(1)));
}

#[test]
fn send_before_start_is_an_error_that_returns_the_value() {
    let mut g = recorder();
    let err = g.send(5).unwrap_err();
    assert_eq!(err, SendError::NotStarted(5));
    assert!(err.to_string().contains("just-started"), "{err}");
    assert_eq!(err.into_inner(), 5);
    // The refused send changed nothing: the generator starts normally.
    assert_eq!(g.state(), GenState::Created);
    assert_eq!(g.next(), Some(0));
    assert_eq!(g.send(5), Ok(Some(1)));
    assert_eq!(g.next(), None);
    assert_eq!(g.return_value(), Some(&vec![5]));
}

#[test]
fn sent_values_all_arrive_in_order() {
    let mut g = recorder();
    assert_eq!(g.next(), Some(0));
    for i in 0..100u32 {
        assert_eq!(g.send(i * 3), Ok(Some(i as usize + 1)));
    }
    assert_eq!(g.next(), None);
    let got = g.take_return_value().expect("returned");
    assert_eq!(got, (0..100u32).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn next_resumes_with_none() {
    let mut g = Generator::receiving(|co: Yielder<Option<&str>, &str>| async move {
        let mut last = None;
        for _ in 0..3 {
            last = co.yield_(last).await;
        }
    });
    assert_eq!(g.next(), Some(None));
    assert_eq!(g.send("x"), Ok(Some(Some("x"))));
    assert_eq!(g.next(), Some(None));
    assert_eq!(g.next(), None);
}

#[test]
fn send_that_finishes_the_body_returns_none_and_the_value_is_used() {
    let mut g = Generator::receiving(|co: Yielder<(), String>| async move {
        co.yield_(()).await.unwrap_or_default()
    });
    assert_eq!(g.next(), Some(()));
    assert_eq!(g.send(String::from("last word")), Ok(None));
    assert_eq!(g.return_value().map(String::as_str), Some("last word"));
}

#[test]
fn send_after_the_end_hands_the_value_back() {
    let mut g = recorder();
    g.next();
    g.next();
    assert_eq!(g.state(), GenState::Closed);
    let err = g.send(77).unwrap_err();
    assert_eq!(err, SendError::Finished(77));
    assert!(err.to_string().contains("finished"), "{err}");
    assert_eq!(format!("{err:?}"), "Finished(..)");
    assert_eq!(err.into_inner(), 77);
}

#[test]
fn send_after_close_hands_the_value_back() {
    let mut g = recorder();
    g.next();
    g.close();
    assert_eq!(g.send(1), Err(SendError::Finished(1)));
    assert_eq!(g.return_value(), None);
}

/// Python's rule: only `None` may be sent to a fresh generator, and it starts it as `next()`
/// does. CPython test_generators' `d[(yield "a")] = (yield "b")` doctest, driven by sends only.
#[test]
fn sending_none_first_starts_a_generator_and_a_value_first_is_refused() {
    use std::collections::BTreeMap;
    let mut g = Generator::boxed(|co: Yielder<&'static str, u32>| async move {
        let mut d = BTreeMap::new();
        let key = co.yield_("a").await;
        let value = co.yield_("b").await;
        d.insert(key, value);
        d
    });
    // A value first is refused and handed back; the generator is untouched.
    assert_eq!(
        g.send_optional(Some(7)),
        Err(SendError::NotStarted(Some(7)))
    );
    assert_eq!(g.state(), GenState::Created);
    assert_eq!(g.send_optional(None), Ok(Some("a")));
    assert_eq!(g.send_optional(Some(1)), Ok(Some("b")));
    assert_eq!(g.send_optional(Some(2)), Ok(None));
    assert_eq!(
        g.return_value(),
        Some(&BTreeMap::from([(Some(1), Some(2))]))
    );
    // Finished: None and values alike come back.
    assert_eq!(g.send_optional(None), Err(SendError::Finished(None)));
    assert_eq!(g.send_optional(Some(3)), Err(SendError::Finished(Some(3))));
}
