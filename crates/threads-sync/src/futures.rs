//! `concurrent.futures`' [`wait`] and [`as_completed`] over [`AsyncResult`]s.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::PoolError;
use crate::results::AsyncResult;

/// Numbers the `wait`/`as_completed` calls, so each removes only its own registrations.
static NEXT_WAITER: AtomicU64 = AtomicU64::new(1);

/// When [`wait`] returns (Python: `concurrent.futures.FIRST_COMPLETED` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any result is done (or cancelled).
    FirstCompleted,
    /// As soon as any task ends in an error (a panic); if none does, when all are done.
    FirstException,
    /// When every result is done.
    AllCompleted,
}

/// What [`wait`] found: indices into the slice it was given (Python: `DoneAndNotDoneFutures`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DoneAndNotDone {
    /// Results that are done, in input order.
    pub done: Vec<usize>,
    /// Results still pending or running, in input order.
    pub not_done: Vec<usize>,
}

/// Waits until `return_when` holds for `results`, or `timeout` passes (`None`: no limit),
/// and says which are done (Python: `concurrent.futures.wait`). A timeout is not an error:
/// `not_done` is then non-empty. An empty slice returns at once.
///
/// ```
/// use threads_sync::{ReturnWhen, ThreadPool, wait};
/// let pool = ThreadPool::new(2)?;
/// let (release, hold) = crossbeam_channel::bounded::<()>(0);
/// let results = vec![
///     pool.apply_async(|| 1, ())?,
///     pool.apply_async(move || hold.recv().map(|()| 2).unwrap_or(0), ())?,
/// ];
/// let first = wait(&results, ReturnWhen::FirstCompleted, None);
/// assert_eq!((first.done, first.not_done), (vec![0], vec![1]));
/// release.send(()).unwrap();
/// let all = wait(&results, ReturnWhen::AllCompleted, None);
/// assert_eq!(all.done, [0, 1]);
/// # Ok::<(), threads_sync::PoolError>(())
/// ```
pub fn wait<R>(
    results: &[AsyncResult<R>],
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> DoneAndNotDone {
    let deadline = timeout.map(crate::deadline_after);
    let id = NEXT_WAITER.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut done = vec![false; results.len()];
    let mut count = 0;
    let mut raised = false;
    for (index, result) in results.iter().enumerate() {
        if result.cell.register(id, &tx, index) {
            done[index] = true;
            count += 1;
            raised |= result.cell.raised();
        }
    }
    let enough = |count: usize, raised: bool| match return_when {
        ReturnWhen::FirstCompleted => count > 0 || results.is_empty(),
        ReturnWhen::FirstException => raised || count == results.len(),
        ReturnWhen::AllCompleted => count == results.len(),
    };
    while !enough(count, raised) {
        let index = match deadline {
            None => rx.recv().ok(),
            Some(deadline) => rx.recv_deadline(deadline).ok(),
        };
        // `tx` lives here, so only the deadline ends the wait without an index.
        let Some(index) = index else { break };
        if !done[index] {
            done[index] = true;
            count += 1;
            raised |= results[index].cell.raised();
        }
    }
    let mut outcome = DoneAndNotDone::default();
    for (index, is_done) in done.into_iter().enumerate() {
        if is_done {
            outcome.done.push(index);
        } else {
            results[index].cell.unregister(id);
            outcome.not_done.push(index);
        }
    }
    outcome
}

/// The results in the order they finish (Python: `concurrent.futures.as_completed`): each
/// item is a done [`AsyncResult`] to `get` without waiting. If `timeout` (`None`: no limit)
/// passes first, the next item is [`PoolError::Timeout`] and the iteration ends
/// ([`AsCompleted::into_remaining`] hands back the results still running). An empty list
/// yields nothing.
///
/// ```
/// use threads_sync::{ThreadPool, as_completed};
/// let pool = ThreadPool::new(2)?;
/// let results = (1..=3u64).map(|x| pool.apply_async(move || x * 10, ())).collect::<Result<Vec<_>, _>>()?;
/// let mut values: Vec<u64> = as_completed(results, None)
///     .map(|done| done?.get())
///     .collect::<Result<_, _>>()?;
/// values.sort();
/// assert_eq!(values, [10, 20, 30]);
/// assert_eq!(as_completed(Vec::<threads_sync::AsyncResult<u8>>::new(), None).count(), 0);
/// # Ok::<(), threads_sync::PoolError>(())
/// ```
pub fn as_completed<R>(results: Vec<AsyncResult<R>>, timeout: Option<Duration>) -> AsCompleted<R> {
    let id = NEXT_WAITER.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut ready = VecDeque::new();
    for (index, result) in results.iter().enumerate() {
        if result.cell.register(id, &tx, index) {
            ready.push_back(index);
        }
    }
    AsCompleted {
        left: results.len(),
        results: results.into_iter().map(Some).collect(),
        ready,
        rx,
        _tx: tx,
        id,
        timeout,
        deadline: timeout.map(crate::deadline_after),
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<R> {
    results: Vec<Option<AsyncResult<R>>>,
    ready: VecDeque<usize>,
    rx: Receiver<usize>,
    /// Keeps the channel connected, so only the deadline ends a wait without an index.
    _tx: Sender<usize>,
    id: u64,
    left: usize,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl<R> Iterator for AsCompleted<R> {
    type Item = Result<AsyncResult<R>, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 {
            let index = match self.ready.pop_front() {
                Some(index) => index,
                None => {
                    let got = match self.deadline {
                        None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(deadline) => self.rx.recv_deadline(deadline),
                    };
                    match got {
                        Ok(index) => index,
                        Err(_) => {
                            self.left = 0;
                            return Some(Err(PoolError::Timeout {
                                timeout: self.timeout.unwrap_or_default(),
                            }));
                        }
                    }
                }
            };
            if let Some(result) = self.results[index].take() {
                self.left -= 1;
                return Some(Ok(result));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left + usize::from(self.deadline.is_some())))
    }
}

impl<R> AsCompleted<R> {
    /// The results not yielded yet (after a timeout, the ones still running), in input
    /// order, to wait on again or drop.
    pub fn into_remaining(mut self) -> Vec<AsyncResult<R>> {
        let remaining: Vec<_> = self.results.iter_mut().filter_map(Option::take).collect();
        for result in &remaining {
            result.cell.unregister(self.id);
        }
        remaining
    }
}

impl<R> Drop for AsCompleted<R> {
    fn drop(&mut self) {
        for result in self.results.iter().flatten() {
            result.cell.unregister(self.id);
        }
    }
}

impl<R> fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}
