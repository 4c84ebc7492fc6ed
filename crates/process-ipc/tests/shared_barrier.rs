//! Python's `Barrier(parties, action=None, timeout=None)` across processes (CPython
//! lock_tests' `test_action` and `test_default_timeout`): the action runs once per round in
//! the process of the last party to arrive, a panicking action or a party killed inside it
//! breaks the barrier, the default timeout is every handle's, and an action is never taken
//! from a handle the barrier does not agree with.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use process_ipc::{Barrier, Process, SharedError, StartMethod, parent_process};

const WAIT: Duration = Duration::from_secs(20);
const ROUNDS: usize = 3;

/// How many times the action ran in this process.
static RUNS: AtomicU32 = AtomicU32::new(0);

fn count_round() {
    RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Passes the barrier `ROUNDS` times: per round, the index got and this process's action
/// count after it.
fn party(barrier: Barrier) -> Result<Vec<(u32, u32)>, String> {
    (0..ROUNDS)
        .map(|_| {
            let index = barrier.wait_timeout(WAIT).map_err(|e| e.to_string())?;
            Ok((index, RUNS.load(Ordering::SeqCst)))
        })
        .collect()
}

#[test]
fn the_action_runs_once_per_round_in_the_last_party_to_arrive() {
    let barrier = Barrier::new(3).unwrap().with_action(count_round);
    // Spawned and forked parties both: the action's offset holds in a re-executed child too.
    let methods = [
        StartMethod::Spawn,
        StartMethod::ForkServer,
        StartMethod::Spawn,
    ];
    let mut children: Vec<_> = methods
        .into_iter()
        .map(|method| {
            Process::new(party, (barrier.clone(),))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    let rounds: Vec<Vec<(u32, u32)>> = children
        .iter_mut()
        .map(|child| child.join_timeout(WAIT).unwrap().unwrap())
        .collect();
    for round in 0..ROUNDS {
        let lasts = rounds.iter().filter(|r| r[round].0 == 2).count();
        assert_eq!(lasts, 1, "one last party in round {round}: {rounds:?}");
        for party in &rounds {
            let before = if round == 0 { 0 } else { party[round - 1].1 };
            let ran = party[round].1 - before;
            assert_eq!(
                ran,
                u32::from(party[round].0 == 2),
                "the action ran in the last party only, round {round}: {rounds:?}"
            );
        }
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 0, "not a party: never ran it");
}

fn fail_action() {
    panic!("the action failed");
}

/// Waits once: "ok", the action's panic message, or "broken".
fn wait_and_tell(barrier: Barrier) -> String {
    match barrier.wait_timeout(WAIT) {
        Ok(_) => "ok".into(),
        Err(SharedError::ActionPanicked { message }) => message,
        Err(SharedError::BrokenBarrier { dead_party: None }) => "broken".into(),
        Err(other) => format!("unexpected: {other}"),
    }
}

#[test]
fn a_panicking_action_breaks_the_barrier_for_every_party() {
    let barrier = Barrier::new(3).unwrap().with_action(fail_action);
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            Process::new(wait_and_tell, (barrier.clone(),))
                .start()
                .unwrap()
        })
        .collect();
    let mut told: Vec<String> = children
        .iter_mut()
        .map(|child| child.join_timeout(WAIT).unwrap())
        .collect();
    told.sort();
    assert_eq!(told, ["broken", "broken", "the action failed"]);
    assert!(barrier.broken());
    assert!(matches!(
        barrier.wait_timeout(WAIT),
        Err(SharedError::BrokenBarrier { dead_party: None })
    ));
    // Reset, it works again (and the action still panics, breaking it again).
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

/// The default timeout as this process sees it, and what a `wait` with it gave.
fn wait_default(barrier: Barrier) -> (Option<Duration>, Result<u32, String>) {
    (barrier.timeout(), barrier.wait().map_err(|e| e.to_string()))
}

#[test]
fn the_default_timeout_is_every_handles_and_breaks_a_lone_wait() {
    let barrier = Barrier::new(2).unwrap();
    let copy = barrier.clone();
    let barrier = barrier.with_timeout(Duration::from_millis(100));
    assert_eq!(copy.timeout(), Some(Duration::from_millis(100)));
    let started = Instant::now();
    let mut child = Process::new(wait_default, (copy,)).start().unwrap();
    let (timeout, waited) = child.join_timeout(WAIT).unwrap();
    assert_eq!(timeout, Some(Duration::from_millis(100)));
    assert!(
        waited.as_ref().is_err_and(|e| e.contains("broken")),
        "{waited:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(barrier.broken());
    // An explicit timeout overrides the default: two parties with a long one pass.
    barrier.reset().unwrap();
    let mut child = Process::new(party_once, (barrier.clone(),))
        .start()
        .unwrap();
    let mine = barrier.wait_timeout(WAIT).unwrap();
    let theirs = child.join_timeout(WAIT).unwrap().unwrap();
    assert_eq!(mine + theirs, 1);
    // A barrier without one has none.
    assert_eq!(Barrier::new(2).unwrap().timeout(), None);
}

fn party_once(barrier: Barrier) -> Result<u32, String> {
    barrier.wait_timeout(WAIT).map_err(|e| e.to_string())
}

/// The action of a barrier whose last party is a child: the child dies in it.
fn die_in_action() {
    if parent_process().is_some() {
        std::process::abort();
    }
}

#[test]
fn a_party_killed_inside_the_action_breaks_the_barrier_naming_it() {
    let barrier = Barrier::new(2).unwrap().with_action(die_in_action);
    let first = barrier.clone();
    let waiter = std::thread::spawn(move || first.wait_timeout(WAIT));
    let deadline = Instant::now() + WAIT;
    while barrier.n_waiting() < 1 {
        assert!(Instant::now() < deadline, "the first party never waited");
        std::thread::yield_now();
    }
    let mut doomed = Process::new(party_once, (barrier.clone(),))
        .start()
        .unwrap();
    let pid = doomed.pid();
    assert!(doomed.join_timeout(WAIT).is_err(), "it died in the action");
    let got = waiter.join().unwrap();
    assert!(
        matches!(got, Err(SharedError::BrokenBarrier { dead_party: Some(p) }) if p == pid),
        "{got:?}"
    );
}

/// How many times `count_here` ran in this process (the test process only).
static HERE: AtomicU32 = AtomicU32::new(0);

fn count_here() {
    HERE.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn an_action_the_barrier_does_not_agree_with_is_refused_not_run() {
    // A handle made before `with_action` cannot run it: the last party breaks the barrier.
    let early = Barrier::new(1).unwrap();
    let barrier = early.clone().with_action(count_here);
    assert!(matches!(early.wait(), Err(SharedError::Refused { .. })));
    assert!(barrier.broken());
    barrier.reset().unwrap();
    assert_eq!(barrier.wait().unwrap(), 0, "the right handle passes");
    // A handle received with another action's offset is refused when it arrives.
    let bytes = postcard::to_stdvec(&barrier).unwrap();
    let (name, offset): (String, Option<u64>) = postcard::from_bytes(&bytes).unwrap();
    assert!(offset.is_some());
    let forged = postcard::to_stdvec(&(name.clone(), offset.map(|o| o.wrapping_add(64)))).unwrap();
    let refused = postcard::from_bytes::<Barrier>(&forged);
    assert!(refused.is_err(), "a forged offset is refused");
    // One without an action where the block records one is received, and refused at the
    // barrier instead of passing without the action.
    let bare = postcard::to_stdvec(&(name, None::<u64>)).unwrap();
    let bare: Barrier = postcard::from_bytes(&bare).unwrap();
    assert!(matches!(bare.wait(), Err(SharedError::Refused { .. })));
    // The real one round-trips and runs the action.
    barrier.reset().unwrap();
    let received: Barrier = postcard::from_bytes(&bytes).unwrap();
    let before = HERE.load(Ordering::SeqCst);
    assert_eq!(received.wait().unwrap(), 0);
    assert_eq!(HERE.load(Ordering::SeqCst), before + 1);
}
