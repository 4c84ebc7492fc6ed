//! Python's exit rule for child processes: when the program ends normally, non-daemon children
//! are joined and daemon children terminated.
//!
//! Rust runs nothing after `main` by itself, so in the main program the rule applies on
//! request, as for threads in `threads_sync`: [`join_non_daemon`] at the end of `main`, or
//! [`join_non_daemon_at_exit`] once, an `atexit(3)` hook that runs when `main` returns or
//! `std::process::exit` is called. Without either, every child dies with this process (the
//! lifeline), daemon or not. A child process applies it by itself when its target ends (as
//! Python's child runs its exit function whatever it registered), before it exits. A *killed*
//! parent (SIGKILL, a crash, an abort) runs no hook: its children still die at once through
//! the lifeline, daemon or not, which Python does not promise.
//!
//! Each child is followed through a pidfd (`pidfd_open(2)`), opened while its handle still
//! holds it unreaped: waiting on it never reaps the child (its handle, or the reaper thread
//! of a dropped handle, still does), and a pid reused later cannot be mistaken for it.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::ProcessError;
use crate::sys::{self, has_exited, pidfd_open, pidfd_signal};

/// How long the exit hook waits for terminated daemons before it sends SIGKILL.
const DAEMON_GRACE: Duration = Duration::from_secs(2);

/// A child this process started and may still have to wait for or terminate.
struct Followed {
    /// Its token from [`register`], which no other entry ever has (pids are reused).
    id: u64,
    pid: u32,
    daemon: bool,
    /// Shared, so a waiter polls it without holding the registry's lock.
    pidfd: Arc<OwnedFd>,
}

/// Every started child not yet seen to have exited, in start order.
static CHILDREN: parking_lot::Mutex<Vec<Followed>> = parking_lot::const_mutex(Vec::new());

/// Whether this process ever followed a child: a child process that started none ends
/// without taking the registry's lock (see [`at_child_end`]).
static FOLLOWED_ANY: AtomicBool = AtomicBool::new(false);

/// Below this many entries [`register`] never looks for exited children to drop.
const PRUNE_FROM: usize = 32;

/// Follows child `pid` (started by `Process::start`, not reaped yet) for the exit rule, until
/// its handle reaps it and calls [`forget`] with the token returned here (0: not followed). A
/// kernel without `pidfd_open` (before Linux 5.3) leaves the child out, with a warning: it then
/// dies with this process, as every child did before the rule.
///
/// Children whose handles never reap them (leaked handles) are dropped once exited, when the
/// list has doubled since they were last looked for: a start costs no system call per running
/// child.
pub(crate) fn register(pid: u32, daemon: bool) -> (u64, Option<Arc<OwnedFd>>) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => Arc::new(fd),
        Err(e) => {
            log::warn!("process-ipc: cannot follow child {pid} for the exit rule: {e}");
            return (0, None);
        }
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut children = CHILDREN.lock();
    if children.len() >= PRUNE_FROM && children.len().is_power_of_two() {
        children.retain(|c| !has_exited(&c.pidfd, Some(Instant::now())));
    }
    children.push(Followed {
        id,
        pid,
        daemon,
        pidfd: Arc::clone(&pidfd),
    });
    FOLLOWED_ANY.store(true, Ordering::Release);
    (id, Some(pidfd))
}

/// The pids of the followed children still running, in start order; the ended ones are
/// dropped from the list (not reaped: their handles do that).
pub(crate) fn running_pids() -> Vec<u32> {
    let mut children = CHILDREN.lock();
    children.retain(|c| !has_exited(&c.pidfd, Some(Instant::now())));
    children.iter().map(|c| c.pid).collect()
}

/// Every followed child, exited or not (none is dropped from the list), for the interrupt
/// shutdown ([`crate::interrupt`]).
pub(crate) fn followed() -> Vec<(u32, Arc<OwnedFd>)> {
    CHILDREN
        .lock()
        .iter()
        .map(|c| (c.pid, Arc::clone(&c.pidfd)))
        .collect()
}

/// Stops following the child registered under `id` (its handle has reaped it).
pub(crate) fn forget(id: u64) {
    if id == 0 {
        return;
    }
    let mut children = CHILDREN.lock();
    if let Some(at) = children.iter().position(|c| c.id == id) {
        children.remove(at);
    }
}

/// The end of a child process's target (returned or panicked, its report sent): Python's
/// child runs its exit function there whatever the program registered, so this one applies
/// the exit rule too: its daemon children get SIGTERM, its other children are waited for.
/// A child that started none pays one atomic load, inlined where it ends.
#[inline]
pub(crate) fn at_child_end() {
    if FOLLOWED_ANY.load(Ordering::Acquire) {
        child_exit_rule();
    }
}

#[cold]
fn child_exit_rule() {
    // A panic must not escape past the child's report.
    let _ = std::panic::catch_unwind(exit_rule);
}

