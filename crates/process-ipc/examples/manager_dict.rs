//! Python's `Manager().dict()`, `list()`, `Lock()` and `Event()` shared with pool tasks and a
//! child process:
//!
//! ```python
//! from multiprocessing import Manager, Pool, Process
//!
//! def count_words(words, lengths, seen, lock):
//!     lengths.update({w: len(w) for w in words})
//!     seen.extend(words)
//!     with lock:
//!         pass
//!     return len(words)
//!
//! def watcher(ready, lengths):
//!     ready.wait(10)
//!     return len(lengths)
//!
//! with Manager() as m, Pool(2) as pool:
//!     lengths, seen, lock, ready = m.dict(), m.list(), m.Lock(), m.Event()
//!     ...
//! ```
//!
//! Run with `cargo run --release -p process-ipc --example manager_dict`: a child then does
//! 5 000 `insert` + `get` pairs (Python's `manager_dict_set_get` workload; `-- N` for N) and
//! prints its rate.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use process_ipc::manager::{ManagedDict, ManagedEvent, ManagedList, ManagedLock, Manager};
use process_ipc::{Pool, Process, current_pid};

const LIMIT: Duration = Duration::from_secs(30);

/// A pool task: records the length of each word (one `update`: one round trip), appends the
/// words to the shared list, and counts its call under the lock.
fn count_words(
    words: Vec<String>,
    lengths: ManagedDict<String, usize>,
    seen: ManagedList<String>,
    lock: ManagedLock,
) -> Result<usize, String> {
    let n = words.len();
    lengths
        .update(words.iter().map(|w| (w.clone(), w.len())))
        .map_err(|e| e.to_string())?;
    seen.extend(words).map_err(|e| e.to_string())?;
    let _guard = lock.acquire_timeout(LIMIT).map_err(|e| e.to_string())?;
    Ok(n)
}

/// A child process: waits for the parent's event, then reports what the dict holds.
fn watcher(ready: ManagedEvent, lengths: ManagedDict<String, usize>) -> Result<usize, String> {
    if !ready.wait_timeout(LIMIT).map_err(|e| e.to_string())? {
        return Err("the event was never set".into());
    }
    lengths.len().map_err(|e| e.to_string())
}

/// A child process: `n` pairs of `insert` and `get`, Python's `dict_client`; the sum of what
/// it read, and how long the pairs took in the child.
fn dict_client(dict: ManagedDict<u64, u64>, n: u64) -> Result<(u64, Duration), String> {
    let started = Instant::now();
    let mut sum = 0;
    for i in 0..n {
        dict.insert(i, i).map_err(|e| e.to_string())?;
        sum += dict.get(&i).map_err(|e| e.to_string())?.unwrap_or(0);
    }
    Ok((sum, started.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let manager = Manager::new()?;
    let lengths = manager.dict::<String, usize>()?;
    let seen = manager.list::<String>()?;
    let lock = manager.lock()?;
    let ready = manager.event()?;

    let mut child = Process::new(watcher, (ready.clone(), lengths.clone())).start()?;
    let pool = Pool::new(2)?;
    let batches = [
        vec!["spam", "eggs"],
        vec!["ham", "toast", "beans"],
        vec!["tea"],
    ];
    let tasks = batches.iter().map(|words| {
        let words = words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        (words, lengths.clone(), seen.clone(), lock.clone())
    });
    let counted: usize = pool
        .starmap_async(count_words, tasks)?
        .get_timeout(LIMIT)?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .sum();
    ready.set()?;
    let watched = child
        .join_timeout(LIMIT)
        .context("the watcher process")?
        .map_err(anyhow::Error::msg)?;
    println!(
        "pool tasks counted {counted} words; the watcher (pid {}) saw {watched}",
        child.pid()
    );
    println!("lengths: {:?}", lengths.items()?);
    ensure!(counted == 6 && watched == 6 && seen.len()? == 6);
    ensure!(lengths.get(&"toast".to_string())? == Some(5));

    let pairs: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5000);
    let dict = manager.dict::<u64, u64>()?;
    let started = Instant::now();
    let (sum, in_child) = Process::new(dict_client, (dict.clone(), pairs))
        .start()?
        .join_timeout(LIMIT)?
        .map_err(anyhow::Error::msg)?;
    let elapsed = started.elapsed();
    ensure!(sum == (0..pairs).sum::<u64>() && dict.len()? == pairs as usize);
    let rate = |d: Duration| 2.0 * pairs as f64 / d.as_secs_f64();
    println!(
        "a child (not pid {}) did {pairs} insert+get pairs: {:.0} ops/s with its start and join \
         ({:.0} ops/s in the child alone: each op one round trip)",
        current_pid(),
        rate(elapsed),
        rate(in_child)
    );
    Ok(())
}
