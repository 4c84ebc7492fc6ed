//! `Process`: a target and its arguments, not started yet, and how it starts (it builds the
//! request and asks its start method, which gives back the child; see `start`); and
//! `current_pid` / `parent_pid` / `active_children`.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProcessError;
mod handle;

use crate::start::child::{Target, conjure};
use crate::start::{Request, START_TIMEOUT, StartMethod, Started, exit_rule, get_start_method};
use crate::sys;
pub use handle::ProcessHandle;

/// `os.getpid()`: the pid of the calling process.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// `multiprocessing.active_children()`: the pids of the children this process started with
/// [`Process`] that are still running, in start order. As Python's, it drops the ended ones
/// from the list it keeps; their handles still reap them and read their exit codes (this
/// call never waits on a child, so it steals no status).
///
/// The fork server (infrastructure, see [`StartMethod`](crate::StartMethod)) is left out, as
/// Python's is; a pool's workers are listed, as Python's are.
pub fn active_children() -> Vec<u32> {
    exit_rule::running_pids()
}

/// `os.getppid()`: the pid of the calling process's parent.
pub fn parent_pid() -> u32 {
    sys::ppid() as u32
}

/// `multiprocessing.Process(target=f, args=(...))`: a target and its arguments, not started yet.
///
/// ```
/// use process_ipc::Process;
///
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
///
/// let handle = Process::new(add, (2, 40)).start().unwrap();
/// assert_ne!(handle.pid(), process_ipc::current_pid());
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
pub struct Process<F, Args> {
    target: F,
    args: Args,
    #[cfg(feature = "test-fault")]
    fault: Option<&'static str>,
    name: Option<String>,
    /// Python's `Process-N`, numbered at construction as Python's `Process()` does.
    number: u64,
    daemon: bool,
    method: Option<StartMethod>,
}

impl<F, Args> std::fmt::Debug for Process<F, Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("target", &std::any::type_name::<F>())
            .finish_non_exhaustive()
    }
}

impl<F, Args> Process<F, Args>
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    /// A process that will run `target(args...)`; `args` is a tuple (`()`, `(x,)`, `(x, y)`...).
    pub fn new(target: F, args: Args) -> Self {
        let _ = conjure::<F>; // compile-time check that `target` captures nothing
        Process {
            target,
            args,
            #[cfg(feature = "test-fault")]
            fault: None,
            name: None,
            number: {
                static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
            },
            daemon: false,
            method: None,
        }
    }

    /// `Process(daemon=...)` (default `false`): whether the program's end may cut the child
    /// short. With [`join_non_daemon_at_exit`](crate::join_non_daemon_at_exit), a normal exit
    /// terminates daemon children and waits for the others, as Python's does;
    /// [`join_non_daemon`](crate::join_non_daemon) waits for the others only. A killed parent
    /// takes every child with it either way.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The child's name: the one given with [`named`](Self::named), or `Process-N`.
    fn full_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("Process-{}", self.number))
    }

    /// Whether the child will be a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// `Process(name=...)`: names the child; `ps` and `top` show it (first 15 bytes). Without a
    /// name the handle reports Python's default `Process-N` and the child keeps the parent's.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `Process` under a context's start method (`multiprocessing.get_context(m).Process`):
    /// how this child starts; without it, [`get_start_method`](crate::get_start_method).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Test hook (feature `test-fault` only): the child exits during bootstrap.
    #[cfg(feature = "test-fault")]
    #[doc(hidden)]
    pub fn __exit_before_connect(self) -> Self {
        self.__test_fault("exit-before-connect")
    }

    /// Test hook (feature `test-fault` only): the child acts out the named bootstrap fault
    /// (`silent`, `grandchild-speaks`, `other-uid-speaks`, `exit-before-connect`).
    #[cfg(feature = "test-fault")]
    #[doc(hidden)]
    pub fn __test_fault(mut self, fault: &'static str) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Starts the child (the same executable: re-run, or forked from the fork server, see
    /// [`StartMethod`]) and hands it the arguments.
    ///
    /// Returns once the child has confirmed it has its arguments, or with
    /// [`ProcessError::Bootstrap`] if it dies, refuses, or stays silent for
    /// [`START_TIMEOUT`] (then it is killed): never a hang.
    pub fn start(self) -> Result<ProcessHandle<F::Output>, ProcessError> {
        self.start_timeout(START_TIMEOUT)
    }

    /// Like [`start`](Self::start), with its own limit on the handshake.
    pub fn start_timeout(
        self,
        timeout: Duration,
    ) -> Result<ProcessHandle<F::Output>, ProcessError> {
        // The blocks the arguments name stay attachable until this returns: by then the child
        // has attached them (it decodes its arguments before it confirms) or is gone.
        let _pins = crate::shared::TransferScope::enter();
        let method = match self.method {
            Some(m) => m,
            None => get_start_method().map_err(|e| {
                ProcessError::Spawn(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            })?,
        };
        #[cfg(feature = "test-fault")]
        let fault = self.fault;
        #[cfg(not(feature = "test-fault"))]
        let fault: Option<&str> = None;
        let name = self.full_name();
        let request = Request {
            args: &self.args,
            name: self.name.as_deref(),
            identity: crate::current::encode_identity(&name, self.daemon),
            fault,
            deadline: Instant::now() + timeout,
        };
        let Started { child, results } = method.start(self.target, &request)?;
        Ok(ProcessHandle::started(child, name, self.daemon, results))
    }
}
