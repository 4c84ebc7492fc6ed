//! Hooks that only tell the poller a fd changed: `close`, `dup2`, `dup3`, `fcntl(F_SETFL)`,
//! `ioctl(FIONBIO)` and `setsockopt`.
//!
//! The poller keeps a fd in its epoll set, and the hooks keep its mode and timeouts,
//! from one wait to the next (see `super::super::poller`). These calls are how that
//! knowledge goes stale, so each bumps the fd's generation (lock-free, no allocation:
//! they run in forked children and everywhere else) and forwards the call unchanged.
//! They do so patched or not, in coroutines or not.
//!
//! glibc's own function is used once `patch_all` has looked it up; before that (and so
//! in a child forked before any lookup, where `dlsym` could deadlock) the hook makes the
//! system call itself, which is what glibc's wrapper does on 64-bit Linux.
//!
//! `fcntl` and `ioctl` are variadic in C; the hooks take the one optional argument as a
//! word, which is how x86-64 and AArch64 Linux pass it either way. On other targets they
//! are not hooked, and the non-blocking mode is asked of the kernel at every wait.

use super::*;

/// glibc's function if `patch_all` looked it up already; never calls `dlsym` itself.
macro_rules! resolved_fn {
    ($getter:ident, $cache:ident = $sym:literal : $ty:ty) => {
        static $cache: AtomicUsize = AtomicUsize::new(0);
        fn $getter() -> Option<$ty> {
            let f = $cache.load(Ordering::Acquire);
            // SAFETY: `f` is glibc's function of this name, whose C signature `$ty` is.
            (f != 0).then(|| unsafe { std::mem::transmute::<usize, $ty>(f) })
        }
    };
}

type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type SetSockOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type FcntlFn = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type IoctlFn = unsafe extern "C" fn(c_int, libc::c_ulong, ...) -> c_int;

resolved_fn!(real_close, REAL_CLOSE = c"close": CloseFn);
resolved_fn!(real_dup2, REAL_DUP2 = c"dup2": Dup2Fn);
resolved_fn!(real_dup3, REAL_DUP3 = c"dup3": Dup3Fn);
resolved_fn!(real_setsockopt, REAL_SETSOCKOPT = c"setsockopt": SetSockOptFn);
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
resolved_fn!(real_fcntl, REAL_FCNTL = c"fcntl": FcntlFn);
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
resolved_fn!(real_ioctl, REAL_IOCTL = c"ioctl": IoctlFn);

/// Whether the mode hooks (`fcntl`, `ioctl`) are in place, so a cached mode stays true.
pub(super) const MODE_HOOKED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Looks up glibc's functions for these hooks (at `patch_all`, outside any fork).
pub(super) fn resolve() {
    let look = |cache: &AtomicUsize, name: &CStr| {
        if cache.load(Ordering::Acquire) == 0 {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only reads.
            let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
            cache.store(f, Ordering::Release);
        }
    };
    look(&REAL_CLOSE, c"close");
    look(&REAL_DUP2, c"dup2");
    look(&REAL_DUP3, c"dup3");
    look(&REAL_SETSOCKOPT, c"setsockopt");
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        look(&REAL_FCNTL, c"fcntl");
        look(&REAL_IOCTL, c"ioctl");
    }
    std::hint::black_box([
        close as *const (),
        dup2 as *const (),
        dup3 as *const (),
        setsockopt as *const (),
    ]);
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    std::hint::black_box([fcntl as *const (), fcntl64 as *const (), ioctl as *const ()]);
}

/// A raw system call's answer as a C `int` (-1 with errno set on failure).
fn as_int(r: libc::c_long) -> c_int {
    r as c_int
}

/// The hook for `close(2)`.
///
/// # Safety
/// `close`'s contract (it takes no pointer).
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn close(fd: c_int) -> c_int {
    // Before: no wait may start on this fd's old registration. After: a fd of the same
    // number made by another thread in between re-registers (harmless) rather than
    // trusting this file's registration.
    poller::invalidate(fd);
    let r = match real_close() {
        // SAFETY: forwarded unchanged.
        Some(real) => unsafe { real(fd) },
        // SAFETY: close takes an int.
        None => as_int(unsafe { libc::syscall(libc::SYS_close, fd) }),
    };
    poller::invalidate(fd);
    r
}

