//! Python's exit rule for child processes: non-daemon children are joined and daemon children
//! terminated when the program ends normally (`join_non_daemon_at_exit`), or on request
//! (`join_non_daemon`); a pool's workers are daemons.
//!
//! The "program" that ends is a child process here. Its target either calls
//! `std::process::exit`, which runs the `atexit(3)` hooks as the end of `main` does, or returns:
//! a child then applies the rule by itself, as Python's children do, without any hook.

use std::sync::Mutex;
use std::time::Duration;

use process_ipc::{
    Connection, PipeError, Pool, Process, ProcessError, ProcessHandle, join_non_daemon_at_exit,
    join_non_daemon_timeout, pipe,
};

const LONG: Duration = Duration::from_secs(60);

/// The writer's go signal, sent by the parent's exit hook.
static GO: Mutex<Option<Connection<()>>> = Mutex::new(None);
/// The daemon's handle, and where to say how it ended, for the parent's last exit hook.
static DAEMON: Mutex<Option<(ProcessHandle<()>, Connection<String>)>> = Mutex::new(None);

/// Runs `f` on a thread of its own: by the time `atexit(3)` hooks run, glibc has destroyed
/// the exiting thread's thread-locals, which ipc-channel's `send` needs.
fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
    let _ = std::thread::spawn(f).join();
}

/// Registered before the exit rule, so it runs after it: says how the daemon ended.
extern "C" fn report_daemon() {
    on_fresh_thread(|| {
        let taken = DAEMON.lock().ok().and_then(|mut d| d.take());
        if let Some((mut daemon, report)) = taken {
            let outcome = daemon.join_timeout(LONG);
            let _ = report.send(format!("{outcome:?}"));
        }
    });
}

/// Registered after the exit rule, so it runs before it: the parent's `main` has returned,
/// the exit has begun; only now may the writer say its last line.
extern "C" fn release_writer() {
    on_fresh_thread(|| {
        if let Some(go) = GO.lock().ok().and_then(|mut g| g.take()) {
            let _ = go.send(());
        }
    });
}

/// Waits for its go, then still has work to do (a process of its own to start and join, some
/// milliseconds) before its last line.
fn last_words(out: Connection<String>, go: Connection<()>) {
    go.recv().unwrap();
    let nine = Process::new(square, (3,)).start().unwrap().join().unwrap();
    out.send(format!("last words: {nine}")).unwrap();
}

fn daemon_forever() {
    loop {
        std::thread::park();
    }
}

/// A parent whose non-daemon writer speaks only once the exit has begun; it ends the program
/// with `std::process::exit`. Its only hook that can hold the exit up is the exit rule.
fn parent_of_a_writer(out: Connection<String>) {
    join_non_daemon_at_exit().unwrap();
    let (go, go_theirs) = pipe::<()>().unwrap();
    let writer = Process::new(last_words, (out, go_theirs)).start().unwrap();
    drop(writer); // detached: the exit rule still waits for it
    *GO.lock().unwrap() = Some(go);
    // SAFETY: a plain extern "C" fn that lives as long as the program and does not unwind.
    assert_eq!(unsafe { libc::atexit(release_writer) }, 0);
    std::process::exit(0);
}

#[test]
fn at_exit_a_non_daemon_child_finishes_its_work() {
    let (out, out_theirs) = pipe::<String>().unwrap();
    let mut parent = Process::new(parent_of_a_writer, (out_theirs,))
        .start()
        .unwrap();
    // Sent only after the parent's exit began: without the rule, the parent's exit would take
    // the writer down (the lifeline) before it could say it.
    assert_eq!(out.recv_timeout(LONG).unwrap(), "last words: 9");
    match parent.join_timeout(LONG) {
        Err(ProcessError::Exited { code: 0, .. }) => {}
        other => panic!("the parent ended with exit(0), no report: {other:?}"),
    }
}

/// Waits until its parent's target has returned (the parent's end of `parent_done` closes
/// then), then still has work to do (a process of its own to start and join) before its last
/// line.
fn outlives_its_parents_target(out: Connection<String>, parent_done: Connection<()>) {
    assert!(matches!(
        parent_done.recv_timeout(LONG),
        Err(PipeError::Disconnected { .. })
    ));
    let nine = Process::new(square, (3,)).start().unwrap().join().unwrap();
    out.send(format!("after the return: {nine}")).unwrap();
}

