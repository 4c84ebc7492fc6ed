//! Process: spawn, join, pids, failures as values, no hangs, children die with their parent.

mod common;

use common::is_gone;
use std::time::{Duration, Instant};

use process_ipc::{
    Connection, Process, ProcessError, Queue, QueueSender, START_TIMEOUT, current_pid, parent_pid,
    pipe,
};

const WAIT: Duration = Duration::from_secs(20);

fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[test]
fn smoke() {
    let mut child = Process::new(add, (40, 2)).start().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 42);
    assert_eq!(child.exitcode(), Some(0));
    assert!(!child.is_alive());
}

fn pids() -> (u32, u32) {
    (current_pid(), parent_pid())
}

#[test]
fn child_pid_differs_and_matches_its_own_view() {
    let mut child = Process::new(pids, ()).start().unwrap();
    let pid = child.pid();
    let (inside, parent) = child.join_timeout(WAIT).unwrap();
    assert_ne!(pid, current_pid());
    assert_eq!(inside, pid);
    assert_eq!(parent, current_pid());
}

fn strings(name: String, times: usize) -> Vec<String> {
    vec![name; times]
}

#[test]
fn structured_arguments_and_return_value() {
    let mut child = Process::new(strings, ("ab".to_string(), 3))
        .start()
        .unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), vec!["ab", "ab", "ab"]);
}

#[test]
fn closures_without_captures_are_targets() {
    let mut child = Process::new(|x: i32| x * 2, (21,)).start().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 42);
}

fn panics(message: String) -> u8 {
    panic!("{message}")
}

#[test]
fn panic_is_an_error_with_message_and_location() {
    let mut child = Process::new(panics, ("the answer is not 41".to_string(),))
        .start()
        .unwrap();
    let pid = child.pid();
    match child.join_timeout(WAIT) {
        Err(ProcessError::Panicked {
            pid: p,
            message,
            location,
        }) => {
            assert_eq!(p, pid);
            assert_eq!(message, "the answer is not 41");
            assert!(location.contains("process.rs"), "{location}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(child.exitcode(), Some(1));
}

fn wait_for_stop(stop: Queue<()>) -> u8 {
    // Returns when the parent puts, or when the parent's handle goes away.
    let _ = stop.get();
    0
}

#[test]
fn kill_is_an_error_naming_signal_9() {
    let stop = Queue::<()>::new().unwrap();
    let mut child = Process::new(wait_for_stop, (stop,)).start().unwrap();
    assert!(child.is_alive());
    child.kill().unwrap();
    let err = child.join_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, ProcessError::Killed { signal: 9, pid } if pid == child.pid()),
        "{err:?}"
    );
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    assert_eq!(child.exitcode(), Some(-9));
}

#[test]
fn terminate_sends_sigterm() {
    let stop = Queue::<()>::new().unwrap();
    let mut child = Process::new(wait_for_stop, (stop,)).start().unwrap();
    child.terminate().unwrap();
    let err = child.join_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, ProcessError::Killed { signal: 15, .. }),
        "{err:?}"
    );
}

fn exits(code: i32) -> u8 {
    std::process::exit(code)
}

#[test]
fn non_zero_exit_is_the_exit_code() {
    let mut child = Process::new(exits, (3,)).start().unwrap();
    let err = child.join_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, ProcessError::Exited { code: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn join_timeout_on_a_running_child_times_out_and_can_retry() {
    let stop = Queue::<()>::new().unwrap();
    let sender = stop.sender().unwrap();
    let mut child = Process::new(wait_for_stop_sender, (stop,)).start().unwrap();
    let err = child.join_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
    sender.put(()).unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 0);
    assert!(matches!(
        child.join_timeout(WAIT),
        Err(ProcessError::AlreadyJoined { .. })
    ));
}

fn wait_for_stop_sender(stop: Queue<()>) -> u8 {
    stop.get().unwrap();
    0
}

#[test]
fn child_dying_before_connecting_is_an_error_not_a_hang() {
    let started = Instant::now();
    let err = Process::new(add, (1, 2))
        .__exit_before_connect()
        .start()
        .unwrap_err();
    // Not a hang: well before the start deadline (the child's death closes the handshake).
    assert!(
        started.elapsed() < START_TIMEOUT / 2,
        "{:?}",
        started.elapsed()
    );
    match err {
        ProcessError::Bootstrap { reason, .. } => {
            assert!(reason.contains("exited with code 7"), "{reason}")
        }
        other => panic!("expected a bootstrap error, got {other:?}"),
    }
}

fn grandparent(report: QueueSender<u32>) -> u8 {
    let stop = Queue::<()>::new().unwrap();
    let grandchild = Process::new(wait_for_stop, (stop,)).start().unwrap();
    report.put(grandchild.pid()).unwrap();
    report.flush();
    // Stay alive until the test kills this process.
    std::thread::sleep(Duration::from_secs(60));
    std::mem::forget(grandchild);
    0
}

#[test]
fn children_die_when_their_parent_is_killed() {
    let report = Queue::<u32>::new().unwrap();
    let mut parent = Process::new(grandparent, (report.sender().unwrap(),))
        .start()
        .unwrap();
    let grandchild = report.get_timeout(WAIT).unwrap();
    assert!(!is_gone(grandchild));
    parent.kill().unwrap();
    assert!(matches!(
        parent.join_timeout(WAIT),
        Err(ProcessError::Killed { signal: 9, .. })
    ));
    let deadline = Instant::now() + Duration::from_secs(1);
    while !is_gone(grandchild) {
        assert!(
            Instant::now() < deadline,
            "grandchild {grandchild} outlived its parent by a second"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn dropping_a_handle_detaches_and_reaps() {
    let child = Process::new(add, (1, 1)).start().unwrap();
    let pid = child.pid();
    drop(child);
    let deadline = Instant::now() + WAIT;
    // Reaped means no /proc entry at all (a zombie still has one).
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "child {pid} was never reaped");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn many_children_in_parallel_threads() {
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Process::new(add, (i, 100)).start().unwrap();
                c.join_timeout(WAIT).unwrap()
            })
        })
        .collect();
    let mut got: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![100, 101, 102, 103]);
}

