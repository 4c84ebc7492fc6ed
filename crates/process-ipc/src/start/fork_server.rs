//! The start methods, Python's names: [`StartMethod::Spawn`] re-executes this binary for every
//! child; [`StartMethod::ForkServer`] asks a small helper of ours to fork one.
//!
//! Layer: above `sys` and `bootstrap`, below `process`. The server is a `Process` itself:
//! `process` hands [`request_fork`] the function that starts one.
//!
//! ## The fork server
//!
//! On first use the parent starts the server itself with the Spawn path, so the server is
//! authenticated like any child, from a thread kept for that (see below). The server stays
//! single-threaded, before `main` (nothing of the program has run in it): a child forked from it
//! inherits that clean state, never the parent's threads, locks or heap.
//!
//! For each child the parent sends the server a request on a channel of its own making (its
//! other end went to the server in the server's authenticated start, so only the server can
//! read it): the entry to run, a nonce, and the receiving end of a fresh argument channel, on
//! which the parent writes the arguments (with the sender of the result channel) right after
//! the request, before it waits for anything. The server clones with `CLONE_PARENT`: the child
//! is the parent's own child, so the parent waits for it, reaps it and reads its exit code or
//! signal exactly as for a spawned child (the Pool's watcher waits on its pid). The server
//! answers with the pid, tagged with the request's nonce, on a second channel only it holds.
//! The child sets `PR_SET_PDEATHSIG` (SIGKILL) and checks that its parent is still there,
//! closes its copies of the server's channels, reads the arguments (already there, refused
//! without the nonce) and confirms on its result channel.
//!
//! The parent looks for the confirmation for a short while (250 µs, yielding between looks),
//! then sleeps once: on the result channel, until the child confirms, the channel closes
//! (the child died, or the server dropped the request) or the start deadline passes. Only then
//! does it read the server's answer (sent right after the fork, so it is waiting) for the pid:
//! `start` returns the handle, or kills and reaps the child and returns the error. A message
//! too large for the argument socket's buffer (about 200 kB) waits for the child to read it,
//! which is the first thing the child does. No socket file, no name, nothing another process
//! could reach: every channel is a nameless socket pair passed only to the processes that need
//! it.
//!
//! If the server is gone (killed, or it exited), the next start finds its control socket
//! closed, or no answer on it, starts a fresh one and retries once; a second failure is an
//! `Err`, never a hang (the start deadline bounds every wait; a server that does not answer by
//! then is killed).
//!
//! Dying with the parent: the parent-death signal fires when the parent *thread* exits, and
//! a forked child's parent thread is the one that started the server (`CLONE_PARENT` copies
//! the server's parent). So every server is started from one thread kept for that for the
//! whole life of the process: the signal fires when the process ends, or is killed. Unlike a
//! lifeline watcher, it costs the child no thread. The server itself stays single-threaded and
//! ends when its request channel closes.
//!
//! A forked child inherits the server's environment, working directory and standard streams,
//! which are the parent's at the time the server started (as with Python's forkserver).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ipc_channel::TryRecvError;
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use crate::start::spawn;
use crate::sys;

/// How a [`Process`](crate::Process) starts its child (`multiprocessing.set_start_method`).
///
/// The default is [`ForkServer`](Self::ForkServer): measured here, spawn+join costs about a
/// fifth of Spawn's (0.48 ms against 2.39 ms in one run of `benches/process_spawn.rs` on a
/// quiet machine, where procspawn took 2.02 ms and a bare fork+exit+waitpid 0.20 ms). The environment variable
/// `PROCESS_IPC_START_METHOD` (`spawn` or `forkserver`), read once, overrides it for the whole
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

// ---------------------------------------------------------------------------------------------
// The protocol: two ipc-channel channels made by the parent, whose other ends only the server
// holds (they went to it in its own, authenticated, Spawn start).

/// Parent to server: fork a child that runs the entry at `offset` on the arguments it will read
/// from `args` (the parent writes them right after this request, before it waits).
#[derive(Serialize, Deserialize)]
pub(crate) struct ForkRequest {
    /// The forked entry's offset from the anchor (see `spawn::address_at`).
    pub(crate) offset: i64,
    /// The nonce the arguments must carry.
    pub(crate) nonce: [u8; 16],
    /// The child's name, from `Process::named`.
    pub(crate) name: Option<String>,
    /// Who the child is (`current::encode_identity`).
    pub(crate) identity: String,
    /// Test-only bootstrap fault (feature `test-fault`); always `None` otherwise.
    pub(crate) fault: Option<String>,
    /// The receiving end of the child's argument channel (typed by the child's entry).
    pub(crate) args: IpcReceiver<()>,
}

/// Server to parent: the child's pid, or the errno of a failed clone.
pub(crate) type ForkReply = Result<u32, i32>;

/// A [`ForkReply`] with the nonce of the request it answers: the parent reads the replies when
/// it needs one (after the child's confirmation), so several may wait in the channel.
pub(crate) type TaggedReply = ([u8; 16], ForkReply);

