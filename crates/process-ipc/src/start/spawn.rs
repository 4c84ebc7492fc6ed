//! The spawn machinery: the nameless handshake between a parent and the child it starts, the
//! constructor that runs the child's target before `main`, the lifeline that kills children
//! with their parent, and the hooks a child runs before it reports.
//!
//! Layer: above `sys` and `wire`, below `process`.
//!
//! ## The handshake
//!
//! The parent makes a `SOCK_SEQPACKET` socket pair (no name anywhere, so nobody can connect to
//! it) and its child inherits one end: the descriptor is close-on-exec and made inheritable only
//! between `fork` and `exec` of our own child, so programs started with `std::process::Command`
//! never get it. The environment tells the child only that it is one and which descriptor to
//! read. Then:
//!
//! 1. The child refuses to go on if the kernel marks it secure (`AT_SECURE`: setuid, setgid,
//!    capabilities), if its parent is not the pid in the token, or if `SO_PEERCRED` on the
//!    descriptor does not name that parent and this effective uid.
//! 2. The parent sends the setup over the pair: the entry offset, the executable's identity, the
//!    lifeline descriptor and a random nonce. The child jumps only to an offset it received
//!    there, after checking that its executable is the parent's.
//! 3. The child opens a one-shot ipc-channel server in a fresh directory created under umask
//!    077 (mode 0700 whatever the parent's umask) and sends its path over the pair.
//! 4. The parent accepts that message only with the kernel's `SCM_CREDENTIALS` naming the pid it
//!    spawned and its own uid, and the path only if it is a socket of its uid in a directory of
//!    its uid that nobody else may enter; then it connects and sends the nonce, the arguments
//!    and the sender of the result channel.
//! 5. The child takes the first message only with the right nonce and reports ready over the
//!    pair. A child that is silent is killed at the start deadline; one that dies closes the
//!    pair, which the parent sees at once. `start()` neither hangs nor hands data to anyone else.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcOneShotServer;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys::{self, Received};

/// Environment variable that turns a re-executed binary into a child.
pub(crate) const TOKEN_VAR: &str = "PROCESS_IPC_CHILD_TOKEN";
/// Who the child is (`current::encode_identity`): daemon flag, parent pid, name.
pub(crate) const IDENTITY_VAR: &str = "PROCESS_IPC_CHILD_IDENTITY";

/// The child's name, from `Process::named`.
pub(crate) const NAME_VAR: &str = "PROCESS_IPC_CHILD_NAME";
/// Test-only fault injection; exists only with the `test-fault` feature.
#[cfg(feature = "test-fault")]
pub(crate) const FAULT_VAR: &str = "PROCESS_IPC_TEST_FAULT";
/// Token format version, so a stale binary never misreads a token.
const TOKEN_VERSION: &str = "pipc2";
/// How long a child waits for its parent's setup before giving up.
const SETUP_DEADLINE: Duration = Duration::from_secs(30);
/// The largest handshake message (a socket path or a failure reason).
const MAX_MSG: usize = 64 << 10;

/// Entry point of a child: receives its end of the handshake, returns the exit code.
pub(crate) type ChildEntry = fn(ChildLink) -> i32;

/// The fixed point every entry offset is measured from.
#[inline(never)]
fn anchor() -> i32 {
    std::hint::black_box(7)
}

/// Offset of `entry` from [`anchor`] in this executable.
pub(crate) fn entry_offset(entry: ChildEntry) -> isize {
    offset_of(entry as usize)
}

/// Offset of any code address from [`anchor`] in this executable.
pub(crate) fn offset_of(address: usize) -> isize {
    address.wrapping_sub(anchor as fn() -> i32 as usize) as isize
}

/// The code address at `offset` from [`anchor`] in this executable.
pub(crate) fn address_at(offset: isize) -> usize {
    (anchor as fn() -> i32 as usize).wrapping_add(offset as usize)
}

