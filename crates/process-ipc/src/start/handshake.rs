//! The Spawn method's handshake: the protocol on the nameless socket pair between a parent and
//! the child it re-executes, both ends of it, and what the child inherits (the token, the
//! lifeline).
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

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Instant;

use ipc_channel::ipc::IpcOneShotServer;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys::{self, Received};
use crate::wire::nonce_matches;

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
pub(crate) const TOKEN_VERSION: &str = "pipc2";
/// The largest handshake message (a socket path or a failure reason).
pub(crate) const MAX_MSG: usize = 64 << 10;

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

/// temporary directory; on a disk mounted with `discard` (as `/tmp` on this machine kind),
/// removing it waits for the device, about a millisecond per child.
const MEMORY_TMPDIR: &str = "/dev/shm";

/// Runs `f` (which makes a temporary directory) with `TMPDIR` pointing at [`MEMORY_TMPDIR`],
/// unless the user set `TMPDIR` or that directory is not writable. Only for a child's bootstrap,
/// before `main`: nothing else reads the environment then.
fn with_memory_tmpdir<T>(f: impl FnOnce() -> T) -> T {
    let usable = std::env::var_os("TMPDIR").is_none() && sys::writable_dir(MEMORY_TMPDIR);
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
pub(crate) const LISTENING: u8 = b'L';
const FAILED: u8 = b'F';
const READY: u8 = b'R';

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
    pub(crate) fn spawn(&self, env: &[(&str, &str)]) -> std::io::Result<sys::ChildProcess> {
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
        let identity =
            sys::exe_identity().map_err(|e| format!("cannot stat /proc/self/exe: {e}"))?;
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
pub(crate) struct Setup {
    pub(crate) lifeline: RawFd,
    pub(crate) offset: i64,
    pub(crate) identity: [i64; 5],
    pub(crate) nonce: [u8; 16],
    /// Start no lifeline thread: the child is the fork server, which must stay single-threaded.
    pub(crate) lone: bool,
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

    pub(crate) fn decode(bytes: &[u8]) -> Option<Setup> {
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
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
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
    /// The child's end `fd`, and the nonce of the parent's setup.
    pub(crate) fn new(fd: OwnedFd, nonce: [u8; 16]) -> ChildLink {
        ChildLink {
            fd: Some(fd),
            nonce,
        }
    }

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    fn connect_as_nobody(name: String) -> String {
        if sys::setuid(65534).is_err() {
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
        let name = listening_path_for_test(&parent);
        let mut helper = crate::Process::new(connect_as_nobody, (name.clone(),))
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
