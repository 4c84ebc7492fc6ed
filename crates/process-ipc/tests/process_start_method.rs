//! Start methods: what the fork server must keep of Spawn's guarantees (pid, status, reaping,
//! death with the parent, a clean child) and how it survives its own death. Each test names its
//! method, so it means the same under either `PROCESS_IPC_START_METHOD`.

mod common;

use common::is_gone;
use std::time::{Duration, Instant};

use process_ipc::{
    __fork_server_pid, Process, ProcessError, Queue, QueueSender, StartMethod, current_pid,
    parent_pid,
};

const WAIT: Duration = Duration::from_secs(20);
const BOTH: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pids() -> (u32, u32) {
    (current_pid(), parent_pid())
}

/// Threads of this process, from /proc.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Polls (bounded) until `pid` is gone.
fn assert_gone_within(pid: u32, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "{what} {pid} still alive");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_pid_is_the_childs_and_the_child_is_ours() {
    for method in BOTH {
        let child = Process::new(pids, ()).start_method(method).start().unwrap();
        let pid = child.pid();
        let (own, parent) = child.join().unwrap();
        assert_eq!((own, parent), (pid, current_pid()), "{method:?}");
    }
}

#[test]
fn a_forked_child_has_none_of_the_parents_threads() {
    // This test process has several threads (the harness's, the watchdog's...); the child has
    // its main thread only (it dies with the parent through the parent-death signal, which
    // needs no watcher thread).
    let child = Process::new(threads, ())
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(child.join().unwrap(), 1);
}

fn wait_then_add(stop: Queue<()>, a: u64, b: u64) -> u64 {
    stop.get().unwrap();
    a + b
}

#[test]
fn killed_mid_task_is_an_error_naming_pid_and_signal() {
    for method in BOTH {
        let stop = Queue::<()>::new().unwrap();
        let mut child = Process::new(wait_then_add, (stop, 1, 2))
            .start_method(method)
            .start()
            .unwrap();
        let pid = child.pid();
        child.kill().unwrap();
        match child.join_timeout(WAIT) {
            Err(ProcessError::Killed { pid: p, signal: 9 }) => assert_eq!(p, pid),
            other => panic!("{method:?}: expected Killed(9), got {other:?}"),
        }
        assert_eq!(child.exitcode(), Some(-9), "{method:?}");
    }
}

fn exits(code: i32) -> u8 {
    std::process::exit(code)
}

#[test]
fn exit_codes_come_back() {
    for method in BOTH {
        let mut child = Process::new(exits, (7,))
            .start_method(method)
            .start()
            .unwrap();
        let pid = child.pid();
        match child.join_timeout(WAIT) {
            Err(ProcessError::Exited { pid: p, code: 7 }) => assert_eq!(p, pid),
            other => panic!("{method:?}: expected Exited(7), got {other:?}"),
        }
    }
}

#[test]
fn a_child_dying_before_connecting_is_a_start_error() {
    for method in BOTH {
        let err = Process::new(add, (1, 2))
            .start_method(method)
            .__exit_before_connect()
            .start()
            .unwrap_err();
        match err {
            ProcessError::Bootstrap { reason, .. } => {
                assert!(
                    reason.contains("exited with code 7"),
                    "{method:?}: {reason}"
                )
            }
            other => panic!("{method:?}: expected a bootstrap error, got {other:?}"),
        }
    }
}