/// The identity of the running executable: (device, inode, size, mtime seconds, mtime nanos).
fn exe_identity() -> std::io::Result<[i64; 5]> {
    let path = CString::new("/proc/self/exe").expect("no interior NUL");
    // SAFETY: `stat` is plain old data, fully written by a successful stat(2).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a valid out pointer.
    let rc = unsafe { libc::stat(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok([
        st.st_dev as i64,
        st.st_ino as i64,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
    ])
}

/// The read end of this process's lifeline pipe. Both ends are close-on-exec: the write end is
/// never closed while this process lives, and the read end is made inheritable only in our own
/// children (between fork and exec); a child exits when its read returns end-of-file.
pub(crate) fn lifeline_read_fd() -> std::io::Result<RawFd> {
    static LIFELINE: OnceLock<Result<(OwnedFd, OwnedFd), i32>> = OnceLock::new();
    let fds = LIFELINE.get_or_init(|| sys::pipe().map_err(|e| e.raw_os_error().unwrap_or(0)));
    match fds {
        Ok((read, _write)) => Ok(read.as_raw_fd()),
        Err(code) => Err(std::io::Error::from_raw_os_error(*code)),
    }
}

// ---------------------------------------------------------------------------------------------
// Hooks a child runs after its target and before it reports (upper layers register them:
// the queue's feeders flush there, so nothing a target put is lost).

static BEFORE_REPORT: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Whether [`BEFORE_REPORT`] ever got a hook: a child without any only reads this (taking the
/// lock would write, and cost a freshly forked child a copy of the page).
static ANY_BEFORE_REPORT: AtomicBool = AtomicBool::new(false);

/// Registers `hook` to run in a child after its target returns and before it reports. Once per
/// distinct function.
pub(crate) fn before_report(hook: fn()) {
    let mut hooks = BEFORE_REPORT.lock().unwrap_or_else(|p| p.into_inner());
    if !hooks.iter().any(|&h| std::ptr::fn_addr_eq(h, hook)) {
        hooks.push(hook);
    }
    ANY_BEFORE_REPORT.store(true, Ordering::Release);
}

/// Runs every hook registered with [`before_report`].
pub(crate) fn run_before_report() {
    if !ANY_BEFORE_REPORT.load(Ordering::Acquire) {
        return;
    }
    let hooks = BEFORE_REPORT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for hook in hooks {
        hook();
    }
}

/// Where the child's one-shot socket directory goes when `TMPDIR` does not say: `/dev/shm`,
/// a memory file system, when this uid may write there. ipc-channel makes the directory in the
/// temporary directory; on a disk mounted with `discard` (as `/tmp` on this machine kind),
/// removing it waits for the device, about a millisecond per child.
const MEMORY_TMPDIR: &str = "/dev/shm";

/// Runs `f` (which makes a temporary directory) with `TMPDIR` pointing at [`MEMORY_TMPDIR`],
/// unless the user set `TMPDIR` or that directory is not writable. Only for a child's bootstrap,
/// before `main`: nothing else reads the environment then.
fn with_memory_tmpdir<T>(f: impl FnOnce() -> T) -> T {
    let usable = std::env::var_os("TMPDIR").is_none() && {
        let dir = CString::new(MEMORY_TMPDIR).expect("no interior NUL");
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    };
    if !usable {
        return f();
    }
    // SAFETY: before main; the only other thread (the lifeline watcher) never reads the
    // environment.
    unsafe { std::env::set_var("TMPDIR", MEMORY_TMPDIR) };
    let out = f();
    // SAFETY: as above.
    unsafe { std::env::remove_var("TMPDIR") };
    out
}

// ---------------------------------------------------------------------------------------------
// The parent's side of the handshake.

/// Handshake messages from the child: tags of the first byte.
const LISTENING: u8 = b'L';
const FAILED: u8 = b'F';
const READY: u8 = b'R';

/// True if the two nonces are equal (constant time is moot here, one try per child, but cheap).
pub(crate) fn nonce_matches(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parent's end of the handshake with one child.
pub(crate) struct ParentLink {
    mine: OwnedFd,
    theirs: Option<OwnedFd>,
    nonce: [u8; 16],
}

impl ParentLink {
    /// A fresh socket pair and nonce.
    pub(crate) fn new() -> std::io::Result<Self> {
        let (mine, theirs) = sys::socketpair()?;
        sys::pass_creds(mine.as_raw_fd())?;
        Ok(ParentLink {
            mine,
            theirs: Some(theirs),
            nonce: sys::nonce()?,
        })
    }

    /// The nonce the child will expect with its arguments.
    pub(crate) fn nonce(&self) -> [u8; 16] {
        self.nonce
    }

    /// Starts the child: the token in its environment (with `env` besides), and, for it alone,
    /// the handshake end and the lifeline.
    pub(crate) fn spawn(&self, env: &[(&str, &str)]) -> std::io::Result<sys::Child> {
        let theirs = self.theirs.as_ref().expect("spawn once").as_raw_fd();
        let lifeline = lifeline_read_fd()?;
        let token = format!("{TOKEN_VERSION}:{}:{theirs}", std::process::id());
        let mut all = vec![(TOKEN_VAR, token.as_str())];
        all.extend_from_slice(env);
        sys::spawn_self(&all, &[theirs, lifeline])
    }

    /// After spawn: closes our copy of the child's end and sends the setup. `lone`: the child
    /// must stay single-threaded (the fork server), so its bootstrap starts no lifeline thread.
    pub(crate) fn send_setup(&mut self, offset: isize, lone: bool) -> Result<(), String> {
        self.theirs = None;
        let identity = exe_identity().map_err(|e| format!("cannot stat /proc/self/exe: {e}"))?;
        let lifeline = lifeline_read_fd().map_err(|e| format!("no lifeline pipe: {e}"))?;
        let setup = Setup {
            lifeline,
            offset: offset as i64,
            identity,
            nonce: self.nonce,
            lone,
        };
        sys::send(self.mine.as_raw_fd(), &setup.encode())
            .map_err(|e| format!("could not send the setup: {e}"))
    }

    /// Waits for the child's one-shot socket path; checks who sent it and where it lives.
    pub(crate) fn expect_listening(&self, pid: u32, deadline: Instant) -> Result<String, String> {
        let body = self.expect(pid, LISTENING, deadline)?;
        let name = String::from_utf8(body).map_err(|_| "a socket path that is not UTF-8")?;
        sys::check_private_socket(std::path::Path::new(&name))
            .map_err(|e| format!("refusing the child's socket: {e}"))?;
        Ok(name)
    }

    /// Waits for the child to confirm it has its arguments.
    pub(crate) fn expect_ready(&self, pid: u32, deadline: Instant) -> Result<(), String> {
        self.expect(pid, READY, deadline).map(drop)
    }

    fn expect(&self, pid: u32, tag: u8, deadline: Instant) -> Result<Vec<u8>, String> {
        let fd = self.mine.as_raw_fd();
        let got = sys::recv(fd, MAX_MSG, deadline).map_err(|e| format!("handshake failed: {e}"))?;
        let (mut bytes, creds) = match got {
            Received::Message(bytes, creds) => (bytes, creds),
            Received::Closed => return Err("the child closed the handshake (it exited)".into()),
            Received::TimedOut => {
                return Err(
                    "the child stayed silent past the start deadline; it was killed".into(),
                );
            }
        };
        let me = sys::euid();
        match creds {
            Some(c) if c.pid == pid as i32 && c.uid == me => {}
            Some(c) => {
                return Err(format!(
                    "a handshake message came from pid {} uid {}, not from the child {pid} of \
                     uid {me}; dropped",
                    c.pid, c.uid
                ));
            }
            None => return Err("a handshake message without credentials; dropped".into()),
        }
        match bytes.first() {
            Some(&t) if t == tag => Ok(bytes.split_off(1)),
            Some(&FAILED) => Err(String::from_utf8_lossy(&bytes[1..]).into_owned()),
            _ => Err("an unexpected handshake message".into()),
        }
    }
}

/// What the parent sends first: everything the child must not take from its environment.
struct Setup {
    lifeline: RawFd,
    offset: i64,
    identity: [i64; 5],
    nonce: [u8; 16],
    /// Start no lifeline thread: the child is the fork server, which must stay single-threaded.
    lone: bool,
}

impl Setup {
    const LEN: usize = 4 + 8 + 5 * 8 + 16 + 1;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.lifeline.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        for v in self.identity {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.nonce);
        out.push(u8::from(self.lone));
        out
    }

    fn decode(bytes: &[u8]) -> Option<Setup> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        Some(Setup {
            lifeline: RawFd::from_le_bytes(bytes[..4].try_into().expect("4")),
            offset: i64_at(4),
            identity: [i64_at(12), i64_at(20), i64_at(28), i64_at(36), i64_at(44)],
            nonce: bytes[52..68].try_into().expect("16"),
            lone: match bytes[68] {
                0 => false,
                1 => true,
                _ => return None,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The child's side.

/// The child's end of the handshake, handed to its entry.
pub(crate) struct ChildLink {
    fd: Option<OwnedFd>,
    nonce: [u8; 16],
}

/// Test support: the socket path of a `Listening` message read from the parent's end `fd`.
#[cfg(test)]
pub(crate) fn listening_path_for_test(fd: &OwnedFd) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    match sys::recv(fd.as_raw_fd(), MAX_MSG, deadline).expect("recv") {
        Received::Message(bytes, creds) => {
            assert_eq!(creds.map(|c| c.pid), Some(std::process::id() as i32));
            assert_eq!(bytes[0], LISTENING);
            String::from_utf8(bytes[1..].to_vec()).expect("UTF-8 path")
        }
        other => panic!("no listening message: {other:?}"),
    }
}

impl ChildLink {
    /// Test support: a link over `fd` with a fixed nonce.
    #[cfg(test)]
    pub(crate) fn for_test(fd: OwnedFd) -> ChildLink {
        ChildLink {
            fd: Some(fd),
            nonce: [1; 16],
        }
    }

    /// Opens a one-shot server in a private directory and tells the parent where it is.
    pub(crate) fn listen<T>(&self) -> Result<IpcOneShotServer<T>, String>
    where
        T: Serialize + DeserializeOwned,
    {
        // Before main (single-threaded but for the lifeline watcher, which touches neither
        // files nor the environment): the umask change cannot race another thread's files.
        let (server, name) =
            sys::with_umask(0o077, || with_memory_tmpdir(IpcOneShotServer::<T>::new))
                .map_err(|e| format!("cannot open the child's socket: {e}"))?;
        let mut msg = vec![LISTENING];
        msg.extend_from_slice(name.as_bytes());
        self.send(&msg)?;
        Ok(server)
    }

    /// True if `nonce` is the one the verified parent sent in the setup.
    pub(crate) fn is_parents(&self, nonce: &[u8; 16]) -> bool {
        nonce_matches(nonce, &self.nonce)
    }

    /// Tells the parent the arguments arrived, and closes the handshake.
    pub(crate) fn ready(mut self) -> Result<(), String> {
        let sent = self.send(&[READY]);
        self.fd = None;
        sent
    }

    /// Reports a bootstrap failure to the parent (and on stderr); returns the exit code 3.
    pub(crate) fn fail(&self, reason: &str) -> i32 {
        let mut msg = vec![FAILED];
        msg.extend_from_slice(reason.as_bytes());
        let _ = self.send(&msg);
        eprintln!("process-ipc child {}: {reason}", std::process::id());
        3
    }

    fn send(&self, msg: &[u8]) -> Result<(), String> {
        let fd = self.fd.as_ref().ok_or("the handshake is closed")?;
        sys::send(fd.as_raw_fd(), msg).map_err(|e| format!("cannot reach the parent: {e}"))
    }
}

/// Referenced from `Process::start` so the linker always keeps this object file, and with it
/// the constructor below (an rlib's object is dropped when nothing refers to it).
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
    // SAFETY: the SIGPIPE disposition std's runtime would set before main; a write to a
    // closed socket then becomes an error value instead of killing the child.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
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
    let link = ChildLink {
        fd: Some(fd),
        nonce: setup.as_ref().map_or([0; 16], |s| s.nonce),
    };
    let Some(setup) = setup else {
        return link.fail("no valid setup from the parent");
    };
    if setup.lone {
        // The fork server stays single-threaded (the parent's death closes its request
        // channel); the children it forks die with the parent through `PR_SET_PDEATHSIG`
        // (see `zygote`), so it needs no lifeline.
        // SAFETY: the descriptor was inherited for this purpose alone and nothing else in
        // this process owns it; closing it here is its only use.
        drop(unsafe { OwnedFd::from_raw_fd(setup.lifeline) });
    } else {
        start_lifeline_watch(setup.lifeline);
    }
    match name {
        Some(name) => set_process_name(&name),
        None => name_after_parent(parent),
    }
    match exe_identity() {
        Ok(mine) if mine == setup.identity => {}
        Ok(_) => {
            return link.fail(
                "the executable changed between the parent's start and the child's \
                 (rebuilt or replaced on disk); refusing to run a target from a different binary",
            );
        }
        Err(e) => return link.fail(&format!("cannot stat /proc/self/exe: {e}")),
    }
    install_panic_recorder();
    let address = address_at(setup.offset as isize);
    // SAFETY: the offset came from the parent over the socket pair it made (its pid and our
    // uid checked with SO_PEERCRED), and the executable's identity matches the parent's, so
    // `address` is the entry the parent took the offset of, a `ChildEntry` in this very binary.
    let entry: ChildEntry = unsafe { std::mem::transmute::<usize, ChildEntry>(address) };
    entry(link)
}

/// Test-only faults of the child's bootstrap (feature `test-fault`).
#[cfg(feature = "test-fault")]
mod fault {
    use super::{LISTENING, sys};

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
                // SAFETY: before main the process is single-threaded, so fork is sound; the
                // grandchild only sends and exits.
                match unsafe { libc::fork() } {
                    0 => {
                        let _ = sys::send(fd, &[LISTENING, b'/']);
                        // SAFETY: leave at once, running no exit handlers.
                        unsafe { libc::_exit(0) }
                    }
                    _ => loop {
                        std::thread::park();
                    },
                }
            }
            // The handshake message comes from another uid (root only: setuid to nobody).
            "other-uid-speaks" => {
                // SAFETY: setuid has no memory preconditions.
                if unsafe { libc::setuid(65534) } != 0 {
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

/// Re-executing `/proc/self/exe` names the process `exe` in `ps` and `top`; take the parent's
/// name instead, as a forked Python child keeps its parent's.
pub(crate) fn name_after_parent(parent: i32) {
    if let Ok(name) = std::fs::read_to_string(format!("/proc/{parent}/comm")) {
        set_process_name(name.trim_end());
    }
}

/// Sets this thread's (here: the main thread's, so the process's) name, cut to 15 bytes.
pub(crate) fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name
        .trim_end()
        .bytes()
        .filter(|&b| b != 0)
        .take(15)
        .collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a valid pointer.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// A thread that exits the child as soon as the parent's lifeline pipe reaches end-of-file.
pub(crate) fn start_lifeline_watch(fd: RawFd) {
    // Our own children get their own lifeline, not this one.
    let _ = sys::set_cloexec(fd, true);
    let spawned = std::thread::Builder::new()
        .name("process-ipc-lifeline".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut byte = 0u8;
            loop {
                // SAFETY: reading one byte into a valid local buffer.
                let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                // End-of-file (or an error): the parent process is gone.
                // SAFETY: _exit ends the process at once; nothing to unwind.
                unsafe { libc::_exit(1) };
            }
        });
    if spawned.is_err() {
        // Without a watcher we cannot honour "children die with their parent".
        // SAFETY: as above.
        unsafe { libc::_exit(5) };
    }
}

/// The last panic seen in this child: (message, location).
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn install_panic_recorder() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "<unknown>".into());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some((message, location));
        }
        previous(info);
    }));
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

/// Takes the recorded (message, location) of the last panic, if the hook saw one.
pub(crate) fn take_last_panic() -> Option<(String, String)> {
    LAST_PANIC.lock().ok().and_then(|mut p| p.take())
}

// ---------------------------------------------------------------------------------------------
// The start deadline: a child still unconfirmed when it passes is killed, which also unblocks a
// parent thread stuck writing the arguments to it.

/// Deadlines of children still starting, and when the watchdog thread will next wake.
struct Watched {
    deadlines: HashMap<u32, Instant>,
    wakes_at: Option<Instant>,
}

fn watchdog() -> &'static (Mutex<Watched>, Condvar) {
    static WATCHDOG: OnceLock<(Mutex<Watched>, Condvar)> = OnceLock::new();
    static THREAD: OnceLock<()> = OnceLock::new();
    let shared = WATCHDOG.get_or_init(|| {
        let watched = Watched {
            deadlines: HashMap::new(),
            wakes_at: None,
        };
        (Mutex::new(watched), Condvar::new())
    });
    THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("process-ipc-watchdog".into())
            .stack_size(64 * 1024)
            .spawn(move || watchdog_loop(shared))
            .expect("process-ipc: cannot start the start-deadline watchdog thread");
    });
    shared
}

