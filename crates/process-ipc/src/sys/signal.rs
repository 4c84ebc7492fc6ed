//! Signals and exit hooks: sending a signal (to a pid, or through a pidfd so a reused
//! pid is never hit), ignoring SIGPIPE, and an `atexit(3)` hook.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::check;

/// Sends `signal` to `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory preconditions.
    check(unsafe { libc::kill(pid as i32, signal) })?;
    Ok(())
}

/// `pidfd_send_signal(2)`: signals the process behind `pidfd` (never a reused pid).
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo (null) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SIGPIPE ignored, the disposition std's runtime sets before `main`: a write to a closed
/// socket then becomes an error value instead of killing the process.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN touches no memory of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// `atexit(3)`: `hook` runs when `main` returns or `std::process::exit` is called. It must not
/// unwind. The error is libc's refusal (a full table of exit handlers).
pub(crate) fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `hook` is a plain `extern "C" fn()` that lives as long as the program; atexit(3)
    // only stores it.
    if unsafe { libc::atexit(hook) } != 0 {
        return Err(io::Error::other(
            "atexit(3) refused the exit hook (its table is full)",
        ));
    }
    Ok(())
}

/// A self-pipe for a signal handler: (read end, write end), both close-on-exec and
/// non-blocking (a handler's write never blocks; a full pipe already says "woken").
pub(crate) fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: both descriptors are fresh and owned by nothing else.
    Ok(unsafe {
        (
            std::os::fd::FromRawFd::from_raw_fd(fds[0]),
            std::os::fd::FromRawFd::from_raw_fd(fds[1]),
        )
    })
}

/// Waits until the self-pipe's read end `read` is readable, then reads one byte from it;
/// `None` if no byte came (a spurious wake-up, or another reader took it).
pub(crate) fn read_self_pipe(read: &OwnedFd) -> Option<u8> {
    let mut poll = libc::pollfd {
        fd: read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, -1) };
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a live local.
    let n = unsafe { libc::read(read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
    (n == 1).then_some(byte)
}

/// Installs `handler` for `signal` (`SA_RESTART`, nothing blocked while it runs).
pub(crate) fn handle_signal(
    signal: libc::c_int,
    handler: extern "C" fn(libc::c_int),
) -> io::Result<()> {
    // SAFETY: sigaction is plain data, zero is a valid start; the handler is an `extern "C"`
    // function, and making it async-signal-safe is the caller's.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        check(libc::sigaction(signal, &action, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Restores the default action of `signal` and raises it (async-signal-safe).
pub(crate) fn raise_default(signal: libc::c_int) {
    // SAFETY: sigaction with SIG_DFL and raise are async-signal-safe and take plain data.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
        libc::raise(signal);
    }
}

/// From a signal handler: writes `byte` to `fd` (a non-blocking self-pipe), leaving `errno` as
/// the interrupted code had it. Async-signal-safe.
pub(crate) fn write_byte_from_handler(fd: libc::c_int, byte: u8) {
    // SAFETY: __errno_location and write are async-signal-safe; the byte lives on this frame;
    // errno is restored before returning.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}
