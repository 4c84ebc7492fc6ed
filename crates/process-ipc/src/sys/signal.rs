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
