//! `patch_all()` for the network: hooks on glibc's socket calls that yield inside a coroutine.
//!
//! Like the sleep hooks, each function here takes the place of glibc's in the
//! final binary and forwards to glibc's own (found with `dlsym(RTLD_NEXT)`)
//! unless the patch is on *and* the caller is a coroutine. Then a call that
//! would block parks only the calling coroutine:
//!
//! - `recv`, `recvfrom`, `send`, `sendto`, and `read`/`write`/`readv`/`writev`
//!   on sockets are first tried with `MSG_DONTWAIT`; only if that would block,
//!   and the socket is in blocking mode, does the coroutine wait for the
//!   socket in [`super::poller`] and try again. A socket the user made
//!   non-blocking gets `EAGAIN` as before; `SO_RCVTIMEO`/`SO_SNDTIMEO` bound the
//!   wait and end it with `EAGAIN`, as the kernel does. `read`/`write` on what
//!   is not a socket (files, pipes, terminals) go to glibc unchanged.
//! - `connect`, `accept`, `accept4` switch the socket to non-blocking for the
//!   one call (restoring its flags at once) and wait for it the same way.
//! - `poll` and `select` look once without waiting, then park until one of
//!   their descriptors is ready or their timeout passes.
//! - `getaddrinfo` (what `ToSocketAddrs` uses for names) runs on a helper
//!   thread while the coroutine waits.
//!
//! A greenlet killed inside one of these calls sees it fail with `EINTR` and
//! is stopped at its next switch point outside the hook (unwinding cannot
//! cross an `extern "C"` function).

use std::ffi::{CStr, CString, c_void};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libc::{c_char, c_int, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t};

use super::poller::{self, READ, Ready, WRITE};

/// Whether a hooked call should cooperate: patched, and inside a coroutine.
#[inline]
fn active() -> bool {
    super::patch::is_patched() && may::coroutine::is_coroutine()
}

fn errno() -> c_int {
    // SAFETY: glibc's thread-local errno slot is always valid to read.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: glibc's thread-local errno slot is always valid to write.
    unsafe { *libc::__errno_location() = e };
}

fn would_block(e: c_int) -> bool {
    e == libc::EAGAIN || e == libc::EWOULDBLOCK
}

/// Whether the user put `fd` in non-blocking mode (`set_nonblocking(true)`, `O_NONBLOCK`).
fn user_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL takes no pointer.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

/// The socket's `SO_RCVTIMEO`/`SO_SNDTIMEO` as a deadline from now (`None`: no timeout).
fn socket_deadline(fd: RawFd, option: c_int) -> Option<Instant> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as socklen_t;
    // SAFETY: `tv` and `len` are valid for writing, sized as getsockopt expects.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    if r != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0) {
        return None;
    }
    let d = Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1000);
    Some(crate::timer::deadline_after(d))
}

/// Runs `f`, turning a kill (may's cancel unwinding) into `EINTR`: it must not cross `extern "C"`.
fn guarded<R>(interrupted: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            set_errno(libc::EINTR);
            interrupted
        }
    }
}

/// The cooperative loop of one data call: `attempt` never blocks; wait and retry while it would.
fn io_loop(
    fd: RawFd,
    interest: u32,
    timeout_option: c_int,
    mut attempt: impl FnMut() -> ssize_t,
    blocking: impl FnOnce() -> ssize_t,
) -> ssize_t {
    let r = attempt();
    if r >= 0 || !would_block(errno()) {
        return r;
    }
    if user_nonblocking(fd) {
        set_errno(libc::EAGAIN);
        return r;
    }
    let deadline = socket_deadline(fd, timeout_option);
    guarded(-1, move || {
        loop {
            match poller::wait_any(&[(fd, interest)], deadline) {
                Ready::Yes => {}
                Ready::TimedOut => {
                    set_errno(libc::EAGAIN);
                    return -1;
                }
                Ready::Unsupported => return blocking(),
            }
            let r = attempt();
            if r >= 0 || !would_block(errno()) {
                return r;
            }
        }
    })
}

