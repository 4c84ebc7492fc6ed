//! Iterables and iterators written by hand: a collection and its cursor, Fibonacci, a countdown.
//!
//! Python splits the walk in two: an *iterable* (`__iter__`) hands out a fresh *iterator*
//! (`__next__`), and the iterator is the thing that remembers how far the walk has got. Rust
//! has the same pair: [`IntoIterator`] and [`Iterator`].
//!
//! ```python
//! class Shelf:                        # an iterable
//!     def __init__(self, items): self.items = list(items)
//!     def __iter__(self): return ShelfIterator(self)
//!
//! class ShelfIterator:                # its iterator: holds the position
//!     def __init__(self, shelf): self.shelf, self.pos = shelf, 0
//!     def __iter__(self): return self
//!     def __next__(self):
//!         if self.pos == len(self.shelf.items): raise StopIteration
//!         self.pos += 1
//!         return self.shelf.items[self.pos - 1]
//! ```

use std::iter::FusedIterator;

/// A small collection that is iterable, like a Python class with `__iter__`.
///
/// Iterating `&shelf` hands out a fresh [`ShelfIter`] each time (many walks, nothing
/// consumed); iterating `shelf` by value hands out a [`ShelfIntoIter`] that owns the items
/// (one walk, the shelf is gone).
///
/// ```
/// use iter_gen::iterators::Shelf;
///
/// let shelf = Shelf::from(vec!["jam", "tea", "rice"]);
/// let mut walk = shelf.iter(); // Python: it = iter(shelf)
/// assert_eq!(walk.next(), Some(&"jam")); // next(it)
/// assert_eq!(walk.position(), 1); // the iterator remembers its place
/// assert_eq!(walk.next(), Some(&"tea"));
/// assert_eq!(walk.next(), Some(&"rice"));
/// assert_eq!(walk.next(), None); // StopIteration
///
/// // The shelf itself is untouched: a new walk starts from the beginning.
/// assert_eq!((&shelf).into_iter().count(), 3);
/// let owned: Vec<&str> = shelf.into_iter().collect();
/// assert_eq!(owned, ["jam", "tea", "rice"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shelf<T> {
    items: Vec<T>,
}

impl<T> Shelf<T> {
    /// An empty shelf.
    pub fn new() -> Self {
        Self { items: Vec::new() }
    }

    /// Puts `item` at the end.
    pub fn push(&mut self, item: T) {
        self.items.push(item);
    }

    /// How many items are on the shelf (Python's `len`).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the shelf holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A fresh iterator over the items, starting at the first (Python's `iter(shelf)`).
    pub fn iter(&self) -> ShelfIter<'_, T> {
        ShelfIter {
            shelf: self,
            position: 0,
        }
    }
}

impl<T> From<Vec<T>> for Shelf<T> {
    fn from(items: Vec<T>) -> Self {
        Self { items }
    }
}

impl<T> FromIterator<T> for Shelf<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self {
            items: iter.into_iter().collect(),
        }
    }
}

impl<'a, T> IntoIterator for &'a Shelf<T> {
    type Item = &'a T;
    type IntoIter = ShelfIter<'a, T>;

    fn into_iter(self) -> ShelfIter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Shelf<T> {
    type Item = T;
    type IntoIter = ShelfIntoIter<T>;

    fn into_iter(self) -> ShelfIntoIter<T> {
        ShelfIntoIter {
            items: self.items.into_iter(),
        }
    }
}

/// The iterator over a borrowed [`Shelf`]: a separate object that holds the position, like
/// Python's `__next__` class.
#[derive(Debug)]
pub struct ShelfIter<'a, T> {
    shelf: &'a Shelf<T>,
    position: usize,
}

// By hand: a copy of the cursor needs no copy of the items, so no `T: Clone`.
impl<T> Clone for ShelfIter<'_, T> {
    fn clone(&self) -> Self {
        Self {
            shelf: self.shelf,
            position: self.position,
        }
    }
}

impl<T> ShelfIter<'_, T> {
    /// How many items this walk has handed out so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a, T> Iterator for ShelfIter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let item = self.shelf.items.get(self.position)?;
        self.position += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.shelf.items.len() - self.position;
        (left, Some(left))
    }
}

impl<T> ExactSizeIterator for ShelfIter<'_, T> {}
impl<T> FusedIterator for ShelfIter<'_, T> {}

/// The iterator that owns a [`Shelf`]'s items and hands them out one by one.
#[derive(Debug, Clone)]
pub struct ShelfIntoIter<T> {
    items: std::vec::IntoIter<T>,
}

impl<T> Iterator for ShelfIntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.items.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl<T> ExactSizeIterator for ShelfIntoIter<T> {}
impl<T> FusedIterator for ShelfIntoIter<T> {}

/// The Fibonacci numbers 0, 1, 1, 2, 3, 5, … as far as `u64` holds them (94 numbers).
///
/// Python's version never ends because its integers grow; this one ends instead of
/// overflowing.
///
/// ```
/// use iter_gen::iterators::Fibonacci;
///
/// let first: Vec<u64> = Fibonacci::new().take(8).collect();
/// assert_eq!(first, [0, 1, 1, 2, 3, 5, 8, 13]);
/// assert_eq!(Fibonacci::new().count(), 94);
/// assert_eq!(Fibonacci::new().last(), Some(12_200_160_415_121_876_738));
/// ```
#[derive(Debug, Clone)]
pub struct Fibonacci {
    /// The next number to hand out; `None` once the one after would not fit in a `u64`.
    current: Option<u64>,
    following: Option<u64>,
}

impl Fibonacci {
    /// Starts at 0.
    pub fn new() -> Self {
        Self {
            current: Some(0),
            following: Some(1),
        }
    }
}

impl Default for Fibonacci {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for Fibonacci {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let current = self.current?;
        let following = self.following;
        self.current = following;
        self.following = following.and_then(|f| f.checked_add(current));
        Some(current)
    }
}

impl FusedIterator for Fibonacci {}

/// An iterator that is its own iterable, like a Python class whose `__iter__` returns `self`.
///
/// In Rust every [`Iterator`] is [`IntoIterator`] for itself, so a `for` loop over a
/// half-walked countdown carries on from where it stopped.
///
/// ```
/// use iter_gen::iterators::Countdown;
///
/// let mut countdown = Countdown::from(5);
/// assert_eq!(countdown.next(), Some(5));
/// assert_eq!(countdown.next(), Some(4));
/// let rest: Vec<u32> = countdown.by_ref().collect(); // `iter(countdown) is countdown`
/// assert_eq!(rest, [3, 2, 1]);
/// assert_eq!(countdown.next(), None); // spent
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Countdown {
    remaining: u32,
}

impl Countdown {
    /// How many numbers are left to count.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

impl From<u32> for Countdown {
    /// Counts down from `start` to 1.
    fn from(start: u32) -> Self {
        Self { remaining: start }
    }
}

impl Iterator for Countdown {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let now = self.remaining;
        self.remaining = now.checked_sub(1)?;
        Some(now)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.remaining as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Countdown {}
impl FusedIterator for Countdown {}
