//! `JoinableQueue` (Python's `multiprocessing.JoinableQueue`) across processes: `task_done`,
//! `join` and `join_timeout` on counts every process shares, a consumer killed between its
//! `get` and its `task_done` (the item stays unfinished; `join_timeout` says so), and an
//! immediate shutdown that counts the dropped items done.

use std::time::Duration;

use process_ipc::{JoinableQueue, Process, Queue, QueueError, QueueSender};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn smoke() {
    let q = JoinableQueue::<u32>::new().unwrap();
    q.join_timeout(WAIT).unwrap(); // nothing put: nothing to wait for
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 3);
    assert_eq!(q.qsize(), 3);
    for _ in 0..3 {
        q.get_timeout(WAIT).unwrap();
        q.task_done().unwrap();
    }
    q.join().unwrap();
    assert_eq!(q.task_done(), Err(QueueError::TooManyCalls));
    assert_eq!(q.unfinished_tasks(), 0, "the refused call counted nothing");
    q.put(9).unwrap();
    assert_eq!(
        q.join_timeout(Duration::from_millis(10)),
        Err(QueueError::JoinTimeout {
            unfinished: 1,
            timeout: Duration::from_millis(10)
        })
    );
}

/// Takes items and marks each done until the queue is shut down; how many it took.
fn worker(q: JoinableQueue<u32>) -> u32 {
    let mut n = 0;
    loop {
        match q.get() {
            Ok(_) => {
                n += 1;
                q.task_done().unwrap();
            }
            Err(QueueError::ShutDown) => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn join_returns_once_workers_in_other_processes_marked_every_item_done() {
    let q = JoinableQueue::<u32>::new().unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| Process::new(worker, (q.handle(),)).start().unwrap())
        .collect();
    // Through a put-only handle too: each item put is a task.
    let tx = q.sender().unwrap();
    for i in 0..500 {
        if i % 2 == 0 {
            q.put(i).unwrap();
        } else {
            tx.put(i).unwrap();
        }
    }
    q.join_timeout(WAIT).unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(q.qsize(), 0);
    q.shutdown(false).unwrap();
    let took: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(took, 500);
}

/// Takes one item, says so, waits for `go`, then marks it done.
fn take_then_finish_on_go(q: JoinableQueue<u32>, took: QueueSender<u32>, go: Queue<()>) {
    let item = q.get_timeout(WAIT).unwrap();
    took.put(item).unwrap();
    took.flush();
    go.get_timeout(WAIT).unwrap();
    q.task_done().unwrap();
}

#[test]
fn join_waits_for_the_task_done_of_another_process() {
    let q = JoinableQueue::<u32>::new().unwrap();
    let took = Queue::<u32>::new().unwrap();
    let go = Queue::<()>::new().unwrap();
    q.put(5).unwrap();
    let mut child = Process::new(
        take_then_finish_on_go,
        (q.handle(), took.sender().unwrap(), go.handle()),
    )
    .start()
    .unwrap();
    assert_eq!(took.get_timeout(WAIT), Ok(5));
    // Taken, not done: still unfinished.
    assert_eq!(q.qsize(), 0);
    assert!(matches!(
        q.join_timeout(Duration::from_millis(20)),
        Err(QueueError::JoinTimeout { unfinished: 1, .. })
    ));
    go.put(()).unwrap();
    q.join_timeout(WAIT).unwrap();
    child.join_timeout(WAIT).unwrap();
}

/// Joins the queue in this process; how many were unfinished when it returned.
fn join_there(q: JoinableQueue<u32>, ready: QueueSender<()>) -> u64 {
    ready.put(()).unwrap();
    ready.flush();
    q.join_timeout(WAIT).unwrap();
    q.unfinished_tasks()
}

#[test]
fn a_joiner_in_another_process_wakes_at_the_last_task_done() {
    let q = JoinableQueue::<u32>::new().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    let ready = Queue::<()>::new().unwrap();
    let mut joiner = Process::new(join_there, (q.handle(), ready.sender().unwrap()))
        .start()
        .unwrap();
    ready.get_timeout(WAIT).unwrap();
    for _ in 0..3 {
        q.get_timeout(WAIT).unwrap();
        q.task_done().unwrap();
    }
    assert_eq!(joiner.join_timeout(WAIT).unwrap(), 0);
}

/// Takes one item, says so, and never marks it done (it is killed first).
fn take_and_hang(q: JoinableQueue<u32>, took: QueueSender<u32>, never: Queue<()>) {
    let item = q.get_timeout(WAIT).unwrap();
    took.put(item).unwrap();
    took.flush();
    let _ = never.get();
}

#[test]
fn a_consumer_killed_before_task_done_leaves_its_item_unfinished_and_join_timeout_says_so() {
    let q = JoinableQueue::<u32>::new().unwrap();
    let took = Queue::<u32>::new().unwrap();
    let never = Queue::<()>::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let mut child = Process::new(
        take_and_hang,
        (q.handle(), took.sender().unwrap(), never.handle()),
    )
    .start()
    .unwrap();
    assert_eq!(took.get_timeout(WAIT), Ok(1));
    child.kill().unwrap();
    assert!(child.join_timeout(WAIT).is_err());
    // The other item is taken and marked done here; the dead consumer's stays unfinished.
    assert_eq!(q.get_timeout(WAIT), Ok(2));
    q.task_done().unwrap();
    let timeout = Duration::from_millis(100);
    assert_eq!(
        q.join_timeout(timeout),
        Err(QueueError::JoinTimeout {
            unfinished: 1,
            timeout
        })
    );
    // The program decides: here it counts the lost item done itself.
    q.task_done().unwrap();
    q.join_timeout(WAIT).unwrap();
}

#[test]
fn an_immediate_shutdown_counts_the_dropped_items_done() {
    let q = JoinableQueue::<u32>::new().unwrap();
    let tx = q.sender().unwrap();
    for i in 0..10 {
        tx.put(i).unwrap();
    }
    tx.flush_timeout(WAIT).unwrap();
    let taken = q.get_timeout(WAIT).unwrap();
    assert_eq!(taken, 0);
    q.shutdown(true).unwrap();
    // The nine dropped are done; the one taken is not until its task_done.
    assert_eq!(q.unfinished_tasks(), 1);
    assert!(matches!(
        q.join_timeout(Duration::from_millis(10)),
        Err(QueueError::JoinTimeout { unfinished: 1, .. })
    ));
    q.task_done().unwrap();
    q.join_timeout(WAIT).unwrap();
    assert_eq!(q.put(1).unwrap_err().into_inner(), Some(1));
}

#[test]
fn a_bounded_joinable_queue_counts_only_items_that_got_a_place() {
    let q = JoinableQueue::<u32>::bounded(1).unwrap();
    q.put(1).unwrap();
    let refused = q.put_nowait(2).unwrap_err();
    assert_eq!(refused.error, QueueError::Full);
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.get_timeout(WAIT), Ok(1));
    q.task_done().unwrap();
    q.join_timeout(WAIT).unwrap();
}

/// Adds to one of the queue's counts, as a process with a memory bug might.
fn scribble(q: JoinableQueue<u32>, word: String, add: u64) {
    q.__scribble(&word, add);
}

#[test]
fn scribbled_counts_make_the_answers_wrong_but_never_panic_or_hang() {
    let q = JoinableQueue::<u32>::new().unwrap();
    q.put(1).unwrap();
    // Far more items accepted than were ever put: qsize and the unfinished count are wrong,
    // and join_timeout still returns on time, saying so.
    Process::new(scribble, (q.handle(), "accepted".to_string(), 1 << 62))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert!(q.qsize() > 1 << 61);
    let timeout = Duration::from_millis(20);
    assert!(matches!(
        q.join_timeout(timeout),
        Err(QueueError::JoinTimeout { unfinished, .. }) if unfinished > 1 << 61
    ));
    // Counts that wrap: done past accepted reads as nothing unfinished, and task_done refuses.
    Process::new(scribble, (q.handle(), "done".to_string(), u64::MAX))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    q.join_timeout(WAIT).unwrap();
    assert_eq!(q.task_done(), Err(QueueError::TooManyCalls));
    // The items themselves are untouched.
    assert_eq!(q.get_timeout(WAIT), Ok(1));
}
