//! A process killed inside a `Condition`'s lock or at a `Barrier` is reported, never hidden:
//! the condition's waiter gets `OwnerDied`, the barrier's other parties a broken barrier that
//! names the dead pid. Real child processes, killed with SIGKILL once they are where the test
//! wants them (synchronised on events and the barrier's own count, never on sleeps). Every
//! wait is bounded.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use process_ipc::{Barrier, Condition, Event, Process, SharedError};

const WAIT: Duration = Duration::from_secs(20);

/// Takes the condition's lock (once the parent's wait lets it go), wakes the waiter, says so,
/// and holds the lock until killed.
fn take_notify_and_hold(cond: Condition, held: Event) {
    let _guard = cond.acquire().unwrap();
    cond.notify_all();
    held.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// Starts a child that takes `cond`'s lock and holds it, and a thread that kills the child
/// once it holds it; the child's pid and the killer (which joins the child).
fn holder_killed_once_it_holds(cond: &Condition) -> (u32, std::thread::JoinHandle<()>) {
    let held = Event::new().unwrap();
    let mut child = Process::new(take_notify_and_hold, (cond.clone(), held.clone()))
        .start()
        .unwrap();
    let pid = child.pid();
    let killer = std::thread::spawn(move || {
        assert!(held.wait_timeout(WAIT).unwrap(), "the child took the lock");
        child.kill().unwrap();
        assert!(child.join_timeout(WAIT).is_err(), "killed, not returned");
    });
    (pid, killer)
}

#[test]
fn a_condition_wait_timeout_reports_a_holder_killed_meanwhile_and_the_lock_works_after() {
    let cond = Condition::new().unwrap();
    let mut guard = cond.acquire().unwrap();
    let (pid, killer) = holder_killed_once_it_holds(&cond);
    let started = Instant::now();
    match cond.wait_timeout(&mut guard, WAIT) {
        Err(SharedError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("expected OwnerDied naming {pid}, got {other:?}"),
    }
    assert!(
        started.elapsed() < WAIT / 2,
        "reported at the death, not the timeout"
    );
    killer.join().unwrap();
    // The guard holds the lock again: a wait on it works, and so does the next holder.
    assert!(
        !cond
            .wait_timeout(&mut guard, Duration::from_millis(5))
            .unwrap()
    );
    drop(guard);
    let again = cond.acquire();
    assert!(again.is_ok(), "usable after the report: {again:?}");
}

#[test]
fn a_condition_wait_reports_a_holder_killed_meanwhile() {
    let cond = Condition::new().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let (pid_tx, pid_rx) = mpsc::channel();
    let waiter_cond = cond.clone();
    // The untimed wait runs in a thread so that the test's own wait stays bounded.
    std::thread::spawn(move || {
        let mut guard = waiter_cond.acquire().unwrap();
        let (pid, killer) = holder_killed_once_it_holds(&waiter_cond);
        pid_tx.send(pid).unwrap();
        let result = waiter_cond.wait(&mut guard);
        drop(guard);
        killer.join().unwrap();
        done_tx.send(result).unwrap();
    });
    let pid = pid_rx.recv_timeout(WAIT).unwrap();
    match done_rx.recv_timeout(WAIT).expect("wait() returned") {
        Err(SharedError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("expected OwnerDied naming {pid}, got {other:?}"),
    }
    assert!(cond.acquire_timeout_ok());
}

/// `Condition::acquire` within a bound, for the test's last check.
trait AcquireWithin {
    fn acquire_timeout_ok(&self) -> bool;
}

impl AcquireWithin for Condition {
    fn acquire_timeout_ok(&self) -> bool {
        let (tx, rx) = mpsc::channel();
        let cond = self.clone();
        std::thread::spawn(move || tx.send(cond.acquire().is_ok()).unwrap());
        rx.recv_timeout(WAIT) == Ok(true)
    }
}

/// Waits at the barrier with no limit (until killed).
fn wait_for_ever(barrier: Barrier) {
    let _ = barrier.wait();
}

/// Waits at the barrier; what it said (the error as text).
fn wait_and_say(barrier: Barrier) -> Result<u32, String> {
    barrier.wait_timeout(WAIT).map_err(|e| e.to_string())
}

/// Waits (yielding, bounded) until `n` parties wait at `barrier`.
fn until_waiting(barrier: &Barrier, n: u32) {
    let deadline = Instant::now() + WAIT;
    while barrier.n_waiting() < n {
        assert!(Instant::now() < deadline, "{n} parties never waited");
        std::thread::yield_now();
    }
}

#[test]
fn the_last_party_finds_a_killed_waiter_and_gets_a_broken_barrier_naming_it() {
    let barrier = Barrier::new(2).unwrap();
    let mut child = Process::new(wait_for_ever, (barrier.clone(),))
        .start()
        .unwrap();
    until_waiting(&barrier, 1);
    let pid = child.pid();
    child.kill().unwrap();
    assert!(child.join_timeout(WAIT).is_err());
    // Python's barrier lets this party go on as if the dead one had come.
    let err = barrier.wait_timeout(WAIT).unwrap_err();
    assert!(matches!(err, SharedError::BrokenBarrier { .. }), "{err}");
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
    assert!(barrier.broken());
}

#[test]
fn parties_asleep_at_a_barrier_wake_with_the_pid_of_a_party_killed_there() {
    let barrier = Barrier::new(3).unwrap();
    let mut doomed = Process::new(wait_for_ever, (barrier.clone(),))
        .start()
        .unwrap();
    until_waiting(&barrier, 1);
    let mut live = Process::new(wait_and_say, (barrier.clone(),))
        .start()
        .unwrap();
    until_waiting(&barrier, 2);
    let pid = doomed.pid();
    doomed.kill().unwrap();
    // Not joined yet: a zombie is dead too.
    let started = Instant::now();
    let said = live.join_timeout(WAIT).unwrap();
    assert!(
        started.elapsed() < WAIT / 2,
        "woken by the death, not a timeout"
    );
    let text = said.unwrap_err();
    assert!(text.contains("broken"), "{text}");
    assert!(text.contains(&pid.to_string()), "{text}");
    assert!(doomed.join_timeout(WAIT).is_err());
    // A party that comes later hears the same.
    let err = barrier.wait_timeout(WAIT).unwrap_err();
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
}

#[test]
fn a_barrier_of_live_parties_still_lets_them_go_on_together_twice() {
    let barrier = Barrier::new(2).unwrap();
    for _ in 0..2 {
        let mut child = Process::new(wait_and_say, (barrier.clone(),))
            .start()
            .unwrap();
        let mine = barrier.wait_timeout(WAIT).unwrap();
        let theirs = child.join_timeout(WAIT).unwrap().unwrap();
        assert_eq!(mine + theirs, 1);
    }
    assert!(!barrier.broken());
}
