//! The lock-free path of [`ThreadPool::map`](crate::ThreadPool::map) and its kin, for an
//! input whose items can be reached by index: a `Vec`'s items (moved out of its buffer) or an
//! integer range (`a..b`, `a..=b`, computed).
//!
//! Participants (the workers, and the calling thread of `map`) claim contiguous runs of
//! indices with one compare-and-swap on a shared counter, then take each item of the run
//! by its index, call `f`, and write the value straight into the same slot of the output: no
//! lock, no buffer, no per-item message. Runs shrink as the input runs out (a share of what
//! is left, capped), or are exactly `chunksize` items when one was given. The participant
//! that writes the last value settles the result; after a failure, the last one to leave a
//! run settles it as an error (one atomic word holds both the stop flag and how many are
//! inside a run, so no run can still be writing then).

use std::any::Any;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, needs_drop};
use std::ops::{Range, RangeInclusive};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::panic_message;
use crate::output::{MapWork, Output, Progress};
use crate::results::AsyncResult;

/// The largest run taken when no `chunksize` was given: with no buffer to fill, only the
/// balance at the end bounds it (runs shrink well before that).
const MAX_RUN: usize = 8192;

/// In [`Indexed::state`]: a call failed, take no further run (the other bits count the
/// participants inside a run).
const STOP: usize = 1 << (usize::BITS - 1);

/// An input whose items are reached by index.
pub(crate) trait Source: Send + Sync + 'static {
    /// An input item.
    type Item: Send + 'static;

    /// Moves item `i` out.
    ///
    /// # Safety
    /// `i` is below the source's length, and each index is taken or discarded once at most.
    unsafe fn take(&self, i: usize) -> Self::Item;

    /// Drops the items of `range` unmapped.
    ///
    /// # Safety
    /// As for [`take`](Source::take), for every index of `range`.
    unsafe fn discard(&self, range: Range<usize>);
}

/// A `Vec`'s items, moved out one by one; the buffer is freed when this goes.
struct VecItems<T> {
    base: *mut T,
    cap: usize,
}

// SAFETY: each item is moved out (or dropped) once, by the one participant that claimed its
// index, so sharing the buffer hands each `T` to one thread: `T: Send` suffices.
unsafe impl<T: Send> Send for VecItems<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for VecItems<T> {}

impl<T: Send + 'static> Source for VecItems<T> {
    type Item = T;

    unsafe fn take(&self, i: usize) -> T {
        // SAFETY: `i` is below the length, and the item was not moved out before (caller).
        unsafe { self.base.add(i).read() }
    }

    unsafe fn discard(&self, range: Range<usize>) {
        if needs_drop::<T>() {
            // SAFETY: these items are in the buffer and were neither taken nor dropped.
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                    self.base.add(range.start),
                    range.len(),
                ));
            }
        }
    }
}

impl<T> Drop for VecItems<T> {
    fn drop(&mut self) {
        // Every item was taken or discarded by now (`Indexed`'s drop discards the rest).
        // SAFETY: the buffer came from a `Vec<T>` of capacity `cap`; length 0 drops nothing.
        drop(unsafe { Vec::from_raw_parts(self.base, 0, self.cap) });
    }
}

/// An integer that a range counts in.
trait Int: Copy + Send + Sync + 'static {
    /// `self + i`, the `i`th item of a range starting here (it fits: the range has that many).
    fn nth(self, i: usize) -> Self;
}

macro_rules! int {
    ($($x:ty),*) => {$(
        impl Int for $x {
            #[inline]
            fn nth(self, i: usize) -> Self {
                // Modular arithmetic gives the true sum, which is in range.
                #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
                self.wrapping_add(i as $x)
            }
        }
    )*};
}
int!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// The items `start, start + 1, ...` of a range of `X`, handed out as `T` (which is `X`: it
/// is made only then).
struct Ints<X, T> {
    start: X,
    _item: PhantomData<fn() -> T>,
}

impl<X: Int, T: Send + 'static> Source for Ints<X, T> {
    type Item = T;

    #[inline]
    unsafe fn take(&self, i: usize) -> T {
        match downcast::<X, T>(self.start.nth(i)) {
            Ok(item) => item,
            Err(_) => unreachable!("Ints<X, T> is made only where X is T"),
        }
    }

    unsafe fn discard(&self, _range: Range<usize>) {}
}