macro_rules! real_fn {
    ($getter:ident = $sym:literal : $ty:ty) => {
        fn $getter() -> Option<$ty> {
            static CACHE: AtomicUsize = AtomicUsize::new(0);
            let mut f = CACHE.load(Ordering::Acquire);
            if f == 0 {
                // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only reads;
                // it returns the next definition after this binary's (glibc's) or null.
                f = unsafe { libc::dlsym(libc::RTLD_NEXT, $sym.as_ptr()) } as usize;
                CACHE.store(f, Ordering::Release);
            }
            // SAFETY: `f` is glibc's function of this name, whose C signature `$ty` is.
            (f != 0).then(|| unsafe { std::mem::transmute::<usize, $ty>(f) })
        }
    };
}

type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
type RecvFromFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
type SendFn = unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
type SendToFn = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type IovFn = unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> ssize_t;
type RecvMsgFn = unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t;
type SendMsgFn = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type PollFn = unsafe extern "C" fn(*mut pollfd, nfds_t, c_int) -> c_int;
type SelectFn = unsafe extern "C" fn(
    c_int,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::timeval,
) -> c_int;
type GetAddrInfoFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> c_int;

real_fn!(real_recv = c"recv": RecvFn);
real_fn!(real_recvfrom = c"recvfrom": RecvFromFn);
real_fn!(real_send = c"send": SendFn);
real_fn!(real_sendto = c"sendto": SendToFn);
real_fn!(real_read = c"read": ReadFn);
real_fn!(real_write = c"write": WriteFn);
real_fn!(real_readv = c"readv": IovFn);
real_fn!(real_writev = c"writev": IovFn);
real_fn!(real_recvmsg = c"recvmsg": RecvMsgFn);
real_fn!(real_sendmsg = c"sendmsg": SendMsgFn);
real_fn!(real_connect = c"connect": ConnectFn);
real_fn!(real_accept4 = c"accept4": Accept4Fn);
real_fn!(real_poll = c"poll": PollFn);
real_fn!(real_select = c"select": SelectFn);
real_fn!(real_getaddrinfo = c"getaddrinfo": GetAddrInfoFn);

/// Resolves every real function up front (at `patch_all`), so no hook looks one up mid-call.
pub(super) fn resolve_real() {
    let _ = (real_recv(), real_recvfrom(), real_send(), real_sendto());
    let _ = (real_read(), real_write(), real_readv(), real_writev());
    let _ = (
        real_recvmsg(),
        real_sendmsg(),
        real_connect(),
        real_accept4(),
    );
    let _ = (real_poll(), real_select(), real_getaddrinfo());
    // Name the hooks so the object that defines them is always linked in.
    std::hint::black_box([
        recv as *const (),
        recvfrom as *const (),
        send as *const (),
        sendto as *const (),
        read as *const (),
        write as *const (),
        readv as *const (),
        writev as *const (),
        connect as *const (),
        accept as *const (),
        accept4 as *const (),
        poll as *const (),
        select as *const (),
        getaddrinfo as *const (),
    ]);
}

/// `-1` with `ENOSYS`: glibc's function could not be found (never expected with glibc).
fn missing<R: From<i8>>() -> R {
    set_errno(libc::ENOSYS);
    R::from(-1)
}

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

