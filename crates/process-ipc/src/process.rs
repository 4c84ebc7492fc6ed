//! `Process`, its running `ProcessHandle`, the `Target` trait for plain-function targets, and
//! `current_pid` / `parent_pid`.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bootstrap;
use crate::error::ProcessError;

/// `os.getpid()`: the pid of the calling process.
pub fn current_pid() -> u32 {
    std::process::id()
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
            "a process target must be a plain fn item or a non-capturing closure"
        )
    };
    // SAFETY: F is zero-sized and Copy: a fn item or a closure capturing nothing with a size
    // (only those implement the Fn traits on stable Rust), so it has no bytes to initialize and
    // no invariant a fresh value could break; reading a zero-sized value through an aligned
    // dangling pointer is valid.
    unsafe { std::ptr::NonNull::<F>::dangling().read() }
}

/// Messages on the control channel, child to parent. `BootFailed` must stay variant 0: the
/// watchdog and the bootstrap send it without knowing `A` and `R`.
#[derive(Serialize, Deserialize)]
pub(crate) enum ChildMsg<A, R> {
    BootFailed(String),
    Hello { pid: u32, args: IpcSender<A> },
    Returned(R),
    Panicked { message: String, location: String },
    Failed(String),
}

thread_local! {
    static IPC_TRANSFER: Cell<u32> = const { Cell::new(0) };
    static REFUSAL: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// A serialization error that remembers its reason (postcard drops custom messages).
pub(crate) fn refuse<E: serde::ser::Error>(reason: &'static str) -> E {
    REFUSAL.with(|r| r.set(Some(reason)));
    E::custom(reason)
}

/// The reason recorded by the last [`refuse`] on this thread, if any.
pub(crate) fn take_refusal() -> Option<String> {
    REFUSAL.with(|r| r.take()).map(str::to_string)
}

/// Runs `f` while queue handles may be serialized (they carry file descriptors, which only an
/// ipc-channel message can transfer).
pub(crate) fn with_ipc_transfer<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IPC_TRANSFER.with(|c| c.set(c.get() - 1));
        }
    }
    IPC_TRANSFER.with(|c| c.set(c.get() + 1));
    let _reset = Reset; // also on unwind, so a panicking serializer leaves no permission behind
    f()
}

/// True inside [`with_ipc_transfer`] (or while deserializing, which ipc-channel drives).
pub(crate) fn ipc_transfer_allowed() -> bool {
    IPC_TRANSFER.with(|c| c.get() > 0)
}

/// The child's side: connect, receive the arguments, run, send back the value or the panic.
fn child_entry<F, Args>(server: String) -> i32
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let Ok(tx) = IpcSender::<ChildMsg<Args, F::Output>>::connect(server) else {
        return 3;
    };
    let (args_tx, args_rx) = match ipc::channel::<Args>() {
        Ok(pair) => pair,
        Err(e) => {
            let _ = tx.send(ChildMsg::BootFailed(format!("cannot open a channel: {e}")));
            return 3;
        }
    };
    let hello = ChildMsg::Hello {
        pid: current_pid(),
        args: args_tx,
    };
    if tx.send(hello).is_err() {
        return 3;
    }
    let args = match args_rx.recv() {
        Ok(args) => args,
        Err(e) => {
            let _ = tx.send(ChildMsg::BootFailed(format!(
                "could not receive the arguments: {e}"
            )));
            return 3;
        }
    };
    drop(args_rx);
    let target: F = conjure();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || target.call(args)));
    crate::queue::flush_all();
    match outcome {
        Ok(value) => match tx.send(ChildMsg::Returned(value)) {
            Ok(()) => 0,
            Err(e) => {
                let _ = tx.send(ChildMsg::Failed(format!(
                    "could not send the return value: {e}"
                )));
                2
            }
        },
        Err(payload) => {
            let (message, location) = bootstrap::take_last_panic()
                .unwrap_or_else(|| (bootstrap::panic_message(&*payload), "<unknown>".into()));
            let _ = tx.send(ChildMsg::Panicked { message, location });
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
    exit_before_connect: bool,
    name: Option<String>,
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
            exit_before_connect: false,
            name: None,
        }
    }

    /// `Process(name=...)`: names the child; `ps` and `top` show it (first 15 bytes). Without a
    /// name the handle reports Python's default `Process-N` and the child keeps the parent's.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Test hook: the child exits during bootstrap, before it connects back.
    #[doc(hidden)]
    pub fn __exit_before_connect(mut self) -> Self {
        self.exit_before_connect = true;
        self
    }

    /// Starts the child (the same executable, re-run) and hands it the arguments.
    ///
    /// Returns once the child has connected back and received its arguments, or with an
    /// error if it dies first (detected within a few milliseconds, never a hang).
    pub fn start(self) -> Result<ProcessHandle<F::Output>, ProcessError> {
        let _ = self.target;
        bootstrap::ensure_linked();
        let ipc_err = |pid: u32| {
            move |e: std::io::Error| ProcessError::Ipc {
                pid,
                message: e.to_string(),
            }
        };
        let (server, name) =
            IpcOneShotServer::<ChildMsg<Args, F::Output>>::new().map_err(ipc_err(0))?;
        let entry: bootstrap::ChildEntry = child_entry::<F, Args>;
        let token = bootstrap::token(bootstrap::entry_offset(entry), &name).map_err(ipc_err(0))?;
        let mut command = Command::new("/proc/self/exe");
        command.env(bootstrap::TOKEN_VAR, token);
        if let Some(name) = &self.name {
            command.env(bootstrap::NAME_VAR, name);
        }
        if self.exit_before_connect {
            command.env(bootstrap::FAULT_VAR, "exit-before-connect");
        }
        let mut child = command.spawn().map_err(ProcessError::Spawn)?;
        let pid = child.id();
        bootstrap::watch(pid, name);
        let accepted = server.accept();
        bootstrap::unwatch(pid);
        let failure = |child: &mut Child, reason: String| {
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
        };
        match accepted {
            Ok((rx, ChildMsg::Hello { args, .. })) => {
                let sent = with_ipc_transfer(|| args.send(self.args));
                if let Err(e) = sent {
                    return Err(failure(
                        &mut child,
                        format!(
                            "could not send the arguments: {}",
                            take_refusal().unwrap_or_else(|| e.to_string())
                        ),
                    ));
                }
                let name = self.name.unwrap_or_else(|| {
                    static COUNT: std::sync::atomic::AtomicU64 =
                        std::sync::atomic::AtomicU64::new(0);
                    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    format!("Process-{n}")
                });
                Ok(ProcessHandle {
                    pid,
                    name,
                    child: Some(child),
                    status: None,
                    results: Some(rx.to_opaque().to()),
                    message: None,
                    joined: false,
                })
            }
            Ok((_, ChildMsg::BootFailed(reason))) => Err(failure(&mut child, reason)),
            Ok(_) => Err(failure(&mut child, "unexpected first message".into())),
            Err(e) => Err(failure(&mut child, format!("handshake failed: {e}"))),
        }
    }
}

