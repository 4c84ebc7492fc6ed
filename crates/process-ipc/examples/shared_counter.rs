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

use process_ipc::{Barrier, Event, Lock, Process, RawValue, SharedError, Value, current_pid};

const PROCESSES: usize = 4;
const EACH: u64 = 200_000;
/// The racers' first round: an unlocked increment takes about a nanosecond, so each loop
/// must last milliseconds to overlap the others' (the last to wake from the barrier starts
/// later by a wake-up's latency).
const RACY_EACH: u64 = 4_000_000;
/// The most rounds the racy counter runs, doubling its work each time, until it loses one.
const RACE_ROUNDS: u32 = 4;

/// All the racers pass `start` together, so their loops overlap however busy the machine is
/// (started one after another, each could finish before the next begins).
fn add_racy(counter: RawValue<u64>, start: Barrier, times: u64) -> u32 {
    let _ = start.wait_timeout(Duration::from_secs(30));
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

    // Without a lock: on a busy or a quiet machine, a round of overlapping loops loses
    // updates; on the rare round that does not, the next one runs twice as long.
    let mut each = RACY_EACH;
    for round in 1..=RACE_ROUNDS {
        let racy = RawValue::new(0u64)?;
        let start = Barrier::new(PROCESSES as u32)?;
        let children = (0..PROCESSES)
            .map(|_| Process::new(add_racy, (racy.clone(), start.clone(), each)).start())
            .collect::<Result<Vec<_>, _>>()?;
        let mut pids = Vec::new();
        for mut child in children {
            pids.push(child.join_timeout(wait)?);
        }
        let (want, got) = (PROCESSES as u64 * each, racy.get());
        println!(
            "RawValue (no lock): {PROCESSES} processes {pids:?} x {each} increments = {got} of \
             {want}: {} lost",
            want - got
        );
        if got < want {
            break;
        }
        if round == RACE_ROUNDS {
            println!("(no update lost in {RACE_ROUNDS} rounds: the processes never overlapped)");
        }
        each *= 2;
    }

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
