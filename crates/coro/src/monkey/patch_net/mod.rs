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
//! - `listen` raises a backlog below the system's largest to it (see
//!   `coro::monkey::raise_listen_backlog`).
//! - `close`, `dup2`, `dup3`, `fcntl`/`fcntl64` (`F_SETFL`), `ioctl` (`FIONBIO`) and
//!   `setsockopt` forward unchanged, always, and tell the poller the fd changed: a fd
//!   stays in the poller's epoll set, and its mode and timeouts stay known, from one
//!   wait to the next until one of these (or an `accept` handing out its number) says
//!   otherwise (`fdhooks`). A fd closed behind them (`close_range`, a raw system call)
//!   and then reused by `dup`/`fcntl(F_DUPFD)` would keep a stale registration.
//!
//! A greenlet killed inside one of these calls sees it fail with `ECANCELED`
//! (not `EINTR`, which std's `read_exact`/`write_all` would retry forever) and
//! is stopped at its next switch point outside the hook (unwinding cannot
//! cross an `extern "C"` function); its `get` says `Killed`, and a panic that
//! follows (an `unwrap` of that error) prints nothing. The exact rules are in
//! `coro::monkey`'s "Kills" section.

use std::ffi::{CStr, CString, c_void};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libc::{c_char, c_int, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t};

use super::poller::{self, Facts, READ, Ready, WRITE};

mod conn;
mod data;
mod dns;
mod fdhooks;
mod poll;

/// Whether a hooked call should cooperate: patched, and inside a coroutine.
#[inline]
fn active() -> bool {
    super::flag::is_patched() && may::coroutine::is_coroutine()
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
fn ask_nonblocking(fd: RawFd) -> bool {
    let flags = fdhooks::fcntl_unhooked(fd, libc::F_GETFL, 0);
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

/// What a hook needs to know of socket `fd` before it waits: asked of the kernel once
/// per generation of the fd (see `poller`), not at every wait.
fn socket_facts(fd: RawFd) -> Facts {
    let facts = poller::facts(fd, || Facts {
        nonblocking: ask_nonblocking(fd),
        receive_timeout: ask_timeout(fd, libc::SO_RCVTIMEO),
        send_timeout: ask_timeout(fd, libc::SO_SNDTIMEO),
    });
    if fdhooks::MODE_HOOKED {
        facts
    } else {
        // Without the fcntl/ioctl hooks a cached mode could be stale.
        Facts {
            nonblocking: ask_nonblocking(fd),
            ..facts
        }
    }
}

/// The socket timeout `option` (`SO_RCVTIMEO`/`SO_SNDTIMEO`) as a deadline from now.
fn socket_deadline(facts: &Facts, option: c_int) -> Option<Instant> {
    let timeout = if option == libc::SO_SNDTIMEO {
        facts.send_timeout
    } else {
        facts.receive_timeout
    };
    timeout.map(crate::timer::deadline_after)
}

/// The socket's `SO_RCVTIMEO`/`SO_SNDTIMEO` (`None`: no timeout).
fn ask_timeout(fd: RawFd, option: c_int) -> Option<Duration> {
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
    Some(Duration::new(
        tv.tv_sec.max(0) as u64,
        (tv.tv_usec.max(0) as u32) * 1000,
    ))
}

/// Runs `f`, turning a kill (may's cancel unwinding) into `ECANCELED`: it must not cross
/// `extern "C"`. may keeps the cancel request, so the next switch point outside stops it.
fn guarded<R>(interrupted: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            set_errno(libc::ECANCELED);
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
    let facts = socket_facts(fd);
    if facts.nonblocking {
        set_errno(libc::EAGAIN);
        return r;
    }
    let deadline = socket_deadline(&facts, timeout_option);
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
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
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
real_fn!(real_listen = c"listen": ListenFn);
real_fn!(real_poll = c"poll": PollFn);
real_fn!(real_select = c"select": SelectFn);
real_fn!(real_getaddrinfo = c"getaddrinfo": GetAddrInfoFn);

/// Resolves every real function up front (at `patch_all`), so no hook looks one up mid-call.
pub(super) fn resolve_real() {
    fdhooks::resolve();
    let _ = (real_recv(), real_recvfrom(), real_send(), real_sendto());
    let _ = (real_read(), real_write(), real_readv(), real_writev());
    let _ = (
        real_recvmsg(),
        real_sendmsg(),
        real_connect(),
        real_accept4(),
    );
    let _ = (
        real_poll(),
        real_select(),
        real_getaddrinfo(),
        real_listen(),
    );
    // Name the hooks so the object that defines them is always linked in.
    std::hint::black_box([
        data::recv as *const (),
        data::recvfrom as *const (),
        data::send as *const (),
        data::sendto as *const (),
        data::read as *const (),
        data::write as *const (),
        data::readv as *const (),
        data::writev as *const (),
        conn::connect as *const (),
        conn::accept as *const (),
        conn::accept4 as *const (),
        conn::listen as *const (),
        poll::poll as *const (),
        poll::select as *const (),
        dns::getaddrinfo as *const (),
    ]);
}

/// `-1` with `ENOSYS`: glibc's function could not be found (never expected with glibc).
fn missing<R: From<i8>>() -> R {
    set_errno(libc::ENOSYS);
    R::from(-1)
}
