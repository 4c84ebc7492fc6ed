//! Daemon threads and Python's exit rule: `join_non_daemon` waits for every non-daemon
//! thread (handles dropped or not), never for a daemon. One test per topic file, alone in
//! this binary, because it waits for every thread the binary started.

use std::time::Duration;

use threads_sync::{Thread, ThreadError, join_non_daemon, join_non_daemon_timeout};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn smoke() {
    // Nothing started here: a Thread is a daemon only when asked (or made by a daemon).
    assert!(Thread::new(|| (), ()).daemon(true).is_daemon());
    assert!(!Thread::new(|| (), ()).is_daemon());
}

#[test]
fn join_non_daemon_waits_for_non_daemons_only() {
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    let (release_daemon, daemon_hold) = crossbeam_channel::bounded::<()>(0);
    let (out_tx, out) = crossbeam_channel::unbounded();
    // A daemon that outlives the check: join_non_daemon must not wait for it.
    let daemon = Thread::new(move || daemon_hold.recv_timeout(LONG).is_ok(), ())
        .named("daemon")
        .daemon(true)
        .start()
        .unwrap();
    // A non-daemon whose handle is dropped at once, like Python's fire-and-forget thread.
    drop(
        Thread::new(
            move || {
                let released = hold.recv_timeout(LONG).is_ok();
                out_tx.send("last words").unwrap();
                released
            },
            (),
        )
        .named("worker")
        .start()
        .unwrap(),
    );
    match join_non_daemon_timeout(Duration::from_millis(20)) {
        Err(ThreadError::Timeout { thread, .. }) => assert_eq!(thread, "worker"),
        other => panic!("expected a timeout naming the worker, got {other:?}"),
    }
    release.send_timeout((), LONG).unwrap();
    join_non_daemon();
    assert_eq!(out.try_recv(), Ok("last words"), "its output is never lost");
    assert!(daemon.is_alive(), "the daemon was not waited for");
    join_non_daemon_timeout(LONG).unwrap();
    release_daemon.send_timeout((), LONG).unwrap();
    assert!(daemon.join().unwrap());
}

/// Dropped by the child's own exit handler, which releases its non-daemon thread.
#[cfg(target_os = "linux")]
static RELEASE_AT_EXIT: std::sync::Mutex<Option<crossbeam_channel::Sender<()>>> =
    std::sync::Mutex::new(None);

/// The child's side of `at_exit_hook_waits_for_non_daemon_threads`: only runs when the
/// parent sets the variable. Its non-daemon thread may print only once the process is
/// already exiting: exit handlers run newest first, so the handler registered here (which
/// releases the thread) runs before the crate's (which joins it).
#[cfg(target_os = "linux")]
#[test]
fn child_side() {
    if std::env::var_os("THREADS_SYNC_AT_EXIT_CHILD").is_none() {
        return;
    }
    threads_sync::join_non_daemon_at_exit().unwrap();
    threads_sync::join_non_daemon_at_exit().unwrap(); // a second call is harmless
    let (release, wait) = crossbeam_channel::bounded::<()>(0);
    *RELEASE_AT_EXIT.lock().unwrap() = Some(release);
    extern "C" fn release_at_exit() {
        drop(RELEASE_AT_EXIT.lock().map(|mut r| r.take()));
    }
    // SAFETY: a plain extern "C" fn that does not unwind (a poisoned lock is ignored).
    assert_eq!(unsafe { libc::atexit(release_at_exit) }, 0);
    Thread::new(
        move || {
            // Disconnected by `release_at_exit`, when the process is exiting.
            let _ = wait.recv_timeout(LONG);
            println!("last words from a non-daemon thread");
        },
        (),
    )
    .start()
    .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn at_exit_hook_waits_for_non_daemon_threads() {
    use std::io::Read;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_side", "--exact", "--nocapture", "--test-threads=1"])
        .env("THREADS_SYNC_AT_EXIT_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send((child.wait(), out));
    });
    let Ok((status, out)) = rx.recv_timeout(LONG * 3) else {
        // SAFETY: kill(2) on the child we spawned, which its waiter has not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("the child did not exit");
    };
    assert!(status.unwrap().success(), "{out}");
    assert!(
        out.contains("last words from a non-daemon thread"),
        "the exit waited for the thread: {out}"
    );
}