#[test]
fn a_killed_fork_server_is_restarted_by_the_next_start() {
    let once = Process::new(add, (1, 2))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    // A child started before the server dies is the parent's own: it runs on.
    let stop = Queue::<()>::new().unwrap();
    let go = stop.sender().unwrap();
    let running = Process::new(wait_then_add, (stop, 20, 22))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(once.join().unwrap(), 3);
    let server = __fork_server_pid().expect("a fork server runs");
    // SAFETY: kill has no memory preconditions; the server is unreaped until its reaper sees it
    // exit, so the pid is still the server's.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
    let started = Instant::now();
    let again = Process::new(add, (40, 2))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    assert_eq!(again.join().unwrap(), 42);
    let now = __fork_server_pid().expect("a fork server runs again");
    assert_ne!(now, server);
    // The dead server is reaped by its own thread (which may see it exit a moment after we
    // do): no zombie is left. `is_gone` counts a zombie as gone, so wait for the entry itself.
    assert_gone_within(server, WAIT, "the killed fork server");
    let deadline = Instant::now() + WAIT;
    while std::path::Path::new(&format!("/proc/{server}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the killed fork server {server} was not reaped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    go.put(()).unwrap();
    assert_eq!(running.join().unwrap(), 42);
}

fn middle(report: QueueSender<(u32, u32)>) -> u8 {
    let stop = Queue::<()>::new().unwrap();
    let child = Process::new(wait_then_add, (stop, 1, 1))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    let server = __fork_server_pid().expect("a fork server runs");
    report.put((child.pid(), server)).unwrap();
    report.flush();
    // Stay alive until the test kills this process.
    std::thread::park_timeout(Duration::from_secs(60));
    std::mem::forget(child);
    0
}

#[test]
fn the_fork_server_and_its_children_die_with_the_parent() {
    let report = Queue::<(u32, u32)>::new().unwrap();
    let mut parent = Process::new(middle, (report.sender().unwrap(),))
        .start()
        .unwrap();
    let (child, server) = report.get_timeout(WAIT).unwrap();
    assert!(!is_gone(child) && !is_gone(server));
    parent.kill().unwrap();
    assert!(matches!(
        parent.join_timeout(WAIT),
        Err(ProcessError::Killed { signal: 9, .. })
    ));
    assert_gone_within(child, Duration::from_secs(2), "the forked child");
    assert_gone_within(server, Duration::from_secs(2), "the fork server");
}

/// In a fresh process: the fork server's first child is started from a thread that then
/// exits; the child must outlive that thread (it dies with the process, not the thread).
fn start_from_a_passing_thread() -> u64 {
    let stop = Queue::<()>::new().unwrap();
    let go = stop.sender().unwrap();
    let child = std::thread::spawn(move || {
        Process::new(wait_then_add, (stop, 20, 22))
            .start_method(StartMethod::ForkServer)
            .start()
            .unwrap()
    })
    .join()
    .unwrap();
    go.put(()).unwrap();
    go.flush();
    let mut child = child;
    child.join_timeout(WAIT).unwrap()
}

#[test]
fn a_forked_child_outlives_the_thread_that_started_it() {
    let parent = Process::new(start_from_a_passing_thread, ())
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    assert_eq!(parent.join().unwrap(), 42);
}

#[test]
fn dropped_handles_of_forked_children_leave_no_zombie() {
    let child = Process::new(add, (1, 2))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    let pid = child.pid();
    drop(child);
    let deadline = Instant::now() + WAIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "child {pid} was never reaped");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tagged(tag: u64) -> (u64, u32) {
    (tag, current_pid())
}

#[test]
fn concurrent_starts_each_get_their_own_childs_pid() {
    // The fork server answers requests in order, but each start reads its answer only after
    // its child confirmed: answers read by one start for another must reach the right one.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..8 {
                    let tag = t * 100 + i;
                    let child = Process::new(tagged, (tag,))
                        .start_method(StartMethod::ForkServer)
                        .start()
                        .unwrap();
                    let pid = child.pid();
                    assert_eq!(child.join().unwrap(), (tag, pid));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn total(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn arguments_larger_than_a_socket_buffer_reach_a_forked_child() {
    // Written before the fork is answered: a message larger than the socket's buffer goes in
    // fragments the child reads once it runs.
    let bytes: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let want = total(bytes.clone());
    for method in BOTH {
        let mut child = Process::new(total, (bytes.clone(),))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(WAIT).unwrap(), want, "{method:?}");
    }
}
