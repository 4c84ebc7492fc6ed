//! The story of iterables and iterators: the iterator is the thing that remembers its place.
//!
//! Run with `cargo run -p iter-gen --example iterators` (or `cargo xtask demo iter`).

use std::fmt::Debug;

use iter_gen::iterators::{Countdown, Fibonacci, Shelf};

/// Prints one step as `python code -> result   # note`.
fn step(code: &str, result: impl Debug, note: &str) {
    let result = format!("{result:?}");
    if note.is_empty() {
        println!("  {code:<26} -> {result}");
    } else {
        println!("  {code:<26} -> {result:<16} # {note}");
    }
}

fn main() {
    println!("An iterable hands out iterators; each iterator remembers how far it has got.");
    let shelf = Shelf::from(vec!["jam", "tea", "rice"]);
    println!("  shelf = Shelf([\"jam\", \"tea\", \"rice\"])");
    let mut it = shelf.iter();
    step("it = iter(shelf)", it.position(), "the position it holds");
    for _ in 0..2 {
        let item = it.next();
        step("next(it)", item, &format!("position {}", it.position()));
    }
    let mut other = shelf.iter();
    step(
        "next(iter(shelf))",
        other.next(),
        "a new iterator starts over",
    );
    step("next(it)", it.next(), "`it` carries on where it was");
    step("next(it)", it.next(), "Python: StopIteration");
    step("next(it)", it.next(), "and it stays spent");
    let again: Vec<&str> = shelf.iter().copied().collect();
    step("list(shelf)", again, "the iterable is not used up");

    println!();
    println!("Fibonacci: an iterator whose whole state is two numbers.");
    let first: Vec<u64> = Fibonacci::new().take(12).collect();
    step("first 12", first, "");
    step(
        "how many fit in a u64",
        Fibonacci::new().count(),
        "then it ends",
    );
    step("the last", Fibonacci::new().last().unwrap_or_default(), "");

    println!();
    println!("Countdown: an iterator that is its own iterable (its __iter__ returns self).");
    let mut countdown = Countdown::from(5);
    step("c = Countdown(5); next(c)", countdown.next(), "");
    step("next(c)", countdown.next(), "");
    let rest: Vec<u32> = countdown.by_ref().collect();
    step("list(c)", rest, "carries on where next() left off");
    let again: Vec<u32> = countdown.by_ref().collect();
    step("list(c)", again, "one pass only: it is spent");
}
