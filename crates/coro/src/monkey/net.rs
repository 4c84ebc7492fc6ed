//! Dual-mode sockets: may's TCP and UDP types, started on coro's runtime configuration.
//!
//! Each type wraps may's and dereferences to it, so all of may's methods
//! (timeouts, `peer_addr`, `set_nodelay`, ...) are there. The wrappers exist
//! so that the first socket applies `coro`'s runtime configuration before
//! may's scheduler starts (a may socket starts it).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::runtime::ensure_init;

/// The largest listen backlog the system allows: `/proc/sys/net/core/somaxconn`
/// on Linux (read once), else `SOMAXCONN`. The shim's [`TcpListener`] listens
/// with it, and so does a `listen(2)` under `patch_all` (see [`crate::monkey`]).
pub fn max_listen_backlog() -> i32 {
    static MAX: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(libc::SOMAXCONN)
    })
}

/// Ends a shim call: the running-time bookkeeping, and a kill. A greenlet
/// killed while it waited here unwinds silently from this point (coro's
/// `GreenletExit`), as gevent's does, instead of seeing may's "Canceled" error.
fn done<T>(r: io::Result<T>) -> io::Result<T> {
    crate::running::resumed();
    if r.is_err() {
        crate::greenlet::exit_if_killed();
    }
    r
}

/// A TCP listener: `accept` yields inside a coroutine, blocks in a thread.
#[derive(Debug)]
pub struct TcpListener(may::net::TcpListener);

impl TcpListener {
    /// Binds to `addr` (`std::net::TcpListener::bind`).
    ///
    /// # Errors
    /// The OS error.
    ///
    /// It listens with the system's largest backlog ([`max_listen_backlog`],
    /// `net.core.somaxconn`, 4096 on current Linux), not std's 128 nor may's
    /// 1024: a coroutine server takes thousands of connections at once, and a
    /// full backlog makes the kernel drop SYNs, which clients retry only a
    /// second later. [`TcpListener::listen`] sets another number.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        ensure_init();
        let listener = may::net::TcpListener::bind(addr).map(TcpListener)?;
        listener.listen(max_listen_backlog())?;
        Ok(listener)
    }

    /// Sets the backlog of pending connections (`listen(2)` again on the
    /// bound socket; the kernel caps it at `net.core.somaxconn`).
    ///
    /// # Errors
    /// The OS error.
    pub fn listen(&self, backlog: i32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: listen takes no pointer; the fd is this listener's, open.
        let r = unsafe { libc::listen(self.0.as_raw_fd(), backlog) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Accepts one connection.
    ///
    /// # Errors
    /// The OS error.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        done(self.0.accept().map(|(s, a)| (TcpStream(s), a)))
    }

    /// Accepts connections forever (`std::net::TcpListener::incoming`).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The local address.
    ///
    /// # Errors
    /// The OS error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// The wrapped may listener.
    pub fn into_inner(self) -> may::net::TcpListener {
        self.0
    }
}

impl Deref for TcpListener {
    type Target = may::net::TcpListener;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A TCP stream: reads, writes and connects yield inside a coroutine, block in a thread.
#[derive(Debug)]
pub struct TcpStream(may::net::TcpStream);

impl TcpStream {
    /// Connects to `addr` (`std::net::TcpStream::connect`).
    ///
    /// # Errors
    /// The OS error.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        ensure_init();
        done(may::net::TcpStream::connect(addr).map(TcpStream))
    }

    /// Connects, giving up after `timeout`.
    ///
    /// # Errors
    /// The OS error, or `TimedOut`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        ensure_init();
        done(may::net::TcpStream::connect_timeout(addr, timeout).map(TcpStream))
    }

    /// A second handle to the same socket.
    ///
    /// # Errors
    /// The OS error.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        self.0.try_clone().map(TcpStream)
    }

    /// The wrapped may stream.
    pub fn into_inner(self) -> may::net::TcpStream {
        self.0
    }
}

impl Deref for TcpStream {
    type Target = may::net::TcpStream;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for TcpStream {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        done(self.0.read(buf))
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        done(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A UDP socket: `recv`/`send` yield inside a coroutine, block in a thread.
#[derive(Debug)]
pub struct UdpSocket(may::net::UdpSocket);

impl UdpSocket {
    /// Binds to `addr` (`std::net::UdpSocket::bind`).
    ///
    /// # Errors
    /// The OS error.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        ensure_init();
        may::net::UdpSocket::bind(addr).map(UdpSocket)
    }

    /// Receives one datagram.
    ///
    /// # Errors
    /// The OS error (`WouldBlock`/`TimedOut` after a read timeout).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        done(self.0.recv_from(buf))
    }

    /// Sends one datagram to `addr`.
    ///
    /// # Errors
    /// The OS error.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        done(self.0.send_to(buf, addr))
    }

    /// A second handle to the same socket.
    ///
    /// # Errors
    /// The OS error.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        self.0.try_clone().map(UdpSocket)
    }

    /// The wrapped may socket.
    pub fn into_inner(self) -> may::net::UdpSocket {
        self.0
    }
}

impl Deref for UdpSocket {
    type Target = may::net::UdpSocket;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
