//! The story of iterables and iterators: the iterator is the thing that remembers its place.
//!
//! Run with `cargo run -p iter-gen --example iterators` (or `cargo xtask demo iter`).

use iter_gen::iterators::{Countdown, Fibonacci, Shelf};

fn main() {
    println!("An iterable hands out iterators; each iterator remembers how far it has got.");
    let shelf = Shelf::from(vec!["jam", "tea", "rice"]);
    println!("  shelf = Shelf([\"jam\", \"tea\", \"rice\"])");

    let mut it = shelf.iter();
    println!("  it = iter(shelf)            # position {}", it.position());
    for _ in 0..2 {
        let item = it.next();
        println!("  next(it) -> {item:?}        # position {}", it.position());
    }
    let mut other = shelf.iter();
    println!(
        "  other = iter(shelf); next(other) -> {:?}   # a new iterator starts over",
        other.next()
    );
    println!(
        "  next(it) -> {:?}       # `it` carries on from where it was",
        it.next()
    );
    println!(
        "  next(it) -> {:?}          # Python: StopIteration",
        it.next()
    );
    println!(
        "  next(it) -> {:?}          # and it stays spent",
        it.next()
    );
    let again: Vec<&str> = shelf.iter().copied().collect();
    println!("  list(shelf) -> {again:?}   # the iterable itself is not used up");

    println!();
    println!("Fibonacci: an iterator whose whole state is two numbers.");
    let first: Vec<u64> = Fibonacci::new().take(12).collect();
    println!("  first 12: {first:?}");
    let last = Fibonacci::new().last().unwrap_or_default();
    println!(
        "  it ends after {} numbers, at {last}: the next one would not fit in a u64",
        Fibonacci::new().count()
    );

    println!();
    println!("Countdown: an iterator that is its own iterable (its __iter__ returns self).");
    let mut countdown = Countdown::from(5);
    println!(
        "  next(c) -> {:?}, next(c) -> {:?}",
        countdown.next(),
        countdown.next()
    );
    let rest: Vec<u32> = countdown.by_ref().collect();
    println!("  for n in c: ... -> {rest:?}   # the loop continues where next() left off");
    let again: Vec<u32> = countdown.by_ref().collect();
    println!("  a second loop -> {again:?}        # one pass only: it is spent");
}
