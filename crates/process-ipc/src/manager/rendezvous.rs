//! How a handle decoded in another process reaches its manager: the manager listens on a Unix
//! socket in a private directory, and a handle carries only that socket's path (plain data,
//! like the address in a pickled Python proxy), so it survives any encoder. Each connection
//! then carries the framed calls of `object_wire`, whatever the object (queues included):
//! this file is the only one that knows the stream is a Unix socket, so another transport
//! (TCP with an authkey, say) replaces what is here and nothing else.
//!
//! Only this user's processes are served: the socket's directory is 0700 and the socket 0600
//! whatever the umask, and each connection's peer must have this process's effective uid
//! (`SO_PEERCRED`), or it is closed unanswered. A client likewise talks only to a manager of
//! its own user, and says so (permission denied, naming both uids) when it is not.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::stream::{Peer, Stream};
use super::tcp;

/// Serves one connection to the manager's objects, on the thread that accepted it, until it
/// closes; the second argument says who the peer is.
pub(crate) type ObjectsHook = Arc<dyn Fn(Stream, Peer) + Send + Sync>;

/// The manager's side: the listening socket and its thread.
pub(crate) struct Rendezvous {
    dir: PathBuf,
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    /// The listening socket, owned by the thread; valid until that thread is joined.
    listener_fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

impl Rendezvous {
    /// Listens in a new directory under the system's temporary directory (mode 0700 whatever
    /// the umask; `create` fails rather than reuse a directory someone made first).
    /// Connections that ask for the manager's objects go to `objects`.
    pub(crate) fn start(pid: u32, objects: ObjectsHook) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("multitask-manager-{pid}-{n}-{nanos}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("socket");
        let bound = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .and_then(|()| UnixListener::bind(&path))
            .and_then(|listener| {
                // The umask may have left the owner without write permission on the socket,
                // which `connect` needs; nobody else can reach it through the directory.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                Ok(listener)
            });
        let listener = match bound {
            Ok(listener) => listener,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        let listener_fd = listener.as_raw_fd();
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("manager-rendezvous".into())
                .spawn(move || accept_loop(&listener, &objects, &stopping))
        };
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        Ok(Self {
            dir,
            path,
            stopping,
            listener_fd,
            thread: Some(thread),
        })
    }

    /// The socket's path, as handles carry it.
    pub(crate) fn address(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Stops listening and removes the socket and its directory.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // Wake the accept loop so it sees the flag: shutting the listening socket down
            // makes a blocked `accept` fail at once on Linux.
            // The fd belongs to the listener the thread owns, alive until the join below.
            let _ = crate::sys::shutdown_socket(self.listener_fd);
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn accept_loop(listener: &UnixListener, objects: &ObjectsHook, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, say: back off instead of spinning on the error.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let me = crate::sys::euid();
        let peer = match peer_cred(&stream) {
            Ok((uid, pid)) if uid == me => pid,
            // Not ours: no answer, nothing read, nothing sent.
            _ => continue,
        };
        // One thread per connection (as Python's manager has one per proxy connection), so a
        // client that stalls, or a call that waits, holds up nobody else.
        let objects = Arc::clone(objects);
        let _ = std::thread::Builder::new()
            .name("manager-connection".into())
            .spawn(move || {
                objects(
                    Stream::Unix(stream),
                    Peer {
                        pid: peer,
                        addr: None,
                    },
                )
            });
    }
}

/// The effective uid and the pid of the process at the other end of `stream` (when it
/// connected, or when it listened).
fn peer_cred(stream: &UnixStream) -> io::Result<(u32, u32)> {
    let creds = crate::sys::peer_creds(stream.as_raw_fd())?;
    Ok((creds.uid, u32::try_from(creds.pid).unwrap_or(0)))
}

/// Why a client could not reach the manager.
pub(crate) enum Unreachable {
    /// The manager is gone (its socket refuses or closes).
    Gone(String),
    /// The manager runs as another user (`peer_uid`) than this process (`uid`): its socket is
    /// not ours to use, and ours not its.
    Denied { peer_uid: u32, uid: u32 },
    /// This process could not make the connection.
    Io(io::Error),
    /// A TCP manager and this process do not share an authkey (or this process has none).
    Auth(String),
}

/// Whether the manager at `address` may still be there: a Unix socket whose path is gone is
/// not; a TCP address cannot be told from here.
pub(crate) fn may_be_alive(address: &str) -> bool {
    address.starts_with(tcp::SCHEME) || std::path::Path::new(address).exists()
}

/// The client's side: a connection to the manager at `address`, trusted only if the manager
/// runs as this process's user (a Unix socket) or proves it holds the authkey (TCP, `tcp`).
pub(crate) fn connect(address: &str) -> Result<Stream, Unreachable> {
    if address.starts_with(tcp::SCHEME) {
        return match tcp::connect(address, super::REPLY_GRACE) {
            Ok((stream, _)) => Ok(Stream::Tcp(stream)),
            Err(tcp::Refused::Auth(why)) => Err(Unreachable::Auth(why)),
            Err(tcp::Refused::Unreachable(e)) => Err(Unreachable::Gone(format!(
                "its address does not answer: {e}"
            ))),
        };
    }
    let uid = crate::sys::euid();
    let stream = match UnixStream::connect(address) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // The socket, or its directory, is another user's: say whose.
            let path = std::path::Path::new(address);
            let owner = std::fs::metadata(path)
                .or_else(|e| path.parent().map_or(Err(e), std::fs::metadata))
                .map(|m| m.uid());
            return Err(match owner {
                Ok(peer_uid) => Unreachable::Denied { peer_uid, uid },
                Err(_) => Unreachable::Io(e),
            });
        }
        Err(e) => {
            return Err(Unreachable::Gone(format!(
                "its socket does not answer: {e}"
            )));
        }
    };
    let (peer_uid, _) = peer_cred(&stream).map_err(Unreachable::Io)?;
    if peer_uid != uid {
        return Err(Unreachable::Denied { peer_uid, uid });
    }
    Ok(Stream::Unix(stream))
}
