//! [`ManagerBuilder`]: a manager on the default Unix socket, or on a TCP address with a
//! required authkey (Python's `BaseManager(address=(host, port), authkey=...)`), with the
//! limits a TCP listener puts on its peers.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::object_server::Objects;
use super::object_wire::{FRAME_WAIT, MAX_FRAME};
use super::rendezvous::Rendezvous;
use super::server_process::{self, ManagerProcess, ServerSetup};
use super::stream::Limits;
use super::tcp::{self, TcpOptions, TcpRendezvous};
use super::{Manager, ManagerError, Running, ignore_sigpipe};
use crate::start::StartMethod;

/// The largest frame a TCP manager reads unless told otherwise ([`ManagerBuilder::max_frame`]).
pub const DEFAULT_TCP_MAX_FRAME: usize = 64 << 20;
/// How many connections a TCP manager holds at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Options for a [`Manager`]: where it listens and what it allows. Made by
/// [`Manager::builder`]; [`serve`](ManagerBuilder::serve) starts the manager.
///
/// Without an [`address`](ManagerBuilder::address) the manager listens on a Unix socket in a
/// private directory, as [`Manager::new`] does. With one it listens on TCP and requires an
/// [`authkey`](ManagerBuilder::authkey): every connection must prove it holds the key before
/// anything else (and the manager proves it back), so processes on other hosts can share its
/// objects through [`Manager::connect`].
///
/// ```
/// use process_ipc::manager::{ManagedDict, Manager};
///
/// // Python: BaseManager(address=("127.0.0.1", 0), authkey=b"secret").get_server()
/// let server = Manager::builder()
///     .address("127.0.0.1:0")
///     .authkey("secret")
///     .serve()?;
/// let shared = server.dict::<String, u32>()?;
/// server.register("shared", &shared)?;
///
/// // Anywhere that can reach the address and holds the key:
/// let client = Manager::connect(server.local_addr().unwrap(), "secret")?;
/// let d: ManagedDict<String, u32> = client.lookup("shared")?;
/// d.insert("answer".into(), 42)?;
/// assert_eq!(shared.get("answer")?, Some(42));
///
/// // A wrong key is refused before anything else is said.
/// assert!(Manager::connect(server.local_addr().unwrap(), "guess").is_err());
/// # Ok::<(), process_ipc::manager::ManagerError>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `serve` is called"]
pub struct ManagerBuilder {
    address: Option<io::Result<SocketAddr>>,
    authkey: Option<Arc<[u8]>>,
    max_frame: Option<usize>,
    frame_timeout: Duration,
    max_connections: usize,
    /// How [`start`](Self::start) starts the server process (`None`: the process default).
    method: Option<StartMethod>,
}

/// Where a running manager listens.
pub(super) enum Listener {
    Unix(Rendezvous),
    Tcp(TcpRendezvous),
}

impl Listener {
    pub(super) fn stop(&mut self) {
        match self {
            Listener::Unix(r) => r.stop(),
            Listener::Tcp(r) => r.stop(),
        }
    }
}

impl Manager {
    /// Options for a manager: a TCP address with an authkey, and limits (see
    /// [`ManagerBuilder`]). `Manager::builder().serve()` is [`Manager::new`].
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            max_frame: None,
            frame_timeout: FRAME_WAIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            method: None,
        }
    }

    /// The TCP address the manager listens on (with the port the system chose, for port 0);
    /// `None` for a manager on a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.as_ref().map(|r| &r.listener) {
            Some(Listener::Tcp(tcp)) => Some(tcp.local_addr()),
            _ => None,
        }
    }
}

