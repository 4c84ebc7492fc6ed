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
