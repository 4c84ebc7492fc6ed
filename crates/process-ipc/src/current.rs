//! The process as an object, seen from inside: `multiprocessing.current_process()` and
//! `parent_process()`, and `multiprocessing.connection.wait` over sentinels.
//!
//! A child learns who it is (its name, whether it is a daemon, which process started it) from
//! its start: the spawn path passes it in the environment (removed before `main`), the fork
//! server's request carries it. The main process is `MainProcess` and has no parent process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::ProcessError;
use crate::sys::{self, has_exited, pidfd_open};

/// Who this process is, when [`Process`](crate::Process) started it.
#[derive(Debug, Clone)]
struct Identity {
    name: String,
    daemon: bool,
    parent: u32,
    /// Forked by the fork server, whose pid `getppid()` gives.
    forked: bool,
}

/// Set once in a child before its target runs; a child forked by the fork server replaces
/// the server's own.
static IDENTITY: parking_lot::RwLock<Option<Identity>> = parking_lot::const_rwlock(None);

/// The fork server's process name (its identity, as [`current_process`] gives it there).
pub(crate) const FORK_SERVER: &str = "ForkServer";

/// The identity a parent hands its child: `daemon:parent:name`.
pub(crate) fn encode_identity(name: &str, daemon: bool) -> String {
    format!("{}:{}:{name}", u8::from(daemon), std::process::id())
}

/// In a starting child: records who it is (`encoded` from [`encode_identity`]). A malformed
/// value is ignored: the child then calls itself the main process, which is harmless.
/// `forked`: the fork server made this child (so `getppid()` is the server).
pub(crate) fn set_identity(encoded: &str, forked: bool) {
    let mut parts = encoded.splitn(3, ':');
    let (Some(daemon), Some(parent), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(parent), daemon) = (parent.parse::<u32>(), daemon == "1") else {
        return;
    };
    *IDENTITY.write() = Some(Identity {
        name: name.to_string(),
        daemon,
        parent,
        forked,
    });
}

/// What `multiprocessing.current_process()` tells: this process's name, daemon flag and pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    daemon: bool,
    pid: u32,
}

impl CurrentProcess {
    /// `current_process().name`: the name its parent gave it ([`Process::named`] or
    /// `Process-N`), or `MainProcess`.
    ///
    /// [`Process::named`]: crate::Process::named
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `current_process().daemon`: whether it was started as a daemon (false in the main
    /// process).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// `current_process().pid`.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// `multiprocessing.current_process()`: this process as its parent named it. A snapshot (a
/// value, not a live object): nothing in it changes while the process runs.
pub fn current_process() -> CurrentProcess {
    match IDENTITY.read().as_ref() {
        Some(id) => CurrentProcess {
            name: id.name.clone(),
            daemon: id.daemon,
            pid: std::process::id(),
        },
        None => CurrentProcess {
            name: "MainProcess".into(),
            daemon: false,
            pid: std::process::id(),
        },
    }
}

/// `multiprocessing.parent_process()`: the process that started this one, to ask whether it
/// lives and to wait for its end. It is not this process's child, so `waitpid` cannot wait
/// for it and its exit code cannot be read; it is followed through a pidfd (`pidfd_open(2)`,
/// Linux 5.3), which turns readable when it ends.
#[derive(Debug)]
pub struct ParentProcess {
    pid: u32,
    /// `None` if the parent was already gone when this was made (or the kernel has no pidfd).
    pidfd: Option<OwnedFd>,
}

/// `multiprocessing.parent_process()`: `None` in the main process (one not started by
/// [`Process`](crate::Process)), as Python's.
///
/// With the spawn start the parent is the child's own parent, and the pidfd is checked to
/// name it (the parent is still `getppid()` after it was opened). With the fork server the
/// child's `getppid()` is the server; the pidfd is opened on the recorded pid, which cannot
/// have been reused while the child runs, as the child dies with the server and the server
/// with the parent.
pub fn parent_process() -> Option<ParentProcess> {
    let id = IDENTITY.read().clone()?;
    let pidfd = pidfd_open(id.parent).ok();
    let ppid = sys::ppid() as u32;
    let pidfd = pidfd.filter(|_| id.forked || ppid == id.parent);
    Some(ParentProcess {
        pid: id.parent,
        pidfd,
    })
}

impl ParentProcess {
    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `parent_process().is_alive()`.
    pub fn is_alive(&self) -> bool {
        self.pidfd
            .as_ref()
            .is_some_and(|fd| !has_exited(fd, Some(Instant::now())))
    }

    /// `parent_process().join()`: waits until the parent has ended.
    pub fn join(&self) {
        if let Some(fd) = &self.pidfd {
            has_exited(fd, None);
        }
    }

    /// `parent_process().join(timeout)`: waits at most `timeout` (`Duration::MAX`: no limit)
    /// for the parent to end; [`ProcessError::Timeout`] if it still runs.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), ProcessError> {
        let Some(fd) = &self.pidfd else {
            return Ok(());
        };
        if has_exited(fd, Instant::now().checked_add(timeout)) {
            Ok(())
        } else {
            Err(ProcessError::Timeout {
                pid: self.pid,
                waited: timeout,
            })
        }
    }

    /// `parent_process().sentinel`: readable once the parent has ended (see
    /// [`wait`](crate::connection::wait)); `None` if it had already ended when this was made.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }
}

/// `multiprocessing.connection`'s helpers.
pub mod connection {
    use super::*;

    /// `multiprocessing.connection.wait(object_list, timeout)`: waits until at least one of
    /// `objects` is ready, or `timeout` (`None`: no limit) passes, and returns the positions
    /// of the ready ones, ascending (empty after a timeout). Python returns the objects; a
    /// list of borrowed descriptors is answered with their positions.
    ///
    /// Any descriptor serves: a [`ProcessHandle::sentinel`] or a
    /// [`ParentProcess::sentinel`](super::ParentProcess::sentinel) is ready once its
    /// process has ended, a socket or pipe once it can be read or has hung up. A pipe
    /// [`Connection`](crate::Connection) is not accepted: it reads whole messages through its
    /// own buffer, which a descriptor's readiness does not show.
    ///
    /// ```
    /// use std::time::Duration;
    /// use process_ipc::{Process, connection};
    ///
    /// fn quick() -> u8 {
    ///     0
    /// }
    ///
    /// let mut p = Process::new(quick, ()).start().unwrap();
    /// let ready = connection::wait(&[p.sentinel().unwrap()], Some(Duration::from_secs(20)));
    /// assert_eq!(ready.unwrap(), vec![0]);
    /// assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 0);
    /// ```
    ///
    /// [`ProcessHandle::sentinel`]: crate::ProcessHandle::sentinel
    pub fn wait(objects: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let fds: Vec<_> = objects.iter().map(|fd| fd.as_raw_fd()).collect();
        sys::poll_ready(&fds, deadline)
    }
}