/// Starts a non-daemon child that works on after this target returns, and returns at once,
/// with no hook and no join.
fn returns_before_its_child(out: Connection<String>) -> u32 {
    let (done, done_theirs) = pipe::<()>().unwrap();
    let child = Process::new(outlives_its_parents_target, (out, done_theirs))
        .start()
        .unwrap();
    let pid = child.pid();
    drop(child); // detached
    // `done` is dropped as this returns, which is the child's go.
    let _done = done;
    pid
}

#[test]
fn a_child_waits_for_its_non_daemon_children_when_its_target_returns() {
    let (out, out_theirs) = pipe::<String>().unwrap();
    let mut parent = Process::new(returns_before_its_child, (out_theirs,))
        .start()
        .unwrap();
    // The grandchild speaks only after the parent's target returned: had the parent exited
    // then, the grandchild would have died with it, and `out` would be disconnected.
    assert_eq!(out.recv_timeout(LONG).unwrap(), "after the return: 9");
    let grandchild = parent.join_timeout(LONG).unwrap();
    assert_ne!(grandchild, parent.pid());
    // The join came after the grandchild's end: the parent waited for it.
    assert!(matches!(
        out.recv_timeout(LONG),
        Err(PipeError::Disconnected { .. })
    ));
}

/// A parent with a daemon that would run forever; its last exit hook reports how it ended.
/// It ends the program with `std::process::exit`.
fn parent_of_a_daemon(report: Connection<String>) {
    // SAFETY: as above.
    assert_eq!(unsafe { libc::atexit(report_daemon) }, 0);
    join_non_daemon_at_exit().unwrap();
    let daemon = Process::new(daemon_forever, ())
        .daemon(true)
        .start()
        .unwrap();
    assert!(daemon.is_daemon());
    *DAEMON.lock().unwrap() = Some((daemon, report));
    std::process::exit(0);
}

#[test]
fn at_exit_a_daemon_child_is_terminated() {
    let (report, report_theirs) = pipe::<String>().unwrap();
    let mut parent = Process::new(parent_of_a_daemon, (report_theirs,))
        .start()
        .unwrap();
    // The parent is still alive while its last hook joins the daemon: only the exit rule's
    // SIGTERM (not the lifeline) can have ended it.
    let daemon_end = report.recv_timeout(LONG).unwrap();
    assert!(
        daemon_end.contains("Killed") && daemon_end.contains("signal: 15"),
        "the daemon should have ended by SIGTERM: {daemon_end}"
    );
    match parent.join_timeout(LONG) {
        Err(ProcessError::Exited { code: 0, .. }) => {}
        other => panic!("the parent ended with exit(0), no report: {other:?}"),
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn leaks_a_pool() -> u8 {
    join_non_daemon_at_exit().unwrap();
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
    std::mem::forget(pool);
    7
}

#[test]
fn a_leaked_pool_does_not_hold_the_exit_up() {
    // Its workers are daemons: the exit terminates them instead of waiting for them forever.
    let mut parent = Process::new(leaks_a_pool, ()).start().unwrap();
    assert_eq!(parent.join_timeout(LONG).unwrap(), 7);
}

fn wait_for_go(go: Connection<()>) {
    let _ = go.recv();
}

#[test]
fn join_non_daemon_waits_for_non_daemon_children_only() {
    let (_keep, daemon_go) = pipe::<()>().unwrap();
    let mut daemon = Process::new(wait_for_go, (daemon_go,))
        .daemon(true)
        .start()
        .unwrap();
    assert!(daemon.is_daemon());
    let (go, worker_go) = pipe::<()>().unwrap();
    let plain = Process::new(wait_for_go, (worker_go,));
    assert!(!plain.is_daemon(), "children are not daemons by default");
    let worker = plain.start().unwrap();
    assert!(!worker.is_daemon());
    drop(worker); // detached: still waited for
    match join_non_daemon_timeout(Duration::from_millis(50)) {
        Err(ProcessError::Timeout { .. }) => {}
        other => panic!("the worker waits for its go, so the join must time out: {other:?}"),
    }
    go.send(()).unwrap();
    join_non_daemon_timeout(LONG).unwrap();
    assert!(daemon.is_alive(), "a daemon child is not waited for");
    daemon.kill().unwrap();
    assert!(matches!(
        daemon.join_timeout(LONG),
        Err(ProcessError::Killed { signal: 9, .. })
    ));
}
