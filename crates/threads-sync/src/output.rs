//! The output side of a data-parallel `map` (shared by the locked path in `split` and the
//! indexed path in `indexed`): one preallocated vector whose slots the participants write in
//! place, the first failure, and the settling of the result once.

use std::mem::needs_drop;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::PoolError;
use crate::results::{AsyncResult, TaskCell};

/// The output of one `map` in flight.
pub(crate) struct Output<R> {
    /// The start of the output buffer (a `Vec<R>`'s, of capacity `cap`), slot `i` for item `i`.
    base: *mut R,
    cap: usize,
    /// Set at the first failure: participants take no further run.
    stop: AtomicBool,
    /// The first failure in input order: (item index, panic message).
    failure: parking_lot::Mutex<Option<(usize, String)>>,
    /// The runs written in full, kept only when `R` needs dropping (to drop them on failure).
    written: parking_lot::Mutex<Vec<(usize, usize)>>,
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

// SAFETY: the slots behind `base` are written only by the participant that was handed their
// run (runs never overlap), and read or dropped only by the finisher once every run is over
// (its owner makes sure of that before calling `settle`). Values cross threads: `R: Send`.
unsafe impl<R: Send> Send for Output<R> {}
// SAFETY: as above.
unsafe impl<R: Send> Sync for Output<R> {}

/// How far a `map` got, for [`Output::settle`].
pub(crate) struct Progress<R> {
    /// Slots `0..taken` hold values (when no call failed).
    pub(crate) taken: usize,
    /// The input was used up (false: nobody ran, the result was cancelled).
    pub(crate) done: bool,
    /// Values past the promised length, appended after the slots.
    pub(crate) tail: Vec<R>,
}

impl<R: Send> Output<R> {
    /// An output of `len` slots for task `task`, settled once `participants` have left at
    /// the latest, and its result.
    pub(crate) fn new(len: usize, participants: usize, task: u64) -> (Self, AsyncResult<Vec<R>>) {
        let mut out = std::mem::ManuallyDrop::new(Vec::<R>::with_capacity(len));
        let cell = TaskCell::new();
        let output = Output {
            base: out.as_mut_ptr(),
            cap: out.capacity(),
            stop: AtomicBool::new(false),
            failure: parking_lot::Mutex::new(None),
            written: parking_lot::Mutex::new(Vec::new()),
            owns_buffer: AtomicBool::new(true),
            participants: AtomicUsize::new(participants),
            finished: AtomicBool::new(false),
            cell: Arc::clone(&cell),
            task,
        };
        (output, AsyncResult { task, cell })
    }

    /// A participant begins: `false` if the result was cancelled (it must not run).
    pub(crate) fn begin(&self) -> bool {
        self.cell.begin_part()
    }

    /// Whether a call failed (participants take no further run).
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Slot `start`.
    ///
    /// # Safety
    /// `start` is at most the length the output was made for.
    pub(crate) unsafe fn slot(&self, start: usize) -> *mut R {
        // SAFETY: `start <= len <= cap`, inside (or one past) the buffer, per the caller.
        unsafe { self.base.add(start) }
    }

    /// Records a failure at item `index`; the earliest in input order is the one reported.
    pub(crate) fn fail(&self, index: usize, message: String) {
        let mut failure = self.failure.lock();
        if failure.as_ref().is_none_or(|(first, _)| index < *first) {
            *failure = Some((index, message));
        }
        drop(failure);
        // After the failure is recorded: whoever sees `stop` finds it.
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The run of `count` slots from `start` was written in full.
    pub(crate) fn run_written(&self, start: usize, count: usize) {
        if needs_drop::<R>() {
            self.written.lock().push((start, count));
        }
    }

    /// Settles the result, once; `progress` is asked only by the one that settles, when
    /// every run is over.
    pub(crate) fn settle(&self, progress: impl FnOnce() -> Progress<R>) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.finish(progress());
        }
    }

    /// A participant leaves: `true` for the last one (who settles if nobody did).
    pub(crate) fn leave(&self) -> bool {
        self.participants.fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn finish(&self, progress: Progress<R>) {
        let Progress {
            taken,
            done,
            mut tail,
        } = progress;
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
                out.append(&mut tail);
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

impl<R> Drop for Output<R> {
    fn drop(&mut self) {
        if *self.owns_buffer.get_mut() {
            // Its values were dropped by the finisher (`drop_written`); only the memory is left.
            // SAFETY: the buffer came from a `Vec<R>` of capacity `cap`, and length 0 drops no
            // value.
            drop(unsafe { Vec::from_raw_parts(self.base, 0, self.cap) });
        }
    }
}

/// One `map` in flight as its participants see it.
pub(crate) trait MapWork: Send + Sync + 'static {
    /// An input item.
    type Item;
    /// A mapped value.
    type Value;
    /// Whether the result was not cancelled (the participant may run).
    fn begin(&self) -> bool;
    /// Maps runs with `f` until the input is used up or a call failed.
    fn work(&self, f: impl FnMut(Self::Item) -> Self::Value);
    /// A participant leaves (the last one settles the result if nobody did).
    fn leave(&self);
}

/// One participant of a `map`: runs its share once, and leaves even if dropped unrun (a job
/// that a terminated pool drops), so the result always settles.
pub(crate) struct Participant<W: MapWork> {
    work: Option<Arc<W>>,
}

impl<W: MapWork> Participant<W> {
    pub(crate) fn new(work: &Arc<W>) -> Self {
        Participant {
            work: Some(Arc::clone(work)),
        }
    }

    /// Maps runs with `f` until the input is used up (unless the result was cancelled).
    pub(crate) fn run(mut self, f: impl FnMut(W::Item) -> W::Value) {
        let Some(work) = self.work.take() else {
            return;
        };
        if work.begin() {
            work.work(f);
        }
        work.leave();
    }
}

impl<W: MapWork> Drop for Participant<W> {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            work.leave();
        }
    }
}
