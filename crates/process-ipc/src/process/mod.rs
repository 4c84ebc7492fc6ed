//! `Process`, its running `ProcessHandle`, the `Target` trait for plain-function targets, and
//! `current_pid` / `parent_pid`.

//!
//! Layer: above `sys`, `wire` and `bootstrap`; below `queue`, `pipe`, `pool` and `manager`.

mod handle;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProcessError;
use crate::start::fork_server::{self, ForkRequest, ForkedChild, StartMethod};
use crate::start::spawn::{self, ChildLink, ParentLink};
use crate::sys::{self, Child};
use crate::wire::{self, ChildMsg, ParentMsg, ParentMsgOut};
pub use handle::ProcessHandle;
use handle::describe;

/// `os.getpid()`: the pid of the calling process.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// `multiprocessing.active_children()`: the pids of the children this process started with
/// [`Process`] that are still running, in start order. As Python's, it drops the ended ones
/// from the list it keeps; their handles still reap them and read their exit codes (this
/// call never waits on a child, so it steals no status).
///
/// The fork server (infrastructure, see [`StartMethod`](crate::StartMethod)) is left out, as Python's is; a
/// pool's workers are listed, as Python's are.
pub fn active_children() -> Vec<u32> {
    let server = fork_server::__fork_server_pid();
    let mut pids = crate::start::exit_rule::running_pids();
    pids.retain(|&pid| Some(pid) != server);
    pids
}

/// `os.getppid()`: the pid of the calling process's parent.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// A function that can run in a child process with the argument tuple `Args`.
///
/// Implemented for plain `fn` items and non-capturing closures of up to six arguments, whose
/// arguments and return value are serde types. The child is the same executable, so the
/// function is found again there; anything captured would not be, and a capturing closure is
/// rejected at compile time (the "zero-sized" assertion). Pass the function item itself
/// (`square`), not a `fn` pointer variable.
///
/// A mismatch is reported at your call: arguments that do not match the function's
/// parameters, or a closure that captures a value that is not `Copy`/`Send`, fail with the
/// message below. A closure that captures only `Copy` values (or a `fn` pointer) passes the
/// trait but not the zero-size check, which Rust can only report where the check is
/// evaluated: inside this crate, with a note naming your closure's file and line.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a process target with the arguments `{Args}`",
    label = "not a process target for these arguments",
    note = "a process target is a named `fn` item (or a closure that captures nothing) whose \
            parameters match the argument tuple, e.g. `Process::new(square, (7,))` for \
            `fn square(x: u64) -> u64`; the child runs the same binary, so captured values \
            would not come along"
)]
pub trait Target<Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the unpacked tuple.
    fn call(&self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a,)*> Target<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call(&self, ($($a,)*): ($($a,)*)) -> Ret {
                self($($a),*)
            }
        }
    };
}
impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);

/// Produces the value of a zero-sized function type in a process that never received it.
pub(crate) fn conjure<F: Copy + 'static>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target must be a named fn item or a closure that captures nothing (this \
             one captures something, or is a fn pointer): the child process runs the same \
             code, but nothing captured comes along"
        )
    };
    // SAFETY: F is zero-sized and Copy: a fn item or a closure capturing nothing with a size
    // (only those implement the Fn traits on stable Rust), so it has no bytes to initialize and
    // no invariant a fresh value could break; reading a zero-sized value through an aligned
    // dangling pointer is valid.
    unsafe { std::ptr::NonNull::<F>::dangling().read() }
}

/// How long [`Process::start`] waits for the child's handshake.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a failed start waits for the child to exit by itself before killing it.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// The child's side: take the arguments from the verified parent, run, report.
fn child_entry<F, Args>(link: ChildLink) -> i32
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let server = match link.listen::<ParentMsg<Args, F::Output>>() {
        Ok(server) => server,
        Err(reason) => return link.fail(&reason),
    };
    let msg = match server.accept() {
        Ok((_, msg)) => msg,
        Err(e) => return link.fail(&format!("could not receive the arguments: {e}")),
    };
    if !link.is_parents(&msg.nonce) {
        return link.fail("a peer without the parent's nonce connected first; its data is refused");
    }
    if link.ready().is_err() {
        return 3;
    }
    run_target::<F, Args>(msg)
}