/// Kills `pid` at `deadline` unless [`unwatch`] comes first. The caller must not reap `pid`
/// before it calls `unwatch`. Wakes the watchdog only when this deadline is its earliest.
pub(crate) fn watch(pid: u32, deadline: Instant) {
    let (lock, cv) = watchdog();
    let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
    w.deadlines.insert(pid, deadline);
    if w.wakes_at.is_none_or(|at| deadline < at) {
        cv.notify_one();
    }
}

/// Stops watching `pid` (the watchdog finds out when it next wakes; no wake-up is paid here).
pub(crate) fn unwatch(pid: u32) {
    let (lock, _) = watchdog();
    lock.lock()
        .unwrap_or_else(|p| p.into_inner())
        .deadlines
        .remove(&pid);
}

fn watchdog_loop((lock, cv): &(Mutex<Watched>, Condvar)) {
    let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let now = Instant::now();
        w.deadlines.retain(|&pid, deadline| {
            if *deadline > now {
                return true;
            }
            let _ = sys::kill(pid, libc::SIGKILL);
            false
        });
        let next = w.deadlines.values().min().copied();
        w.wakes_at = next;
        w = match next {
            None => cv.wait(w).unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                cv.wait_timeout(w, at.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
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

    #[test]
    fn the_setup_round_trips() {
        let setup = Setup {
            lifeline: 9,
            offset: -123_456,
            identity: [1, 2, 3, 4, 5],
            nonce: [7; 16],
            lone: true,
        };
        let back = Setup::decode(&setup.encode()).unwrap();
        assert_eq!(
            (
                back.lifeline,
                back.offset,
                back.identity,
                back.nonce,
                back.lone
            ),
            (9, -123_456, [1, 2, 3, 4, 5], [7; 16], true)
        );
        assert!(Setup::decode(&setup.encode()[1..]).is_none());
    }

    #[test]
    fn the_childs_socket_is_private_whatever_the_umask() {
        let _umask = sys::UMASK_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let (parent, child) = sys::socketpair().unwrap();
        sys::pass_creds(parent.as_raw_fd()).unwrap();
        let link = ChildLink::for_test(child);
        // As if the whole process ran under umask 000.
        let server = sys::with_umask(0, || link.listen::<u8>()).unwrap();
        let name = listening_path_for_test(&parent);
        let path = std::path::Path::new(&name);
        let mode = |p: &std::path::Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(path.parent().unwrap()), 0o700, "{name}");
        assert_eq!(mode(path) & 0o077, 0, "{name}");
        sys::check_private_socket(path).unwrap();
        // The owner can connect, and its message is the one accepted.
        let tx = ipc_channel::ipc::IpcSender::<u8>::connect(name).unwrap();
        tx.send(5).unwrap();
        assert_eq!(server.accept().unwrap().1, 5);
    }

    #[test]
    fn a_socket_in_a_directory_others_may_enter_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pipc-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let socket = dir.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let open = sys::check_private_socket(&socket);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let private = sys::check_private_socket(&socket);
        let foreign = (sys::euid() == 0).then(|| {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            sys::check_private_socket(&socket)
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(open.unwrap_err().contains("other users may enter"));
        private.unwrap();
        if let Some(foreign) = foreign {
            assert!(foreign.unwrap_err().contains("belongs to uid 65534"));
        }
        assert!(sys::check_private_socket(&dir.join("missing")).is_err());
    }
}
