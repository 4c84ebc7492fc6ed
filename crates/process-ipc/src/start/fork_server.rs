//! The ForkServer start method, whole: this file is the parent's half (the server's lifetime,
//! the request for one child, the wait for its confirmation and the server's answer);
//! [`server`] is the server's loop and the forked child's half.
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
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::child::Target;
use super::{EXIT_GRACE, Request, Started, spawn, start_failure};
use crate::error::ProcessError;
use crate::sys::{self, ChildProcess};
use crate::wire::{self, ChildMsg, ParentMsg};

mod server;

use server::ForkedEntry;

// ---------------------------------------------------------------------------------------------
// The protocol: two ipc-channel channels made by the parent, whose other ends only the server
// holds (they went to it in its own, authenticated, Spawn start).

/// Parent to server: fork a child that runs the entry at `offset` on the arguments it will read
/// from `args` (the parent writes them right after this request, before it waits).
#[derive(Serialize, Deserialize)]
pub(crate) struct ForkRequest {
    /// The forked entry's offset from the anchor (see `child::address_at`).
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

/// How long `start` looks for a forked child's confirmation before it sleeps for it.
const CONFIRM_LOOK_FOR: Duration = Duration::from_micros(250);

/// The ForkServer method's parent half: request a fork, write the arguments at once, and sleep
/// only until the child confirms (or its result channel closes, or the deadline passes); the
/// server's answer with the pid, sent right after the fork, is read then.
pub(crate) fn start<F, Args>(
    _target: F,
    request: &Request<'_, Args>,
) -> Result<Started<F::Output>, ProcessError>
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let mut outcome = fork_once::<F, Args>(request);
    // The server took the request and died without answering: ask a fresh one, once.
    if matches!(outcome, Err(Attempt::ServerGone)) {
        outcome = fork_once::<F, Args>(request);
    }
    match outcome {
        Ok(started) => Ok(started),
        Err(Attempt::Failed(e)) => Err(e),
        Err(Attempt::ServerGone) => Err(ProcessError::Spawn(std::io::Error::other(
            "the fork server died while starting the child, twice; no child was started",
        ))),
    }
}

/// How one ForkServer attempt ended, if not with a child.
enum Attempt {
    /// The server took the request and went away without answering: try a fresh one.
    ServerGone,
    /// A final error.
    Failed(ProcessError),
}

