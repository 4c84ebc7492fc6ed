//! The data-parallel path of [`ThreadPool::map`](crate::ThreadPool::map) and its kin for an
//! input iterator that cannot be indexed (those that can, a `Vec` or an integer range, take
//! the lock-free path in `indexed`): it is claimed in contiguous runs by the workers, and
//! each run's values are written in place into the one output vector by a plain loop (no
//! per-item box, allocation or channel message).
//!
//! The input iterator sits behind one lock. A participant (a worker, or the calling thread
//! of `map`) takes the lock, moves the next run of items into a buffer of its own and notes
//! where the run starts, lets go, then calls `f` on each item and writes the value to that
//! index. Runs are handed out in input order, so the written slots always tile
//! `0..taken`: the output is whole exactly when no call failed. Without a `chunksize`,
//! runs shrink as the input runs out (guided scheduling: a share of what is left, capped),
//! so a slow worker leaves at most one short run behind while the others finish.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::error::panic_message;
use crate::output::{MapWork, Output, Progress};
use crate::results::AsyncResult;

/// The largest run a participant takes when no `chunksize` was given: its buffer stays in the
/// first-level cache for small items, and a lock round costs nothing beside it.
const MAX_RUN: usize = 4096;

/// One `map` in flight: the input, the output, and how it is going.
pub(crate) struct Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    source: parking_lot::Mutex<Source<I>>,
    /// How many items the input promised.
    len: usize,
    chunksize: Option<usize>,
    threads: usize,
    /// Values of items beyond `len` (an input whose length hint was short), in order.
    tail: parking_lot::Mutex<Vec<R>>,
    out: Output<R>,
}

struct Source<I: Iterator> {
    iter: I,
    /// Index of the next item to hand out (= items taken so far).
    next: usize,
    /// The iterator returned `None`, panicked, or was drained past `len`.
    done: bool,
    /// Runs handed out and not finished yet.
    running: usize,
}

/// What a participant got from the input.
enum Claim {
    /// A run starting at this index, now in the participant's buffer.
    Run(usize),
    /// Items past the promised length, now in the buffer: their values go to `tail`.
    Tail,
    /// Nothing left (or the map failed).
    Nothing,
}

