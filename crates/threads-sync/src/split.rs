//! The data-parallel path of [`ThreadPool::map`](crate::ThreadPool::map) and its kin: an
//! input of known length is claimed in contiguous runs by the workers, and each run's values
//! are written in place into the one output vector by a plain loop (no per-item box,
//! allocation or channel message).
//!
//! The input iterator sits behind one lock. A participant (a worker, or the calling thread
//! of `map`) takes the lock, moves the next run of items into a buffer of its own and notes
//! where the run starts, lets go, then calls `f` on each item and writes the value to that
//! index. Runs are handed out in input order, so the written slots always tile
//! `0..taken`: the output is whole exactly when no call failed. Without a `chunksize`,
//! runs shrink as the input runs out (guided scheduling: a share of what is left, capped),
//! so a slow worker leaves at most one short run behind while the others finish.

use std::mem::needs_drop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{PoolError, panic_message};
use crate::results::{AsyncResult, TaskCell};

/// The largest run a participant takes when no `chunksize` was given: its buffer stays in the
/// first-level cache for small items, and a lock round costs nothing beside it.
const MAX_RUN: usize = 4096;

/// One `map` in flight: the input, the output buffer, and how it is going.
pub(crate) struct Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    source: parking_lot::Mutex<Source<I>>,
    /// The start of the output buffer (a `Vec<R>`'s, of capacity `cap`), slot `i` for item `i`.
    base: *mut R,
    cap: usize,
    /// How many items the input promised.
    len: usize,
    chunksize: Option<usize>,
    threads: usize,
    /// Set at the first failure: participants take no further run.
    stop: AtomicBool,
    /// The first failure in input order: (item index, panic message).
    failure: parking_lot::Mutex<Option<(usize, String)>>,
    /// The runs written in full, kept only when `R` needs dropping (to drop them on failure).
    written: parking_lot::Mutex<Vec<(usize, usize)>>,
    /// Values of items beyond `len` (an input whose length hint was short), in order.
    tail: parking_lot::Mutex<Vec<R>>,
    /// Whether the output buffer is still ours to free (the finisher hands it out).
    owns_buffer: AtomicBool,
    /// Participants that have not left yet: when the last one leaves, the result settles
    /// even if nobody ran (a terminated pool, a cancel).
    participants: AtomicUsize,
    /// Whether the result was settled (it is, once).
    finished: AtomicBool,
    cell: Arc<TaskCell<Vec<R>>>,
    task: u64,
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