fn fork_once<F, Args>(request: &Request<'_, Args>) -> Result<Started<F::Output>, Attempt>
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let ipc_err = |e: std::io::Error| {
        Attempt::Failed(ProcessError::Ipc {
            pid: 0,
            message: e.to_string(),
        })
    };
    let nonce = sys::nonce().map_err(ipc_err)?;
    let (results_tx, results_rx) = ipc::channel::<ChildMsg<F::Output>>().map_err(ipc_err)?;
    let entry: ForkedEntry = server::forked_entry::<F, Args>;
    // Made again only if the server died and a fresh one is asked: the channels then went
    // down with the dead server's copy of the request.
    let channels = std::cell::RefCell::new(None);
    let server = request_fork(
        || {
            let (args_tx, args_rx) = ipc::channel::<ParentMsg<wire::ByRef<'_, Args>, F::Output>>()?;
            *channels.borrow_mut() = Some(args_tx);
            Ok(ForkRequest {
                offset: sys::offset_of(entry as usize) as i64,
                nonce,
                name: request.name.map(str::to_string),
                identity: request.identity.clone(),
                fault: request.fault.map(str::to_string),
                args: args_rx.to_opaque().to::<()>(),
            })
        },
        request.deadline,
    )
    .map_err(|e| Attempt::Failed(ProcessError::Spawn(e)))?;
    let args_tx = channels.into_inner().expect("a channel per request");
    let msg = ParentMsg {
        nonce,
        args: wire::ByRef(request.args),
        results: results_tx,
    };
    // Before the fork is even answered: the socket holds them for the child. A message
    // larger than the socket's buffer waits for the child to read it, which it does before
    // anything else.
    let sent =
        wire::with_ipc_transfer(|| wire::encoding(|| args_tx.send(msg))).map_err(|(e, refusal)| {
            refusal
                .or_else(|| wire::serialize_error(request.args))
                .unwrap_or_else(|| e.to_string())
        });
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
            let left = request.deadline.saturating_duration_since(Instant::now());
            match looked.unwrap_or_else(|| results_rx.try_recv_timeout(left)) {
                Ok(ChildMsg::Started) => Ok(()),
                Ok(_) => Err("the child reported before confirming its start".to_string()),
                Err(TryRecvError::Empty) => {
                    Err("the child stayed silent past the start deadline; it was killed".into())
                }
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => Err(
                    "the child closed its channels before confirming its start (it exited)".into(),
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
    let wait = request
        .deadline
        .saturating_duration_since(Instant::now())
        .max(EXIT_GRACE);
    let pid = match take_reply(server, &nonce, Instant::now() + wait) {
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
        Err(NoReply::Gone) if confirmed.is_err() => return Err(Attempt::ServerGone),
        Err(NoReply::Gone) => {
            return Err(Attempt::Failed(ProcessError::Spawn(std::io::Error::other(
                "the fork server died between forking the child and naming it; the child \
                 runs unnamed and dies with this process",
            ))));
        }
        Err(NoReply::TimedOut) => {
            return Err(Attempt::Failed(ProcessError::Spawn(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the fork server did not answer before the start deadline; it was killed",
            ))));
        }
    };
    let mut child = ChildProcess::adopt(pid);
    match confirmed {
        Ok(()) => Ok(Started {
            child,
            results: results_rx,
        }),
        Err(reason) => Err(Attempt::Failed(start_failure(&mut child, pid, reason))),
    }
}

/// The running server: its pid, the two channels to it, and the replies read from the
/// channel that another start is still to take. Its process is reaped by its reaper thread.
struct Server {
    pid: u32,
    requests: IpcSender<ForkRequest>,
    replies: IpcReceiver<TaggedReply>,
    unclaimed: HashMap<[u8; 16], ForkReply>,
    /// The server's own result channel (it reports only when it ends; nobody reads it).
    _results: IpcReceiver<ChildMsg<u8>>,
}

impl Server {
    /// Starts a server: a child of ours started with Spawn, so authenticated as any, and kept
    /// single-threaded (`lone`).
    fn start(deadline: Instant) -> std::io::Result<Server> {
        let (requests, requests_rx) = ipc::channel::<ForkRequest>()?;
        let (replies_tx, replies) = ipc::channel::<TaggedReply>()?;
        let args = (requests_rx, replies_tx);
        let request = Request {
            args: &args,
            name: None,
            // Infrastructure, not the user's work: a daemon, and not in the exit rule's list.
            identity: crate::current::encode_identity(crate::current::FORK_SERVER, true),
            fault: None,
            deadline,
        };
        let Started { mut child, results } = spawn::start(server::server_main, &request, true)
            .map_err(|e| std::io::Error::other(format!("cannot start the fork server: {e}")))?;
        let pid = child.id();
        // No zombie if the server dies while nobody starts a process: reap it when it exits
        // (waiting without reaping first, so a kill under the lock never hits a reused pid).
        Reaping::begin(pid);
        let reaper = std::thread::Builder::new()
            .name("process-ipc-forkserver-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                sys::wait_exited(pid);
                {
                    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
                    if server.as_ref().is_some_and(|s| s.pid == pid) {
                        *server = None;
                    }
                }
                // Out of SERVER (now, or when it was retired): nobody signals this pid any more.
                #[cfg(feature = "test-fault")]
                std::thread::sleep(std::time::Duration::from_millis(
                    REAPER_PAUSE_MS.load(std::sync::atomic::Ordering::Relaxed),
                ));
                let _ = child.wait();
                Reaping::end(pid);
            });
        if let Err(e) = reaper {
            Reaping::end(pid);
            let _ = sys::kill(pid, libc::SIGKILL);
            return Err(e);
        }
        Ok(Server {
            pid,
            requests,
            replies,
            unclaimed: HashMap::new(),
            _results: results,
        })
    }
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The servers started and not reaped yet, by pid (the current one, and any retired one whose
/// reaper has not reaped it): [`stop_server`] waits for them, since a server that died on its
/// own (a Ctrl-C reaches the whole process group) is out of [`SERVER`] before it is reaped.
struct Reaping;

static REAPING: (parking_lot::Mutex<Vec<u32>>, parking_lot::Condvar) = (
    parking_lot::Mutex::new(Vec::new()),
    parking_lot::Condvar::new(),
);

impl Reaping {
    fn begin(pid: u32) {
        REAPING.0.lock().push(pid);
    }

    fn end(pid: u32) {
        let mut unreaped = REAPING.0.lock();
        if let Some(at) = unreaped.iter().position(|&p| p == pid) {
            unreaped.swap_remove(at);
        }
        REAPING.1.notify_all();
    }

    /// Waits until every server started before now is reaped (one started meanwhile is not
    /// waited for), at most until `deadline`.
    fn wait_all(deadline: Instant) {
        let mut unreaped = REAPING.0.lock();
        let before = unreaped.clone();
        let waiting = |now: &mut Vec<u32>| now.iter().any(|p| before.contains(p));
        REAPING.1.wait_while_until(&mut unreaped, waiting, deadline);
    }
}

/// A server to start (by this deadline), and where the outcome goes.
type StartJob = (
    Instant,
    std::sync::mpsc::SyncSender<std::io::Result<Server>>,
);

/// Starts a server on the one thread that starts them all, which lives as long as this
/// process. A forked child's parent is that very thread (`CLONE_PARENT` copies the server's
/// parent, which is the thread that started it), and `PR_SET_PDEATHSIG` fires when the parent
/// *thread* exits: started from a passing thread, the children would die with it.
fn start_server(deadline: Instant) -> std::io::Result<Server> {
    static STARTER: OnceLock<Option<std::sync::mpsc::Sender<StartJob>>> = OnceLock::new();
    let starter = STARTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<StartJob>();
        std::thread::Builder::new()
            .name("process-ipc-forkserver-starter".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // Never returns: the sender lives in a static.
                while let Ok((deadline, reply)) = rx.recv() {
                    let _ = reply.send(Server::start(deadline));
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
        .send((deadline, reply))
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
    deadline: Instant,
) -> std::io::Result<u32> {
    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..2 {
        if server.is_none() {
            *server = Some(start_server(deadline)?);
        }
        let running = server.as_mut().expect("just started");
        if running.requests.send(request()?).is_ok() {
            return Ok(running.pid);
        }
        // Gone: retire it (its reaper thread reaps it).
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
    let Some(running) = guard.as_mut().filter(|s| s.pid == server) else {
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
                // Still in SERVER, so not reaped: the pid is the server's.
                let _ = sys::kill(running.pid, libc::SIGKILL);
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

/// Ends the fork server for good (the Ctrl-C shutdown: no start will come) and waits, until
/// `deadline`, for its reaper thread to reap it, and every earlier server's, so that none is
/// left a zombie of init when the program ends. The kill is sent under the lock, which the
/// reaper takes before it reaps: the pid cannot have been reused.
pub(crate) fn stop_server(deadline: Instant) {
    if let Some(server) = SERVER.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        let _ = sys::kill(server.pid, libc::SIGKILL);
    }
    // A server the signal itself killed may be out of SERVER and not reaped yet: wait for
    // every reaper, not only for the pid found there.
    Reaping::wait_all(deadline);
}

/// Test faults: how long each server's reaper pauses between taking its dead server out of
/// [`SERVER`] and reaping it (widens the window [`stop_server`] must cover).
#[cfg(feature = "test-fault")]
static REAPER_PAUSE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Test faults: makes every fork server's reaper pause `pause` before it reaps a dead server.
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub fn __pause_fork_server_reaper(pause: std::time::Duration) {
    let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
    REAPER_PAUSE_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Test faults: the Ctrl-C shutdown's end of the fork server ([`stop_server`]), bounded by
/// `timeout`.
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub fn __stop_fork_server(timeout: std::time::Duration) {
    stop_server(Instant::now() + timeout);
}

/// Test support: the current fork server's pid, if one runs (tests kill it).
#[doc(hidden)]
pub fn __fork_server_pid() -> Option<u32> {
    SERVER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.pid)
}
