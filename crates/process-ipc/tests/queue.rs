//! Queue: FIFO between processes, many producers, timeouts, disconnection, big payloads, no
//! deadlock without a reader.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use process_ipc::queue::MAX_ITEM_BYTES;
use process_ipc::{Process, ProcessError, Queue, QueueError, QueueSender};
use serde_bytes::ByteBuf;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn smoke() {
    let q = Queue::<u64>::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let got: Vec<u64> = (0..10).map(|_| q.get_timeout(WAIT).unwrap()).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

fn produce(q: QueueSender<(u8, u32)>, who: u8, n: u32) -> u32 {
    for i in 0..n {
        q.put((who, i)).unwrap();
    }
    n
}

#[test]
fn two_producer_processes_lose_and_duplicate_nothing() {
    const N: u32 = 50_000;
    let q = Queue::<(u8, u32)>::new().unwrap();
    let mut a = Process::new(produce, (q.sender().unwrap(), 1, N))
        .start()
        .unwrap();
    let mut b = Process::new(produce, (q.sender().unwrap(), 2, N))
        .start()
        .unwrap();
    q.close();
    let mut seen = HashSet::new();
    let mut last = [None::<u32>; 3];
    loop {
        match q.get_timeout(WAIT) {
            Ok((who, i)) => {
                assert!(seen.insert((who, i)), "duplicate {who}/{i}");
                // Each producer's items arrive in its own order.
                let prev = last[who as usize].replace(i);
                assert!(
                    prev.is_none_or(|p| p < i),
                    "producer {who}: {i} after {prev:?}"
                );
            }
            Err(QueueError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seen.len(), 2 * N as usize);
    assert_eq!(a.join_timeout(WAIT).unwrap(), N);
    assert_eq!(b.join_timeout(WAIT).unwrap(), N);
}

#[test]
fn get_timeout_on_an_empty_queue_times_out() {
    let q = Queue::<u8>::new().unwrap();
    let started = Instant::now();
    assert_eq!(
        q.get_timeout(Duration::from_millis(30)),
        Err(QueueError::Timeout(Duration::from_millis(30)))
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.get_nowait(), Err(QueueError::Empty));
}

fn put_then_block(q: QueueSender<u8>, stop: Queue<()>) -> u8 {
    q.put(1).unwrap();
    q.flush();
    let _ = stop.get();
    0
}

#[test]
fn peer_death_is_disconnected_not_a_hang() {
    let q = Queue::<u8>::new().unwrap();
    let stop = Queue::<()>::new().unwrap();
    let mut child = Process::new(put_then_block, (q.sender().unwrap(), stop))
        .start()
        .unwrap();
    q.close();
    assert_eq!(q.get_timeout(WAIT), Ok(1));
    child.kill().unwrap();
    assert!(matches!(
        child.join_timeout(WAIT),
        Err(ProcessError::Killed { signal: 9, .. })
    ));
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::Disconnected));
}

#[test]
fn closed_handle_refuses_puts() {
    let q = Queue::<u8>::new().unwrap();
    q.close();
    let refused = q.put(1).unwrap_err();
    assert_eq!(refused.error, QueueError::Closed);
    assert_eq!(refused.into_inner(), Some(1), "the item comes back");
    assert_eq!(q.get_timeout(WAIT), Err(QueueError::Disconnected));
}

fn echo(input: Queue<ByteBuf>, output: QueueSender<ByteBuf>) -> usize {
    let item = input.get().unwrap();
    let len = item.len();
    output.put(item).unwrap();
    len
}

#[test]
fn sixteen_mib_round_trip() {
    let payload: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let to_child = Queue::<ByteBuf>::new().unwrap();
    let back = Queue::<ByteBuf>::new().unwrap();
    to_child.put(ByteBuf::from(payload.clone())).unwrap();
    let mut child = Process::new(echo, (to_child, back.sender().unwrap()))
        .start()
        .unwrap();
    let got = back.get_timeout(WAIT).unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got.as_slice() == payload.as_slice());
    assert_eq!(child.join_timeout(WAIT).unwrap(), 16 << 20);
}

