//! `ProcessHandle`: a started child. Its death is read from the process itself, and its
//! typed value or failure from its result channel.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcReceiver;
use ipc_channel::{IpcError, TryRecvError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProcessError;
use crate::start::exit_rule;
use crate::sys::{self, ChildProcess};
use crate::wire::ChildMsg;

/// How long a join waits on the result channel before it looks at the process again.
const JOIN_SLICE: Duration = Duration::from_millis(10);

/// How long a join that has the child's report polls for its exit before it sleeps in
/// `waitpid`: a child that has reported is usually exiting, and is gone within tens of
/// microseconds; a sleep and a wake-up of this thread cost as much again.
const EXIT_SPIN: Duration = Duration::from_micros(50);

/// A started child process. `join` gives back the target's return value, typed.
///
/// Dropping a handle without joining detaches the child: it keeps running and a background
/// thread reaps it when it exits (no zombie). Children always exit when this process dies.
///
/// Its death is read from the process itself (`waitpid`), not from its result socket reaching
/// end-of-file: a grandchild that inherited the socket cannot hide it.
pub struct ProcessHandle<R> {
    pid: u32,
    name: String,
    daemon: bool,
    /// Always `Some` until drop hands it to a reaper thread.
    child: Option<ChildProcess>,
    status: Option<ExitStatus>,
    results: Option<IpcReceiver<ChildMsg<R>>>,
    /// The report read from the child; `Some(None)` once it is known there is none.
    message: Option<Option<ChildMsg<R>>>,
    joined: bool,
    /// This handle sent the child a signal (`terminate`, `kill`...): a death by it is not
    /// an interrupt's, so the join does not wait for one (`interrupt::interrupt_behind`).
    signalled: bool,
    /// The exit rule's token for this child (`exit_rule::register`), given back once reaped.
    followed: u64,
    /// A pidfd of the child (its [`sentinel`](Self::sentinel)); `None` on a kernel without
    /// `pidfd_open`.
    pidfd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl<R> std::fmt::Debug for ProcessHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl<R> ProcessHandle<R> {
    pub(crate) fn started(
        child: ChildProcess,
        name: String,
        daemon: bool,
        results: IpcReceiver<ChildMsg<R>>,
    ) -> Self {
        let (followed, pidfd) = exit_rule::register(child.id(), daemon);
        #[cfg(feature = "trace")]
        crate::trace::started(child.id(), &name);
        ProcessHandle {
            pid: child.id(),
            name,
            daemon,
            child: Some(child),
            status: None,
            results: Some(results),
            message: None,
            joined: false,
            signalled: false,
            followed,
            pidfd,
        }
    }
}

impl<R> ProcessHandle<R>
where
    R: Serialize + DeserializeOwned,
{
    /// The child's pid (`Process.pid`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Process.name`: the name given with [`Process::named`](crate::Process::named), or `Process-N`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Process.daemon`: whether the child was started as a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Waits for the child to finish and returns the target's value, or what went wrong
    /// ([`ProcessError::Killed`] with the signal within milliseconds of a death, whatever its
    /// descendants hold open).
    pub fn join(mut self) -> Result<R, ProcessError> {
        self.join_deadline(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`ProcessError::Timeout`];
    /// the handle stays usable, so a later call can wait again. A timeout too long to be a
    /// deadline (`Duration::MAX`) means no limit.
    ///
    /// It borrows the handle, so the exit code stays readable after the join (Python's
    /// `p.join(); p.exitcode`), which `join(self)` cannot offer:
    ///
    /// ```
    /// use std::time::Duration;
    /// use process_ipc::Process;
    ///
    /// fn answer() -> u32 {
    ///     42
    /// }
    ///
    /// let mut p = Process::new(answer, ()).start().unwrap();
    /// assert_eq!(p.join_timeout(Duration::MAX).unwrap(), 42);
    /// assert_eq!(p.exitcode(), Some(0));
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        match Instant::now().checked_add(timeout) {
            Some(at) => self.join_deadline(Some((at, timeout))),
            None => self.join_deadline(None),
        }
    }

    fn join_deadline(&mut self, deadline: Option<(Instant, Duration)>) -> Result<R, ProcessError> {
        let pid = self.pid;
        if self.joined {
            return Err(ProcessError::AlreadyJoined { pid });
        }
        let timeout = |waited| ProcessError::Timeout { pid, waited };
        // Wait for whichever comes first: the child's report, or the end of the process itself
        // (a grandchild may hold the result socket open long after the child died).
        while self.message.is_none() {
            let slice = match deadline {
                None => JOIN_SLICE,
                Some((at, _)) => at.saturating_duration_since(Instant::now()).min(JOIN_SLICE),
            };
            let rx = self
                .results
                .as_ref()
                .expect("receiver present until joined");
            match rx.try_recv_timeout(slice) {
                Ok(msg) => self.message = Some(Some(msg)),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => self.message = Some(None),
                Err(TryRecvError::IpcError(e)) => {
                    return Err(ProcessError::Ipc {
                        pid,
                        message: e.to_string(),
                    });
                }
            }
            if self.message.is_some() {
                break;
            }
            if self.poll_status()?.is_some() {
                // It has exited: a report it sent is already queued on the socket.
                let rx = self
                    .results
                    .as_ref()
                    .expect("receiver present until joined");
                self.message = Some(rx.try_recv().ok());
                break;
            }
            if let Some((at, waited)) = deadline {
                if Instant::now() >= at {
                    return Err(timeout(waited));
                }
            }
        }
        self.spin_for_exit(match deadline {
            None => EXIT_SPIN,
            Some((at, _)) => at.saturating_duration_since(Instant::now()).min(EXIT_SPIN),
        })?;
        let status = match deadline {
            None => self.wait_blocking()?,
            Some((at, waited)) => self.wait_until(at)?.ok_or_else(|| timeout(waited))?,
        };
        self.joined = true;
        self.results = None;
        let message = self.message.take().flatten();
        outcome(pid, message, status, self.signalled)
    }

    /// Polls for the child's exit for up to `spin` (see [`sys::look_for`]).
    fn spin_for_exit(&mut self, spin: Duration) -> Result<(), ProcessError> {
        sys::look_for(spin, || self.poll_status().transpose()).transpose()?;
        Ok(())
    }

    fn wait_blocking(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.child().wait().map_err(|e| ProcessError::Ipc {
            pid: self.pid,
            message: format!("waitpid failed: {e}"),
        })?;
        self.status = Some(s);
        #[cfg(feature = "trace")]
        crate::trace::exited(self.pid, &s);
        exit_rule::forget(self.followed);
        Ok(s)
    }

    /// Polls for exit until `at`; `None` if the child is still running then.
    fn wait_until(&mut self, at: Instant) -> Result<Option<ExitStatus>, ProcessError> {
        let mut pause = Duration::from_micros(20);
        loop {
            if let Some(s) = self.poll_status()? {
                return Ok(Some(s));
            }
            let now = Instant::now();
            if now >= at {
                return Ok(None);
            }
            std::thread::sleep(pause.min(at - now));
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    fn poll_status(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.status.is_none() {
            self.status = self.child().try_wait().map_err(|e| ProcessError::Ipc {
                pid: self.pid,
                message: format!("waitpid failed: {e}"),
            })?;
            if let Some(_s) = &self.status {
                #[cfg(feature = "trace")]
                crate::trace::exited(self.pid, _s);
                exit_rule::forget(self.followed);
            }
        }
        Ok(self.status)
    }

    fn child(&mut self) -> &mut ChildProcess {
        self.child
            .as_mut()
            .expect("the child is present until drop")
    }

    /// Test support: the exit rule's token for this child.
    #[cfg(test)]
    pub(crate) fn followed_id(&self) -> u64 {
        self.followed
    }

    /// `Process.is_alive()`: true until the child has exited.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.poll_status(), Ok(None))
    }

    /// `Process.exitcode`: `None` while running, the exit code once exited, `-signal` if a
    /// signal killed it (Python's convention).
    pub fn exitcode(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.poll_status().ok().flatten()?;
        status.code().or_else(|| status.signal().map(|s| -s))
    }

    /// `Process.terminate()`: sends SIGTERM. A no-op once the child has exited.
    pub fn terminate(&mut self) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)
    }

    /// `Process.interrupt()` (Python 3.14): sends SIGINT. A no-op once the child has exited.
    /// A Rust child has no `KeyboardInterrupt`: unless it installs a handler, SIGINT ends it
    /// and a join reports [`ProcessError::Killed`] with signal 2.
    pub fn interrupt(&mut self) -> Result<(), ProcessError> {
        self.signal(libc::SIGINT)
    }

    /// `Process.sentinel`: a descriptor that turns readable when the child ends (a pidfd), to
    /// wait on together with other descriptors, as Python's
    /// `multiprocessing.connection.wait` does, with [`wait`](crate::connection::wait) or any
    /// `poll`/`epoll` loop. It is borrowed from the handle, so it lives no longer than it.
    /// `None` on a kernel without `pidfd_open` (before Linux 5.3).
    pub fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.pidfd.as_deref().map(|fd| fd.as_fd())
    }

    /// `Process.close()`: releases what the handle holds (the child's result channel, its
    /// sentinel, its entry in the exit rule) once the child has ended; the exit code should
    /// be read first. Python raises `ValueError` at any later use of a closed `Process`; here
    /// `close` consumes the handle, so a later use does not compile. Like Python's, it refuses
    /// while the child runs: then the handle comes back as the error, unchanged.
    pub fn close(mut self) -> Result<(), Self> {
        match self.poll_status() {
            Ok(Some(_)) => Ok(()),
            _ => Err(self),
        }
    }

    /// `Process.kill()`: sends SIGKILL. A no-op once the child has exited.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        self.signal(libc::SIGKILL)
    }

    pub(crate) fn signal(&mut self, sig: i32) -> Result<(), ProcessError> {
        if self.poll_status()?.is_some() {
            return Ok(());
        }
        #[cfg(feature = "trace")]
        crate::trace::signalled(self.pid, sig);
        // The child is not reaped yet, so `pid` still names it.
        sys::kill(self.pid, sig).map_err(|e| ProcessError::Ipc {
            pid: self.pid,
            message: format!("kill failed: {e}"),
        })?;
        self.signalled = true;
        Ok(())
    }
}