/// An entry of a forked child: its request (minus what the server keeps), returns its exit code.
pub(crate) type ForkedEntry = fn(ForkedChild) -> i32;

/// What a forked child gets from its request.
pub(crate) struct ForkedChild {
    /// The nonce its arguments must carry.
    pub(crate) nonce: [u8; 16],
    /// Where its arguments arrive.
    pub(crate) args: IpcReceiver<()>,
}

// ---------------------------------------------------------------------------------------------
// The server's side: a Process target, started with Spawn, that runs before `main` and stays
// single-threaded (its bootstrap starts no lifeline thread for it: when the parent dies, its
// request channel closes).

/// The fork server: forks a child per request until the parent's request channel closes.
pub(crate) fn server_main(
    requests: IpcReceiver<ForkRequest>,
    replies: IpcSender<TaggedReply>,
) -> u8 {
    let regs = sys::thread_regs();
    // Made once here rather than in every child that flushes it (see `end_forked`).
    let _ = std::io::stdout();
    // The parent's pid: with CLONE_PARENT it is every child's parent too.
    let parent = sys::ppid();
    // The server's bootstrap named it after the parent; the children it forks keep that name.
    loop {
        // Disconnected: the parent retired this server, or it is gone.
        let Ok(request) = requests.recv() else {
            return 0;
        };
        match sys::clone_parent(&regs) {
            Ok(0) => {
                // The child: it dies with the parent (its parent thread is the parent's
                // starter thread, which lives as long as the parent process).
                if !sys::die_with_parent(parent) {
                    // SAFETY: leave at once: the parent is gone.
                    unsafe { libc::_exit(1) };
                }
                // It must not reach the server's channels.
                drop(requests);
                drop(replies);
                let code = run_forked(request);
                end_forked(code)
            }
            Ok(pid) => {
                if replies.send((request.nonce, Ok(pid))).is_err() {
                    return 0;
                }
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                if replies.send((request.nonce, Err(errno))).is_err() {
                    return 0;
                }
            }
        }
    }
}

/// How a forked child ends, as Python's forked children do (`os._exit`): the exit rule has
/// run (at the end of its target, see `daemon`), Rust's standard output is flushed (its
/// standard error has no buffer), and the process exits at once. The `atexit(3)` handlers,
/// thread-local destructors, C stream flushes and the dynamic loader's teardown that
/// `std::process::exit` runs belong to the program the server was started from, not to this
/// child; skipping them halves the time from the child's report to its exit. A handler the
/// target registers itself runs only if the target calls `std::process::exit`, or if the
/// target left threads running: then the child ends with `std::process::exit`, so that a
/// handler that waits for them (`threads_sync::join_non_daemon_at_exit`, which the target may
/// have registered) still does, as Python's child waits for its non-daemon threads.
fn end_forked(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    if !sys::single_threaded() {
        std::process::exit(code);
    }
    // SAFETY: _exit ends the process without running anything more of it, which is what this
    // child wants.
    unsafe { libc::_exit(code) }
}

/// In a freshly forked child: the name, the faults, then the entry.
fn run_forked(request: ForkRequest) -> i32 {
    crate::current::set_identity(&request.identity, true);
    // Without a name of its own the child keeps the server's, which is the parent's.
    if let Some(name) = &request.name {
        spawn::set_process_name(name);
    }
    match request.fault.as_deref() {
        Some("exit-before-connect") => return 7,
        Some("silent") => loop {
            std::thread::park();
        },
        _ => {}
    }
    let address = spawn::address_at(request.offset as isize);
    // SAFETY: the offset came from the parent on a channel only it and this server ever held
    // (the server got its end in its own authenticated start), and this process is a copy of
    // the server, whose executable was checked to be the parent's: `address` is the forked
    // entry the parent took the offset of, a `ForkedEntry` in this very binary.
    let entry: ForkedEntry = unsafe { std::mem::transmute::<usize, ForkedEntry>(address) };
    entry(ForkedChild {
        nonce: request.nonce,
        args: request.args,
    })
}

// ---------------------------------------------------------------------------------------------
// The parent's side.

/// The fork server's process, as the layer above started it.
pub(crate) trait ServerProcess: Send {
    /// Its pid.
    fn pid(&self) -> u32;
    /// SIGKILL, unless it was already reaped.
    fn kill(&mut self);
}

/// Starts a fork server running [`server_main`] on this channel, by the deadline.
pub(crate) type StartServer = fn(
    IpcReceiver<ForkRequest>,
    IpcSender<TaggedReply>,
    Instant,
) -> std::io::Result<Box<dyn ServerProcess>>;

/// The running server: its process, the two channels to it, and the replies read from the
/// channel that another start is still to take.
struct Server {
    handle: Box<dyn ServerProcess>,
    requests: IpcSender<ForkRequest>,
    replies: IpcReceiver<TaggedReply>,
    unclaimed: HashMap<[u8; 16], ForkReply>,
}