#[test]
fn payload_sizes_from_8_bytes_up() {
    let q = Queue::<ByteBuf>::new().unwrap();
    let sizes = [8usize, 1000, 64 << 10, 1 << 20, 5 << 20];
    for &n in &sizes {
        q.put(ByteBuf::from(vec![n as u8; n])).unwrap();
    }
    for &n in &sizes {
        let got = q.get_timeout(WAIT).unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|&b| b == n as u8));
    }
}

#[test]
fn over_the_limit_is_a_clear_error() {
    let q = Queue::<ByteBuf>::with_item_limit(1 << 20).unwrap();
    let err = q
        .put(ByteBuf::from(vec![0u8; (1 << 20) + 1]))
        .unwrap_err()
        .error;
    assert!(
        matches!(err, QueueError::TooLarge { limit, size } if limit == 1 << 20 && size > limit),
        "{err:?}"
    );
    assert!(err.to_string().contains("over the limit"), "{err}");
    // The queue still works afterwards.
    q.put(ByteBuf::from(vec![1u8; 8])).unwrap();
    assert_eq!(q.get_timeout(WAIT).unwrap().len(), 8);
}

#[test]
fn the_default_limit_is_at_least_a_gibibyte_and_the_old_64_mib_passes() {
    const { assert!(MAX_ITEM_BYTES >= 1 << 30) };
    let q = Queue::<ByteBuf>::new().unwrap();
    let sender = q.sender().unwrap();
    let mut child = Process::new(echo_big, (sender, 65 << 20)).start().unwrap();
    let item = q.get_timeout(WAIT).unwrap();
    assert_eq!(item.len(), 65 << 20);
    assert!(item.iter().all(|&b| b == 3));
    assert_eq!(child.join_timeout(WAIT).unwrap(), 65 << 20);
}

fn echo_big(q: QueueSender<ByteBuf>, n: usize) -> usize {
    q.put(ByteBuf::from(vec![3u8; n])).unwrap();
    n
}

#[test]
fn a_full_queue_without_reader_does_not_block_the_writer() {
    // 64 MiB with nobody reading: far beyond any socket buffer.
    let q = Queue::<ByteBuf>::new().unwrap();
    let started = Instant::now();
    for _ in 0..1024 {
        q.put(ByteBuf::from(vec![7u8; 64 << 10])).unwrap();
    }
    assert!(started.elapsed() < WAIT);
    // A late reader still gets everything, in order.
    for _ in 0..1024 {
        assert_eq!(q.get_timeout(WAIT).unwrap().len(), 64 << 10);
    }
}

#[test]
fn queue_handles_only_travel_as_process_arguments() {
    let q = Queue::<QueueSender<u8>>::new().unwrap();
    let inner = Queue::<u8>::new().unwrap();
    let err = q.put(inner.sender().unwrap()).unwrap_err().error;
    assert!(
        matches!(err, QueueError::Serde(ref m) if m.contains("Process argument")),
        "{err:?}"
    );
}

fn consume(q: Queue<u32>, n: u32) -> u64 {
    q.close();
    (0..n).map(|_| u64::from(q.get().unwrap())).sum()
}

fn produce_numbers(q: QueueSender<u32>, n: u32) -> u32 {
    for i in 0..n {
        q.put(i).unwrap();
    }
    n
}

#[test]
fn process_a_puts_process_b_gets() {
    let q = Queue::<u32>::new().unwrap();
    let tx = q.sender().unwrap();
    let mut reader = Process::new(consume, (q, 1000)).start().unwrap();
    let mut writer = Process::new(produce_numbers, (tx, 1000)).start().unwrap();
    assert_eq!(writer.join_timeout(WAIT).unwrap(), 1000);
    assert_eq!(
        reader.join_timeout(WAIT).unwrap(),
        (0..1000u64).sum::<u64>()
    );
}

/// Sizes that take every path of a put: batched small items, big ones written straight into
/// the ring, and ones over a quarter of the ring that travel in pieces.
const MIXED: [usize; 9] = [3, 100, 5000, 10, 70_000, 70_000, 1, 300_000, 4095];

fn mixed_item(i: usize) -> ByteBuf {
    let n = MIXED[i % MIXED.len()];
    ByteBuf::from(vec![i as u8; n])
}

fn produce_mixed(q: QueueSender<ByteBuf>, n: usize) -> usize {
    for i in 0..n {
        q.put(mixed_item(i)).unwrap();
    }
    n
}

