//! A work queue: one producer, four consumer processes reading the same `Queue`. Every item is
//! taken by exactly one consumer; each consumer's loop ends by itself once the producer has
//! closed its handle and the queue is drained.
//!
//! Python's version:
//! ```python
//! q = Queue()
//! ps = [Process(target=work, args=(q, out)) for _ in range(4)]
//! for i in range(N): q.put(i)
//! for _ in ps: q.put(None)          # Python needs a sentinel per consumer
//! ```

use std::collections::HashSet;
use std::time::Instant;

use process_ipc::{Process, Queue, QueueError, current_pid};

const ITEMS: u64 = 100_000;
const CONSUMERS: usize = 4;

/// A consumer: takes items until the queue says no putter is left.
fn work(q: Queue<u64>) -> (u32, Vec<u64>) {
    let mut mine = Vec::new();
    loop {
        match q.get() {
            Ok(item) => mine.push(item),
            Err(QueueError::Disconnected) => break, // the producer is done and the queue empty
            Err(e) => panic!("consumer {}: {e}", current_pid()),
        }
    }
    (current_pid(), mine)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::<u64>::new()?;
    // `q.handle()`: a reading handle that does not count as a putter, so the loops can end.
    let consumers = (0..CONSUMERS)
        .map(|_| Process::new(work, (q.handle(),)).start())
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    for i in 0..ITEMS {
        q.put(i)?;
    }
    q.close(); // no sentinels: the consumers' loops end when the last putter is gone
    let mut seen = HashSet::new();
    for c in consumers {
        let (pid, items) = c.join()?;
        let first: Vec<_> = items.iter().take(5).collect();
        println!(
            "consumer pid {pid} took {:>6} items, first {first:?}",
            items.len()
        );
        for item in items {
            assert!(seen.insert(item), "item {item} was taken twice");
        }
    }
    assert_eq!(seen.len() as u64, ITEMS, "an item was lost");
    println!(
        "check: {ITEMS} items put, {} taken, every one exactly once, in {:?}",
        seen.len(),
        started.elapsed()
    );
    Ok(())
}