/// The entry of a child forked by the fork server: take the arguments (with the nonce of the
/// request), confirm, run, report.
fn forked_entry<F, Args>(child: ForkedChild) -> i32
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let rx: IpcReceiver<ParentMsg<Args, F::Output>> = child.args.to_opaque().to();
    let msg = match rx.try_recv_timeout(START_TIMEOUT) {
        Ok(msg) => msg,
        Err(e) => {
            eprintln!(
                "process-ipc child {}: could not receive the arguments: {e:?}",
                current_pid()
            );
            return 3;
        }
    };
    drop(rx);
    if !spawn::nonce_matches(&msg.nonce, &child.nonce) {
        eprintln!(
            "process-ipc child {}: arguments without the request's nonce; refused",
            current_pid()
        );
        return 3;
    }
    if msg.results.send(ChildMsg::Started).is_err() {
        return 3;
    }
    run_target::<F, Args>(msg)
}

impl fork_server::ServerProcess for ProcessHandle<u8> {
    fn pid(&self) -> u32 {
        ProcessHandle::pid(self)
    }

    fn kill(&mut self) {
        let _ = self.signal(libc::SIGKILL);
    }
}

/// Starts the fork server: a `Process` of its own, started with Spawn, kept single-threaded.
fn start_fork_server(
    requests: IpcReceiver<ForkRequest>,
    replies: IpcSender<fork_server::TaggedReply>,
    deadline: Instant,
) -> std::io::Result<Box<dyn fork_server::ServerProcess>> {
    let mut server = Process::new(fork_server::server_main, (requests, replies))
        .start_method(StartMethod::Spawn);
    server.lone = true;
    // Infrastructure, not the user's work: the exit rule never waits for it.
    server.daemon = true;
    let handle = server
        .start_timeout(deadline.saturating_duration_since(Instant::now()))
        .map_err(|e| std::io::Error::other(format!("cannot start the fork server: {e}")))?;
    Ok(Box::new(handle))
}

/// Runs the target on the arguments and reports; returns the exit code.
fn run_target<F, Args>(msg: ParentMsg<Args, F::Output>) -> i32
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let ParentMsg { args, results, .. } = msg;
    let target: F = conjure();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || target.call(args)));
    spawn::run_before_report();
    let code = report(outcome, results);
    // Python's child runs its exit function here: daemons terminated, the others joined. The
    // parent's `join` has the report but waits for this process to exit, so for them too.
    crate::start::exit_rule::at_child_end();
    code
}

