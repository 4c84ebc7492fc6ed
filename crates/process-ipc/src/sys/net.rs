//! What the manager's connections need of the OS beyond `std::net`: waking a thread blocked in
//! `accept` by shutting its listener down, a look at whether a socket has bytes to read, and
//! the `SIGPIPE` disposition that makes a write to a closed connection an error value.

use std::io;
use std::os::fd::RawFd;
use std::sync::Once;

/// Shuts down both directions of the socket `fd` without closing it. On a listening socket a
/// thread blocked in `accept` on it then returns at once with an error (Linux).
///
/// The caller keeps `fd` open (owned by a live listener or stream) for the call's duration.
pub(crate) fn shutdown_socket(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown neither closes nor frees the descriptor and touches no memory of ours;
    // a stale or wrong fd is an error value (EBADF, ENOTSOCK), not undefined behaviour.
    let rc = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` has bytes to read (or its peer hung up) now, without waiting.
pub(crate) fn readable_now(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call's duration; a zero timeout never blocks.
    unsafe { libc::poll(&mut poll, 1, 0) > 0 }
}

/// Makes a write to a closed connection an `EPIPE` error instead of a fatal `SIGPIPE`, once per
/// process, unless someone installed a disposition of their own (a handler, or an explicit
/// ignore): only the default, which would kill the process, is replaced.
///
/// Rust's `main` ignores `SIGPIPE` before it runs, but a child that runs its target before
/// `main` (and a program that restored the default) would be killed when its peer is gone.
pub(crate) fn ignore_default_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action makes this a query; `current` is a valid place to write.
        let queried = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) };
        if queried == 0 && current.sa_sigaction == libc::SIG_DFL {
            // SAFETY: SIG_IGN is a valid disposition for SIGPIPE and installs no handler code.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        }
    });
}
