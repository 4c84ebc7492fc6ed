//! The seed's shared-global counter, across processes: processes share no globals, so the
//! counter lives in shared memory. Without a lock (`RawValue`) increments are lost; with the
//! Value's lock every one counts. And a lock whose holder is killed says so instead of hanging.
//!
//! Python's version:
//! ```python
//! v = Value('q', 0)                 # RawValue('q', 0) for the racy one
//! def work(v, n):
//!     for _ in range(n):
//!         with v.get_lock(): v.value += 1
//! ```

use std::time::Duration;

use process_ipc::{Event, Lock, Process, RawValue, SharedError, Value, current_pid};

const PROCESSES: usize = 4;
const EACH: u64 = 200_000;

fn add_racy(counter: RawValue<u64>, times: u64) -> u32 {
    for _ in 0..times {
        counter.set(counter.get() + 1); // read, add, write: another process can step in between
    }
    current_pid()
}

fn add_locked(counter: Value<u64>, times: u64) -> u32 {
    for _ in 0..times {
        *counter.lock().expect("the lock") += 1;
    }
    current_pid()
}

fn hold_and_wait(lock: Lock, held: Event) {
    let _guard = lock.acquire().expect("the lock");
    held.set().expect("the event");
    loop {
        std::thread::park();
    }
}

fn main() -> anyhow::Result<()> {
    let wait = Duration::from_secs(30);
    let expected = PROCESSES as u64 * EACH;

    let racy = RawValue::new(0u64)?;
    let children = (0..PROCESSES)
        .map(|_| Process::new(add_racy, (racy.clone(), EACH)).start())
        .collect::<Result<Vec<_>, _>>()?;
    let mut pids = Vec::new();
    for mut child in children {
        pids.push(child.join_timeout(wait)?);
    }
    println!(
        "RawValue (no lock): {PROCESSES} processes {pids:?} x {EACH} increments = {} of {expected} ({} lost)",
        racy.get(),
        expected - racy.get()
    );

    let counter = Value::new(0u64)?;
    let children = (0..PROCESSES)
        .map(|_| Process::new(add_locked, (counter.clone(), EACH)).start())
        .collect::<Result<Vec<_>, _>>()?;
    for mut child in children {
        child.join_timeout(wait)?;
    }
    let total = counter.get()?;
    println!("Value (with its lock): {total} of {expected}");
    anyhow::ensure!(total == expected, "the locked counter lost increments");

    let lock = Lock::new()?;
    let held = Event::new()?;
    let mut holder = Process::new(hold_and_wait, (lock.clone(), held.clone())).start()?;
    anyhow::ensure!(held.wait_timeout(wait)?, "the holder never took the lock");
    println!("pid {} holds the lock; killing it", holder.pid());
    holder.kill()?;
    let _ = holder.join_timeout(wait);
    match lock.acquire_timeout(wait) {
        Err(SharedError::OwnerDied { pid }) => {
            println!("next acquire: the owner (pid {pid}) died holding it (Python would hang here)")
        }
        other => anyhow::bail!("expected OwnerDied, got {other:?}"),
    }
    let _guard = lock.acquire_timeout(wait)?;
    println!("and the lock works again");
    Ok(())
}
