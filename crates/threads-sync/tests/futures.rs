//! concurrent.futures on ThreadPool results: wait, as_completed, cancel, add_done_callback,
//! terminate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use threads_sync::{AsyncResult, PoolError, ReturnWhen, ThreadPool, as_completed, wait};

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(30);

/// A task that tells when it starts, then waits for its release (bounded by `LONG`).
fn gated(pool: &ThreadPool, value: u32) -> (AsyncResult<u32>, Receiver<()>, Sender<()>) {
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (release, hold) = crossbeam_channel::bounded::<()>(1);
    let result = pool
        .apply_async(
            move || {
                started_tx.send(()).unwrap();
                hold.recv_timeout(LONG).expect("released by the test");
                value
            },
            (),
        )
        .unwrap();
    (result, started, release)
}

#[test]
fn smoke() {
    let pool = ThreadPool::new(1).unwrap();
    let results = vec![pool.apply_async(|| 1, ()).unwrap()];
    let waited = wait(&results, ReturnWhen::AllCompleted, Some(LONG));
    assert_eq!((waited.done, waited.not_done), (vec![0], vec![]));
}

#[test]
fn cancel_stops_a_queued_task_but_not_a_running_one() {
    let pool = ThreadPool::new(1).unwrap();
    let (running, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let queued = pool
        .apply_async(move || counter.fetch_add(1, Ordering::SeqCst), ())
        .unwrap();
    assert!(!running.cancel(), "a running task cannot be cancelled");
    assert!(queued.cancel(), "a queued task can");
    assert!(
        queued.cancel(),
        "cancelling twice still says it is cancelled"
    );
    assert!(queued.cancelled() && queued.ready());
    assert_eq!(queued.successful(), Some(false));
    release.send(()).unwrap();
    assert_eq!(running.get_timeout(LONG), Ok(1));
    assert!(!running.cancel(), "a finished task cannot be cancelled");
    assert!(!running.cancelled());
    match queued.get_timeout(LONG) {
        Err(PoolError::Cancelled { task }) => assert_eq!(task, queued.task()),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // Taking the error changes nothing about how the task ended.
    assert!(queued.cancelled() && queued.cancel());
    assert_eq!(queued.successful(), Some(false));
    // The worker skipped the cancelled task: a later task runs, the cancelled one never did.
    assert_eq!(pool.apply(|| 5, ()).unwrap(), 5);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn done_callbacks_run_once_with_the_outcome() {
    let pool = ThreadPool::new(1).unwrap();
    let (result, started, release) = gated(&pool, 7);
    started.recv_timeout(LONG).unwrap();
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let tx = seen_tx.clone();
    result.add_done_callback(move |outcome| tx.send(outcome.ok().copied()).unwrap());
    assert!(
        seen.try_recv().is_err(),
        "not called before the task is done"
    );
    release.send(()).unwrap();
    assert_eq!(seen.recv_timeout(LONG), Ok(Some(7)));
    // Added after completion: called at once, in this thread.
    let tx = seen_tx.clone();
    result.add_done_callback(move |outcome| tx.send(outcome.ok().copied()).unwrap());
    assert_eq!(seen.try_recv(), Ok(Some(7)));
    // The value is still there for `get`.
    assert_eq!(result.get_timeout(LONG), Ok(7));
    // After the value is taken, a callback is told so.
    let (err_tx, err) = crossbeam_channel::unbounded();
    result.add_done_callback(move |outcome| err_tx.send(outcome.err().cloned()).unwrap());
    assert_eq!(err.try_recv(), Ok(Some(PoolError::AlreadyTaken)));

    let failing = pool
        .apply_async(|| -> u32 { panic!("callback sees this") }, ())
        .unwrap();
    let (msg_tx, msg) = crossbeam_channel::unbounded();
    failing.add_done_callback(move |outcome| {
        msg_tx.send(outcome.unwrap_err().to_string()).unwrap();
    });
    assert!(
        msg.recv_timeout(LONG)
            .unwrap()
            .contains("callback sees this")
    );
    drop(seen_tx);
}

#[test]
fn a_panicking_callback_does_not_hurt_the_pool() {
    let pool = ThreadPool::new(1).unwrap();
    let result = pool.apply_async(|| 1, ()).unwrap();
    result.add_done_callback(|_| panic!("bad callback"));
    assert_eq!(result.get_timeout(LONG), Ok(1));
    assert_eq!(pool.apply(|| 2, ()).unwrap(), 2);
}

#[test]
fn wait_first_completed_all_completed_and_timeout() {
    let pool = ThreadPool::new(2).unwrap();
    let (slow, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let quick = pool.apply_async(|| 2, ()).unwrap();
    let results = vec![slow, quick];
    let first = wait(&results, ReturnWhen::FirstCompleted, Some(LONG));
    assert_eq!((first.done, first.not_done), (vec![1], vec![0]));
    let timed_out = wait(&results, ReturnWhen::AllCompleted, Some(SHORT));
    assert_eq!((timed_out.done, timed_out.not_done), (vec![1], vec![0]));
    release.send(()).unwrap();
    let all = wait(&results, ReturnWhen::AllCompleted, Some(LONG));
    assert_eq!((all.done, all.not_done), (vec![0, 1], vec![]));
}

#[test]
fn wait_first_exception_returns_at_the_first_panic() {
    let pool = ThreadPool::new(2).unwrap();
    let (slow, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let failing = pool
        .apply_async(|| -> u32 { panic!("first exception") }, ())
        .unwrap();
    let results = vec![slow, failing];
    let waited = wait(&results, ReturnWhen::FirstException, Some(LONG));
    assert_eq!((waited.done, waited.not_done), (vec![1], vec![0]));
    release.send(()).unwrap();
    // No exception among them: the same as AllCompleted.
    let fine: Vec<_> = (0..3)
        .map(|i| pool.apply_async(move || i, ()).unwrap())
        .collect();
    let waited = wait(&fine, ReturnWhen::FirstException, Some(LONG));
    assert_eq!(waited.done, [0, 1, 2]);
}

#[test]
fn wait_on_nothing_returns_at_once() {
    let none: Vec<AsyncResult<u8>> = Vec::new();
    for how in [
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::AllCompleted,
    ] {
        let waited = wait(&none, how, None);
        assert!(waited.done.is_empty() && waited.not_done.is_empty());
    }
}

#[test]
fn as_completed_yields_in_completion_order() {
    let pool = ThreadPool::new(2).unwrap();
    let (slow, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let quick = pool.apply_async(|| 2, ()).unwrap();
    let mut done = as_completed(vec![slow, quick], Some(LONG));
    assert_eq!(done.next().unwrap().unwrap().get().unwrap(), 2);
    release.send(()).unwrap();
    assert_eq!(done.next().unwrap().unwrap().get().unwrap(), 1);
    assert!(done.next().is_none());
}

#[test]
fn as_completed_with_an_empty_list_yields_nothing() {
    let mut done = as_completed(Vec::<AsyncResult<u8>>::new(), Some(SHORT));
    assert!(done.next().is_none());
    assert_eq!(as_completed(Vec::<AsyncResult<u8>>::new(), None).count(), 0);
}

#[test]
fn as_completed_timeout_is_one_error_then_the_end() {
    let pool = ThreadPool::new(1).unwrap();
    let (slow, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let mut done = as_completed(vec![slow], Some(SHORT));
    match done.next() {
        Some(Err(PoolError::Timeout { timeout })) => assert_eq!(timeout, SHORT),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(done.next().is_none());
    let mut remaining = done.into_remaining();
    assert_eq!(remaining.len(), 1, "the running task is handed back");
    release.send(()).unwrap();
    assert_eq!(remaining.pop().unwrap().get_timeout(LONG), Ok(1));
}

#[test]
fn terminate_cancels_what_has_not_started() {
    let pool = ThreadPool::new(1).unwrap();
    let (running, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let queued: Vec<_> = (0..5)
        .map(|i| pool.apply_async(move || i, ()).unwrap())
        .collect();
    pool.terminate();
    assert_eq!(pool.apply(|| 0, ()), Err(PoolError::Closed));
    release.send(()).unwrap();
    pool.join_timeout(LONG).unwrap();
    assert_eq!(running.get_timeout(LONG), Ok(1), "a running task finishes");
    for r in queued {
        assert!(matches!(
            r.get_timeout(LONG),
            Err(PoolError::Cancelled { .. })
        ));
    }
}

#[test]
fn map_async_and_starmap_async_are_one_result_each() {
    let pool = ThreadPool::new(2).unwrap();
    let squares = pool.map_async(|x: u64| x * x, 0..100).unwrap();
    let sums = pool
        .starmap_async(|a: u64, b: u64| a + b, (0..10).map(|i| (i, i)))
        .unwrap();
    assert_eq!(
        squares.get_timeout(LONG).unwrap(),
        (0..100).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(
        sums.get_timeout(LONG).unwrap(),
        (0..10).map(|i| 2 * i).collect::<Vec<_>>()
    );
    let empty = pool.map_async(|x: u8| x, Vec::new()).unwrap();
    assert!(empty.ready());
    assert_eq!(empty.get().unwrap(), Vec::<u8>::new());
    let failing = pool
        .map_async(|x: u64| if x == 3 { panic!("item three") } else { x }, 0..8)
        .unwrap();
    match failing.get_timeout(LONG) {
        Err(PoolError::TaskPanicked { message, .. }) => assert_eq!(message, "item three"),
        other => panic!("expected the panic, got {other:?}"),
    }
}

#[test]
fn map_async_can_be_cancelled_before_it_starts() {
    let pool = ThreadPool::new(1).unwrap();
    let (running, started, release) = gated(&pool, 1);
    started.recv_timeout(LONG).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let whole = pool
        .map_async(
            move |x: u64| {
                counter.fetch_add(1, Ordering::SeqCst);
                x
            },
            0..10,
        )
        .unwrap();
    assert!(whole.cancel());
    release.send(()).unwrap();
    assert_eq!(running.get_timeout(LONG), Ok(1));
    assert!(matches!(
        whole.get_timeout(LONG),
        Err(PoolError::Cancelled { .. })
    ));
    // Every queued part was skipped: after a later task, none of them ever ran.
    assert_eq!(pool.apply(|| 0, ()).unwrap(), 0);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}
