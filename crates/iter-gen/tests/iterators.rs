//! Hand-written iterables and iterators: the collection/cursor pair, Fibonacci, a countdown.

use iter_gen::iterators::{Countdown, Fibonacci, Shelf};

#[test]
fn smoke() {
    let shelf: Shelf<i32> = (1..=3).collect();
    assert_eq!(shelf.iter().copied().sum::<i32>(), 6);
}

#[test]
fn borrowed_walks_are_independent_and_repeatable() {
    let shelf = Shelf::from(vec!['a', 'b', 'c']);
    let mut first = shelf.iter();
    let mut second = (&shelf).into_iter();
    assert_eq!(first.next(), Some(&'a'));
    assert_eq!(first.next(), Some(&'b'));
    // Each iterator keeps its own place; the iterable is not consumed.
    assert_eq!(second.next(), Some(&'a'));
    assert_eq!(first.position(), 2);
    assert_eq!(second.position(), 1);
    assert_eq!(first.len(), 1);
    let mut for_loop = Vec::new();
    for item in &shelf {
        for_loop.push(*item);
    }
    assert_eq!(for_loop, ['a', 'b', 'c']);
    assert_eq!(shelf.len(), 3);
}

#[test]
fn cursor_clone_continues_from_the_same_place() {
    let shelf = Shelf::from(vec![10, 20, 30]);
    let mut walk = shelf.iter();
    walk.next();
    let copy = walk.clone();
    assert_eq!(copy.copied().collect::<Vec<_>>(), [20, 30]);
    assert_eq!(walk.next(), Some(&20));
}

#[test]
fn iterator_is_fused_after_the_end() {
    let shelf = Shelf::from(vec![1]);
    let mut walk = shelf.iter();
    assert_eq!(walk.next(), Some(&1));
    for _ in 0..100 {
        assert_eq!(walk.next(), None);
    }
    assert_eq!(walk.position(), 1);
}

#[test]
fn owning_walk_hands_out_the_items() {
    let shelf = Shelf::from(vec![String::from("x"), String::from("y")]);
    let mut owned = shelf.into_iter();
    assert_eq!(owned.len(), 2);
    assert_eq!(owned.next().as_deref(), Some("x"));
    assert_eq!(owned.next().as_deref(), Some("y"));
    assert_eq!(owned.next(), None);
}

#[test]
fn empty_shelf_yields_nothing() {
    let mut shelf = Shelf::new();
    assert!(shelf.is_empty());
    assert_eq!(shelf.iter().next(), None::<&u8>);
    shelf.push(4u8);
    assert_eq!(shelf.iter().collect::<Vec<_>>(), [&4]);
}

#[test]
fn fibonacci_stops_before_overflow() {
    let all: Vec<u64> = Fibonacci::new().collect();
    assert_eq!(all.len(), 94);
    assert_eq!(&all[..10], [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
    for window in all.windows(3) {
        assert_eq!(window[0] + window[1], window[2]);
    }
    let mut fib = Fibonacci::default();
    fib.by_ref().for_each(drop);
    assert_eq!(fib.next(), None);
}

#[test]
fn countdown_is_its_own_iterable() {
    let mut countdown = Countdown::from(4);
    assert_eq!(countdown.next(), Some(4));
    let mut rest = Vec::new();
    for n in &mut countdown {
        rest.push(n);
    }
    assert_eq!(rest, [3, 2, 1]);
    assert_eq!(countdown.remaining(), 0);
    assert_eq!(countdown.next(), None);
    assert_eq!(Countdown::from(0).count(), 0);
    assert_eq!(Countdown::from(3).len(), 3);
}
