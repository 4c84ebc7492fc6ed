//! Making connections: `connect`, `accept`, `accept4`, and `listen`'s backlog.

use super::*;

/// Runs `call` with `fd` switched to non-blocking, restoring its flags right after.
fn nonblocking_once<R>(fd: RawFd, flags: c_int, call: impl FnOnce() -> R) -> R {
    // Not through the fcntl hook: this switch is the hook's own, and changes no mode
    // anyone else sees (so the fd's cached facts stay true).
    fdhooks::fcntl_unhooked(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    let r = call();
    let e = errno();
    // Restores the user's flags.
    fdhooks::fcntl_unhooked(fd, libc::F_SETFL, flags);
    set_errno(e);
    r
}

/// The hook for `connect(2)`.
///
/// # Safety
/// `connect`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(real) = real_connect() else {
        return missing();
    };
    let flags = if active() {
        fdhooks::fcntl_unhooked(fd, libc::F_GETFL, 0)
    } else {
        -1
    };
    if flags < 0 || flags & libc::O_NONBLOCK != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    }
    // SAFETY: forwarded unchanged, on a socket made non-blocking for this call.
    let r = nonblocking_once(fd, flags, || unsafe { real(fd, addr, len) });
    if r == 0 || errno() != libc::EINPROGRESS {
        return r;
    }
    let deadline = socket_deadline(&socket_facts(fd), libc::SO_SNDTIMEO);
    guarded(-1, || {
        match poller::wait_any(&[(fd, WRITE)], deadline) {
            Ready::TimedOut => {
                // What a blocking connect says when SO_SNDTIMEO runs out.
                set_errno(libc::EINPROGRESS);
                return -1;
            }
            Ready::Unsupported => {
                let mut p = pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                if let Some(real_poll) = real_poll() {
                    // SAFETY: one valid pollfd.
                    unsafe { real_poll(&mut p, 1, -1) };
                }
            }
            Ready::Yes => {}
        }
        let mut err: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as socklen_t;
        // SAFETY: `err`/`len` are valid for writing, sized as getsockopt expects.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return -1;
        }
        if err != 0 {
            set_errno(err);
            return -1;
        }
        0
    })
}

/// The hook for `accept4(2)`.
///
/// # Safety
/// `accept4`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real_accept4() else {
        return missing();
    };
    let fd_flags = if active() {
        fdhooks::fcntl_unhooked(fd, libc::F_GETFL, 0)
    } else {
        -1
    };
    if fd_flags < 0 || fd_flags & libc::O_NONBLOCK != 0 {
        // SAFETY: forwarded unchanged.
        let r = unsafe { real(fd, addr, len, flags) };
        if r >= 0 {
            // A new file under this number, however the old one was closed.
            poller::invalidate(r);
        }
        return r;
    }
    let deadline = socket_deadline(&socket_facts(fd), libc::SO_RCVTIMEO);
    guarded(-1, || {
        loop {
            // SAFETY: forwarded unchanged, on a socket made non-blocking for this call.
            let r = nonblocking_once(fd, fd_flags, || unsafe { real(fd, addr, len, flags) });
            if r >= 0 {
                poller::invalidate(r);
                return r;
            }
            if !would_block(errno()) {
                return r;
            }
            match poller::wait_any(&[(fd, READ)], deadline) {
                Ready::Yes => {}
                Ready::TimedOut => {
                    set_errno(libc::EAGAIN);
                    return -1;
                }
                Ready::Unsupported => {
                    // SAFETY: forwarded unchanged.
                    let r = unsafe { real(fd, addr, len, flags) };
                    if r >= 0 {
                        poller::invalidate(r);
                    }
                    return r;
                }
            }
        }
    })
}

/// The hook for `accept(2)`.
///
/// # Safety
/// `accept`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn accept(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: accept is accept4 with no flags.
    unsafe { accept4(fd, addr, len, 0) }
}

/// The hook for `listen(2)`: while patched, a backlog below the system's
/// largest is raised to it (see `coro::monkey::raise_listen_backlog`).
///
/// # Safety
/// `listen`'s contract (it takes no pointer).
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let Some(real) = real_listen() else {
        return missing();
    };
    // SAFETY: forwarded, with the backlog perhaps raised.
    unsafe { real(fd, super::super::flag::listen_backlog(backlog)) }
}