/// `a` as a `B`, if it is one.
#[inline]
fn downcast<A: 'static, B: 'static>(a: A) -> Result<B, A> {
    let mut slot = Some(a);
    let as_b = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take);
    match (as_b, slot) {
        (Some(b), _) => Ok(b),
        (None, Some(a)) => Err(a),
        (None, None) => unreachable!("the slot is emptied only when it is a B"),
    }
}

/// What to do with an input once it is a [`Source`] (a generic callback: one body per kind).
pub(crate) trait WithSource<T> {
    /// What it gives.
    type Out;
    /// Runs with `source`, of `len` items.
    fn with<S: Source<Item = T>>(self, source: S, len: usize) -> Self::Out;
}

/// Calls `then` with `iter` as a [`Source`] if it is a kind that can be indexed (a `Vec`'s
/// `into_iter()`, or a range of a primitive integer); gives both back otherwise. `len` is
/// `iter`'s exact length (its `size_hint`, both bounds equal).
pub(crate) fn with_source<I, T, W>(iter: I, len: usize, then: W) -> Result<W::Out, (I, W)>
where
    I: Iterator<Item = T> + 'static,
    T: Send + 'static,
    W: WithSource<T>,
{
    let iter = match downcast::<I, std::vec::IntoIter<T>>(iter) {
        Ok(items) => {
            // A `Vec` from a `vec::IntoIter` reuses its buffer (moving the items left if
            // some were taken already).
            let mut items = ManuallyDrop::new(items.collect::<Vec<T>>());
            let len = items.len();
            let source = VecItems {
                base: items.as_mut_ptr(),
                cap: items.capacity(),
            };
            return Ok(then.with(source, len));
        }
        Err(iter) => iter,
    };
    macro_rules! ranges {
        ($iter:ident, $($x:ty),*) => {$(
            let $iter = match downcast::<I, Range<$x>>($iter) {
                Ok(range) => return Ok(then.with(Ints::<$x, T>::new(range.start), len)),
                Err(iter) => iter,
            };
            // A non-empty inclusive range's `start()` is its next item.
            let $iter = match downcast::<I, RangeInclusive<$x>>($iter) {
                Ok(range) => return Ok(then.with(Ints::<$x, T>::new(*range.start()), len)),
                Err(iter) => iter,
            };
        )*};
    }
    ranges!(
        iter, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
    );
    Err((iter, then))
}

impl<X: Int, T: 'static> Ints<X, T> {
    fn new(start: X) -> Self {
        debug_assert_eq!(std::any::TypeId::of::<X>(), std::any::TypeId::of::<T>());
        Ints {
            start,
            _item: PhantomData,
        }
    }
}

/// One `map` of an indexed input in flight.
pub(crate) struct Indexed<S: Source, R: Send + 'static> {
    source: S,
    len: usize,
    chunksize: Option<usize>,
    threads: usize,
    /// The first index not claimed yet (never past `len`).
    next: AtomicUsize,
    /// Values written so far: the participant that makes it `len` settles.
    completed: AtomicUsize,
    /// [`STOP`] once a call failed, plus how many participants are inside a run.
    state: AtomicUsize,
    out: Output<R>,
}