impl Server {
    /// Starts a server (with the Spawn path, by `start`).
    fn start(start: StartServer, deadline: Instant) -> std::io::Result<Server> {
        let (requests, requests_rx) = ipc::channel::<ForkRequest>()?;
        let (replies_tx, replies) = ipc::channel::<TaggedReply>()?;
        let handle = start(requests_rx, replies_tx, deadline)?;
        let pid = handle.pid();
        // No zombie if the server dies while nobody starts a process: reap it when it exits
        // (waiting without reaping, so a kill under the lock never hits a reused pid).
        std::thread::Builder::new()
            .name("process-ipc-forkserver-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                wait_exited(pid);
                let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
                // Dropping the handle of an exited child reaps it. A server retired earlier was
                // reaped by its handle's drop (at once, or on the handle's own thread).
                if server.as_ref().is_some_and(|s| s.handle.pid() == pid) {
                    *server = None;
                }
            })?;
        Ok(Server {
            handle,
            requests,
            replies,
            unclaimed: HashMap::new(),
        })
    }
}

/// Blocks until child `pid` has exited, leaving it unreaped.
fn wait_exited(pid: u32) {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid place to write; WNOWAIT leaves the child a zombie.
        let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// A server to start, and where the outcome goes.
type StartJob = (
    StartServer,
    Instant,
    std::sync::mpsc::SyncSender<std::io::Result<Server>>,
);

/// Starts a server on the one thread that starts them all, which lives as long as this
/// process. A forked child's parent is that very thread (`CLONE_PARENT` copies the server's
/// parent, which is the thread that started it), and `PR_SET_PDEATHSIG` fires when the parent
/// *thread* exits: started from a passing thread, the children would die with it.
fn start_server(start: StartServer, deadline: Instant) -> std::io::Result<Server> {
    static STARTER: OnceLock<Option<std::sync::mpsc::Sender<StartJob>>> = OnceLock::new();
    let starter = STARTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<StartJob>();
        std::thread::Builder::new()
            .name("process-ipc-forkserver-starter".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // Never returns: the sender lives in a static.
                while let Ok((start, deadline, reply)) = rx.recv() {
                    let _ = reply.send(Server::start(start, deadline));
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(starter) = starter else {
        return Err(std::io::Error::other(
            "cannot start the thread that starts the fork server",
        ));
    };
    let (reply, outcome) = std::sync::mpsc::sync_channel(1);
    starter
        .send((start, deadline, reply))
        .map_err(|_| std::io::Error::other("the fork server's starter thread is gone"))?;
    // Bounded: the start itself is bounded by `deadline`.
    outcome
        .recv()
        .map_err(|_| std::io::Error::other("the fork server's starter thread is gone"))?
}

/// Hands the server (starting it first if there is none, or if it died) a request for one
/// child, made by `request` (called again for a fresh server, since a failed send drops it).
/// Returns the server's pid without waiting for the answer: [`take_reply`] reads it. The child
/// will be this process's own child.
pub(crate) fn request_fork(
    request: impl Fn() -> std::io::Result<ForkRequest>,
    start: StartServer,
    deadline: Instant,
) -> std::io::Result<u32> {
    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..2 {
        if server.is_none() {
            *server = Some(start_server(start, deadline)?);
        }
        let running = server.as_mut().expect("just started");
        if running.requests.send(request()?).is_ok() {
            return Ok(running.handle.pid());
        }
        // Gone: retire it (dropping its handle reaps it, now or on its own thread).
        *server = None;
    }
    Err(std::io::Error::other(
        "the fork server died right after it started, twice; no child was started",
    ))
}

/// How waiting for a server's answer ended without one.
pub(crate) enum NoReply {
    /// The server went away (or was replaced) without answering.
    Gone,
    /// No answer by the deadline: the server was killed and retired.
    TimedOut,
}

/// The answer of server `server` to the request with `nonce`, waiting until `deadline`.
/// Answers to other requests read on the way are kept for their own starts.
pub(crate) fn take_reply(
    server: u32,
    nonce: &[u8; 16],
    deadline: Instant,
) -> Result<ForkReply, NoReply> {
    let mut guard = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(running) = guard.as_mut().filter(|s| s.handle.pid() == server) else {
        return Err(NoReply::Gone);
    };
    if let Some(reply) = running.unclaimed.remove(nonce) {
        return Ok(reply);
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match running.replies.try_recv_timeout(left) {
            Ok((tag, reply)) if &tag == nonce => return Ok(reply),
            Ok((tag, reply)) => {
                running.unclaimed.insert(tag, reply);
            }
            Err(TryRecvError::Empty) => {
                running.handle.kill();
                *guard = None;
                return Err(NoReply::TimedOut);
            }
            Err(TryRecvError::IpcError(_)) => {
                *guard = None;
                return Err(NoReply::Gone);
            }
        }
    }
}

/// Test support: the current fork server's pid, if one runs (tests kill it).
#[doc(hidden)]
pub fn __fork_server_pid() -> Option<u32> {
    SERVER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.handle.pid())
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
