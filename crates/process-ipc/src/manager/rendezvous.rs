//! How a handle decoded in another process reaches its queue's server: the manager listens on
//! a Unix socket in a private directory, and a handle carries only that socket's path (plain
//! data, like the address in a pickled Python proxy), so it survives any encoder.
//!
//! The exchange, once per queue per process: the client opens an ipc-channel one-shot server
//! and writes `"<queue> <one-shot name>\n"` to the manager's socket; the manager connects to the
//! one-shot server, sends the sending end of the queue's request channel through it, and only
//! then answers `"ok\n"`. So the client calls the one-shot `accept` (which alone would block
//! forever) only when the connection is already waiting, and a manager that is gone shows as a
//! refused connection or a closed socket, never a hang.
//!
//! Only this user's processes are served: the socket's directory is 0700 and the socket 0600
//! whatever the umask, and each connection's peer must have this process's effective uid
//! (`SO_PEERCRED`), or it is closed unanswered. A client likewise talks only to a manager of
//! its own user.

use std::any::Any;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::wire::Request;
use crate::Wire;
use ipc_channel::ipc::{IpcOneShotServer, IpcSender, OpaqueIpcSender};

/// Sends a queue's request sender to the one-shot server with the given name.
type Connector = Box<dyn Fn(String) -> io::Result<()> + Send>;

/// Serves one connection to the manager's objects (dicts, lists, locks...), on the thread
/// that accepted it, until it closes; the second argument is the peer's pid.
pub(crate) type ObjectsHook = Arc<dyn Fn(UnixStream, u32) + Send + Sync>;

/// The line a client writes to turn its connection into one to the manager's objects.
const OBJECTS_LINE: &str = "objects";

/// How long either side waits for the other's line.
const LINE_WAIT: Duration = Duration::from_secs(5);

/// The manager's side: the listening socket, its thread, and the queues it can connect to.
pub(crate) struct Rendezvous {
    dir: PathBuf,
    path: PathBuf,
    connectors: Arc<Mutex<HashMap<u64, Connector>>>,
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
        let connectors: Arc<Mutex<HashMap<u64, Connector>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let connectors = Arc::clone(&connectors);
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("manager-rendezvous".into())
                .spawn(move || accept_loop(&listener, &connectors, &objects, &stopping))
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
            connectors,
            stopping,
            listener_fd,
            thread: Some(thread),
        })
    }

    /// The socket's path, as handles carry it.
    pub(crate) fn address(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Makes queue `queue` reachable: its request sender goes to whoever asks for it.
    pub(crate) fn add<T: Wire>(&self, queue: u64, requests: IpcSender<Request<T>>) {
        let connector: Connector = Box::new(move |name| {
            let to_client = IpcSender::<IpcSender<Request<T>>>::connect(name)?;
            to_client
                .send(requests.clone())
                .map_err(|e| io::Error::other(e.to_string()))
        });
        self.connectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue, connector);
    }

    /// Stops listening and removes the socket and its directory.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.connectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(thread) = self.thread.take() {
            // Wake the accept loop so it sees the flag: shutting the listening socket down
            // makes a blocked `accept` fail at once on Linux.
            // SAFETY: the fd belongs to the listener the thread owns, and the thread (so the
            // listener) is alive until the join below; shutdown neither closes nor frees it.
            unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
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

fn accept_loop(
    listener: &UnixListener,
    connectors: &Arc<Mutex<HashMap<u64, Connector>>>,
    objects: &ObjectsHook,
    stopping: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, say: back off instead of spinning on the error.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        // One thread per asking process (once per queue per process), so a client that
        // connects and then stalls holds up nobody else.
        let connectors = Arc::clone(connectors);
        let objects = Arc::clone(objects);
        let _ = std::thread::Builder::new()
            .name("manager-rendezvous-client".into())
            .spawn(move || serve_one(stream, &connectors, &objects));
    }
}

/// The effective uid and the pid of the process at the other end of `stream` (when it
/// connected).
fn peer_cred(stream: &UnixStream) -> io::Result<(u32, u32)> {
    let creds = crate::sys::peer_creds(stream.as_raw_fd())?;
    Ok((creds.uid, u32::try_from(creds.pid).unwrap_or(0)))
}

/// Whether the peer runs as this process's user.
fn same_user(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    peer_cred(stream).is_ok_and(|(uid, _)| uid == me)
}

fn serve_one(
    stream: UnixStream,
    connectors: &Mutex<HashMap<u64, Connector>>,
    objects: &ObjectsHook,
) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let peer = match peer_cred(&stream) {
        Ok((uid, pid)) if uid == me => pid,
        // Not ours: no answer, no connection back, nothing sent.
        _ => return,
    };
    let _ = stream.set_read_timeout(Some(LINE_WAIT));
    let _ = stream.set_write_timeout(Some(LINE_WAIT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut line = String::new();
    // A client writes nothing after its line until it has the answer, so the reader buffers
    // nothing beyond the line, and the stream can change hands after it.
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    if line.trim_end() == OBJECTS_LINE {
        if writeln!(writer, "ok").is_ok()
            && stream.set_read_timeout(None).is_ok()
            && stream.set_write_timeout(None).is_ok()
        {
            drop(writer);
            objects(stream, peer);
        }
        return;
    }
    let answer = match line.trim_end().split_once(' ') {
        Some((queue, name)) => match queue.parse::<u64>() {
            Ok(queue) => {
                let connectors = connectors.lock().unwrap_or_else(|e| e.into_inner());
                match connectors.get(&queue) {
                    Some(connect) => match connect(name.to_string()) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("err cannot connect back: {e}"),
                    },
                    None => "err no such queue (the manager was shut down)".to_string(),
                }
            }
            Err(_) => "err malformed request".to_string(),
        },
        None => "err malformed request".to_string(),
    };
    let _ = writeln!(writer, "{answer}");
}

