//! How a child process starts: the two start methods, each whole in its own module (its parent
//! half and its child half), and what they share.
//!
//! [`StartMethod`] is the starter: [`StartMethod::start`] takes a [`Request`] (the target's
//! arguments, who the child is) and gives back a [`Started`] child, which `process` wraps in a
//! `ProcessHandle`. Nothing here calls up into `process`.
//!
//! - [`spawn`]: re-executes `/proc/self/exe`; its parent half, its constructor (the child's
//!   half, before `main`) and the lifeline; [`handshake`] is the protocol on the nameless pair.
//! - [`fork_server`]: asks a single-threaded helper (started once with [`spawn`]) to fork the
//!   child; its `server` submodule is the helper's loop and the forked child's entry.
//! - [`child`]: what every child runs once it has its arguments (the target, the report, the
//!   hooks before it, the exit rule after it), and the entry offsets both methods jump by.
//! - [`exit_rule`]: the children to join or terminate at exit, Python's rule.
//! - [`watchdog`]: the start deadline.

use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcReceiver;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProcessError;
use crate::sys;
use crate::wire::ChildMsg;

pub(crate) mod child;
pub(crate) mod exit_rule;
pub(crate) mod fork_server;
pub(crate) mod handshake;
pub(crate) mod spawn;
pub(crate) mod watchdog;

pub use child::Target;

/// How long [`Process::start`](crate::Process::start) waits for the child's handshake.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a failed start waits for the child to exit by itself before killing it.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// How a [`Process`](crate::Process) starts its child (`multiprocessing.set_start_method`).
///
/// The default is [`ForkServer`](Self::ForkServer), several times cheaper than Spawn per child
/// (measured in `benches/process_spawn.rs`; the figures are in `docs/ladder.md`). The
/// environment variable `PROCESS_IPC_START_METHOD` (`spawn` or `forkserver`), read once, overrides it for the whole
/// program; [`Process::start_method`](crate::Process::start_method) for one process.
///
/// ```
/// use process_ipc::{Process, StartMethod};
///
/// fn one() -> u8 {
///     1
/// }
///
/// for method in [StartMethod::Spawn, StartMethod::ForkServer] {
///     let child = Process::new(one, ()).start_method(method).start().unwrap();
///     assert_eq!(child.join().unwrap(), 1);
/// }
/// assert_eq!("spawn".parse::<StartMethod>(), Ok(StartMethod::Spawn));
/// assert!("fork".parse::<StartMethod>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Re-execute `/proc/self/exe` for every child (`posix_spawn`): nothing is shared with the
    /// parent but the environment, the working directory and the standard streams of the moment.
    Spawn,
    /// Fork every child from a single-threaded helper started once, on first use. As in
    /// Python, a forked child ends with `_exit` once its target has ended (and its own
    /// children were dealt with, see [`join_non_daemon`](crate::join_non_daemon)): `atexit(3)`
    /// handlers run only if the target itself calls `std::process::exit`.
    ForkServer,
}

/// The environment variable that chooses the default start method.
pub const START_METHOD_VAR: &str = "PROCESS_IPC_START_METHOD";

impl std::str::FromStr for StartMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            other => Err(format!(
                "unknown start method {other:?}: expected \"spawn\" or \"forkserver\""
            )),
        }
    }
}

impl StartMethod {
    /// Python's name: `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

/// `multiprocessing.get_start_method()`: the method a [`Process`](crate::Process) uses unless
/// told otherwise; [`StartMethod::ForkServer`] unless `PROCESS_IPC_START_METHOD` says another
/// (read once). An unknown value there is an error naming it.
pub fn get_start_method() -> Result<StartMethod, String> {
    static CHOSEN: OnceLock<Result<StartMethod, String>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| match std::env::var(START_METHOD_VAR) {
            Ok(v) => v
                .parse()
                .map_err(|e: String| format!("{START_METHOD_VAR}: {e}")),
            Err(_) => Ok(StartMethod::ForkServer),
        })
        .clone()
}

impl StartMethod {
    /// Starts a child that runs `target` on the request's arguments, by this method; returns once
    /// the child has confirmed it has them, or with the error (then the child is killed and
    /// reaped). `target` is only its type: the child finds the function again by its offset.
    pub(crate) fn start<F, Args>(
        self,
        target: F,
        request: &Request<'_, Args>,
    ) -> Result<Started<F::Output>, ProcessError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        spawn::ensure_linked();
        match self {
            StartMethod::Spawn => spawn::start(target, request, false),
            StartMethod::ForkServer => fork_server::start(target, request),
        }
    }
}

/// What a start needs besides the target: the arguments and who the child is.
pub(crate) struct Request<'a, Args> {
    /// The argument tuple, sent as it is.
    pub(crate) args: &'a Args,
    /// The child's name from `Process::named` (`None`: it keeps the parent's process name).
    pub(crate) name: Option<&'a str>,
    /// Who the child is (`current::encode_identity`).
    pub(crate) identity: String,
    /// Test-only bootstrap fault (feature `test-fault`); always `None` otherwise.
    pub(crate) fault: Option<&'a str>,
    /// When the child must have confirmed its start.
    pub(crate) deadline: Instant,
}

/// A child that confirmed its start: the process, and where its report will come.
pub(crate) struct Started<R> {
    pub(crate) child: sys::ChildProcess,
    pub(crate) results: IpcReceiver<ChildMsg<R>>,
}

/// How a child ended, in words.
pub(crate) fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!(
            "was killed by signal {sig} ({})",
            crate::error::signal_name(sig)
        ),
        _ => "ended".into(),
    }
}

/// A start that failed: the child is given a moment to exit by itself (a child that closed its
/// channels is usually exiting, and its status says why), then killed and reaped.
fn start_failure(child: &mut sys::ChildProcess, pid: u32, reason: String) -> ProcessError {
    let grace = Instant::now() + EXIT_GRACE;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let status = child.wait().map(|s| describe(&s)).unwrap_or_default();
    ProcessError::Bootstrap {
        pid,
        reason: if status.is_empty() {
            reason
        } else {
            format!("{reason}; child {status}")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_methods_parse_by_python_name() {
        for m in [StartMethod::Spawn, StartMethod::ForkServer] {
            assert_eq!(m.name().parse::<StartMethod>(), Ok(m));
        }
        assert!(
            "fork"
                .parse::<StartMethod>()
                .unwrap_err()
                .contains("\"fork\"")
        );
    }
}
