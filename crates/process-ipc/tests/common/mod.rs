//! Helpers the test files share: a bound on every wait, a handle sent the way another process
//! gets it, a call bounded in time, a bounded poll, cleanup after a killed manager, and whether
//! a process is gone.

#![allow(dead_code)] // each test binary uses only some of them

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bound on every wait in these files: far above what any step needs, so a hang fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// A handle as another process gets it: through a real ipc channel. Its calls then go over
/// the manager's socket instead of to the objects directly.
pub(crate) fn through_ipc<H: Serialize + DeserializeOwned>(handle: &H) -> H {
    let (tx, rx) = ipc_channel::ipc::channel::<Vec<u8>>().expect("ipc channel");
    tx.send(postcard::to_stdvec(handle).expect("encode handle"))
        .expect("send handle");
    let bytes = rx.try_recv_timeout(LIMIT).expect("receive handle");
    postcard::from_bytes(&bytes).expect("decode handle")
}

/// Runs `f` on a thread and returns its result, or fails the test if it takes over `LIMIT`.
pub(crate) fn bounded<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(r) => r,
        Err(RecvTimeoutError::Timeout) => panic!("call still blocked after {LIMIT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("the thread panicked"),
    }
}

/// Polls `condition` until it holds; fails the test after `LIMIT`.
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A killed manager cannot remove its socket's directory: do it for it.
pub(crate) fn remove_sockets_of(pid: u32) {
    let prefix = format!("multitask-manager-{pid}-");
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` is gone: no longer in `/proc`, or a zombie (dead, waiting to be
/// reaped by init).
pub(crate) fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for init to reap it is dead too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}
