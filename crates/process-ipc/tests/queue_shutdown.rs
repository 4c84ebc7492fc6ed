//! Python 3.13's `Queue.shutdown(immediate)` across processes: a put after it hands its item
//! back, a get drains what is left and then fails, an immediate one drops the rest, and a
//! caller blocked in another process wakes with `ShutDown`. CPython test_queue's shutdown
//! scenarios, run with the queue's ends in different processes.

use std::time::{Duration, Instant};

use process_ipc::{Process, Queue, QueueError, QueueSender};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn smoke() {
    let q = Queue::<u32>::new().unwrap();
    assert!(!q.is_shutdown());
    for i in 0..3 {
        q.put(i).unwrap();
    }
    q.shutdown(false).unwrap();
    assert!(q.is_shutdown());
    let refused = q.put(7).unwrap_err();
    assert_eq!(refused.error, QueueError::ShutDown);
    assert_eq!(refused.into_inner(), Some(7));
    let refused = q.put_nowait(8).unwrap_err();
    assert_eq!(
        (refused.error.clone(), refused.into_inner()),
        (QueueError::ShutDown, Some(8))
    );
    // What was put before is still taken, in order, then every get fails.
    let got: Vec<u32> = (0..3).map(|_| q.get_timeout(WAIT).unwrap()).collect();
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(q.get(), Err(QueueError::ShutDown));
    assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::ShutDown));
    assert_eq!(q.qsize(), 0);
    // Again, and immediate after plain: allowed.
    q.shutdown(false).unwrap();
    q.shutdown(true).unwrap();
    assert_eq!(q.get(), Err(QueueError::ShutDown));
}

/// Says it is about to get, then reports what its get came to.
fn get_once(q: Queue<u32>, ready: QueueSender<()>) -> Result<u32, String> {
    ready.put(()).unwrap();
    ready.flush();
    q.get().map_err(|e| e.to_string())
}

fn shut() -> Result<u32, String> {
    Err(QueueError::ShutDown.to_string())
}

#[test]
fn a_child_blocked_in_get_wakes_with_shutdown_when_the_parent_shuts_down() {
    let q = Queue::<u32>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            Process::new(get_once, (q.handle(), ready.sender().unwrap()))
                .start()
                .unwrap()
        })
        .collect();
    for _ in 0..2 {
        ready.get_timeout(WAIT).unwrap();
    }
    // The creator's handle is still a putter: without the shutdown the gets wait for ever.
    q.shutdown(false).unwrap();
    for child in &mut children {
        assert_eq!(child.join_timeout(WAIT).unwrap(), shut());
    }
}

/// Fills a bounded queue of one, says so, then puts once more (blocking: it is full).
fn put_into_full(q: Queue<u32>, ready: QueueSender<()>) -> (bool, Option<u32>) {
    q.put(1).unwrap();
    ready.put(()).unwrap();
    ready.flush();
    match q.put(2) {
        Ok(()) => (false, None),
        Err(e) => (e.error == QueueError::ShutDown, e.into_inner()),
    }
}

#[test]
fn a_child_blocked_in_a_bounded_put_wakes_with_its_item_back() {
    let q = Queue::<u32>::bounded(1).unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut child = Process::new(put_into_full, (q.handle(), ready.sender().unwrap()))
        .start()
        .unwrap();
    ready.get_timeout(WAIT).unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), (true, Some(2)));
    // The item put before the shutdown is still there.
    assert_eq!(q.get_timeout(WAIT), Ok(1));
    assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
}

/// Puts after the queue was shut down (by its parent): what came back.
fn put_after(q: QueueSender<u32>) -> Vec<(String, Option<u32>)> {
    (10..13)
        .map(|i| match q.put(i) {
            Ok(()) => ("put".to_string(), None),
            Err(e) => (e.error.to_string(), e.into_inner()),
        })
        .collect()
}

#[test]
fn a_put_in_another_process_after_shutdown_hands_the_item_back() {
    let q = Queue::<u32>::new().unwrap();
    let tx = q.sender().unwrap();
    q.shutdown(false).unwrap();
    let got = Process::new(put_after, (tx,))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    let shut = QueueError::ShutDown.to_string();
    assert_eq!(
        got,
        [
            (shut.clone(), Some(10)),
            (shut.clone(), Some(11)),
            (shut, Some(12))
        ]
    );
    assert_eq!(q.qsize(), 0);
    assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
}

