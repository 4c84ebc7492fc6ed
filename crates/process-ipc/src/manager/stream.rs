//! A connection to a manager, whatever carries it: a Unix socket on one host (the default), or
//! TCP across hosts (after the authkey handshake of `auth`). Everything above the opening of a
//! connection (framing, calls, the server's loop) reads and writes a [`Stream`] and never asks
//! which one it is.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// One end of a connection between a handle and its manager.
#[derive(Debug)]
pub(crate) enum Stream {
    /// A connection to the manager's Unix socket (peers checked with `SO_PEERCRED`).
    Unix(UnixStream),
    /// A TCP connection, used only once both sides proved they hold the authkey.
    Tcp(TcpStream),
}

impl Stream {
    /// Another handle to the same connection.
    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    /// How long a read may wait (`None`: no bound).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    /// Shuts the connection down (both sides' reads then end).
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }
}

/// Who is at the other end of a served connection: its pid (from `SO_PEERCRED` on a Unix
/// socket; on TCP the one the client gave inside the authenticated handshake) and, on TCP, its
/// address. A lock its connection held when it closed is reported with both.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) pid: u32,
    pub(crate) addr: Option<Arc<str>>,
}

/// What a served connection may send: the largest frame, and how long the rest of a begun
/// frame may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_frame: usize,
    pub(crate) frame_wait: Duration,
}
