//! A queue's ring under other processes' faults: one that scribbles on it (a clear error, at
//! once, never a crash or a duplicate) and one that stops in the middle of a big item (every
//! `get_timeout` keeps its deadline, and the item is neither lost nor duplicated).

use std::time::{Duration, Instant};

use process_ipc::{Process, Queue, QueueError, QueueSender};
use serde_bytes::ByteBuf;

const WAIT: Duration = Duration::from_secs(30);
/// What a deadline may be overrun by here (the promise is 50 ms; a loaded machine gets more).
const MARGIN: Duration = Duration::from_secs(1);

/// Moves the ring's head far past its tail, as a process with a memory bug might.
fn scribble_head(q: Queue<u32>) {
    q.__scribble("head", 1 << 40);
}

#[test]
fn a_ring_another_process_scribbled_on_is_a_clear_error_at_once() {
    let q = Queue::<u32>::new().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    q.sender().unwrap().flush_timeout(WAIT).unwrap();
    Process::new(scribble_head, (q.handle(),))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    let started = Instant::now();
    let err = q.get_timeout(Duration::from_secs(2)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2) + MARGIN);
    let QueueError::Corrupt { queue, check } = &err else {
        panic!("{err:?}");
    };
    assert!(!queue.is_empty());
    assert!(check.contains("tail is behind head"), "{check}");
    // Broken for good: every later call says so at once, puts included (once the feeder
    // meets it).
    assert_eq!(q.get_nowait().unwrap_err(), err);
    assert_eq!(q.get_timeout(WAIT).unwrap_err(), err);
    let tx = q.sender().unwrap();
    tx.put(9).unwrap();
    let _ = tx.flush_timeout(WAIT);
    assert!(matches!(
        tx.put(10).map_err(QueueError::from),
        Err(QueueError::Corrupt { .. })
    ));
}

const HUGE: usize = 8 << 20; // eight times the ring: the writer streams it in pieces

fn huge_item() -> ByteBuf {
    ByteBuf::from((0..HUGE).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Puts one item far bigger than the ring, says so, then waits to be told to stop.
fn put_huge(q: QueueSender<ByteBuf>, ready: QueueSender<()>, stop: Queue<()>) {
    q.put(huge_item()).unwrap();
    ready.put(()).unwrap();
    ready.flush();
    let _ = stop.get();
    q.flush();
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: sends a signal to our own child; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Whether every thread of process `pid` is stopped.
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
        })
    })
}

/// Stops process `pid` (SIGSTOP) and waits until every thread of it is stopped: the signal
/// takes effect after `kill` returns.
fn stop_process(pid: u32) {
    signal(pid, libc::SIGSTOP);
    let deadline = Instant::now() + WAIT;
    while !all_stopped(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::yield_now();
    }
}

/// Checks a big item without printing 8 MiB when it is wrong.
fn assert_huge(got: Result<ByteBuf, QueueError>) {
    match got {
        Ok(b) => assert!(
            b.as_slice() == huge_item().as_slice(),
            "a wrong item of {} bytes",
            b.len()
        ),
        Err(e) => panic!("{e:?}"),
    }
}

/// Checks that a get timed out, without printing 8 MiB when it did not.
fn assert_timeout(got: Result<ByteBuf, QueueError>, timeout: Duration) {
    match got {
        Err(QueueError::Timeout(t)) => assert_eq!(t, timeout),
        Err(e) => panic!("{e:?}"),
        Ok(b) => panic!("an item of {} bytes instead of a timeout", b.len()),
    }
}

#[test]
fn get_timeout_keeps_its_deadline_while_the_writer_of_a_big_item_is_stopped_and_loses_nothing() {
    let q = Queue::<ByteBuf>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    let mut producer = Process::new(
        put_huge,
        (q.sender().unwrap(), ready.sender().unwrap(), stop.handle()),
    )
    .start()
    .unwrap();
    ready.get_timeout(WAIT).unwrap();
    // The first pieces are in the ring (it is full; nobody read yet): stop the writer there.
    let deadline = Instant::now() + WAIT;
    // The ring's bytes, not `qsize`: `qsize` counts the item from its `put`, before the
    // feeder has written any of it.
    while q.__ring_bytes() == 0 {
        assert!(Instant::now() < deadline, "the item never started");
        std::thread::yield_now();
    }
    stop_process(producer.pid());
    // This get takes what is there and then waits for a writer that does not write: it must
    // give up at its deadline (it blocked for over 20 s before).
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    assert_timeout(q.get_timeout(timeout), timeout);
    assert!(
        started.elapsed() < timeout + MARGIN,
        "{:?}",
        started.elapsed()
    );
    // Again: the item begun stays with this handle, nothing else comes out.
    let started = Instant::now();
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    assert_timeout(q.get_timeout(timeout), timeout);
    assert!(started.elapsed() < timeout + MARGIN);
    // Once the writer goes on, the whole item comes, once.
    signal(producer.pid(), libc::SIGCONT);
    assert_huge(q.get_timeout(WAIT));
    stop.put(()).unwrap();
    producer.join_timeout(WAIT).unwrap();
    q.close();
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::Disconnected));
}

/// Tries to get one item within `timeout`: what came, and how long it took.
fn try_get(q: Queue<ByteBuf>, timeout: Duration) -> (String, Duration) {
    let started = Instant::now();
    let got = match q.get_timeout(timeout) {
        Ok(b) => format!("item of {} bytes", b.len()),
        Err(e) => format!("{e:?}"),
    };
    (got, started.elapsed())
}

#[test]
fn another_reader_does_not_take_the_pieces_of_an_item_a_live_reader_began() {
    let q = Queue::<ByteBuf>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    let mut producer = Process::new(
        put_huge,
        (q.sender().unwrap(), ready.sender().unwrap(), stop.handle()),
    )
    .start()
    .unwrap();
    ready.get_timeout(WAIT).unwrap();
    let deadline = Instant::now() + WAIT;
    // The ring's bytes, not `qsize`: `qsize` counts the item from its `put`, before the
    // feeder has written any of it.
    while q.__ring_bytes() == 0 {
        assert!(Instant::now() < deadline, "the item never started");
        std::thread::yield_now();
    }
    stop_process(producer.pid());
    let timeout = Duration::from_millis(300);
    assert_timeout(q.get_timeout(timeout), timeout);
    // This process holds the item's start. Let the writer go on: the rest arrives, and a reader
    // in another process must wait for this one rather than take the pieces.
    signal(producer.pid(), libc::SIGCONT);
    let (got, took) = Process::new(try_get, (q.handle(), Duration::from_secs(1)))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(
        got,
        format!("{:?}", QueueError::Timeout(Duration::from_secs(1)))
    );
    assert!(took < Duration::from_secs(1) + MARGIN, "{took:?}");
    assert_huge(q.get_timeout(WAIT));
    stop.put(()).unwrap();
    producer.join_timeout(WAIT).unwrap();
}