/// What this process already obtained, by (address, queue): one exchange per queue per
/// process, however many handles are decoded here (a pool worker gets one per task).
type Cache = HashMap<(String, u64), Arc<dyn Any + Send + Sync>>;
static CONNECTED: Mutex<Option<Cache>> = Mutex::new(None);

/// Why a client could not reach the server.
pub(crate) enum Unreachable {
    /// The manager is gone (its socket refuses, closes, or says the queue is gone).
    Gone(String),
    /// This process could not make the one-shot server.
    Io(io::Error),
}

/// The client's side: this process's connection to `queue` at `address`, from the cache, or
/// made by `make` from the request sender that the exchange in the module docs obtains.
pub(crate) fn connect<C>(
    address: &str,
    queue: u64,
    make: impl FnOnce(OpaqueIpcSender) -> C,
) -> Result<Arc<C>, Unreachable>
where
    C: Any + Send + Sync,
{
    let mut guard = CONNECTED.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    let key = (address.to_string(), queue);
    // A miss on the type (the same queue decoded with another item type) makes a new one.
    if let Some(found) = cache
        .get(&key)
        .and_then(|c| Arc::clone(c).downcast::<C>().ok())
    {
        return Ok(found);
    }
    let connection = Arc::new(make(exchange(address, queue)?));
    cache.insert(key, Arc::clone(&connection) as Arc<dyn Any + Send + Sync>);
    // Forget the connections to managers that shut down (their socket is gone), so a process
    // that outlives many managers does not keep their feeder threads; dropped after unlocking.
    let gone: Vec<(String, u64)> = cache
        .keys()
        .filter(|(address, _)| !Path::new(address).exists())
        .cloned()
        .collect();
    let stale: Vec<_> = gone.iter().filter_map(|key| cache.remove(key)).collect();
    drop(guard);
    drop(stale);
    Ok(connection)
}

/// Connects to the manager's socket at `address`, trusting it only if it runs as this user,
/// with the one-line exchange's timeouts set.
fn connect_checked(address: &str) -> Result<UnixStream, Unreachable> {
    let stream = UnixStream::connect(address)
        .map_err(|e| Unreachable::Gone(format!("its socket does not answer: {e}")))?;
    if !same_user(&stream) {
        return Err(Unreachable::Gone(
            "its socket belongs to another user".into(),
        ));
    }
    let _ = stream.set_read_timeout(Some(LINE_WAIT));
    let _ = stream.set_write_timeout(Some(LINE_WAIT));
    Ok(stream)
}

/// The client's side of a connection to the manager's objects at `address`: the socket, once
/// the manager said it serves it (the exchange is one line each way).
pub(crate) fn connect_objects(address: &str) -> Result<UnixStream, Unreachable> {
    let gone = |what: &str, e: &dyn std::fmt::Display| Unreachable::Gone(format!("{what}: {e}"));
    let mut stream = connect_checked(address)?;
    writeln!(stream, "{OBJECTS_LINE}").map_err(|e| gone("its socket closed", &e))?;
    // Byte by byte: nothing after the answer may stay behind in a reader's buffer.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match io::Read::read(&mut stream, &mut byte) {
            Ok(0) => return Err(Unreachable::Gone("its socket closed".into())),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => answer.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gone("no answer on its socket", &e)),
        }
    }
    if answer != b"ok" {
        return Err(Unreachable::Gone(
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    stream
        .set_read_timeout(None)
        .and_then(|()| stream.set_write_timeout(None))
        .map_err(Unreachable::Io)?;
    Ok(stream)
}

/// The request sender arrives untyped: an `IpcSender` is the same bytes and file descriptor
/// whatever its message type.
fn exchange(address: &str, queue: u64) -> Result<OpaqueIpcSender, Unreachable> {
    let gone = |what: &str, e: &dyn std::fmt::Display| Unreachable::Gone(format!("{what}: {e}"));
    let (server, name) = IpcOneShotServer::<OpaqueIpcSender>::new().map_err(Unreachable::Io)?;
    let mut stream = connect_checked(address)?;
    writeln!(stream, "{queue} {name}").map_err(|e| gone("its socket closed", &e))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| gone("no answer on its socket", &e))?;
    match answer.trim_end() {
        // The manager connected and sent before it said ok: `accept` returns at once.
        "ok" => server
            .accept()
            .map(|(_, sender)| sender)
            .map_err(|e| gone("the connection back failed", &e)),
        "" => Err(Unreachable::Gone("its socket closed".into())),
        other => Err(Unreachable::Gone(
            other.strip_prefix("err ").unwrap_or(other).to_string(),
        )),
    }
}