impl ManagerBuilder {
    /// Listens on this TCP address (Python's `address=(host, port)`; port 0 lets the system
    /// choose, see [`Manager::local_addr`]). Requires an [`authkey`](Self::authkey). The first
    /// address `addr` resolves to is used.
    pub fn address(mut self, addr: impl ToSocketAddrs) -> Self {
        let resolved = addr.to_socket_addrs().and_then(|mut all| {
            all.next().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the address resolves to nothing",
                )
            })
        });
        self.address = Some(resolved);
        self
    }

    /// The secret a TCP peer must prove it holds (Python's `authkey`). Never sent: each side
    /// answers the other's random challenge with an HMAC-SHA256 of it.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(key.as_ref().into());
        self
    }

    /// The largest frame (one call, with its keys, values or items) the manager reads; a
    /// larger one closes that connection. Default: 64 MiB on TCP, 1 GiB on a Unix socket.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes.min(MAX_FRAME));
        self
    }

    /// How long a peer may take to finish a frame it began (and, on TCP, the whole
    /// authkey handshake); a peer that stalls longer is dropped. Default 5 s. An idle
    /// connection between frames is never dropped.
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// How many TCP connections the manager holds at once, authenticated or not (default
    /// 512); one more is closed unanswered. Each client process opens one per call it has in
    /// flight, plus one per queue it puts into.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The manager under a context's start method (`multiprocessing.get_context(m).Manager()`):
    /// how [`start`](Self::start) starts the server process; without it, the process default
    /// ([`get_start_method`](crate::get_start_method), which `PROCESS_IPC_START_METHOD` sets).
    /// [`serve`](Self::serve) starts no process and does not use it.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Python's `BaseManager.start()`: starts the manager's server in a process of its own (by
    /// the [start method](Self::start_method)), serving on TCP — the [address](Self::address)
    /// given, else a port of the loopback address the system chooses — with the
    /// [authkey](Self::authkey) given, else a fresh random one; see [`ManagerProcess`].
    ///
    /// # Errors
    /// [`ManagerError::Start`] if the address does not resolve, the server process cannot be
    /// started or cannot serve (its reason); [`Manager::connect`]'s errors.
    pub fn start(self) -> Result<ManagerProcess, ManagerError> {
        let address = match self.address {
            Some(Ok(addr)) => addr,
            Some(Err(source)) => {
                return Err(ManagerError::Start {
                    pid: std::process::id(),
                    source,
                });
            }
            None => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        };
        let no_key = |source| ManagerError::Start {
            pid: std::process::id(),
            source,
        };
        let authkey = match self.authkey.filter(|k| !k.is_empty()) {
            Some(key) => key.to_vec(),
            // A fresh 32-byte key.
            None => [
                crate::sys::nonce().map_err(no_key)?,
                crate::sys::nonce().map_err(no_key)?,
            ]
            .concat(),
        };
        let setup = ServerSetup {
            address,
            authkey,
            max_frame: self.max_frame,
            frame_timeout: self.frame_timeout,
            max_connections: self.max_connections,
        };
        server_process::start(setup, self.method)
    }

    /// Starts the manager in this process: a thread listening on the TCP address, or on a
    /// Unix socket in a private temporary directory when no address was given.
    ///
    /// # Errors
    /// [`ManagerError::Start`] if the address does not resolve or cannot be bound, a TCP
    /// address has no (or an empty) authkey, an authkey was given without an address, or the
    /// socket, its directory or the thread cannot be made.
    pub fn serve(self) -> Result<Manager, ManagerError> {
        ignore_sigpipe();
        let pid = std::process::id();
        let start = |source| ManagerError::Start { pid, source };
        let invalid = |why: &str| start(io::Error::new(io::ErrorKind::InvalidInput, why));
        let objects = Arc::new(Objects::new());
        let max_frame = self.max_frame.unwrap_or(if self.address.is_some() {
            DEFAULT_TCP_MAX_FRAME
        } else {
            MAX_FRAME
        });
        let limits = Limits {
            max_frame,
            frame_wait: self.frame_timeout,
        };
        let serving = Arc::clone(&objects);
        let hook = Arc::new(move |stream, peer| serving.serve(stream, peer, limits));
        let (listener, address) = match self.address {
            None => {
                if self.authkey.is_some() {
                    return Err(invalid(
                        "an authkey is for a manager on a TCP address: give one with .address()",
                    ));
                }
                let unix = Rendezvous::start(pid, hook).map_err(start)?;
                let address = unix.address();
                (Listener::Unix(unix), address)
            }
            Some(addr) => {
                let addr = addr.map_err(start)?;
                let Some(authkey) = self.authkey.filter(|k| !k.is_empty()) else {
                    return Err(invalid(
                        "a manager on TCP needs an authkey (.authkey(...)), and not an empty one",
                    ));
                };
                let options = TcpOptions {
                    authkey: Arc::clone(&authkey),
                    max_connections: self.max_connections,
                    limits,
                };
                let listening = TcpRendezvous::start(addr, hook, options).map_err(start)?;
                let address = format!("{}{}", tcp::SCHEME, listening.local_addr());
                // Handles this process decodes reach it with the key it serves with.
                tcp::remember_key(&address, authkey);
                (Listener::Tcp(listening), address)
            }
        };
        Ok(Manager {
            pid,
            address: address.into(),
            objects,
            running: Mutex::new(Some(Running { listener })),
        })
    }
}