/// Waits for every non-daemon child this process started (with [`Process`](crate::Process),
/// not a pool's workers, which are daemons) to exit, children started meanwhile included:
/// what Python does when the main process ends. Daemon children are left running; they die
/// with this process.
///
/// Rust ends the process when `main` returns, and the lifeline then ends every child at once,
/// so a child's last output can be lost. Call this at the end of `main`, or
/// [`join_non_daemon_at_exit`] once at its start. Waiting does not reap a child: its handle can
/// still be joined for the value.
///
/// ```
/// use process_ipc::{Connection, Process, join_non_daemon, pipe};
///
/// fn last_words(out: Connection<String>) {
///     out.send("done".to_string()).unwrap();
/// }
///
/// let (mine, theirs) = pipe().unwrap();
/// let mut child = Process::new(last_words, (theirs,)).start().unwrap();
/// join_non_daemon();
/// assert!(!child.is_alive());
/// assert_eq!(mine.try_recv().unwrap(), "done");
/// ```
pub fn join_non_daemon() {
    while let Some((_, pidfd)) = next_running(false) {
        has_exited(&pidfd, None);
    }
}

/// Like [`join_non_daemon`], giving up after `timeout` with [`ProcessError::Timeout`] naming a
/// child still running.
pub fn join_non_daemon_timeout(timeout: Duration) -> Result<(), ProcessError> {
    let deadline = Instant::now() + timeout;
    while let Some((pid, pidfd)) = next_running(false) {
        if !has_exited(&pidfd, Some(deadline)) {
            return Err(ProcessError::Timeout {
                pid,
                waited: timeout,
            });
        }
    }
    Ok(())
}

/// Makes the process follow Python's exit rule for its children: when `main` returns or
/// [`std::process::exit`] is called, daemon children get SIGTERM, then the exit waits in
/// [`join_non_daemon`] for the others, then gives the daemons up to two seconds before a
/// SIGKILL. Calling it again does nothing more. A killed parent runs no hook; its children
/// still die with it (the lifeline).
///
/// A non-daemon child that never finishes keeps the process from exiting, as in Python; make
/// such children daemons ([`Process::daemon`](crate::Process::daemon)). A [`Pool`](crate::Pool)'s
/// workers are daemons, so a pool left running never holds the exit up.
///
/// A child process needs none of this: when its target ends, it applies the rule by itself.
///
/// The error is the `atexit(3)` refusal (a full table of exit handlers).
pub fn join_non_daemon_at_exit() -> io::Result<()> {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    extern "C" fn at_exit() {
        // A panic must not unwind into libc's exit.
        let _ = std::panic::catch_unwind(exit_rule);
    }
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    sys::at_exit(at_exit).inspect_err(|_| REGISTERED.store(false, Ordering::Release))
}

/// Python's order: terminate the daemons, join the others, then see the daemons gone.
fn exit_rule() {
    let daemons: Vec<(u32, Arc<OwnedFd>)> = CHILDREN
        .lock()
        .iter()
        .filter(|c| c.daemon)
        .map(|c| (c.pid, Arc::clone(&c.pidfd)))
        .collect();
    for (_, pidfd) in &daemons {
        let _ = pidfd_signal(pidfd, libc::SIGTERM);
    }
    join_non_daemon();
    let deadline = Instant::now() + DAEMON_GRACE;
    for (pid, pidfd) in &daemons {
        if !has_exited(pidfd, Some(deadline)) {
            log::warn!("process-ipc: daemon child {pid} outlived SIGTERM; killing it");
            let _ = pidfd_signal(pidfd, libc::SIGKILL);
        }
    }
}

/// The first child of that kind still running (exited ones are forgotten on the way).
fn next_running(daemon: bool) -> Option<(u32, Arc<OwnedFd>)> {
    let mut children = CHILDREN.lock();
    children.retain(|c| !has_exited(&c.pidfd, Some(Instant::now())));
    children
        .iter()
        .find(|c| c.daemon == daemon)
        .map(|c| (c.pid, Arc::clone(&c.pidfd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    fn one() -> u8 {
        1
    }

    fn followed(id: u64) -> bool {
        CHILDREN.lock().iter().any(|c| c.id == id)
    }

    #[test]
    fn a_joined_child_is_no_longer_followed() {
        let mut child = crate::Process::new(one, ()).start().unwrap();
        let id = child.followed_id();
        assert!(id != 0 && followed(id));
        assert_eq!(child.join_timeout(WAIT).unwrap(), 1);
        assert!(!followed(id));
    }

    #[test]
    fn a_dropped_handles_child_is_forgotten_once_reaped() {
        let child = crate::Process::new(one, ()).start().unwrap();
        let id = child.followed_id();
        assert!(followed(id));
        drop(child);
        let deadline = Instant::now() + WAIT;
        while followed(id) {
            assert!(Instant::now() < deadline, "still followed after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