/// Sends the target's outcome on the result channel; returns the exit code.
fn report<R: Serialize + DeserializeOwned>(
    outcome: std::thread::Result<R>,
    results: IpcSender<ChildMsg<R>>,
) -> i32 {
    match outcome {
        Ok(value) => {
            let sent = wire::encoding(|| results.send(ChildMsg::Returned(value)));
            match sent {
                Ok(()) => 0,
                Err((e, reason)) => {
                    let _ = results.send(ChildMsg::Failed(format!(
                        "could not send the return value: {}",
                        reason.unwrap_or_else(|| e.to_string())
                    )));
                    2
                }
            }
        }
        Err(payload) => {
            let (message, location) = spawn::take_last_panic()
                .unwrap_or_else(|| (spawn::panic_message(&*payload), "<unknown>".into()));
            let _ = results.send(ChildMsg::Panicked { message, location });
            1
        }
    }
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
    /// The child must stay single-threaded (the fork server).
    lone: bool,
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
            lone: false,
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
        let _ = self.target;
        // The blocks the arguments name stay attachable until this returns: by then the child
        // has attached them (it decodes its arguments before it confirms) or is gone.
        let _pins = crate::shared::TransferScope::enter();
        spawn::ensure_linked();
        let deadline = Instant::now() + timeout;
        let ipc_err = |e: std::io::Error| ProcessError::Ipc {
            pid: 0,
            message: e.to_string(),
        };
        let method = match self.method {
            Some(m) => m,
            None => fork_server::get_start_method().map_err(|e| {
                ProcessError::Spawn(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            })?,
        };
        #[cfg(feature = "test-fault")]
        let fault = self.fault;
        #[cfg(not(feature = "test-fault"))]
        let fault: Option<&str> = None;
        if method == StartMethod::ForkServer {
            return self.start_forked(fault, deadline);
        }
        let mut link = ParentLink::new().map_err(ipc_err)?;
        let mut env = Vec::new();
        if let Some(name) = &self.name {
            env.push((spawn::NAME_VAR, name.as_str()));
        }
        let identity = crate::current::encode_identity(&self.full_name(), self.daemon);
        env.push((spawn::IDENTITY_VAR, identity.as_str()));
        #[cfg(feature = "test-fault")]
        if let Some(fault) = fault {
            env.push((spawn::FAULT_VAR, fault));
        }
        let mut child = link.spawn(&env).map_err(ProcessError::Spawn)?;
        let pid = child.id();
        let failure = |child: &mut Child, reason: String| start_failure(child, pid, reason);
        let entry: spawn::ChildEntry = child_entry::<F, Args>;
        if let Err(reason) = link.send_setup(spawn::entry_offset(entry), self.lone) {
            return Err(failure(&mut child, reason));
        }
        let server = match link.expect_listening(pid, deadline) {
            Ok(server) => server,
            Err(reason) => return Err(failure(&mut child, reason)),
        };
        let (results_tx, results_rx) = match ipc::channel::<ChildMsg<F::Output>>() {
            Ok(pair) => pair,
            Err(e) => return Err(failure(&mut child, format!("cannot open a channel: {e}"))),
        };
        let msg = ParentMsgOut {
            nonce: link.nonce(),
            args: &self.args,
            results: results_tx,
        };
        // Writing the arguments can block on a child that does not read: the watchdog kills it
        // at the deadline, which turns the write into an error.
        spawn::watch(pid, deadline);
        let sent = match IpcSender::<ParentMsgOut<'_, Args, F::Output>>::connect(server) {
            Ok(tx) => wire::with_ipc_transfer(|| wire::encoding(|| tx.send(msg))).map_err(
                |(e, refusal)| {
                    refusal
                        .or_else(|| wire::serialize_error(&self.args))
                        .unwrap_or_else(|| e.to_string())
                },
            ),
            Err(e) => Err(format!("cannot connect to the child's socket: {e}")),
        };
        spawn::unwatch(pid);
        if let Err(reason) = sent {
            return Err(failure(
                &mut child,
                format!("could not send the arguments: {reason}"),
            ));
        }
        if let Err(reason) = link.expect_ready(pid, deadline) {
            return Err(failure(&mut child, reason));
        }
        Ok(ProcessHandle::started(
            child,
            self.full_name(),
            self.daemon,
            results_rx,
        ))
    }

    /// The ForkServer start: request a fork, write the arguments at once, and sleep only
    /// until the child confirms (or its result channel closes, or the deadline passes); the
    /// server's answer with the pid, sent right after the fork, is read then.
    fn start_forked(
        self,
        fault: Option<&str>,
        deadline: Instant,
    ) -> Result<ProcessHandle<F::Output>, ProcessError> {
        let mut outcome = self.fork_once(fault, deadline);
        // The server took the request and died without answering: ask a fresh one, once.
        if matches!(outcome, Err(Attempt::ServerGone)) {
            outcome = self.fork_once(fault, deadline);
        }
        match outcome {
            Ok(handle) => Ok(handle),
            Err(Attempt::Failed(e)) => Err(e),
            Err(Attempt::ServerGone) => Err(ProcessError::Spawn(std::io::Error::other(
                "the fork server died while starting the child, twice; no child was started",
            ))),
        }
    }

    fn fork_once(
        &self,
        fault: Option<&str>,
        deadline: Instant,
    ) -> Result<ProcessHandle<F::Output>, Attempt> {
        let ipc_err = |e: std::io::Error| {
            Attempt::Failed(ProcessError::Ipc {
                pid: 0,
                message: e.to_string(),
            })
        };
        let nonce = crate::sys::nonce().map_err(ipc_err)?;
        let (results_tx, results_rx) = ipc::channel::<ChildMsg<F::Output>>().map_err(ipc_err)?;
        let entry: fork_server::ForkedEntry = forked_entry::<F, Args>;
        // Made again only if the server died and a fresh one is asked: the channels then went
        // down with the dead server's copy of the request.
        let channels = std::cell::RefCell::new(None);
        let server = fork_server::request_fork(
            || {
                let (args_tx, args_rx) =
                    ipc::channel::<ParentMsg<wire::ByRef<'_, Args>, F::Output>>()?;
                *channels.borrow_mut() = Some(args_tx);
                Ok(ForkRequest {
                    offset: spawn::offset_of(entry as usize) as i64,
                    nonce,
                    name: self.name.clone(),
                    identity: crate::current::encode_identity(&self.full_name(), self.daemon),
                    fault: fault.map(str::to_string),
                    args: args_rx.to_opaque().to::<()>(),
                })
            },
            start_fork_server,
            deadline,
        )
        .map_err(|e| Attempt::Failed(ProcessError::Spawn(e)))?;
        let args_tx = channels.into_inner().expect("a channel per request");
        let msg = ParentMsg {
            nonce,
            args: wire::ByRef(&self.args),
            results: results_tx,
        };
        // Before the fork is even answered: the socket holds them for the child. A message
        // larger than the socket's buffer waits for the child to read it, which it does before
        // anything else.
        let sent = wire::with_ipc_transfer(|| wire::encoding(|| args_tx.send(msg))).map_err(
            |(e, refusal)| {
                refusal
                    .or_else(|| wire::serialize_error(&self.args))
                    .unwrap_or_else(|| e.to_string())
            },
        );
        let confirmed = match sent {
            Err(reason) => Err(format!("could not send the arguments: {reason}")),
            Ok(()) => {
                // The confirmation comes after the server's fork and the child's first steps:
                // look for it a while, yielding, before sleeping, to spare the wake-up.
                let looked = sys::look_for(CONFIRM_LOOK_FOR, || {
                    match results_rx.try_recv_timeout(Duration::ZERO) {
                        Err(TryRecvError::Empty) => None,
                        got => Some(got),
                    }
                });
                let left = deadline.saturating_duration_since(Instant::now());
                match looked.unwrap_or_else(|| results_rx.try_recv_timeout(left)) {
                    Ok(ChildMsg::Started) => Ok(()),
                    Ok(_) => Err("the child reported before confirming its start".to_string()),
                    Err(TryRecvError::Empty) => {
                        Err("the child stayed silent past the start deadline; it was killed".into())
                    }
                    Err(TryRecvError::IpcError(IpcError::Disconnected)) => Err(
                        "the child closed its channels before confirming its start (it exited)"
                            .into(),
                    ),
                    Err(TryRecvError::IpcError(e)) => {
                        Err(format!("the child's confirmation failed: {e}"))
                    }
                }
            }
        };
        // Closed only now: the last close of a Unix socket while descriptors of ours are in
        // flight (the argument channel's end in the request, the result channel's in the
        // arguments) makes the kernel queue a garbage-collection pass on a worker thread. Once
        // the child has confirmed, it holds both.
        drop(args_tx);
        // The server answered right after the fork, long before the child could confirm; a
        // late answer still gets a moment past the deadline, so a silent child is found.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(EXIT_GRACE);
        let pid = match fork_server::take_reply(server, &nonce, Instant::now() + wait) {
            Ok(Ok(pid)) if pid > 0 => pid,
            Ok(Ok(_)) => {
                return Err(Attempt::Failed(ProcessError::Spawn(std::io::Error::other(
                    "a malformed fork server reply",
                ))));
            }
            Ok(Err(errno)) => {
                return Err(Attempt::Failed(ProcessError::Spawn(
                    std::io::Error::from_raw_os_error(errno),
                )));
            }
            // No child was forked: asking a fresh server cannot run the target twice.
            Err(fork_server::NoReply::Gone) if confirmed.is_err() => {
                return Err(Attempt::ServerGone);
            }
            Err(fork_server::NoReply::Gone) => {
                return Err(Attempt::Failed(ProcessError::Spawn(std::io::Error::other(
                    "the fork server died between forking the child and naming it; the child \
                     runs unnamed and dies with this process",
                ))));
            }
            Err(fork_server::NoReply::TimedOut) => {
                return Err(Attempt::Failed(ProcessError::Spawn(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the fork server did not answer before the start deadline; it was killed",
                ))));
            }
        };
        let mut child = Child::adopt(pid);
        match confirmed {
            Ok(()) => Ok(ProcessHandle::started(
                child,
                self.full_name(),
                self.daemon,
                results_rx,
            )),
            Err(reason) => Err(Attempt::Failed(start_failure(&mut child, pid, reason))),
        }
    }
}

