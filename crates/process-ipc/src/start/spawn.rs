//! The Spawn start method, whole: the parent half re-executes `/proc/self/exe` for every child
//! and runs the handshake ([`handshake`](super::handshake)); the child half is the constructor
//! that runs before `main`, authenticates the parent, takes the setup, starts the lifeline
//! watcher and jumps to the entry the parent named, which takes the arguments and runs the
//! target ([`child`](super::child)).

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use ipc_channel::ipc::{self, IpcSender};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::child::Target;
#[cfg(feature = "test-fault")]
use super::handshake::FAULT_VAR;
use super::handshake::{
    self, ChildLink, IDENTITY_VAR, MAX_MSG, NAME_VAR, ParentLink, Setup, TOKEN_VAR, TOKEN_VERSION,
};
use super::{Request, Started, child, start_failure, watchdog};
use crate::error::ProcessError;
use crate::sys::{self, ChildProcess, Received};
use crate::wire::{self, ChildMsg, ParentMsg, ParentMsgOut};

/// How long a child waits for its parent's setup before giving up.
const SETUP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Entry point of a child: receives its end of the handshake, returns the exit code.
type ChildEntry = fn(ChildLink) -> i32;

/// The Spawn method's parent half: re-executes this binary with the token, runs the handshake,
/// and hands the child the arguments and the result channel; returns once the child confirmed.
/// `lone`: the child must stay single-threaded (the fork server), so it starts no lifeline
/// thread.
pub(crate) fn start<F, Args>(
    _target: F,
    request: &Request<'_, Args>,
    lone: bool,
) -> Result<Started<F::Output>, ProcessError>
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let ipc_err = |e: std::io::Error| ProcessError::Ipc {
        pid: 0,
        message: e.to_string(),
    };
    let mut link = ParentLink::new().map_err(ipc_err)?;
    let mut env = Vec::new();
    if let Some(name) = request.name {
        env.push((handshake::NAME_VAR, name));
    }
    env.push((handshake::IDENTITY_VAR, request.identity.as_str()));
    #[cfg(feature = "test-fault")]
    if let Some(fault) = request.fault {
        env.push((handshake::FAULT_VAR, fault));
    }
    let mut child = link.spawn(&env).map_err(ProcessError::Spawn)?;
    let pid = child.id();
    let failure = |child: &mut ChildProcess, reason: String| start_failure(child, pid, reason);
    let entry: ChildEntry = child_entry::<F, Args>;
    if let Err(reason) = link.send_setup(sys::offset_of(entry as usize), lone) {
        return Err(failure(&mut child, reason));
    }
    let server = match link.expect_listening(pid, request.deadline) {
        Ok(server) => server,
        Err(reason) => return Err(failure(&mut child, reason)),
    };
    let (results_tx, results_rx) = match ipc::channel::<ChildMsg<F::Output>>() {
        Ok(pair) => pair,
        Err(e) => return Err(failure(&mut child, format!("cannot open a channel: {e}"))),
    };
    let msg = ParentMsgOut {
        nonce: link.nonce(),
        args: request.args,
        results: results_tx,
    };
    // Writing the arguments can block on a child that does not read: the watchdog kills it
    // at the deadline, which turns the write into an error.
    watchdog::watch(pid, request.deadline);
    let sent = match IpcSender::<ParentMsgOut<'_, Args, F::Output>>::connect(server) {
        Ok(tx) => {
            wire::with_ipc_transfer(|| wire::encoding(|| tx.send(msg))).map_err(|(e, refusal)| {
                refusal
                    .or_else(|| wire::serialize_error(request.args))
                    .unwrap_or_else(|| e.to_string())
            })
        }
        Err(e) => Err(format!("cannot connect to the child's socket: {e}")),
    };
    watchdog::unwatch(pid);
    if let Err(reason) = sent {
        return Err(failure(
            &mut child,
            format!("could not send the arguments: {reason}"),
        ));
    }
    if let Err(reason) = link.expect_ready(pid, request.deadline) {
        return Err(failure(&mut child, reason));
    }
    Ok(Started {
        child,
        results: results_rx,
    })
}

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
    child::run_target::<F, Args>(msg)
}

/// Referenced from every start (`StartMethod::start`) so the linker always keeps this object
/// file, and with it the constructor below (an rlib's object is dropped when nothing refers to
/// it).
pub(crate) fn ensure_linked() {
    std::hint::black_box(child_bootstrap as fn());
}

