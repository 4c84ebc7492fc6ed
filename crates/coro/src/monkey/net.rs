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

/// A TCP listener: `accept` yields inside a coroutine, blocks in a thread.
#[derive(Debug)]
pub struct TcpListener(may::net::TcpListener);

impl TcpListener {
    /// Binds to `addr` (`std::net::TcpListener::bind`).
    ///
    /// # Errors
    /// The OS error.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        ensure_init();
        may::net::TcpListener::bind(addr).map(TcpListener)
    }

    /// Accepts one connection.
    ///
    /// # Errors
    /// The OS error.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let r = self.0.accept().map(|(s, a)| (TcpStream(s), a));
        crate::running::resumed();
        r
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
        let r = may::net::TcpStream::connect(addr).map(TcpStream);
        crate::running::resumed();
        r
    }

    /// Connects, giving up after `timeout`.
    ///
    /// # Errors
    /// The OS error, or `TimedOut`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        ensure_init();
        let r = may::net::TcpStream::connect_timeout(addr, timeout).map(TcpStream);
        crate::running::resumed();
        r
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
        let r = self.0.read(buf);
        crate::running::resumed();
        r
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.0.write(buf);
        crate::running::resumed();
        r
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
        let r = self.0.recv_from(buf);
        crate::running::resumed();
        r
    }

    /// Sends one datagram to `addr`.
    ///
    /// # Errors
    /// The OS error.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let r = self.0.send_to(buf, addr);
        crate::running::resumed();
        r
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