/// Runs `call` with `fd` switched to non-blocking, restoring its flags right after.
fn nonblocking_once<R>(fd: RawFd, flags: c_int, call: impl FnOnce() -> R) -> R {
    // SAFETY: F_SETFL takes an int.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    let r = call();
    let e = errno();
    // SAFETY: as above; restores the user's flags.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
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
    // SAFETY: F_GETFL takes no pointer.
    let flags = if active() {
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
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
    let deadline = socket_deadline(fd, libc::SO_SNDTIMEO);
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
    // SAFETY: F_GETFL takes no pointer.
    let fd_flags = if active() {
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
    } else {
        -1
    };
    if fd_flags < 0 || fd_flags & libc::O_NONBLOCK != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len, flags) };
    }
    let deadline = socket_deadline(fd, libc::SO_RCVTIMEO);
    guarded(-1, || {
        loop {
            // SAFETY: forwarded unchanged, on a socket made non-blocking for this call.
            let r = nonblocking_once(fd, fd_flags, || unsafe { real(fd, addr, len, flags) });
            if r >= 0 || !would_block(errno()) {
                return r;
            }
            match poller::wait_any(&[(fd, READ)], deadline) {
                Ready::Yes => {}
                Ready::TimedOut => {
                    set_errno(libc::EAGAIN);
                    return -1;
                }
                // SAFETY: forwarded unchanged.
                Ready::Unsupported => return unsafe { real(fd, addr, len, flags) },
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

/// What `poll` events a pollfd waits for, as the poller's interest.
fn interest_of(events: libc::c_short) -> u32 {
    let mut interest = 0;
    if events & (libc::POLLIN | libc::POLLPRI) != 0 {
        interest |= READ;
    }
    if events & libc::POLLOUT != 0 {
        interest |= WRITE;
    }
    if interest == 0 { READ } else { interest }
}

/// Cooperative poll over `fds`: look, then park until one is ready or the deadline.
fn poll_loop(fds: &mut [pollfd], deadline: Option<Instant>, real: PollFn) -> c_int {
    guarded(-1, || {
        loop {
            // SAFETY: the caller's pollfd array, looked at without waiting.
            let r = unsafe { real(fds.as_mut_ptr(), fds.len() as nfds_t, 0) };
            if r != 0 {
                return r;
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return 0;
            }
            let watch: Vec<(RawFd, u32)> = fds
                .iter()
                .filter(|p| p.fd >= 0)
                .map(|p| (p.fd, interest_of(p.events)))
                .collect();
            match poller::wait_any(&watch, deadline) {
                Ready::Yes => {}
                Ready::TimedOut => return 0,
                Ready::Unsupported => {
                    let ms = deadline.map_or(-1, |at| {
                        let left = at.saturating_duration_since(Instant::now());
                        c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX)
                    });
                    // SAFETY: the caller's pollfd array, as poll itself would use it.
                    return unsafe { real(fds.as_mut_ptr(), fds.len() as nfds_t, ms) };
                }
            }
        }
    })
}

/// The hook for `poll(2)`.
///
/// # Safety
/// `poll`'s contract: `fds` valid for `nfds` entries.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    let Some(real) = real_poll() else {
        return missing();
    };
    if !active() || timeout == 0 || fds.is_null() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fds, nfds, timeout) };
    }
    // SAFETY: poll's contract: `fds` holds `nfds` entries.
    let slice = unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) };
    let deadline =
        (timeout > 0).then(|| crate::timer::deadline_after(Duration::from_millis(timeout as u64)));
    poll_loop(slice, deadline, real)
}

