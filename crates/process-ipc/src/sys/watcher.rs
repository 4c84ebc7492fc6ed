//! The unlink watcher behind `SharedMemoryManager`: a process of its own that keeps the names
//! sent to it on a socket and, when the other end closes (however the sender ended), unlinks
//! each of them in one directory and exits. It is forked twice (so it belongs to no one and
//! needs no reaping), runs in its own session, closes every other descriptor, and does only
//! what is safe after `fork` in a threaded program: reads into a buffer made before the fork,
//! `unlinkat`, `_exit`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::check;

/// Starts a watcher of names in directory `dir` that holds at most `list_bytes` bytes of names
/// (each name and a newline); this end of its socket. Send names with [`send_names`].
pub(crate) fn start_unlink_watcher(dir: &OwnedFd, list_bytes: usize) -> io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: two descriptors we just made and own.
    let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Made before the fork: the watcher may not allocate.
    let mut buffer = vec![0u8; list_bytes];
    // SAFETY: fork; the child runs only `watch` (async-signal-safe calls) and `_exit`.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: in the new child: setsid, a second fork, then the watcher, which never
        // returns.
        unsafe {
            libc::setsid();
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            watch(
                theirs.as_raw_fd(),
                mine.as_raw_fd(),
                dir.as_raw_fd(),
                &mut buffer,
            )
        }
    }
    drop(theirs);
    // The first child exits at once (its child, the watcher, goes on alone).
    let mut status = 0;
    // SAFETY: waits for our own child; a reaper elsewhere taking it first is harmless.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(mine)
}

/// Sends `bytes` (whole lines of names) to the watcher on `sock`: how many went (a stream may
/// take fewer). A dead watcher is an error, never a SIGPIPE.
pub(crate) fn send_names(sock: &OwnedFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: sends our bytes on our socket; MSG_NOSIGNAL: no SIGPIPE.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The watcher: keeps the names that arrive on `sock` in `buffer` until the other end closes,
/// then unlinks each in `dir` and exits. Only async-signal-safe calls, no allocation.
///
/// # Safety
/// Only in a child just forked, with these descriptors open.
unsafe fn watch(sock: i32, other: i32, dir: i32, buffer: &mut [u8]) -> ! {
    // SAFETY: descriptor juggling in our own process: the socket to 0, the directory to 1,
    // every other descriptor closed (the manager's end among them, or EOF never comes).
    unsafe {
        libc::close(other);
        // Above 2 first: the socket or the directory may itself be 0 or 1.
        let (sock, dir) = (
            libc::fcntl(sock, libc::F_DUPFD, 3),
            libc::fcntl(dir, libc::F_DUPFD, 3),
        );
        libc::dup2(sock, 0);
        libc::dup2(dir, 1);
        let closed = libc::syscall(libc::SYS_close_range, 2u32, u32::MAX, 0u32);
        if closed != 0 {
            for fd in 2..4096 {
                libc::close(fd);
            }
        }
    }
    let mut used = 0;
    loop {
        if used == buffer.len() {
            break;
        }
        // SAFETY: reads into the unused part of our buffer.
        let n = unsafe { libc::read(0, buffer[used..].as_mut_ptr().cast(), buffer.len() - used) };
        if n > 0 {
            used += n as usize;
        } else if n == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    // Complete lines only: a name is followed by its newline.
    let complete = buffer[..used]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |last| last + 1);
    for line in buffer[..complete].split(|b| *b == b'\n') {
        let end = line.len();
        if end == 0 || end >= 256 || line.contains(&b'/') || line.contains(&0) {
            continue;
        }
        let mut name = [0u8; 256];
        name[..end].copy_from_slice(line);
        // SAFETY: a NUL-terminated name relative to the directory on descriptor 1; names
        // hold no '/' (checked above).
        unsafe { libc::unlinkat(1, name.as_ptr().cast(), 0) };
    }
    // SAFETY: ends the watcher without running anything of the parent's.
    unsafe { libc::_exit(0) }
}
