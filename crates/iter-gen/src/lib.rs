//! `iter_gen`: Python's iterables, iterators and generators in Rust, consumed once like Python's.
//!
//! # Iterables and iterators
//!
//! An *iterable* hands out an *iterator*; the iterator remembers how far the walk has got, and
//! `next()` moves it one step. Python spells the pair `__iter__` / `__next__`; Rust spells it
//! [`IntoIterator`] / [`Iterator`].
//!
//! ```python
//! shelf = Shelf(["jam", "tea"])
//! it = iter(shelf)
//! assert next(it) == "jam"
//! assert next(it) == "tea"
//! assert next(it, None) is None        # StopIteration
//! ```
//!
//! ```
//! use iter_gen::iterators::Shelf;
//!
//! let shelf = Shelf::from(vec!["jam", "tea"]);
//! let mut it = shelf.iter();
//! assert_eq!(it.next(), Some(&"jam"));
//! assert_eq!(it.next(), Some(&"tea"));
//! assert_eq!(it.next(), None);
//! ```
//!
//! [`iterators`] holds the hand-written examples: [`iterators::Shelf`] (a collection and its
//! cursor), [`iterators::Fibonacci`], and [`iterators::Countdown`] (its own iterable).
//!
//! # Generators pause at `yield`
//!
//! A generator is an iterator written as a function: it runs to a `yield`, pauses there, and
//! carries on from that point at the next `next()`.
//!
//! ```python
//! def count_to(n):
//!     for i in range(1, n + 1):
//!         yield i
//!
//! g = count_to(3)
//! assert next(g) == 1                  # runs to the first yield and pauses
//! assert list(g) == [2, 3]             # carries on from there
//! assert list(g) == []                 # spent: a second pass yields nothing
//! ```
//!
//! Here the body is an `async` block handed a [`Yielder`]; `co.yield_(x).await` is `yield x`:
//!
//! ```
//! use iter_gen::Generator;
//!
//! fn count_to(n: u32) -> Generator<u32> {
//!     Generator::boxed(move |co| async move {
//!         for i in 1..=n {
//!             co.yield_(i).await;
//!         }
//!     })
//! }
//!
//! let mut g = count_to(3);
//! assert_eq!(g.next(), Some(1));
//! assert_eq!(g.by_ref().collect::<Vec<_>>(), [2, 3]);
//! assert_eq!(g.by_ref().collect::<Vec<_>>(), []); // spent
//! assert_eq!(g.next(), None); // and it stays spent: no panic, ever
//! ```
//!
//! A walk by value moves the generator, so a second walk is not an empty list but a compile
//! error (use of a moved value):
//!
//! ```compile_fail,E0382
//! use iter_gen::Generator;
//!
//! let g = Generator::new(|co| async move {
//!     co.yield_(1).await;
//! });
//! for x in g {
//!     println!("{x}");
//! }
//! for x in g { // error[E0382]: use of moved value: `g`
//!     println!("{x}");
//! }
//! ```
//!
//! # `send`, and the return value
//!
//! `x = yield y` receives what `send` passes in: `None` after `next()`, `Some(v)` after
//! `send(v)`. What the body returns is kept, like Python's `StopIteration.value`.
//!
//! ```python
//! def running_total():
//!     total = 0
//!     while (x := (yield total)) is not None:
//!         total += x
//!     return f"total {total}"
//!
//! g = running_total()
//! next(g)                              # g.send(5) first would raise TypeError
//! assert g.send(5) == 5
//! assert g.send(2) == 7
//! try: next(g)
//! except StopIteration as stop: assert stop.value == "total 7"
//! ```
//!
//! ```
//! use iter_gen::{Generator, SendError, Yielder};
//!
//! let mut g = Generator::receiving(|co: Yielder<i32, i32>| async move {
//!     let mut total = 0;
//!     while let Some(x) = co.yield_(total).await {
//!         total += x;
//!     }
//!     format!("total {total}")
//! });
//! assert_eq!(g.send(5), Err(SendError::NotStarted(5))); // the value comes back
//! assert_eq!(g.next(), Some(0));
//! assert_eq!(g.send(5), Ok(Some(5)));
//! assert_eq!(g.send(2), Ok(Some(7)));
//! assert_eq!(g.next(), None);
//! assert_eq!(g.return_value().map(String::as_str), Some("total 7"));
//! ```
//!
//! # `close`, cleanup, and `yield from`
//!
//! [`Generator::close`] (or dropping the generator) drops the paused body, so its locals'
//! `Drop` runs: that is where a generator's `finally:` goes. [`Yielder::yield_from`] delegates
//! to an inner generator, forwarding `next` and `send`, and evaluates to the inner return
//! value.
//!
//! ```
//! use iter_gen::{GenState, Generator, Yielder};
//! use std::cell::Cell;
//! use std::rc::Rc;
//!
//! struct OnExit(Rc<Cell<u32>>);
//! impl Drop for OnExit {
//!     fn drop(&mut self) {
//!         self.0.set(self.0.get() + 1); // Python: finally: cleanups += 1
//!     }
//! }
//!
//! let cleanups = Rc::new(Cell::new(0));
//! let seen = cleanups.clone();
//! let inner = Generator::receiving(move |co: Yielder<&str, &str>| async move {
//!     let _guard = OnExit(seen);
//!     let name = co.yield_("who?").await.unwrap_or("nobody");
//!     co.yield_("hello").await;
//!     name.len()
//! });
//! let mut outer = Generator::receiving(|co: Yielder<&str, &str>| async move {
//!     let length = co.yield_from(inner).await; // result = yield from inner
//!     co.yield_("done").await;
//!     length
//! });
//! assert_eq!(outer.next(), Some("who?"));
//! assert_eq!(outer.send("ada"), Ok(Some("hello"))); // forwarded to the inner generator
//! assert_eq!(outer.next(), Some("done"));
//! assert_eq!(cleanups.get(), 1); // the inner body finished: its cleanup ran
//! outer.close();
//! assert_eq!(outer.state(), GenState::Closed);
//! assert_eq!(cleanups.get(), 1); // exactly once
//! ```
//!
//! # `throw`
//!
//! [`Generator::throw`] raises an error at the paused `yield`. A body that wants to catch it
//! pauses with [`Yielder::yield_catching`], which evaluates to `Err(error)`; at a plain
//! `yield_` nothing catches it, so the body is dropped and the error comes back, as in Python.
//!
//! ```python
//! def worker():
//!     while True:
//!         try: yield "ready"
//!         except ValueError as e: yield f"recovered from {e}"
//!
//! g = worker(); next(g)
//! assert g.throw(ValueError("bad row")) == "recovered from bad row"
//! ```
//!
//! ```
//! use iter_gen::{Generator, Yielder};
//!
//! let mut g = Generator::new(|co: Yielder<String>| async move {
//!     loop {
//!         if let Err(e) = co.yield_catching("ready".into()).await {
//!             co.yield_(format!("recovered from {e}")).await;
//!         }
//!     }
//! });
//! g.next();
//! assert_eq!(g.throw("bad row").unwrap().as_deref(), Some("recovered from bad row"));
//! ```
//!
//! # Two flavours
//!
//! [`local`] (the default, re-exported here) keeps the generator on one thread and is the
//! fastest. [`threadsafe`] makes generators that are `Send`, at an order of magnitude more per
//! step, because the backend hands each value over through a mutex.
//!
//! # What it costs
//!
//! The `gen_sum` bench sums ten million `u64`s through a hand-written iterator, raw genawaiter
//! (both flavours), this crate's generators and a boxed body; its figures, beside Python's
//! generator, are in `docs/ladder.md`. This crate adds a state check per step to raw genawaiter
//! of the same flavour (a handful of instructions, within noise by the clock); a
//! [`Generator::boxed`] body adds a virtual call per step on top.
//!
//! # When to write the iterator by hand instead
//!
//! A generator is the easy way to write a walk whose state is *control flow*: nested loops,
//! a parser part-way through a record, a recursive walk (with `yield_from`), a body that takes
//! values through `send`. A hand-written [`Iterator`] is the better choice when:
//!
//! - the state fits in a few fields ([`iterators::Fibonacci`] is two numbers): it is then as
//!   short to write, and the compiler sees through it, which makes a hot loop several times
//!   faster than any generator;
//! - callers need more than `next()`: [`ExactSizeIterator`], [`DoubleEndedIterator`],
//!   [`Clone`] to restart a walk, or a `size_hint` that adapters can trust;
//! - the walk must be `Send` and fast at once.
//!
//! Neither fits when the values come from an async source (a socket, a timer): a generator
//! here is driven by `next()` alone, so its body may await only its [`Yielder`]; that is a
//! job for an async stream.
//!
//! # The backend
//!
//! Generators run on [genawaiter](https://docs.rs/genawaiter) 0.99, kept behind this crate: no
//! genawaiter type or trait appears in the API. A body is a plain `async` block over this
//! crate's [`Yielder`], so the engine that drives it can be replaced (by a poll loop of our
//! own, say) without changing users' code. Rust's own `gen` blocks, once stable, spell `yield`
//! differently; moving to them would keep [`Generator`]'s API (`next`, `send`, `close`, the
//! return value) and change only how a body is written.

#![deny(missing_docs)]

mod error;
mod generator;
pub mod iterators;
pub mod local;
pub mod threadsafe;

pub use error::SendError;
pub use generator::{GenState, Thrown};
pub use local::{BoxedBody, Generator, Yielder};
