//! The manager on TCP: a listener that lets a connection reach the objects only after the
//! authkey handshake (`auth`), with a bound on connections, and the client's way in.
//!
//! A handle to an object of a TCP manager carries the address `tcp:<ip>:<port>`, never the key:
//! a process learns the key for an address from [`Manager::connect`](super::Manager::connect)
//! (or by serving there), and every later connection to that address, from any handle, uses it.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::auth::{self, HandshakeError};
use super::stream::{Limits, Peer, Stream};

/// How a handle spells a TCP manager's address.
pub(crate) const SCHEME: &str = "tcp:";

/// Serves one authenticated connection until it closes.
pub(crate) type TcpHook = Arc<dyn Fn(Stream, Peer) + Send + Sync>;

/// What a TCP manager allows.
#[derive(Clone)]
pub(crate) struct TcpOptions {
    pub(crate) authkey: Arc<[u8]>,
    pub(crate) max_connections: usize,
    pub(crate) limits: Limits,
}

/// The manager's TCP listener and its thread.
pub(crate) struct TcpRendezvous {
    local: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// The listening socket, owned by the thread; valid until that thread is joined.
    listener_fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

impl TcpRendezvous {
    /// Listens on `addr`; authenticated connections go to `objects`.
    pub(crate) fn start(
        addr: SocketAddr,
        objects: TcpHook,
        options: TcpOptions,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let listener_fd = listener.as_raw_fd();
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("manager-tcp".into())
                .spawn(move || accept_loop(&listener, &objects, &options, &stopping))?
        };
        Ok(Self {
            local,
            stopping,
            listener_fd,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port the system chose, for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops listening. Connections already served end with the manager's objects.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // The fd belongs to the listener the thread owns, alive until the join below.
            let _ = crate::sys::shutdown_socket(self.listener_fd);
            let _ = thread.join();
        }
    }
}

impl Drop for TcpRendezvous {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Gives a connection slot back when its thread ends (or never starts).
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(
    listener: &TcpListener,
    objects: &TcpHook,
    options: &TcpOptions,
    stopping: &AtomicBool,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of file descriptors, say: back off instead of spinning on the error.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= options.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            log::warn!(
                "process-ipc manager: refused {peer}: {} connections already open",
                options.max_connections
            );
            // Closed unanswered.
            drop(stream);
            continue;
        }
        let slot = ConnectionSlot(Arc::clone(&open));
        let objects = Arc::clone(objects);
        let options = options.clone();
        // One thread per connection, as on the Unix socket: a peer that stalls in the
        // handshake or mid-frame holds up nobody else, and is dropped at its deadline.
        let _ = std::thread::Builder::new()
            .name("manager-connection".into())
            .spawn(move || {
                let _slot = slot;
                serve_one(stream, peer, &objects, &options);
            });
    }
}

fn serve_one(mut stream: TcpStream, peer: SocketAddr, objects: &TcpHook, options: &TcpOptions) {
    let _ = stream.set_nodelay(true);
    match auth::server(&mut stream, &options.authkey, options.limits.frame_wait) {
        Ok(pid) => {
            let peer = Peer {
                pid,
                addr: Some(peer.to_string().into()),
            };
            objects(Stream::Tcp(stream), peer);
        }
        Err(HandshakeError::WrongKey) => {
            // Said on standard error whatever logger the program has (or has not): someone
            // holds the address and a wrong key.
            eprintln!("process-ipc manager: refused {peer}: wrong authkey");
        }
        Err(e) => log::warn!("process-ipc manager: refused {peer}: {e}"),
    }
}

/// The keys this process knows, by manager address (`tcp:<ip>:<port>`).
static KEYS: Mutex<Option<HashMap<String, Arc<[u8]>>>> = Mutex::new(None);

/// Remembers `key` for the manager at `address`, for every later connection to it.
pub(crate) fn remember_key(address: &str, key: Arc<[u8]>) {
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    keys.get_or_insert_with(HashMap::new)
        .insert(address.to_string(), key);
}

fn key_for(address: &str) -> Option<Arc<[u8]>> {
    let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    keys.as_ref()?.get(address).cloned()
}

/// Why a TCP connection to a manager was not made.
pub(crate) enum Refused {
    /// Nothing listens there, or the connection failed.
    Unreachable(io::Error),
    /// One side does not hold the other's key, or this process knows none for the address.
    Auth(String),
}

/// Connects to the manager at `address` (`tcp:<ip>:<port>`) with the key this process knows
/// for it, waiting at most `within` for the handshake. Returns the stream and the manager's pid.
pub(crate) fn connect(address: &str, within: Duration) -> Result<(TcpStream, u32), Refused> {
    let Some(key) = key_for(address) else {
        return Err(Refused::Auth(format!(
            "this process holds no authkey for {address}: call Manager::connect(address, authkey) first"
        )));
    };
    connect_with(address, &key, within)
}

/// As [`connect`], with `key`.
pub(crate) fn connect_with(
    address: &str,
    key: &[u8],
    within: Duration,
) -> Result<(TcpStream, u32), Refused> {
    let socket = address.strip_prefix(SCHEME).unwrap_or(address);
    let socket: SocketAddr = socket.parse().map_err(|e| {
        Refused::Unreachable(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address} is not a socket address: {e}"),
        ))
    })?;
    let mut stream = TcpStream::connect_timeout(&socket, within).map_err(Refused::Unreachable)?;
    stream.set_nodelay(true).map_err(Refused::Unreachable)?;
    match auth::client(&mut stream, key, within) {
        Ok(pid) => Ok((stream, pid)),
        Err(HandshakeError::WrongKey) => Err(Refused::Auth(format!(
            "the manager at {socket} refused this authkey (or could not prove it holds it)"
        ))),
        Err(HandshakeError::NotOurs(what)) => Err(Refused::Auth(format!(
            "{socket} does not speak the manager's handshake ({what})"
        ))),
        // A refused key is a verdict byte; a close before the challenge is a full server.
        Err(HandshakeError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            Err(Refused::Unreachable(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "the manager at {socket} closed the connection before its challenge (is it at its connection limit?)"
                ),
            )))
        }
        Err(HandshakeError::Io(e)) => Err(Refused::Unreachable(e)),
    }
}