#[test]
fn small_and_big_items_from_one_putter_keep_their_order() {
    let q = Queue::<ByteBuf>::new().unwrap();
    let n = 10 * MIXED.len();
    let mut writer = Process::new(produce_mixed, (q.sender().unwrap(), n))
        .start()
        .unwrap();
    for i in 0..n {
        // get_timeout hands out items taken ahead in a batch, and reads big ones in place.
        let got = q.get_timeout(WAIT).unwrap();
        assert_eq!(got, mixed_item(i), "item {i}");
    }
    assert_eq!(writer.join_timeout(WAIT).unwrap(), n);
    assert_eq!(q.get_nowait(), Err(QueueError::Empty));
}

fn put_then_exit(q: QueueSender<u32>, n: u32) -> u32 {
    for i in 0..n {
        q.put(i).unwrap();
    }
    // Straight out, without returning (and so without the child's own flush): the feeders are
    // flushed at exit, as Python joins its feeder threads.
    std::process::exit(0)
}

#[test]
fn items_put_just_before_exit_still_arrive() {
    let q = Queue::<u32>::new().unwrap();
    let mut child = Process::new(put_then_exit, (q.sender().unwrap(), 20_000))
        .start()
        .unwrap();
    q.close();
    let mut got = 0;
    loop {
        match q.get_timeout(WAIT) {
            Ok(i) => {
                assert_eq!(i, got);
                got += 1;
            }
            Err(QueueError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 20_000);
    assert!(matches!(
        child.join_timeout(WAIT),
        Err(ProcessError::Exited { code: 0, .. })
    ));
}

/// Decodes only what its encoder would never write: 13 is refused on the way in.
#[derive(Debug, PartialEq, serde::Serialize)]
struct NoThirteen(u32);

impl<'de> serde::Deserialize<'de> for NoThirteen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 13 {
            return Err(serde::de::Error::custom("thirteen is unlucky"));
        }
        Ok(NoThirteen(n))
    }
}

#[test]
fn an_item_that_fails_to_decode_fails_only_its_own_get() {
    let q = Queue::<NoThirteen>::new().unwrap();
    for n in [1, 13, 2, 13, 3] {
        q.put(NoThirteen(n)).unwrap();
    }
    assert_eq!(q.get_timeout(WAIT).unwrap(), NoThirteen(1));
    let err = q.get_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, QueueError::Serde(ref m) if m.contains("could not be decoded") && m.contains("next get")),
        "{err:?}"
    );
    assert_eq!(q.get_timeout(WAIT).unwrap(), NoThirteen(2));
    assert!(q.get_timeout(WAIT).is_err());
    assert_eq!(q.get_timeout(WAIT).unwrap(), NoThirteen(3));
    assert_eq!(
        q.get_timeout(Duration::from_millis(50)),
        Err(QueueError::Timeout(Duration::from_millis(50)))
    );
}

fn put_some_unlucky(q: QueueSender<NoThirteen>) -> u8 {
    for n in [13, 5, 13, 6] {
        q.put(NoThirteen(n)).unwrap();
    }
    0
}

#[test]
fn bad_items_from_another_process_do_not_hide_the_good_ones() {
    let q = Queue::<NoThirteen>::new().unwrap();
    let mut child = Process::new(put_some_unlucky, (q.sender().unwrap(),))
        .start()
        .unwrap();
    child.join_timeout(WAIT).unwrap();
    let got: Vec<Result<NoThirteen, QueueError>> = (0..4).map(|_| q.get_timeout(WAIT)).collect();
    assert!(got[0].is_err() && got[2].is_err(), "{got:?}");
    assert_eq!(got[1], Ok(NoThirteen(5)));
    assert_eq!(got[3], Ok(NoThirteen(6)));
}

/// Refuses to be encoded, in its own words.
struct Secret;

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("a Secret stays in this process"))
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Secret)
    }
}

#[test]
fn a_custom_serialize_error_keeps_its_message() {
    let q = Queue::<(u8, Vec<Secret>)>::new().unwrap();
    let err = q.put((1, vec![Secret])).unwrap_err().error;
    assert_eq!(
        err,
        QueueError::Serde("a Secret stays in this process".into())
    );
    // Nothing half-written was left behind.
    q.put((2, vec![])).unwrap();
    assert_eq!(q.get_timeout(WAIT).unwrap().0, 2);
}

