//! Queue with many readers: consumer processes sharing one queue, the end of a reader loop,
//! bounded queues across processes, and what a SIGKILLed consumer or producer costs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use process_ipc::{Process, ProcessError, Queue, QueueError, QueueSender};
use serde_bytes::ByteBuf;

const WAIT: Duration = Duration::from_secs(30);

/// The common reader loop; returns what it got and the error that ended it.
fn drain(q: Queue<u32>) -> (Vec<u32>, String) {
    let mut got = Vec::new();
    let end = loop {
        match q.get() {
            Ok(x) => got.push(x),
            Err(e) => break format!("{e:?}"),
        }
    };
    (got, end)
}

#[test]
fn four_consumer_processes_get_every_item_exactly_once() {
    const N: u32 = 20_000;
    let q = Queue::<u32>::new().unwrap();
    let mut consumers: Vec<_> = (0..4)
        .map(|_| Process::new(drain, (q.handle(),)).start().unwrap())
        .collect();
    for i in 0..N {
        q.put(i).unwrap();
    }
    // The parent was the only putter: closing it ends every consumer's loop once drained.
    q.close();
    let mut seen = HashSet::new();
    for c in &mut consumers {
        let (got, end) = c.join_timeout(WAIT).unwrap();
        assert_eq!(end, "Disconnected");
        // Each consumer sees the items it got in the order they were put.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        for x in got {
            assert!(seen.insert(x), "item {x} delivered twice");
        }
    }
    assert_eq!(seen.len(), N as usize);
}

fn produce_then_wait(q: QueueSender<u32>, n: u32, ready: QueueSender<()>, stop: Queue<()>) -> u32 {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.flush();
    ready.put(()).unwrap();
    let _ = stop.get();
    n
}

#[test]
fn a_reader_loop_ends_when_the_last_putter_is_killed() {
    let q = Queue::<u32>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut producer = Process::new(
        produce_then_wait,
        (
            q.sender().unwrap(),
            100,
            ready.sender().unwrap(),
            stop.handle(),
        ),
    )
    .start()
    .unwrap();
    q.close();
    let mut consumer = Process::new(drain, (q.handle(),)).start().unwrap();
    // Everything the producer will ever put is in the queue; the consumer waits for more.
    ready.get_timeout(WAIT).unwrap();
    producer.kill().unwrap();
    assert!(matches!(
        producer.join_timeout(WAIT),
        Err(ProcessError::Killed { signal: 9, .. })
    ));
    let (got, end) = consumer.join_timeout(WAIT).unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(end, "Disconnected");
}

#[test]
fn a_queue_handle_in_a_child_does_not_keep_the_queue_open_until_it_puts() {
    let q = Queue::<u32>::new().unwrap();
    let tx = q.sender().unwrap();
    let mut consumer = Process::new(drain, (q.handle(),)).start().unwrap();
    q.close();
    tx.put(7).unwrap();
    drop(tx);
    let (got, end) = consumer.join_timeout(WAIT).unwrap();
    assert_eq!(got, [7]);
    assert_eq!(end, "Disconnected");
}

/// Takes one item, reports it, then waits to be killed.
fn take_one_and_hang(q: Queue<u32>, report: QueueSender<u32>, stop: Queue<()>) -> u32 {
    let x = q.get().unwrap();
    report.put(x).unwrap();
    report.flush();
    let _ = stop.get();
    x
}

#[test]
fn an_item_taken_by_a_killed_consumer_is_lost_and_the_others_continue() {
    let q = Queue::<u32>::new().unwrap();
    let report = Queue::<u32>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    q.put(0).unwrap();
    let mut victim = Process::new(
        take_one_and_hang,
        (q.handle(), report.sender().unwrap(), stop.handle()),
    )
    .start()
    .unwrap();
    assert_eq!(report.get_timeout(WAIT), Ok(0));
    for i in 1..100 {
        q.put(i).unwrap();
    }
    q.close();
    let mut other = Process::new(drain, (q.handle(),)).start().unwrap();
    victim.kill().unwrap();
    assert!(victim.join_timeout(WAIT).is_err());
    let (got, end) = other.join_timeout(WAIT).unwrap();
    // Item 0 went to the killed consumer: it is not delivered again.
    assert_eq!(got, (1..100).collect::<Vec<_>>());
    assert_eq!(end, "Disconnected");
}

/// Says it is about to get, then waits in `get` on the empty queue: a reader waiting there
/// holds the queue's read lock while it sleeps.
fn wait_in_get(q: Queue<u32>, ready: QueueSender<()>) -> u32 {
    ready.put(()).unwrap();
    ready.flush();
    q.get().unwrap_or(u32::MAX)
}

#[test]
fn a_consumer_killed_while_it_waits_in_get_does_not_stop_the_others() {
    let q = Queue::<u32>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let mut victim = Process::new(wait_in_get, (q.handle(), ready.sender().unwrap()))
        .start()
        .unwrap();
    ready.get_timeout(WAIT).unwrap();
    // It is on its way into `get` or asleep there holding the read lock: killed either way,
    // the kernel releases the lock and the next reader carries on.
    victim.kill().unwrap();
    assert!(victim.join_timeout(WAIT).is_err());
    for i in 0..100 {
        q.put(i).unwrap();
    }
    q.close();
    let mut other = Process::new(drain, (q.handle(),)).start().unwrap();
    let (got, end) = other.join_timeout(WAIT).unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(end, "Disconnected");
    // This handle reads too, after the killed one.
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::Disconnected));
}

const BIG: usize = 3 << 20; // over a quarter of the ring: streamed in fragments

