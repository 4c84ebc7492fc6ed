//! Queue: FIFO between processes, many producers, timeouts, disconnection, big payloads, no
//! deadlock without a reader.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use process_ipc::queue::MAX_ITEM_BYTES;
use process_ipc::{ByteBuf, Process, ProcessError, Queue, QueueError, QueueSender};

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
    assert_eq!(q.try_get(), Err(QueueError::Empty));
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
    assert_eq!(q.put(1), Err(QueueError::Closed));
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
    let q = Queue::<ByteBuf>::new().unwrap();
    let err = q
        .put(ByteBuf::from(vec![0u8; MAX_ITEM_BYTES + 1]))
        .unwrap_err();
    assert!(matches!(err, QueueError::TooLarge { limit, .. } if limit == MAX_ITEM_BYTES));
    // The queue still works afterwards.
    q.put(ByteBuf::from(vec![1u8; 8])).unwrap();
    assert_eq!(q.get_timeout(WAIT).unwrap().len(), 8);
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
    let err = q.put(inner.sender().unwrap()).unwrap_err();
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