#[test]
fn a_refusal_reason_never_leaks_into_a_later_unrelated_put() {
    // A queue handle encoded outside a Process argument is refused; nothing here asks why.
    let handles = Queue::<u8>::new().unwrap();
    assert!(postcard::to_stdvec(&handles.sender().unwrap()).is_err());
    // A later failure elsewhere reports its own reason, not the stale one.
    let q = Queue::<Secret>::new().unwrap();
    let err = q.put(Secret).unwrap_err().error;
    assert_eq!(
        err,
        QueueError::Serde("a Secret stays in this process".into())
    );
}

#[test]
fn qsize_and_empty_count_what_has_reached_the_reader() {
    let q = Queue::<u32>::new().unwrap();
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
    assert!(!q.full());
    assert_eq!(q.maxsize(), None);
    let tx = q.sender().unwrap();
    for i in 0..5 {
        tx.put(i).unwrap();
    }
    tx.flush_timeout(WAIT).unwrap();
    assert_eq!(q.qsize(), 5);
    assert_eq!(q.get_timeout(WAIT).unwrap(), 0);
    assert_eq!(q.qsize(), 4);
    // Items taken off the socket by qsize are still delivered in order.
    tx.put(5).unwrap();
    tx.flush_timeout(WAIT).unwrap();
    assert_eq!(q.qsize(), 5);
    let rest: Vec<u32> = (0..5).map(|_| q.get_timeout(WAIT).unwrap()).collect();
    assert_eq!(rest, vec![1, 2, 3, 4, 5]);
    assert!(q.empty());
}

fn sum_all(q: Queue<u32>, n: usize) -> u32 {
    (0..n).map(|_| q.get().unwrap()).sum()
}

#[test]
fn items_counted_by_qsize_travel_with_a_moved_queue() {
    let q = Queue::<u32>::new().unwrap();
    let tx = q.sender().unwrap();
    for i in 1..=4 {
        tx.put(i).unwrap();
        tx.flush_timeout(WAIT).unwrap(); // one chunk each
    }
    assert_eq!(q.get_timeout(WAIT).unwrap(), 1);
    assert_eq!(q.qsize(), 3); // the rest now waits on this side of the socket
    tx.put(5).unwrap();
    let mut child = Process::new(sum_all, (q, 4)).start().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 2 + 3 + 4 + 5);
}

/// Puts `n` items (its feeder moves them later) and reports the qsize it saw right after.
fn put_and_count(q: Queue<u32>, n: u32) -> usize {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.qsize()
}

fn get_and_count(q: Queue<u32>, n: u32) -> usize {
    for _ in 0..n {
        q.get_timeout(WAIT).unwrap();
    }
    q.qsize()
}

/// CPython's `_TestQueue.test_qsize`: an item counts from its `put`, not from the moment the
/// feeder moved it, in the putting process and in every other.
#[test]
fn qsize_counts_an_item_at_put_in_every_process() {
    let q = Queue::<u32>::new().unwrap();
    assert_eq!(q.qsize(), 0);
    q.put(1).unwrap();
    assert_eq!(q.qsize(), 1);
    assert!(!q.empty());
    q.put(2).unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get_timeout(WAIT), Ok(1));
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_timeout(WAIT), Ok(2));
    assert_eq!(q.qsize(), 0);
    assert!(q.empty());
    // A child's puts are counted at its put, as seen from the child and then the parent.
    let seen = Process::new(put_and_count, (q.handle(), 5))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(seen, 5);
    assert_eq!(q.qsize(), 5);
    // Gets in another process that take items from the middle of a record (no record freed
    // yet) are counted at once, there and here.
    let left = Process::new(get_and_count, (q.handle(), 2))
        .start()
        .unwrap()
        .join_timeout(WAIT)
        .unwrap();
    assert_eq!(left, 3);
    assert_eq!(q.qsize(), 3);
    for want in 2..5 {
        assert_eq!(q.get_timeout(WAIT), Ok(want));
        assert_eq!(q.qsize(), 4 - want as usize);
    }
    // A put that fails is not counted.
    let small = Queue::<String>::with_item_limit(8).unwrap();
    assert!(small.put("far too long for the limit".into()).is_err());
    assert_eq!(small.qsize(), 0);
}