fn big_item(i: u32) -> ByteBuf {
    let mut v = vec![(i % 251) as u8; BIG];
    v[..4].copy_from_slice(&i.to_le_bytes());
    ByteBuf::from(v)
}

fn index_of(b: &ByteBuf) -> u32 {
    assert_eq!(b.len(), BIG);
    let i = u32::from_le_bytes(b[..4].try_into().unwrap());
    assert!(b[4..].iter().all(|&x| x == (i % 251) as u8));
    i
}

/// Takes big items and reports each index, until killed.
fn take_big_items(q: Queue<ByteBuf>, report: QueueSender<u32>) -> u32 {
    let mut n = 0;
    while let Ok(b) = q.get() {
        report.put(index_of(&b)).unwrap();
        report.flush();
        n += 1;
    }
    n
}

#[test]
fn a_consumer_killed_in_the_middle_of_big_items_costs_at_most_one_item() {
    const K: u32 = 12;
    let q = Queue::<ByteBuf>::new().unwrap();
    let report = Queue::<u32>::new().unwrap();
    for i in 0..K {
        q.put(big_item(i)).unwrap();
    }
    let mut victim = Process::new(take_big_items, (q.handle(), report.sender().unwrap()))
        .start()
        .unwrap();
    // Once it has taken one item it is somewhere inside the next get: waiting for the lock,
    // holding it, or between fragments. Any of these is fine.
    let first = report.get_timeout(WAIT).unwrap();
    victim.kill().unwrap();
    assert!(victim.join_timeout(WAIT).is_err());
    let mut taken = vec![first];
    while let Ok(i) = report.get_nowait() {
        taken.push(i);
    }
    q.close();
    let mut mine = Vec::new();
    loop {
        match q.get_timeout(WAIT) {
            Ok(b) => mine.push(index_of(&b)),
            Err(QueueError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let all: HashSet<u32> = taken.iter().chain(&mine).copied().collect();
    assert_eq!(all.len(), taken.len() + mine.len(), "an item came twice");
    assert!(
        all.len() as u32 >= K - 1,
        "more than one item lost: {taken:?} then {mine:?}"
    );
    assert!(mine.windows(2).all(|w| w[0] < w[1]));
}

/// Puts one item far bigger than the ring, then waits: its feeder is stuck mid-item.
fn put_huge_then_wait(q: QueueSender<ByteBuf>, ready: QueueSender<()>, stop: Queue<()>) {
    q.put(ByteBuf::from(vec![1u8; 8 << 20])).unwrap();
    ready.put(()).unwrap();
    ready.flush();
    let _ = stop.get();
}

#[test]
fn a_putter_killed_in_the_middle_of_an_item_fails_only_that_get() {
    let q = Queue::<ByteBuf>::new().unwrap();
    let ready = Queue::<()>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    let mut producer = Process::new(
        put_huge_then_wait,
        (q.sender().unwrap(), ready.sender().unwrap(), stop.handle()),
    )
    .start()
    .unwrap();
    ready.get_timeout(WAIT).unwrap();
    // The first fragments fill the ring; nobody reads, so the rest cannot follow yet. (Not
    // `qsize`: it counts the item from its `put`, before the feeder has written anything.)
    let deadline = Instant::now() + WAIT;
    while q.__ring_bytes() == 0 {
        assert!(Instant::now() < deadline, "the item never started");
        std::thread::yield_now();
    }
    producer.kill().unwrap();
    assert!(producer.join_timeout(WAIT).is_err());
    q.put(ByteBuf::from(vec![2u8; 10])).unwrap();
    q.close();
    let err = q.get_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, QueueError::Serde(ref m) if m.contains("lost")),
        "{err:?}"
    );
    assert_eq!(q.get_timeout(WAIT).unwrap().as_slice(), &[2u8; 10]);
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::Disconnected));
}

fn get_n(q: Queue<u32>, n: usize) -> Vec<u32> {
    (0..n).map(|_| q.get().unwrap()).collect()
}

#[test]
fn a_bounded_queue_makes_put_wait_until_a_reader_in_another_process_takes() {
    let q = Queue::<u32>::bounded(2).unwrap();
    assert_eq!(q.maxsize(), Some(2));
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    let refused = q.put_nowait(3).unwrap_err();
    assert_eq!(refused.error, QueueError::Full);
    assert_eq!(refused.into_inner(), Some(3));
    let started = Instant::now();
    let refused = q.put_timeout(3, Duration::from_millis(30)).unwrap_err();
    assert_eq!(refused.error, QueueError::Full);
    assert!(started.elapsed() >= Duration::from_millis(30));
    // A reader in a child takes 5; the parent's puts wait for places and all get through.
    let mut reader = Process::new(get_n, (q.handle(), 5)).start().unwrap();
    for i in 3..=5 {
        q.put_timeout(i, WAIT).unwrap();
    }
    assert_eq!(reader.join_timeout(WAIT).unwrap(), [1, 2, 3, 4, 5]);
    assert!(q.empty());
    assert!(!q.full());
}

#[test]
fn get_nowait_says_empty_while_a_putter_lives_and_disconnected_after() {
    let q = Queue::<u32>::new().unwrap();
    assert_eq!(q.get_nowait(), Err(QueueError::Empty));
    q.put(1).unwrap();
    q.sender().unwrap().flush_timeout(WAIT).unwrap();
    assert_eq!(q.get_nowait(), Ok(1));
    q.close();
    // The putter's feeder lets go of the queue once it has drained: soon, not at once.
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::Disconnected));
    assert_eq!(q.get_nowait(), Err(QueueError::Disconnected));
    assert_eq!(q.put(2).map_err(QueueError::from), Err(QueueError::Closed));
}