/// The hook for `dup2(2)`: `new` may have named another file.
///
/// # Safety
/// `dup2`'s contract (it takes no pointer).
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    poller::invalidate(new);
    let r = match real_dup2() {
        // SAFETY: forwarded unchanged.
        Some(real) => unsafe { real(old, new) },
        // dup2 onto itself only checks `old` is open (dup3 would refuse it).
        // SAFETY: F_GETFD takes no argument.
        None if old == new => match unsafe { libc::syscall(libc::SYS_fcntl, old, libc::F_GETFD) } {
            r if r < 0 => -1,
            _ => new,
        },
        // SAFETY: dup3 takes ints.
        None => as_int(unsafe { libc::syscall(libc::SYS_dup3, old, new, 0) }),
    };
    poller::invalidate(new);
    r
}

/// The hook for `dup3(2)`: `new` may have named another file.
///
/// # Safety
/// `dup3`'s contract (it takes no pointer).
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    poller::invalidate(new);
    let r = match real_dup3() {
        // SAFETY: forwarded unchanged.
        Some(real) => unsafe { real(old, new, flags) },
        // SAFETY: dup3 takes ints.
        None => as_int(unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) }),
    };
    poller::invalidate(new);
    r
}

/// The hook for `setsockopt(2)`: a socket's `SO_RCVTIMEO`/`SO_SNDTIMEO` may change.
///
/// # Safety
/// `setsockopt`'s contract: `value` readable for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    let r = match real_setsockopt() {
        // SAFETY: forwarded unchanged.
        Some(real) => unsafe { real(fd, level, name, value, len) },
        // SAFETY: forwarded unchanged, as the system call.
        None => as_int(unsafe { libc::syscall(libc::SYS_setsockopt, fd, level, name, value, len) }),
    };
    if level == libc::SOL_SOCKET {
        poller::invalidate(fd);
    }
    r
}

/// `fcntl` as glibc's, without telling the poller (the hooks' own mode switches).
pub(super) fn fcntl_unhooked(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if let Some(real) = real_fcntl() {
        // SAFETY: forwarded with its int argument.
        return unsafe { real(fd, cmd, arg) };
    }
    // SAFETY: F_GETFL/F_SETFL take an int.
    as_int(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })
}

/// `fcntl` and `fcntl64` (the same on 64-bit): `F_SETFL` may change `O_NONBLOCK`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn fcntl_hooked(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    let r = match real_fcntl() {
        // SAFETY: forwarded with its one optional argument, as the caller passed it.
        Some(real) => unsafe { real(fd, cmd, arg) },
        // SAFETY: forwarded unchanged, as the system call.
        None => as_int(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) }),
    };
    if cmd == libc::F_SETFL {
        poller::invalidate(fd);
    }
    r
}

/// The hook for `fcntl(2)`.
///
/// # Safety
/// `fcntl`'s contract; `arg` is its optional argument (an int or a pointer).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    fcntl_hooked(fd, cmd, arg)
}

/// The hook for `fcntl64` (what C compiled for 64-bit file offsets calls).
///
/// # Safety
/// As [`fcntl`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    fcntl_hooked(fd, cmd, arg)
}

/// The hook for `ioctl(2)`: `FIONBIO` (std's `set_nonblocking`) changes `O_NONBLOCK`.
///
/// # Safety
/// `ioctl`'s contract; `arg` is its optional argument.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn ioctl(
    fd: c_int,
    request: libc::c_ulong,
    arg: libc::c_ulong,
) -> c_int {
    let r = match real_ioctl() {
        // SAFETY: forwarded with its one optional argument, as the caller passed it.
        Some(real) => unsafe { real(fd, request, arg) },
        // SAFETY: forwarded unchanged, as the system call.
        None => as_int(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) }),
    };
    if request == libc::FIONBIO as libc::c_ulong {
        poller::invalidate(fd);
    }
    r
}
