//! `concurrent.futures.wait` and `as_completed` over the pool's [`AsyncResult`]s.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::results::AsyncResult;
use crate::error::PoolError;

/// When [`wait`] returns: `concurrent.futures`' `FIRST_COMPLETED`, `FIRST_EXCEPTION` and
/// `ALL_COMPLETED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any result is ready.
    FirstCompleted,
    /// As soon as any result is ready with an error; when none fails, once all are ready.
    FirstException,
    /// Once every result is ready.
    AllCompleted,
}

/// What [`wait`] found: positions in the slice it was given, in ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waited {
    /// The results that are ready.
    pub done: Vec<usize>,
    /// The others (still running when the wait ended).
    pub not_done: Vec<usize>,
}

/// Tells `rx` the position of each result as it becomes ready (at once for those that are).
/// A result that never becomes ready keeps a small callback that sends to nobody.
fn watch<R>(results: &[AsyncResult<R>]) -> Receiver<usize> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, result) in results.iter().enumerate() {
        let tx = tx.clone();
        result.add_done_callback(move |_| {
            let _ = tx.send(i);
        });
    }
    rx
}

/// `concurrent.futures.wait(fs, timeout, return_when)`: waits until `return_when` holds or
/// `timeout` (`None`: no limit) runs out, and says which results are ready. Nothing is taken:
/// collect each value with its own `get`.
///
/// ```
/// use std::time::Duration;
/// use process_ipc::{Pool, ReturnWhen, wait};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let results: Vec<_> = [1, 20_000].iter().map(|&ms| pool.apply_async(nap, (ms,)).unwrap()).collect();
/// let first = wait(&results, ReturnWhen::FirstCompleted, Some(Duration::from_secs(10)));
/// assert_eq!((first.done, first.not_done), (vec![0], vec![1]));
/// pool.terminate(); // the nap of 20 s fails with Terminated
/// let all = wait(&results, ReturnWhen::AllCompleted, None);
/// assert_eq!(all.done, vec![0, 1]);
/// ```
pub fn wait<R>(
    results: &[AsyncResult<R>],
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> Waited {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let rx = watch(results);
    let mut ready = vec![false; results.len()];
    let (mut count, mut failed) = (0, false);
    let mut mark = |i: usize| {
        if !std::mem::replace(&mut ready[i], true) {
            count += 1;
            failed |= results[i].successful() == Some(false);
        }
        let all = count == results.len();
        match return_when {
            ReturnWhen::FirstCompleted => count > 0 || all,
            ReturnWhen::FirstException => failed || all,
            ReturnWhen::AllCompleted => all,
        }
    };
    let mut satisfied = results.is_empty();
    while !satisfied {
        let next = match deadline {
            None => rx.recv().ok(),
            Some(at) => rx.recv_deadline(at).ok(),
        };
        let Some(i) = next else {
            break;
        };
        satisfied = mark(i);
        // Take in what else is ready now, so `done` is complete.
        while let Ok(i) = rx.try_recv() {
            satisfied |= mark(i);
        }
    }
    // A result whose callbacks are running elsewhere right now is ready, though its message
    // may not have arrived yet.
    let (done, not_done) = (0..results.len()).partition(|&i| ready[i] || results[i].ready());
    Waited { done, not_done }
}

/// `concurrent.futures.as_completed(fs, timeout)`: the results in the order they finish,
/// each a done [`AsyncResult`] to `get` without waiting. If `timeout` (`None`: no limit)
/// passes first, the next item is [`PoolError::Timeout`] (the variant `get_timeout` gives)
/// and the iteration ends; [`AsCompleted::into_remaining`] hands back the results still
/// running. The same shape as the ThreadPool's `as_completed`. A result that never becomes
/// ready keeps a small callback that sends to nobody.
///
/// ```
/// use std::time::Duration;
/// use process_ipc::{Pool, as_completed};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let results: Vec<_> = (0..5u64).map(|x| pool.apply_async(square, (x,)).unwrap()).collect();
/// let mut total = 0;
/// for done in as_completed(results, Some(Duration::from_secs(30))) {
///     total += done.unwrap().get_timeout(Duration::ZERO).unwrap();
/// }
/// assert_eq!(total, 30);
/// ```
pub fn as_completed<R>(results: Vec<AsyncResult<R>>, timeout: Option<Duration>) -> AsCompleted<R> {
    AsCompleted {
        rx: watch(&results),
        left: results.len(),
        results: results.into_iter().map(Some).collect(),
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        timeout: timeout.unwrap_or_default(),
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<R> {
    rx: Receiver<usize>,
    results: Vec<Option<AsyncResult<R>>>,
    left: usize,
    deadline: Option<Instant>,
    timeout: Duration,
}

impl<R> std::fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl<R> AsCompleted<R> {
    /// The results not yielded yet (after a timeout, the ones still running), in input
    /// order, to wait on again or drop.
    pub fn into_remaining(self) -> Vec<AsyncResult<R>> {
        self.results.into_iter().flatten().collect()
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = Result<AsyncResult<R>, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 {
            let next = match self.deadline {
                None => self.rx.recv().ok(),
                Some(at) => self.rx.recv_deadline(at).ok(),
            };
            let Some(i) = next else {
                self.left = 0;
                return Some(Err(PoolError::Timeout {
                    timeout: self.timeout,
                }));
            };
            if let Some(result) = self.results[i].take() {
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