/// The hook for `select(2)`, as a cooperative `poll` over the same descriptors.
///
/// # Safety
/// `select`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let Some(real) = real_select() else {
        return missing();
    };
    // SAFETY: a non-null timeout is readable by select's contract.
    let tv = unsafe { timeout.as_ref() }.copied();
    let zero = tv.is_some_and(|t| t.tv_sec == 0 && t.tv_usec == 0);
    let Some(real_poll) = real_poll() else {
        return missing();
    };
    if !active() || zero || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        // SAFETY: forwarded unchanged.
        return unsafe { real(nfds, readfds, writefds, exceptfds, timeout) };
    }
    let is_set = |set: *mut libc::fd_set, fd: c_int| {
        // SAFETY: a non-null set is a valid fd_set by select's contract; fd < FD_SETSIZE.
        !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
    };
    let mut fds: Vec<pollfd> = (0..nfds)
        .filter_map(|fd| {
            let mut events = 0;
            if is_set(readfds, fd) {
                events |= libc::POLLIN;
            }
            if is_set(writefds, fd) {
                events |= libc::POLLOUT;
            }
            if is_set(exceptfds, fd) {
                events |= libc::POLLPRI;
            }
            (events != 0).then_some(pollfd {
                fd,
                events,
                revents: 0,
            })
        })
        .collect();
    let deadline = tv.map(|t| {
        crate::timer::deadline_after(Duration::new(
            t.tv_sec.max(0) as u64,
            (t.tv_usec.max(0) as u32).saturating_mul(1000),
        ))
    });
    let r = poll_loop(&mut fds, deadline, real_poll);
    if r < 0 {
        return r;
    }
    for set in [readfds, writefds, exceptfds] {
        if !set.is_null() {
            // SAFETY: a valid fd_set by select's contract.
            unsafe { libc::FD_ZERO(set) };
        }
    }
    let mut count = 0;
    for p in &fds {
        let mark = |set: *mut libc::fd_set, wanted: bool| {
            if wanted && !set.is_null() {
                // SAFETY: a valid fd_set; fd < nfds <= FD_SETSIZE.
                unsafe { libc::FD_SET(p.fd, set) };
                1
            } else {
                0
            }
        };
        let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        count += mark(
            readfds,
            p.events & libc::POLLIN != 0 && p.revents & (libc::POLLIN | bad) != 0,
        );
        count += mark(
            writefds,
            p.events & libc::POLLOUT != 0 && p.revents & (libc::POLLOUT | bad) != 0,
        );
        count += mark(
            exceptfds,
            p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0,
        );
    }
    if r == 0 && !timeout.is_null() {
        // SAFETY: a non-null timeout is writable; Linux leaves the time not slept there.
        unsafe {
            *timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            }
        };
    }
    count
}

/// One name lookup's result, freed if the asker is gone (killed) before taking it.
struct Lookup {
    status: c_int,
    result: *mut libc::addrinfo,
}

// SAFETY: the addrinfo list is plain heap memory owned by whoever holds this.
unsafe impl Send for Lookup {}

impl Drop for Lookup {
    fn drop(&mut self) {
        if !self.result.is_null() {
            // SAFETY: a list getaddrinfo returned and nobody took.
            unsafe { libc::freeaddrinfo(self.result) };
        }
    }
}

/// The hook for `getaddrinfo(3)`: inside a coroutine the lookup runs on a helper thread.
///
/// # Safety
/// `getaddrinfo`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    let Some(real) = real_getaddrinfo() else {
        return libc::EAI_SYSTEM;
    };
    if !active() || res.is_null() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    // Copy the inputs: the helper must not read the coroutine's memory, which
    // is gone if the coroutine is killed while it waits.
    // SAFETY: non-null names are NUL-terminated strings by the contract.
    let copy = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_owned());
    let (node_c, service_c): (Option<CString>, Option<CString>) = (copy(node), copy(service));
    // SAFETY: a non-null hints is readable; only its four selector fields count.
    let hints_c =
        unsafe { hints.as_ref() }.map(|h| (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol));
    let answer: crate::Queue<Lookup> = crate::Queue::new();
    let tx = answer.clone();
    let lookup = move || {
        let hints = hints_c.map(|(flags, family, socktype, protocol)| {
            // SAFETY: an all-zero addrinfo is the documented "no hints" value.
            let mut h: libc::addrinfo = unsafe { std::mem::zeroed() };
            (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol) =
                (flags, family, socktype, protocol);
            h
        });
        let mut result = std::ptr::null_mut();
        let p = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: owned copies of the inputs, and a local out-pointer.
        let status = unsafe {
            real(
                p(&node_c),
                p(&service_c),
                hints.as_ref().map_or(std::ptr::null(), |h| h as *const _),
                &mut result,
            )
        };
        tx.put(Lookup { status, result });
    };
    if std::thread::Builder::new()
        .name("coro-getaddrinfo".into())
        .spawn(lookup)
        .is_err()
    {
        // No thread to spare: look it up here, blocking the worker.
        // SAFETY: forwarded unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    guarded(libc::EAI_SYSTEM, || {
        let mut got = answer.get();
        // SAFETY: `res` is writable by the contract; the list is handed over.
        unsafe { *res = std::mem::replace(&mut got.result, std::ptr::null_mut()) };
        got.status
    })
}