// SAFETY: the output slots behind `base` are written only by the participant that was handed
// their run under `source`'s lock (runs never overlap), and read only by the finisher once no
// run is in flight and none can start (each run ends by taking `source`'s lock, which the
// finisher takes too, so every write happens before the read). The input is used only under its lock, so `I: Send` suffices; values cross
// threads, so `R: Send`.
unsafe impl<I, R> Send for Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
}
// SAFETY: as above.
unsafe impl<I, R> Sync for Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
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
    /// participants (each made with [`Split::participant`]), and its result.
    pub(crate) fn new(
        iter: I,
        len: usize,
        chunksize: Option<usize>,
        threads: usize,
        participants: usize,
        task: u64,
    ) -> (Arc<Self>, AsyncResult<Vec<R>>) {
        let mut out = std::mem::ManuallyDrop::new(Vec::<R>::with_capacity(len));
        let cell = TaskCell::new();
        let split = Arc::new(Split {
            source: parking_lot::Mutex::new(Source {
                iter,
                next: 0,
                done: false,
                running: 0,
            }),
            base: out.as_mut_ptr(),
            cap: out.capacity(),
            len,
            chunksize,
            threads: threads.max(1),
            stop: AtomicBool::new(false),
            failure: parking_lot::Mutex::new(None),
            written: parking_lot::Mutex::new(Vec::new()),
            tail: parking_lot::Mutex::new(Vec::new()),
            owns_buffer: AtomicBool::new(true),
            participants: AtomicUsize::new(participants),
            finished: AtomicBool::new(false),
            cell: Arc::clone(&cell),
            task,
        });
        (split, AsyncResult { task, cell })
    }

    /// One participant's share of the work: run it (or drop it unrun) exactly once.
    pub(crate) fn participant(self: &Arc<Self>) -> Participant<I, R> {
        Participant {
            split: Some(Arc::clone(self)),
        }
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
        if guard.done || self.stop.load(Ordering::Acquire) {
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
            self.fail(index, panic_message(&*payload));
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

    /// Records a failure at item `index`; the earliest in input order is the one reported.
    fn fail(&self, index: usize, message: String) {
        let mut failure = self.failure.lock();
        if failure.as_ref().is_none_or(|(first, _)| index < *first) {
            *failure = Some((index, message));
        }
        drop(failure);
        // After the failure is recorded: whoever sees `stop` finds it.
        self.stop.store(true, Ordering::Release);
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
            source.running == 0 && (source.done || self.stop.load(Ordering::Acquire))
        };
        if idle {
            self.settle();
        }
    }

    /// Settles the result, once.
    fn settle(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.finish();
        }
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
                        Err(payload) => {
                            self.fail(self.len + values.len(), panic_message(&*payload))
                        }
                    }
                    self.run_over();
                    return self.settle_if_idle();
                }
                Claim::Run(start) => {
                    let count = buf.len();
                    // SAFETY: `start + count <= len <= cap` (a run never passes `len`), so the
                    // run's slots are inside the buffer, and this participant alone was
                    // handed them.
                    let run = unsafe { self.base.add(start) };
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
                        Ok(()) => {
                            if needs_drop::<R>() {
                                self.written.lock().push((start, count));
                            }
                        }
                        Err(payload) => {
                            // SAFETY: the first `written` slots of the run were just written
                            // and nobody else will read or drop them.
                            unsafe {
                                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                                    run, written,
                                ));
                            }
                            self.fail(start + written, panic_message(&*payload));
                            self.run_over();
                            return self.settle_if_idle();
                        }
                    }
                    self.run_over();
                }
            }
        }
    }

    /// A participant leaves; the last one settles the result if nobody did (nobody ran).
    fn leave(&self) {
        if self.participants.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settle();
        }
    }

    fn finish(&self) {
        let (taken, done) = {
            let source = self.source.lock();
            debug_assert_eq!(source.running, 0, "settled with a run in flight");
            (source.next, source.done)
        };
        let failure = self.failure.lock().take();
        let outcome = match failure {
            Some((_, message)) => {
                self.drop_written();
                Err(PoolError::TaskPanicked {
                    task: self.task,
                    message,
                })
            }
            // Nobody ran (the pool was terminated, or the result was cancelled).
            None if !done => {
                self.drop_written();
                Err(PoolError::Cancelled { task: self.task })
            }
            None => {
                self.owns_buffer.store(false, Ordering::Relaxed);
                // SAFETY: every run was mapped in full (no failure) and the runs tile
                // `0..taken`, so the first `taken` slots hold values; the buffer came from a
                // `Vec<R>` of capacity `cap`.
                let mut out = unsafe { Vec::from_raw_parts(self.base, taken, self.cap) };
                out.append(&mut self.tail.lock());
                Ok(out)
            }
        };
        // A cancelled result stays cancelled: `begin_part` refuses it.
        if self.cell.begin_part() {
            self.cell.finish(outcome);
        }
    }

    /// Drops the values of the runs written in full (after a failure or a cancel).
    fn drop_written(&self) {
        for (start, count) in self.written.lock().drain(..) {
            // SAFETY: this run was written in full and is not handed out (the buffer is
            // not given to anyone on this path).
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                    self.base.add(start),
                    count,
                ));
            }
        }
    }
}

impl<I, R> Drop for Split<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    fn drop(&mut self) {
        if *self.owns_buffer.get_mut() {
            // Its values were dropped by the finisher (`drop_written`); only the memory is left.
            // SAFETY: the buffer came from a `Vec<R>` of capacity `cap`, and length 0 drops no
            // value.
            drop(unsafe { Vec::from_raw_parts(self.base, 0, self.cap) });
        }
    }
}

/// One participant of a [`Split`]: runs its share once, and leaves even if dropped unrun (a
/// job that a terminated pool drops), so the result always settles.
pub(crate) struct Participant<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    split: Option<Arc<Split<I, R>>>,
}

impl<I, R> Participant<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    /// Maps runs with `f` until the input is used up (unless the result was cancelled).
    pub(crate) fn run(mut self, f: impl FnMut(I::Item) -> R) {
        let Some(split) = self.split.take() else {
            return;
        };
        if split.cell.begin_part() {
            split.work(f);
        }
        split.leave();
    }
}

impl<I, R> Drop for Participant<I, R>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(split) = self.split.take() {
            split.leave();
        }
    }
}
