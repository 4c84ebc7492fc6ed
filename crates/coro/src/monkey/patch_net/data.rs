//! The data calls: `recv`, `recvfrom`, `send`, `sendto`, and `read`/`write`/`readv`/`writev` on sockets.

use super::*;

/// The hook for `recv(2)`.
///
/// # Safety
/// `recv`'s contract: `buf` writable for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn recv(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    let Some(real) = real_recv() else {
        return missing();
    };
    if !active() || flags & libc::MSG_DONTWAIT != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, buf, len, flags) };
    }
    io_loop(
        fd,
        READ,
        libc::SO_RCVTIMEO,
        // SAFETY: forwarded with MSG_DONTWAIT added.
        || unsafe { real(fd, buf, len, flags | libc::MSG_DONTWAIT) },
        // SAFETY: forwarded unchanged.
        || unsafe { real(fd, buf, len, flags) },
    )
}

/// The hook for `recvfrom(2)`.
///
/// # Safety
/// `recvfrom`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    let Some(real) = real_recvfrom() else {
        return missing();
    };
    if !active() || flags & libc::MSG_DONTWAIT != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, buf, len, flags, addr, addrlen) };
    }
    io_loop(
        fd,
        READ,
        libc::SO_RCVTIMEO,
        // SAFETY: forwarded with MSG_DONTWAIT added.
        || unsafe { real(fd, buf, len, flags | libc::MSG_DONTWAIT, addr, addrlen) },
        // SAFETY: forwarded unchanged.
        || unsafe { real(fd, buf, len, flags, addr, addrlen) },
    )
}

/// The hook for `send(2)`.
///
/// # Safety
/// `send`'s contract: `buf` readable for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn send(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    let Some(real) = real_send() else {
        return missing();
    };
    if !active() || flags & libc::MSG_DONTWAIT != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, buf, len, flags) };
    }
    io_loop(
        fd,
        WRITE,
        libc::SO_SNDTIMEO,
        // SAFETY: forwarded with MSG_DONTWAIT added.
        || unsafe { real(fd, buf, len, flags | libc::MSG_DONTWAIT) },
        // SAFETY: forwarded unchanged.
        || unsafe { real(fd, buf, len, flags) },
    )
}

/// The hook for `sendto(2)`.
///
/// # Safety
/// `sendto`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    let Some(real) = real_sendto() else {
        return missing();
    };
    if !active() || flags & libc::MSG_DONTWAIT != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, buf, len, flags, addr, addrlen) };
    }
    io_loop(
        fd,
        WRITE,
        libc::SO_SNDTIMEO,
        // SAFETY: forwarded with MSG_DONTWAIT added.
        || unsafe { real(fd, buf, len, flags | libc::MSG_DONTWAIT, addr, addrlen) },
        // SAFETY: forwarded unchanged.
        || unsafe { real(fd, buf, len, flags, addr, addrlen) },
    )
}

/// The hook for `read(2)`: cooperative on sockets only.
///
/// # Safety
/// `read`'s contract: `buf` writable for `count` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    let Some(real) = real_read() else {
        return missing();
    };
    if !active() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, buf, count) };
    }
    let Some(real_recv) = real_recv() else {
        return missing();
    };
    // SAFETY: the same buffer, as a socket receive that does not wait.
    let first = unsafe { real_recv(fd, buf, count, libc::MSG_DONTWAIT) };
    if first < 0 && errno() == libc::ENOTSOCK {
        // SAFETY: not a socket: forwarded unchanged.
        return unsafe { real(fd, buf, count) };
    }
    let mut pending = Some(first);
    io_loop(
        fd,
        READ,
        libc::SO_RCVTIMEO,
        // SAFETY: as the first attempt.
        || {
            pending
                .take()
                .unwrap_or_else(|| unsafe { real_recv(fd, buf, count, libc::MSG_DONTWAIT) })
        },
        // SAFETY: forwarded unchanged.
        || unsafe { real(fd, buf, count) },
    )
}

/// The hook for `write(2)`: cooperative on sockets only.
///
/// # Safety
/// `write`'s contract: `buf` readable for `count` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let Some(real) = real_write() else {
        return missing();
    };
    if !active() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, buf, count) };
    }
    let Some(real_send) = real_send() else {
        return missing();
    };
    // SAFETY: the same buffer, as a socket send that does not wait.
    let first = unsafe { real_send(fd, buf, count, libc::MSG_DONTWAIT) };
    if first < 0 && errno() == libc::ENOTSOCK {
        // SAFETY: not a socket: forwarded unchanged.
        return unsafe { real(fd, buf, count) };
    }
    let mut pending = Some(first);
    io_loop(
        fd,
        WRITE,
        libc::SO_SNDTIMEO,
        // SAFETY: as the first attempt.
        || {
            pending
                .take()
                .unwrap_or_else(|| unsafe { real_send(fd, buf, count, libc::MSG_DONTWAIT) })
        },
        // SAFETY: forwarded unchanged.
        || unsafe { real(fd, buf, count) },
    )
}

/// `readv`/`writev` on a socket as `recvmsg`/`sendmsg` that do not wait.
fn iov_loop(
    fd: c_int,
    iov: *const libc::iovec,
    iovcnt: c_int,
    writing: bool,
    plain: IovFn,
) -> ssize_t {
    let (Some(recvmsg), Some(sendmsg)) = (real_recvmsg(), real_sendmsg()) else {
        return missing();
    };
    let attempt = || {
        // SAFETY: an all-zero msghdr is valid; we set only the vector.
        let mut msg: msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.cast_mut();
        msg.msg_iovlen = iovcnt.max(0) as _;
        if writing {
            // SAFETY: the caller's vector, as writev would read it.
            unsafe { sendmsg(fd, &msg, libc::MSG_DONTWAIT) }
        } else {
            // SAFETY: the caller's vector, as readv would fill it.
            unsafe { recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) }
        }
    };
    let first = attempt();
    if first < 0 && errno() == libc::ENOTSOCK {
        // SAFETY: not a socket: forwarded unchanged.
        return unsafe { plain(fd, iov, iovcnt) };
    }
    let mut pending = Some(first);
    let (interest, option) = if writing {
        (WRITE, libc::SO_SNDTIMEO)
    } else {
        (READ, libc::SO_RCVTIMEO)
    };
    io_loop(
        fd,
        interest,
        option,
        || pending.take().unwrap_or_else(attempt),
        // SAFETY: forwarded unchanged.
        || unsafe { plain(fd, iov, iovcnt) },
    )
}

/// The hook for `readv(2)`: cooperative on sockets only.
///
/// # Safety
/// `readv`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn readv(
    fd: c_int,
    iov: *const libc::iovec,
    iovcnt: c_int,
) -> ssize_t {
    let Some(real) = real_readv() else {
        return missing();
    };
    if !active() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, iov, iovcnt) };
    }
    iov_loop(fd, iov, iovcnt, false, real)
}

/// The hook for `writev(2)`: cooperative on sockets only.
///
/// # Safety
/// `writev`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn writev(
    fd: c_int,
    iov: *const libc::iovec,
    iovcnt: c_int,
) -> ssize_t {
    let Some(real) = real_writev() else {
        return missing();
    };
    if !active() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, iov, iovcnt) };
    }
    iov_loop(fd, iov, iovcnt, true, real)
}