impl<I, R> Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    /// A map of the `len` items of `iter` as task `task`, to be run by `participants`
    /// participants (each an [`output::Participant`](crate::output::Participant)), and its
    /// result.
    pub(crate) fn new(
        iter: I,
        len: usize,
        chunksize: Option<usize>,
        threads: usize,
        participants: usize,
        task: u64,
    ) -> (Arc<Self>, AsyncResult<Vec<R>>) {
        let (out, result) = Output::new(len, participants, task);
        let split = Arc::new(Split {
            source: parking_lot::Mutex::new(Source {
                iter,
                next: 0,
                done: false,
                running: 0,
            }),
            len,
            chunksize,
            threads: threads.max(1),
            tail: parking_lot::Mutex::new(Vec::new()),
            out,
        });
        (split, result)
    }

    /// The size of the next run when `remaining` items are left.
    fn run_size(&self, remaining: usize) -> usize {
        match self.chunksize {
            Some(chunksize) => chunksize,
            None => (remaining / (8 * self.threads)).clamp(1, MAX_RUN),
        }
    }

    /// Moves the next run of items into `buf`.
    fn claim(&self, buf: &mut Vec<I::Item>) -> Claim {
        let mut guard = self.source.lock();
        if guard.done || self.out.stopped() {
            return Claim::Nothing;
        }
        let start = guard.next;
        let remaining = self.len - start;
        let want = self.run_size(remaining).min(remaining);
        let source = &mut *guard;
        let pulled = catch_unwind(AssertUnwindSafe(|| {
            if want == 0 {
                // The promised items are all out: anything more means the length hint was
                // short, and those items are mapped too, after the others.
                buf.extend(source.iter.by_ref());
            } else {
                buf.reserve(want);
                buf.extend(source.iter.by_ref().take(want));
            }
        }));
        if let Err(payload) = pulled {
            source.done = true;
            let index = start + buf.len();
            buf.clear();
            // The failure is recorded before the source lock goes: a participant that sees
            // `done` with no run in flight settles at once, and must find it (recorded after,
            // it settled an `Ok` of the items before the panic).
            self.out.fail(index, panic_message(&*payload));
            drop(guard);
            return Claim::Nothing;
        }
        if want == 0 {
            source.done = true;
            if buf.is_empty() {
                return Claim::Nothing;
            }
            source.running += 1;
            return Claim::Tail;
        }
        if buf.len() < want {
            // The input ended early (a length hint that was long): what was taken still tiles
            // `0..next`.
            source.done = true;
        }
        source.next += buf.len();
        if buf.is_empty() {
            return Claim::Nothing;
        }
        source.running += 1;
        Claim::Run(start)
    }

    /// A run is over (mapped in full or failed).
    fn run_over(&self) {
        self.source.lock().running -= 1;
    }

    /// Settles the result if no more values can come: the input is used up (or a call
    /// failed) and no run is in flight. Participants still queued then find nothing to do,
    /// so a `map` called on a worker of its own pool does not wait for them.
    fn settle_if_idle(&self) {
        let idle = {
            let source = self.source.lock();
            source.running == 0 && (source.done || self.out.stopped())
        };
        if idle {
            self.settle();
        }
    }

    /// Settles the result, once.
    fn settle(&self) {
        self.out.settle(|| {
            let source = self.source.lock();
            debug_assert_eq!(source.running, 0, "settled with a run in flight");
            Progress {
                taken: source.next,
                done: source.done,
                tail: std::mem::take(&mut *self.tail.lock()),
            }
        });
    }

    /// Takes runs and maps them until the input is used up or a call failed.
    fn work(&self, mut f: impl FnMut(I::Item) -> R) {
        let mut buf: Vec<I::Item> = Vec::new();
        loop {
            match self.claim(&mut buf) {
                Claim::Nothing => return self.settle_if_idle(),
                Claim::Tail => {
                    let mut values = Vec::with_capacity(buf.len());
                    let mut items = buf.drain(..);
                    let mapped = catch_unwind(AssertUnwindSafe(|| {
                        for item in items.by_ref() {
                            values.push(f(item));
                        }
                    }));
                    drop(items);
                    match mapped {
                        Ok(()) => *self.tail.lock() = values,
                        Err(payload) => self
                            .out
                            .fail(self.len + values.len(), panic_message(&*payload)),
                    }
                    self.run_over();
                    return self.settle_if_idle();
                }
                Claim::Run(start) => {
                    let count = buf.len();
                    // SAFETY: `start + count <= len <= cap` (a run never passes `len`), so the
                    // run's slots are inside the buffer, and this participant alone was
                    // handed them.
                    let run = unsafe { self.out.slot(start) };
                    let mut written = 0;
                    let mapped = catch_unwind(AssertUnwindSafe(|| {
                        for item in buf.drain(..) {
                            let value = f(item);
                            // SAFETY: `written < count`: one slot per item of the run.
                            unsafe { run.add(written).write(value) };
                            written += 1;
                        }
                    }));
                    match mapped {
                        Ok(()) => self.out.run_written(start, count),
                        Err(payload) => {
                            // SAFETY: the first `written` slots of the run were just written
                            // and nobody else will read or drop them.
                            unsafe {
                                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                                    run, written,
                                ));
                            }
                            self.out.fail(start + written, panic_message(&*payload));
                            self.run_over();
                            return self.settle_if_idle();
                        }
                    }
                    self.run_over();
                }
            }
        }
    }
}

impl<I, R> MapWork for Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = I::Item;
    type Value = R;

    fn begin(&self) -> bool {
        self.out.begin()
    }

    fn work(&self, f: impl FnMut(I::Item) -> R) {
        Split::work(self, f);
    }

    fn leave(&self) {
        if self.out.leave() {
            self.settle();
        }
    }
}