fn describe(status: &ExitStatus) -> String {
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

/// A started child process. `join` gives back the target's return value, typed.
///
/// Dropping a handle without joining detaches the child: it keeps running and a background
/// thread reaps it when it exits (no zombie). Children always exit when this process dies.
pub struct ProcessHandle<R> {
    pid: u32,
    name: String,
    /// Always `Some` until drop hands it to a reaper thread.
    child: Option<Child>,
    status: Option<ExitStatus>,
    results: Option<IpcReceiver<ChildMsg<(), R>>>,
    /// The message read from the child, `Some(None)` when the channel reached end-of-file.
    message: Option<Option<ChildMsg<(), R>>>,
    joined: bool,
}

impl<R> std::fmt::Debug for ProcessHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
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

    /// `Process.name`: the name given with [`Process::named`], or `Process-N`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the child to finish and returns the target's value, or what went wrong.
    pub fn join(mut self) -> Result<R, ProcessError> {
        self.join_deadline(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`ProcessError::Timeout`];
    /// the handle stays usable, so a later call can wait again.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        self.join_deadline(Some((Instant::now() + timeout, timeout)))
    }

    fn join_deadline(&mut self, deadline: Option<(Instant, Duration)>) -> Result<R, ProcessError> {
        let pid = self.pid;
        if self.joined {
            return Err(ProcessError::AlreadyJoined { pid });
        }
        let timeout = |waited| ProcessError::Timeout { pid, waited };
        if self.message.is_none() {
            let rx = self
                .results
                .as_ref()
                .expect("receiver present until joined");
            let received = match deadline {
                None => rx.recv().map_err(TryRecvError::IpcError),
                Some((at, _)) => rx.try_recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            self.message = Some(match received {
                Ok(msg) => Some(msg),
                Err(TryRecvError::Empty) => {
                    return Err(timeout(deadline.map_or(Duration::ZERO, |d| d.1)));
                }
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => None,
                Err(TryRecvError::IpcError(e)) => {
                    return Err(ProcessError::Ipc {
                        pid,
                        message: e.to_string(),
                    });
                }
            });
        }
        let status = match deadline {
            None => self.wait_blocking()?,
            Some((at, waited)) => self.wait_until(at)?.ok_or_else(|| timeout(waited))?,
        };
        self.joined = true;
        self.results = None;
        let message = self.message.take().flatten();
        outcome(pid, message, status)
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
        }
        Ok(self.status)
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is present until drop")
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

    /// `Process.kill()`: sends SIGKILL. A no-op once the child has exited.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&mut self, sig: i32) -> Result<(), ProcessError> {
        if self.poll_status()?.is_some() {
            return Ok(());
        }
        // SAFETY: the child is not reaped yet, so `pid` still names it.
        if unsafe { libc::kill(self.pid as i32, sig) } != 0 {
            return Err(ProcessError::Ipc {
                pid: self.pid,
                message: format!("kill failed: {}", std::io::Error::last_os_error()),
            });
        }
        Ok(())
    }
}

impl<R> Drop for ProcessHandle<R> {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.status.is_some() || matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Detach: the child runs on; a thread reaps it so it never lingers as a zombie.
        let _ = std::thread::Builder::new()
            .name(format!("process-ipc-reaper-{}", self.pid))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

fn outcome<R>(
    pid: u32,
    message: Option<ChildMsg<(), R>>,
    status: ExitStatus,
) -> Result<R, ProcessError> {
    use std::os::unix::process::ExitStatusExt;
    match message {
        Some(ChildMsg::Returned(value)) => Ok(value),
        Some(ChildMsg::Panicked { message, location }) => Err(ProcessError::Panicked {
            pid,
            message,
            location,
        }),
        Some(ChildMsg::Failed(reason)) | Some(ChildMsg::BootFailed(reason)) => {
            Err(ProcessError::Ipc {
                pid,
                message: reason,
            })
        }
        Some(ChildMsg::Hello { .. }) | None => match (status.signal(), status.code()) {
            (Some(signal), _) => Err(ProcessError::Killed { pid, signal }),
            (None, Some(code)) => Err(ProcessError::Exited { pid, code }),
            _ => Err(ProcessError::Exited { pid, code: -1 }),
        },
    }
}