fn own_name() -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap()
}

#[test]
fn children_carry_the_parent_name_not_exe() {
    let mut child = Process::new(own_name, ()).start().unwrap();
    let name = child.join_timeout(WAIT).unwrap();
    assert_eq!(name, std::fs::read_to_string("/proc/self/comm").unwrap());
    assert_ne!(name.trim(), "exe");
}

#[test]
fn named_children_show_their_name() {
    let mut child = Process::new(own_name, ())
        .named("pipc-named")
        .start()
        .unwrap();
    assert_eq!(child.name(), "pipc-named");
    assert_eq!(child.join_timeout(WAIT).unwrap().trim(), "pipc-named");
    let unnamed = Process::new(add, (1, 2)).start().unwrap();
    assert!(unnamed.name().starts_with("Process-"), "{}", unnamed.name());
    assert_eq!(unnamed.join().unwrap(), 3);
}

fn fork_then_hang(report: Connection<u32>) -> u8 {
    // SAFETY: the grandchild only sleeps and exits (async-signal-safe calls after fork).
    match unsafe { libc::fork() } {
        0 => {
            // The grandchild keeps every inherited socket (the result channel too) open.
            // SAFETY: sleep and _exit are async-signal-safe.
            unsafe {
                libc::sleep(15);
                libc::_exit(0)
            }
        }
        grandchild => {
            report.send(grandchild as u32).unwrap();
            loop {
                std::thread::park();
            }
        }
    }
}

#[test]
fn death_is_known_at_once_even_if_a_grandchild_holds_the_sockets() {
    let (mine, theirs) = pipe::<u32>().unwrap();
    let mut child = Process::new(fork_then_hang, (theirs,)).start().unwrap();
    let grandchild = mine.recv_timeout(WAIT).unwrap();
    child.kill().unwrap();
    // The grandchild lives 15 s more; a join resting on the result socket would time out.
    let result = child.join_timeout(Duration::from_secs(5));
    // SAFETY: cleaning up the grandchild this test made (it is not our child to reap).
    unsafe { libc::kill(grandchild as i32, libc::SIGKILL) };
    match result {
        Err(ProcessError::Killed { signal: 9, .. }) => {}
        other => panic!("expected the SIGKILL error, got {other:?}"),
    }
    assert!(!child.is_alive());
    assert_eq!(child.exitcode(), Some(-9));
}

/// Refuses to be encoded, in its own words.
#[derive(Debug)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable says no"))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unencodable)
    }
}

fn takes_unencodable(_: Unencodable) -> u8 {
    0
}

#[test]
fn an_argument_that_cannot_be_encoded_says_why_in_its_own_words() {
    match Process::new(takes_unencodable, (Unencodable,)).start() {
        Err(ProcessError::Bootstrap { reason, .. }) => {
            assert!(reason.contains("Unencodable says no"), "{reason}");
        }
        other => panic!("expected a bootstrap error, got {other:?}"),
    }
}

/// `join_timeout(Duration::MAX)` means no limit (it used to panic with "overflow when adding
/// duration to instant"), and the handle it borrows still gives the exit code afterwards:
/// Python's `p.join(); p.exitcode`. The join runs on a thread so this test's wait is bounded.
#[test]
fn join_timeout_max_is_no_limit_and_the_exit_code_stays_readable() {
    let mut child = Process::new(exits, (3,)).start().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let joined = child.join_timeout(Duration::MAX);
        let _ = tx.send((joined, child));
    });
    let (joined, mut child) = rx.recv_timeout(WAIT).expect("join returned");
    assert!(
        matches!(joined, Err(ProcessError::Exited { code: 3, .. })),
        "{joined:?}"
    );
    assert_eq!(child.exitcode(), Some(3));
    assert!(!child.is_alive());

    let mut ok = Process::new(add, (1, 2)).start().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let joined = ok.join_timeout(Duration::MAX);
        let _ = tx.send((joined, ok));
    });
    let (joined, mut ok) = rx.recv_timeout(WAIT).expect("join returned");
    assert_eq!(joined.unwrap(), 3);
    assert_eq!(ok.exitcode(), Some(0));
}
