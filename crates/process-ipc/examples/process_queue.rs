//! Process a puts, process b gets: two processes that share no memory talk through a `Queue`.
//!
//! Python's version:
//! ```python
//! q = Queue()
//! a = Process(target=produce, args=(q,)); b = Process(target=consume, args=(q,))
//! ```

use std::time::Duration;

use process_ipc::{Process, Queue, QueueSender, current_pid};

fn produce(q: QueueSender<String>, n: u32) -> u32 {
    for i in 0..n {
        q.put(format!("message {i} from pid {}", current_pid()))
            .expect("the queue accepts puts");
    }
    n
}

/// Reads `n` messages and returns the first and the last.
fn consume(q: Queue<String>, n: u32) -> (String, String) {
    q.close(); // this process only reads
    let first = q.get().expect("first message");
    let mut last = first.clone();
    for _ in 1..n {
        last = q.get().expect("next message");
    }
    println!("  consumer pid {} read {n} messages", current_pid());
    (first, last)
}

fn main() -> anyhow::Result<()> {
    let q = Queue::<String>::new()?;
    let tx = q.sender()?;
    // The reading end moves to the consumer with the queue itself.
    let mut b = Process::new(consume, (q, 1000)).start()?;
    let mut a = Process::new(produce, (tx, 1000)).start()?;
    println!("producer pid {}, consumer pid {}", a.pid(), b.pid());
    let sent = a.join_timeout(Duration::from_secs(20))?;
    let (first, last) = b.join_timeout(Duration::from_secs(20))?;
    println!("producer sent {sent} messages");
    println!("consumer got first: {first:?}");
    println!("consumer got last:  {last:?}");
    assert!(last.starts_with("message 999"));
    Ok(())
}