/// Puts `n` items and waits until they are in the queue.
fn put_n(q: QueueSender<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.flush();
}

#[test]
fn immediate_drops_what_is_left_in_every_process() {
    let q = Queue::<u32>::new().unwrap();
    Process::new(put_n, (q.sender().unwrap(), 100))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(q.qsize(), 100);
    assert_eq!(q.get_timeout(WAIT), Ok(0));
    q.shutdown(true).unwrap();
    assert_eq!(q.qsize(), 0, "the 99 left were dropped");
    assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
    // A reader in another process finds nothing either.
    let ready = Queue::<()>::new().unwrap();
    let got = Process::new(get_once, (q.handle(), ready.sender().unwrap()))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(got, shut());
}

/// Puts a stream of items until its put is refused; how many it put.
fn put_until_refused(q: QueueSender<u32>, ready: QueueSender<()>) -> u32 {
    let mut n = 0;
    loop {
        match q.put(n) {
            Ok(()) => n += 1,
            Err(e) if e.error == QueueError::ShutDown => return n,
            Err(e) => panic!("{e}"),
        }
        if n == 1000 {
            ready.put(()).unwrap();
            ready.flush();
        }
    }
}

#[test]
fn an_immediate_shutdown_while_a_child_puts_leaves_nothing_to_get() {
    let q = Queue::<u32>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut child = Process::new(
        put_until_refused,
        (q.sender().unwrap(), ready.sender().unwrap()),
    )
    .start()
    .unwrap();
    ready.get_timeout(WAIT).unwrap();
    q.shutdown(true).unwrap();
    let put = child.join_timeout(WAIT).unwrap();
    assert!(put >= 1000);
    // Items the child's feeder was still moving are dropped as they arrive, never handed out.
    assert_eq!(
        q.get_timeout(Duration::from_millis(50)),
        Err(QueueError::ShutDown)
    );
    assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
    assert_eq!(q.qsize(), 0);
}

/// Adds to the queue's shutdown word, as a process with a memory bug might.
fn scribble_shutdown(q: Queue<u32>) {
    q.__scribble("shutdown", 7);
}

#[test]
fn a_scribbled_shutdown_word_is_a_corrupt_error_naming_the_check() {
    let q = Queue::<u32>::new().unwrap();
    q.put(1).unwrap();
    Process::new(scribble_shutdown, (q.handle(),))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    let started = Instant::now();
    let err = q.put(2).unwrap_err();
    let QueueError::Corrupt { check, .. } = &err.error else {
        panic!("{err:?}");
    };
    assert!(check.contains("shutdown word"), "{check}");
    assert_eq!(err.into_inner(), Some(2));
    // Broken for good, everywhere: gets fail at once, naming the same check.
    let got = q.get_timeout(WAIT).unwrap_err();
    assert!(started.elapsed() < WAIT);
    assert!(matches!(&got, QueueError::Corrupt { check, .. } if check.contains("shutdown word")));
    assert!(q.shutdown(false).is_err());
}

/// A producer's end: puts `n` items, then shuts the queue down itself (no flush first).
fn produce_then_shut_down(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.shutdown(false).unwrap();
}

#[test]
fn a_producer_that_shuts_down_when_done_loses_nothing_to_its_consumers() {
    const N: u32 = 20_000;
    let q = Queue::<u32>::new().unwrap();
    let mut producer = Process::new(produce_then_shut_down, (q.handle(), N))
        .start()
        .unwrap();
    let mut got = 0;
    loop {
        match q.get_timeout(WAIT) {
            Ok(i) => {
                assert_eq!(i, got, "in put order");
                got += 1;
            }
            Err(QueueError::ShutDown) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        got, N,
        "every item put before the shutdown came before ShutDown"
    );
    producer.join_timeout(WAIT).unwrap();
}

#[test]
fn items_put_just_before_a_shutdown_are_all_taken_before_shutdown_is_seen() {
    // A fresh queue's first put starts its feeder thread: the shutdown comes while the items
    // are still in the feeder, every time a little differently.
    for round in 0..50 {
        let q = Queue::<u32>::new().unwrap();
        let reader = q.handle();
        for i in 0..3 {
            q.put(i).unwrap();
        }
        q.shutdown(false).unwrap();
        let got: Vec<u32> = (0..3)
            .map(|_| {
                reader
                    .get_timeout(WAIT)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
            .collect();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(reader.get_nowait(), Err(QueueError::ShutDown));
    }
}
