//! The start methods, Python's names: [`StartMethod::Spawn`] re-executes this binary for every
//! child; [`StartMethod::ForkServer`] asks a small helper of ours to fork one.
//!
//! Layer: above `sys` and `bootstrap`, below `process`.
//!
//! ## The fork server
//!
//! On first use the parent starts the server itself with the Spawn path, so the server is
//! authenticated like any child and dies with the parent through the lifeline. The server stays
//! single-threaded, before `main` (nothing of the program has run in it): a child forked from it
//! inherits that clean state, never the parent's threads, locks or heap.
//!
//! For each child the parent makes the handshake socket pair as for Spawn and sends the child's
//! end to the server (`SCM_RIGHTS`, on the control socket that is the server's own handshake:
//! nameless, made by the parent, and each request must carry the parent's `SCM_CREDENTIALS`).
//! The server clones with `CLONE_PARENT`: the child is the parent's own child, so the parent
//! waits for it, reaps it and reads its exit code or signal exactly as for a spawned child (the
//! Pool's watcher waits on its pid). The server replies with the pid; from there the handshake
//! is Spawn's, step for step: the child checks that its descriptor was made by its parent,
//! takes the setup, and the parent accepts its messages only with the credentials of that pid.
//!
//! If the server is gone (killed, or it exited), the next start finds its control socket
//! closed, starts a fresh one and retries once; a second failure is an `Err`, never a hang (the
//! start deadline bounds every wait).
//!
//! A forked child inherits the server's environment, working directory and standard streams,
//! which are the parent's at the time the server started (as with Python's forkserver).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::bootstrap::{self, ChildLink, ParentLink};
use crate::sys::{self, Child, ReceivedFd};

/// How a [`Process`](crate::Process) starts its child (`multiprocessing.set_start_method`).
///
/// The default is [`ForkServer`](Self::ForkServer): measured here, spawn+join costs about a
/// third of Spawn's (see `benches/process_spawn.rs`). The environment variable
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
    /// Fork every child from a single-threaded helper started once, on first use.
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
// The protocol on the control socket.

/// Parent to server: fork a child (the handshake end rides along as `SCM_RIGHTS`).
const FORK: u8 = b'F';
/// Server to parent: the child's pid (4 bytes, little-endian).
const FORKED: u8 = b'P';
/// Server to parent: the fork failed with this errno (4 bytes, little-endian).
const REFUSED: u8 = b'E';
/// The largest request: a name and a test fault.
const MAX_REQUEST: usize = 4096;

/// Encodes a fork request: the tag, the name's length (u16) and bytes, then the fault's bytes.
fn encode_request(name: Option<&str>, fault: Option<&str>) -> Vec<u8> {
    let name = name.unwrap_or("").as_bytes();
    let name = &name[..name.len().min(1024)];
    let mut out = vec![FORK];
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(fault.unwrap_or("").as_bytes());
    out
}

/// Decodes a fork request into (name, fault); `None` if malformed.
fn decode_request(bytes: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let (&tag, rest) = bytes.split_first()?;
    if tag != FORK || rest.len() < 2 {
        return None;
    }
    let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let name = rest.get(2..2 + len)?;
    let fault = &rest[2 + len..];
    let text = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
    Some((text(name), text(fault)))
}

// ---------------------------------------------------------------------------------------------
// The server's side (runs before `main`, single-threaded).

/// The fork server's entry: confirms it is up, then forks children on request until the
/// parent's lifeline or the control socket closes.
pub(crate) fn server_entry(link: ChildLink) -> i32 {
    let lifeline = link.lifeline;
    let control = match link.into_control() {
        Ok(fd) => fd,
        Err(_) => return 3,
    };
    if sys::pass_creds(control.as_raw_fd()).is_err() {
        return 3;
    }
    let regs = sys::thread_regs();
    let parent = sys::ppid();
    let me = sys::euid();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: control.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: lifeline,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return 1;
        }
        if fds[1].revents != 0 {
            // The parent is gone (its lifeline reached end-of-file).
            return 0;
        }
        if fds[0].revents == 0 {
            continue;
        }
        let (bytes, creds, fd) = match sys::recv_with_fd(control.as_raw_fd(), MAX_REQUEST) {
            Ok(ReceivedFd::Message(bytes, creds, fd)) => (bytes, creds, fd),
            // The parent closed the control socket (it retired this server), or it is gone.
            Ok(ReceivedFd::Closed) | Err(_) => return 0,
        };
        // Only the parent that made the control pair can hold its other end; check anyway.
        let from_parent = matches!(creds, Some(c) if c.pid == parent && c.uid == me);
        let (Some(fd), Some((name, fault)), true) = (fd, decode_request(&bytes), from_parent)
        else {
            let _ = sys::send(control.as_raw_fd(), &reply(REFUSED, libc::EPROTO));
            continue;
        };
        match sys::clone_parent(&regs) {
            Ok(0) => {
                // The child: it must not reach the server's control socket.
                drop(control);
                let code = bootstrap::run_forked_child(fd, name, fault);
                std::process::exit(code);
            }
            Ok(pid) => {
                drop(fd);
                let _ = sys::send(control.as_raw_fd(), &reply(FORKED, pid as i32));
            }
            Err(e) => {
                drop(fd);
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                let _ = sys::send(control.as_raw_fd(), &reply(REFUSED, errno));
            }
        }
    }
}

