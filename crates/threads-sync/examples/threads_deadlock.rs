//! Two threads take two locks in opposite orders: a deadlock, reported instead of hung.
//!
//! Then the same two code paths run one after the other, so nothing deadlocks, and the
//! lock-order checker still reports the inversion that could.

use std::sync::Arc;
use std::time::Duration;

use threads_sync::deadlock::{
    clear_lock_order_history, first_lock_order_violation, set_lock_order_checking,
};
use threads_sync::{Barrier, Lock, LockError, Thread};

/// Transfers take `accounts` then `ledger`; audits take `ledger` then `accounts`.
fn worker(
    first: Arc<Lock>,
    second: Arc<Lock>,
    both_hold_one: Option<Arc<Barrier>>,
) -> impl FnOnce() -> Result<&'static str, LockError> + Send + 'static {
    move || {
        let _first = first.acquire()?;
        if let Some(barrier) = both_hold_one {
            // Make sure both threads hold their first lock: the deadlock is certain.
            let _ = barrier.wait_timeout(Duration::from_secs(10));
        }
        let _second = second.acquire()?;
        Ok("done")
    }
}

fn main() -> anyhow::Result<()> {
    // On by default only in debug builds; this demo runs in release.
    set_lock_order_checking(true);
    let accounts = Arc::new(Lock::named("accounts"));
    let ledger = Arc::new(Lock::named("ledger"));

    println!(
        "teller takes accounts then ledger; auditor takes ledger then accounts, at the same time."
    );
    println!("(Python's threading.Lock would hang here forever.)");
    let barrier = Arc::new(Barrier::new(2)?);
    let mut teller = Thread::new(
        worker(accounts.clone(), ledger.clone(), Some(barrier.clone())),
        (),
    )
    .named("teller")
    .start()?;
    let mut auditor = Thread::new(worker(ledger.clone(), accounts.clone(), Some(barrier)), ())
        .named("auditor")
        .start()?;
    let mut victims = 0;
    for t in [&mut teller, &mut auditor] {
        let name = t.name().to_owned();
        match t.join_timeout(Duration::from_secs(10))? {
            Ok(status) => println!("  {name}: {status} (went on once the other backed off)"),
            Err(err) => {
                victims += 1;
                println!("  {name}: {err}");
            }
        }
    }
    anyhow::ensure!(victims == 1, "exactly one thread is refused");

    println!("\nNo deadlock this time: the two code paths run one after the other.");
    // Forget what the first run taught the checker: this run alone shows the inversion.
    clear_lock_order_history();
    let a = accounts.clone();
    let l = ledger.clone();
    Thread::new(worker(a, l, None), ())
        .named("transfer")
        .start()?
        .join()??;
    Thread::new(worker(ledger, accounts, None), ())
        .named("audit")
        .start()?
        .join()??;
    match first_lock_order_violation() {
        Some(violation) => println!("  lock-order checker: {violation}"),
        None => anyhow::bail!("the inversion should have been recorded"),
    }
    println!("\nThe program exits normally.");
    Ok(())
}