/// What a process that starts with a token in its environment does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No token: an ordinary start, `main` runs.
    NotAChild,
    /// The kernel runs this process with privileges its invoker lacks: the environment is the
    /// invoker's, so a token there is not trusted; exit without running anything.
    RefuseSecure,
    /// Go on with the handshake.
    Child,
}

/// The decision, from the token's presence and `getauxval(AT_SECURE)`.
pub(crate) fn decide(token_present: bool, at_secure: bool) -> Decision {
    match (token_present, at_secure) {
        (false, _) => Decision::NotAChild,
        (true, true) => Decision::RefuseSecure,
        (true, false) => Decision::Child,
    }
}

#[ctor::ctor(unsafe)]
fn child_bootstrap() {
    // SAFETY (ctor): runs before main, single-threaded; only std facilities that need no
    // runtime setup beyond libc are used until the token says this process is a child.
    let token = std::env::var_os(TOKEN_VAR);
    match decide(token.is_some(), sys::at_secure()) {
        Decision::NotAChild => return,
        Decision::RefuseSecure => {
            eprintln!(
                "process-ipc: {TOKEN_VAR} is set in a setuid/setgid/capability process; \
                 refusing to run as a child"
            );
            std::process::exit(3);
        }
        Decision::Child => {}
    }
    let token = token.expect("decided on its presence");
    // SAFETY: before main no other thread exists, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(TOKEN_VAR) };
    if let Some(identity) = std::env::var_os(IDENTITY_VAR) {
        crate::current::set_identity(&identity.to_string_lossy(), false);
        // SAFETY: as above, still single-threaded.
        unsafe { std::env::remove_var(IDENTITY_VAR) };
    }
    // A child registers for the robust locks' barrier now, while it has one thread:
    // registered once a second thread runs, it waits for an RCU grace period (10 ms and more)
    // at its first lock, inside its target's time. Not the fork server: it takes no lock, its
    // children register as they start (`server::run_forked`), and a registered server made
    // every start slower (the Pool's start by about 5%).
    if crate::current::current_process().name() != crate::current::FORK_SERVER {
        sys::futex::register_for_barriers();
    }
    let name = std::env::var_os(NAME_VAR);
    if name.is_some() {
        // SAFETY: as above, still single-threaded.
        unsafe { std::env::remove_var(NAME_VAR) };
    }
    let code = run_child(
        &token.to_string_lossy(),
        name.map(|n| n.to_string_lossy().into_owned()),
    );
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

/// Parses the token, authenticates the parent, takes the setup, and runs the entry.
fn run_child(token: &str, name: Option<String>) -> i32 {
    let fields: Vec<&str> = token.split(':').collect();
    let (parent, fd) = match fields[..] {
        [TOKEN_VERSION, parent, fd] => match (parent.parse::<i32>(), fd.parse::<RawFd>()) {
            (Ok(parent), Ok(fd)) if fd > 2 => (parent, fd),
            _ => return refuse(&format!("malformed bootstrap token {token:?}")),
        },
        _ => return refuse(&format!("malformed bootstrap token {token:?}")),
    };
    #[cfg(feature = "test-fault")]
    let fault = std::env::var(FAULT_VAR).ok().inspect(|_| {
        // SAFETY: before main, single-threaded.
        unsafe { std::env::remove_var(FAULT_VAR) };
    });
    #[cfg(not(feature = "test-fault"))]
    let fault = None;
    run_authenticated(parent, fd, name, fault)
}

fn refuse(reason: &str) -> i32 {
    eprintln!("process-ipc child {}: {reason}", std::process::id());
    3
}

/// The common tail: `fd` (owned by nobody yet) must be a socket pair end made by `parent`.
fn run_authenticated(parent: i32, fd: RawFd, name: Option<String>, fault: Option<String>) -> i32 {
    // The parent may have died between spawn and now: then our parent is init or a subreaper.
    if sys::ppid() != parent {
        return 4;
    }
    match sys::peer_creds(fd) {
        Ok(c) if c.pid == parent && c.uid == sys::euid() => {}
        Ok(c) => {
            return refuse(&format!(
                "descriptor {fd} was made by pid {} uid {}, not by the parent {parent} of uid {}",
                c.pid,
                c.uid,
                sys::euid()
            ));
        }
        Err(e) => return refuse(&format!("descriptor {fd} is not a handshake socket: {e}")),
    }
    // SAFETY: `fd` is open (getsockopt just succeeded on it) and, before main, nothing else in
    // this process owns it: it was inherited (or received) for this purpose alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Our own children get their own handshake, not this one.
    let _ = sys::set_cloexec(fd.as_raw_fd(), true);
    // The SIGPIPE disposition std's runtime would set before main: a write to a closed socket
    // then becomes an error value instead of killing the child.
    sys::ignore_sigpipe();
    #[cfg(feature = "test-fault")]
    if let Some(code) = fault::before_setup(fd.as_raw_fd(), fault.as_deref()) {
        return code;
    }
    #[cfg(not(feature = "test-fault"))]
    let _ = fault;
    let setup = match sys::recv(fd.as_raw_fd(), MAX_MSG, Instant::now() + SETUP_DEADLINE) {
        Ok(Received::Message(bytes, _)) => Setup::decode(&bytes),
        _ => None,
    };
    let link = ChildLink::new(fd, setup.as_ref().map_or([0; 16], |s| s.nonce));
    let Some(setup) = setup else {
        return link.fail("no valid setup from the parent");
    };
    if setup.lone {
        // The fork server stays single-threaded (the parent's death closes its request
        // channel); the children it forks die with the parent through `PR_SET_PDEATHSIG`
        // (see `fork_server`), so it needs no lifeline.
        // SAFETY: the descriptor was inherited for this purpose alone and nothing else in
        // this process owns it; closing it here is its only use.
        drop(unsafe { OwnedFd::from_raw_fd(setup.lifeline) });
    } else {
        start_lifeline_watch(setup.lifeline);
    }
    match name {
        Some(name) => sys::set_process_name(&name),
        None => child::name_after_parent(parent),
    }
    match sys::exe_identity() {
        Ok(mine) if mine == setup.identity => {}
        Ok(_) => {
            return link.fail(
                "the executable changed between the parent's start and the child's \
                 (rebuilt or replaced on disk); refusing to run a target from a different binary",
            );
        }
        Err(e) => return link.fail(&format!("cannot stat /proc/self/exe: {e}")),
    }
    child::install_panic_recorder();
    let address = sys::address_at(setup.offset as isize);
    // SAFETY: the offset came from the parent over the socket pair it made (its pid and our
    // uid checked with SO_PEERCRED), and the executable's identity matches the parent's, so
    // `address` is the entry the parent took the offset of, a `ChildEntry` in this very binary.
    let entry: ChildEntry = unsafe { std::mem::transmute::<usize, ChildEntry>(address) };
    entry(link)
}

/// Test-only faults of the child's bootstrap (feature `test-fault`).
#[cfg(feature = "test-fault")]
mod fault {
    use super::handshake::LISTENING;
    use crate::sys;

    /// Acts out the fault named in the environment, if any; `Some(code)` to exit with.
    pub(super) fn before_setup(fd: std::os::fd::RawFd, fault: Option<&str>) -> Option<i32> {
        match fault? {
            "exit-before-connect" => Some(7),
            // Keeps the handshake open and says nothing until it is killed.
            "silent" => loop {
                std::thread::park();
            },
            // Another process (a grandchild) speaks on the handshake in the child's place.
            "grandchild-speaks" => {
                // Before main the process is single-threaded, so a plain fork is sound; the
                // grandchild only sends and exits.
                match sys::fork_single_threaded() {
                    Ok(0) => {
                        let _ = sys::send(fd, &[LISTENING, b'/']);
                        sys::exit_now(0)
                    }
                    _ => loop {
                        std::thread::park();
                    },
                }
            }
            // The handshake message comes from another uid (root only: setuid to nobody).
            "other-uid-speaks" => {
                if sys::setuid(65534).is_err() {
                    return Some(9);
                }
                let _ = sys::send(fd, &[LISTENING, b'/']);
                loop {
                    std::thread::park();
                }
            }
            _ => None,
        }
    }
}

/// A thread that exits the child as soon as the parent's lifeline pipe reaches end-of-file.
pub(crate) fn start_lifeline_watch(fd: RawFd) {
    // Our own children get their own lifeline, not this one.
    let _ = sys::set_cloexec(fd, true);
    let spawned = std::thread::Builder::new()
        .name("process-ipc-lifeline".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            sys::wait_eof(fd);
            // End-of-file (or an error): the parent process is gone.
            sys::exit_now(1)
        });
    if spawned.is_err() {
        // Without a watcher we cannot honour "children die with their parent".
        sys::exit_now(5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secure_process_refuses_the_child_token() {
        assert_eq!(decide(true, true), Decision::RefuseSecure);
        assert_eq!(decide(true, false), Decision::Child);
        assert_eq!(decide(false, true), Decision::NotAChild);
        assert_eq!(decide(false, false), Decision::NotAChild);
    }
}