fn reply(tag: u8, value: i32) -> [u8; 5] {
    let v = value.to_le_bytes();
    [tag, v[0], v[1], v[2], v[3]]
}

// ---------------------------------------------------------------------------------------------
// The parent's side.

/// The running server: its control socket and its process (reaped by its own small thread).
struct Server {
    control: OwnedFd,
    pid: u32,
    process: Arc<Mutex<Child>>,
}

impl Server {
    /// Starts a server with the Spawn path and waits for its "ready".
    fn start(deadline: Instant) -> std::io::Result<Server> {
        let other = |m: String| std::io::Error::other(format!("cannot start the fork server: {m}"));
        let mut link = ParentLink::new()?;
        let mut child = link.spawn(&[])?;
        let pid = child.id();
        let handshake = link
            .send_setup(bootstrap::entry_offset(server_entry))
            .and_then(|()| link.expect_ready(pid, deadline));
        if let Err(reason) = handshake {
            let _ = child.kill();
            let _ = child.wait();
            return Err(other(reason));
        }
        let process = Arc::new(Mutex::new(child));
        let reaped = Arc::clone(&process);
        // No zombie if the server dies while nobody starts a process: reap it when it exits
        // (waiting without reaping first, so a kill under the lock never hits a reused pid).
        let spawned = std::thread::Builder::new()
            .name("process-ipc-forkserver-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                wait_exited(pid);
                let _ = reaped.lock().unwrap_or_else(|p| p.into_inner()).wait();
            });
        if let Err(e) = spawned {
            let mut child = process.lock().unwrap_or_else(|p| p.into_inner());
            let _ = child.kill();
            let _ = child.wait();
            return Err(other(format!("no reaper thread: {e}")));
        }
        Ok(Server {
            control: link.into_control(),
            pid,
            process,
        })
    }

    /// Asks for one child. `Ok(Err(()))`: the server is gone (start another).
    fn fork(
        &self,
        theirs: std::os::fd::RawFd,
        request: &[u8],
        deadline: Instant,
    ) -> std::io::Result<Result<u32, ()>> {
        let fd = self.control.as_raw_fd();
        if sys::send_with_fd(fd, request, theirs).is_err() {
            return Ok(Err(()));
        }
        match sys::recv(fd, 64, deadline)? {
            sys::Received::Message(bytes, creds) => {
                if !matches!(creds, Some(c) if c.pid == self.pid as i32 && c.uid == sys::euid()) {
                    return Err(std::io::Error::other(
                        "a fork server reply without the server's credentials",
                    ));
                }
                let value = bytes
                    .get(1..5)
                    .map(|v| i32::from_le_bytes(v.try_into().expect("4 bytes")));
                match (bytes.first(), value) {
                    (Some(&FORKED), Some(pid)) if pid > 0 => Ok(Ok(pid as u32)),
                    (Some(&REFUSED), Some(errno)) => Err(std::io::Error::from_raw_os_error(errno)),
                    _ => Err(std::io::Error::other("a malformed fork server reply")),
                }
            }
            sys::Received::Closed => Ok(Err(())),
            sys::Received::TimedOut => {
                self.kill();
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the fork server did not answer before the start deadline; it was killed",
                ))
            }
        }
    }

    fn kill(&self) {
        let _ = self
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill();
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

/// Forks a child from the server (starting it first if there is none, or if it died) and gives
/// it `link`'s other end. The child is this process's own child.
pub(crate) fn fork_child(
    link: &ParentLink,
    name: Option<&str>,
    fault: Option<&str>,
    deadline: Instant,
) -> std::io::Result<Child> {
    let request = encode_request(name, fault);
    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..2 {
        if server.is_none() {
            *server = Some(Server::start(deadline)?);
        }
        let running = server.as_ref().expect("just started");
        match running.fork(link.theirs_fd(), &request, deadline) {
            Ok(Ok(pid)) => return Ok(Child::adopt(pid)),
            // Gone: retire it (its reaper thread reaps it) and start another.
            Ok(Err(())) => *server = None,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    *server = None;
                }
                return Err(e);
            }
        }
    }
    Err(std::io::Error::other(
        "the fork server died right after it started, twice; no child was started",
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        let r = encode_request(Some("worker"), Some("silent"));
        assert_eq!(
            decode_request(&r),
            Some((Some("worker".into()), Some("silent".into())))
        );
        assert_eq!(
            decode_request(&encode_request(None, None)),
            Some((None, None))
        );
        assert_eq!(decode_request(&[FORK, 9, 0, b'a']), None);
        assert_eq!(decode_request(&[b'X', 0, 0]), None);
    }

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