/// How one ForkServer attempt ended, if not with a child.
enum Attempt {
    /// The server took the request and went away without answering: try a fresh one.
    ServerGone,
    /// A final error.
    Failed(ProcessError),
}

/// A start that failed: the child is given a moment to exit by itself (a child that closed its
/// channels is usually exiting, and its status says why), then killed and reaped.
/// How long `start` looks for a forked child's confirmation before it sleeps for it.
const CONFIRM_LOOK_FOR: Duration = Duration::from_micros(250);

fn start_failure(child: &mut Child, pid: u32, reason: String) -> ProcessError {
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
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use crate::start::spawn::{self, ChildLink};
    use crate::sys;

    use super::Process;

    fn connect_as_nobody(name: String) -> String {
        // SAFETY: setuid has no memory preconditions.
        if unsafe { libc::setuid(65534) } != 0 {
            return format!("setuid failed: {}", std::io::Error::last_os_error());
        }
        match ipc_channel::ipc::IpcSender::<u8>::connect(name) {
            Ok(tx) => match tx.send(66) {
                Ok(()) => "connected and sent".into(),
                Err(e) => format!("connected, send failed: {e}"),
            },
            Err(e) => format!("{:?}", e.kind()),
        }
    }

    #[test]
    fn another_user_cannot_reach_the_childs_socket() {
        if sys::euid() != 0 {
            eprintln!("skipped: only root can start a helper as another uid");
            return;
        }
        let _umask = sys::UMASK_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let (parent, child) = sys::socketpair().unwrap();
        sys::pass_creds(parent.as_raw_fd()).unwrap();
        let link = ChildLink::for_test(child);
        let server = sys::with_umask(0, || link.listen::<u8>()).unwrap();
        let name = spawn::listening_path_for_test(&parent);
        let mut helper = Process::new(connect_as_nobody, (name.clone(),))
            .start()
            .unwrap();
        let got = helper.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(got, "PermissionDenied");
        // Nobody got in: the owner's message is still the first one.
        let tx = ipc_channel::ipc::IpcSender::<u8>::connect(name).unwrap();
        tx.send(5).unwrap();
        assert_eq!(server.accept().unwrap().1, 5);
    }
}