impl<R> Drop for ProcessHandle<R> {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.status.is_some() {
            return;
        }
        let followed = self.followed;
        if matches!(child.try_wait(), Ok(Some(_))) {
            exit_rule::forget(followed);
            return;
        }
        // Detach: the child runs on; a thread reaps it so it never lingers as a zombie.
        let _ = std::thread::Builder::new()
            .name(format!("process-ipc-reaper-{}", self.pid))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = child.wait();
                exit_rule::forget(followed);
            });
    }
}

fn outcome<R>(
    pid: u32,
    message: Option<ChildMsg<R>>,
    status: ExitStatus,
    signalled: bool,
) -> Result<R, ProcessError> {
    use std::os::unix::process::ExitStatusExt;
    match message {
        Some(ChildMsg::Returned(value)) => Ok(value),
        Some(ChildMsg::Panicked { message, location }) => Err(ProcessError::Panicked {
            pid,
            message,
            location,
        }),
        Some(ChildMsg::Failed(reason)) => Err(ProcessError::Ipc {
            pid,
            message: reason,
        }),
        Some(ChildMsg::Started) => Err(ProcessError::Ipc {
            pid,
            message: "the child confirmed its start twice and never reported".into(),
        }),
        None => match (status.signal(), status.code()) {
            (Some(signal), _) => {
                let interrupt = if signalled {
                    crate::interrupt::interrupted()
                } else {
                    crate::interrupt::interrupt_behind(Some(signal))
                };
                match interrupt {
                    Some(signal) => Err(ProcessError::Interrupted { pid, signal }),
                    None => Err(ProcessError::Killed { pid, signal }),
                }
            }
            (None, Some(code)) => Err(ProcessError::Exited { pid, code }),
            _ => Err(ProcessError::Exited { pid, code: -1 }),
        },
    }
}