impl<S: Source, R: Send + 'static> Indexed<S, R> {
    /// A map of the `len` items of `source` (at least one) as task `task`, to be run by
    /// `participants` participants, and its result.
    pub(crate) fn new(
        source: S,
        len: usize,
        chunksize: Option<usize>,
        threads: usize,
        participants: usize,
        task: u64,
    ) -> (Arc<Self>, AsyncResult<Vec<R>>) {
        let (out, result) = Output::new(len, participants, task);
        let indexed = Arc::new(Indexed {
            source,
            len,
            chunksize,
            threads: threads.max(1),
            next: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            state: AtomicUsize::new(0),
            out,
        });
        (indexed, result)
    }

    /// Claims the next run: (start, count), or `None` once every index is claimed.
    fn claim(&self) -> Option<(usize, usize)> {
        // The counter hands out disjoint runs; it publishes nothing, so `Relaxed` suffices.
        let mut start = self.next.load(Ordering::Relaxed);
        loop {
            let remaining = self.len - start;
            if remaining == 0 {
                return None;
            }
            let count = match self.chunksize {
                Some(chunksize) => chunksize,
                None => (remaining / (8 * self.threads)).clamp(1, MAX_RUN),
            }
            .min(remaining);
            match self.next.compare_exchange_weak(
                start,
                start + count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((start, count)),
                Err(now) => start = now,
            }
        }
    }

    /// Maps items `start..start + count` into their slots; on a panic, drops what the run
    /// made and the items it did not reach, and gives the failing index and message.
    fn map_run(
        &self,
        start: usize,
        count: usize,
        f: &mut impl FnMut(S::Item) -> R,
    ) -> Result<(), (usize, String)> {
        // SAFETY: a claimed run ends at `len` at the latest.
        let slots = unsafe { self.out.slot(start) };
        let mut taken = 0;
        let mapped = catch_unwind(AssertUnwindSafe(|| {
            while taken < count {
                // SAFETY: `start + taken < start + count <= len`, and this participant alone
                // claimed the run, so the item is taken once.
                let item = unsafe { self.source.take(start + taken) };
                taken += 1;
                let value = f(item);
                // SAFETY: the item's slot, in the claimed run.
                unsafe { slots.add(taken - 1).write(value) };
            }
        }));
        let Err(payload) = mapped else {
            return Ok(());
        };
        // The call on item `taken - 1` panicked (it had the item): the slots before it hold
        // values, the items after it were not taken. A panicking drop leaks the rest.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: these slots were just written and nobody else reads or drops them.
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(slots, taken - 1));
            }
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: claimed by this participant and not taken.
            unsafe { self.source.discard(start + taken..start + count) };
        }));
        Err((start + taken - 1, panic_message(&*payload)))
    }

    /// A participant leaves a run (or did not enter one): after a failure, the last one out
    /// settles the result.
    fn step_out(&self) {
        if self.state.fetch_sub(1, Ordering::AcqRel) == STOP + 1 {
            self.out.settle(|| {
                // Nobody is inside a run and nobody can enter one, so the items never claimed
                // go now (`map` returns with every input item dropped).
                let rest = self.next.swap(self.len, Ordering::Relaxed);
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    // SAFETY: the indices from `rest` on were never claimed, and no claim
                    // can come after `STOP`.
                    unsafe { self.source.discard(rest..self.len) };
                }));
                Progress {
                    taken: 0,
                    done: true,
                    tail: Vec::new(),
                }
            });
        }
    }
}

impl<S: Source, R: Send + 'static> MapWork for Indexed<S, R> {
    type Item = S::Item;
    type Value = R;

    fn begin(&self) -> bool {
        self.out.begin()
    }

    fn work(&self, mut f: impl FnMut(S::Item) -> R) {
        loop {
            // Entering and the stop check are one step: after a failure nobody enters, and
            // the count reaches zero only when every run is over.
            if self.state.fetch_add(1, Ordering::AcqRel) & STOP != 0 {
                return self.step_out();
            }
            let Some((start, count)) = self.claim() else {
                return self.step_out();
            };
            match self.map_run(start, count, &mut f) {
                Ok(()) => {
                    self.out.run_written(start, count);
                    // The release sequence on `completed` makes every run's writes visible
                    // to the one that completes the last.
                    if self.completed.fetch_add(count, Ordering::AcqRel) + count == self.len {
                        self.out.settle(|| Progress {
                            taken: self.len,
                            done: true,
                            tail: Vec::new(),
                        });
                    }
                    self.step_out();
                }
                Err((index, message)) => {
                    self.out.fail(index, message);
                    self.state.fetch_or(STOP, Ordering::AcqRel);
                    return self.step_out();
                }
            }
        }
    }

    fn leave(&self) {
        if self.out.leave() {
            // Nobody ran (a cancel, a terminated pool): whoever ran settled already.
            self.out.settle(|| Progress {
                taken: 0,
                done: false,
                tail: Vec::new(),
            });
        }
    }
}

impl<S: Source, R: Send + 'static> Drop for Indexed<S, R> {
    fn drop(&mut self) {
        let next = *self.next.get_mut();
        // Every claimed run was mapped or dropped by its participant, and a failed map
        // dropped the rest when it settled; what is left was never claimed (nobody ran).
        // SAFETY: the indices from `next` on were never claimed, so never taken.
        unsafe { self.source.discard(next..self.len) };
    }
}
