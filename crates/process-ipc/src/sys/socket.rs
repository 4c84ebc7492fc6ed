//! Sockets, descriptors and files: a nameless socket pair with kernel-checked credentials,
//! messages with `SCM_CREDENTIALS`, a pipe, a random nonce, a temporary umask, and the ownership
//! checks on a socket's directory.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::process::euid;
use super::{check, look_for, wait_readable};

/// Who sent a message or created a socket, as the kernel vouches for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Creds {
    /// The process id (in this process's pid namespace).
    pub(crate) pid: i32,
    /// The effective user id.
    pub(crate) uid: u32,
}

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, both close-on-exec. The pair has no name
/// in any filesystem or namespace, so only a process that inherits one end can speak on it.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `SO_PEERCRED`: the credentials the kernel recorded for the peer of a connected Unix socket
/// (for a socket pair: the process that created the pair).
pub(crate) fn peer_creds(fd: RawFd) -> io::Result<Creds> {
    // SAFETY: ucred is plain data; getsockopt fills it and its length.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid out pointers of the stated length.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(Creds {
        pid: cred.pid,
        uid: cred.uid,
    })
}

/// `SO_PASSCRED`: every message received on `fd` from now on carries its sender's credentials.
pub(crate) fn pass_creds(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid pointer to an int option value of the stated length.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Sends one message (a whole datagram of the seqpacket pair); never raises SIGPIPE.
pub(crate) fn send(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: a valid buffer of the stated length.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads what `fd` has into `buf` without sleeping, polling for at most `spin` while nothing is
/// there: `Some(n)` once a read did not block (`n` bytes, 0 at end of stream), `None` if
/// nothing came in time (then a blocking read is the caller's). A reply that comes within a
/// few microseconds is then taken without the sleep and wake-up, which on this kind of VM cost
/// more than the rest of the exchange. Between polls the CPU goes to any other runnable
/// thread (the peer we wait for may share it).
pub(crate) fn recv_within(fd: RawFd, buf: &mut [u8], spin: Duration) -> io::Result<Option<usize>> {
    look_for(spin, || {
        // SAFETY: a live buffer of the stated length; MSG_DONTWAIT never blocks.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Some(Ok(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
            _ => Some(Err(e)),
        }
    })
    .transpose()
}

/// One received message.
#[derive(Debug)]
pub(crate) enum Received {
    /// The bytes, and the sender's credentials when the socket has [`pass_creds`] on.
    Message(Vec<u8>, Option<Creds>),
    /// The peer closed its end (it exited, or closed the descriptor).
    Closed,
    /// Nothing arrived before the deadline.
    TimedOut,
}

/// Receives one message of at most `max` bytes, waiting until `deadline`.
pub(crate) fn recv(fd: RawFd, max: usize, deadline: Instant) -> io::Result<Received> {
    if !wait_readable(fd, deadline)? {
        return Ok(Received::TimedOut);
    }
    let mut buf = vec![0u8; max];
    // Room for one SCM_CREDENTIALS control message, u64-aligned.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; the fields that matter are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            // The peer closed with our message unread: it is gone all the same.
            io::ErrorKind::ConnectionReset => return Ok(Received::Closed),
            _ => return Err(e),
        }
    };
    if n == 0 {
        return Ok(Received::Closed);
    }
    buf.truncate(n);
    let mut creds = None;
    // SAFETY: walking the control buffer recvmsg filled, with the libc CMSG helpers, reading
    // a ucred only from a header the kernel marked SCM_CREDENTIALS.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
            {
                let cred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::ucred>());
                creds = Some(Creds {
                    pid: cred.pid,
                    uid: cred.uid,
                });
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received::Message(buf, creds))
}

/// Marks `fd` close-on-exec (`on`) or inheritable (`!on`). Only `fcntl`: safe to call between
/// `fork` and `exec`.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl on a descriptor number; a bad number is an EBADF error, not UB.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) })?;
    Ok(())
}

/// A pipe whose both ends are close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sixteen bytes from the kernel's random source.
pub(crate) fn nonce() -> io::Result<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut filled = 0;
    while filled < out.len() {
        // SAFETY: writes at most the remaining length into `out`.
        let n =
            unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), out.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(out)
}

/// Runs `f` with the umask set to `mask`, then restores it. The umask belongs to the whole
/// process: call this only while no other thread can be creating files (a child's bootstrap,
/// before `main`, or a single-threaded test helper).
pub(crate) fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    struct Restore(libc::mode_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(self.0) };
        }
    }
    // SAFETY: umask cannot fail.
    let _restore = Restore(unsafe { libc::umask(mask) });
    f()
}

/// Test support: unit tests that change the umask take this first, so that two of them never
/// interleave their changes (the umask belongs to the whole test process).
#[cfg(test)]
pub(crate) static UMASK_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lstat(path: &Path) -> io::Result<libc::stat> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: stat is plain data, fully written by a successful lstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and out pointer.
    check(unsafe { libc::lstat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

/// Checks that `socket` is a socket owned by this effective uid inside a real directory (not a
/// symlink) that this uid owns and nobody else may enter (no group or other bits): then no other
/// user can have made, replaced or connected to it.
pub(crate) fn check_private_socket(socket: &Path) -> Result<(), String> {
    let dir = socket
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", socket.display()))?;
    let me = euid();
    let d = lstat(dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
    if d.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if d.st_uid != me {
        return Err(format!(
            "{} belongs to uid {}, not to this process's uid {me}",
            dir.display(),
            d.st_uid
        ));
    }
    if d.st_mode & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:o}: other users may enter it",
            dir.display(),
            d.st_mode & 0o777
        ));
    }
    let s = lstat(socket).map_err(|e| format!("cannot stat {}: {e}", socket.display()))?;
    if s.st_mode & libc::S_IFMT != libc::S_IFSOCK || s.st_uid != me {
        return Err(format!("{} is not a socket of uid {me}", socket.display()));
    }
    Ok(())
}

/// Whether this process may create entries in directory `dir` (`access(W_OK | X_OK)`).
pub(crate) fn writable_dir(dir: &str) -> bool {
    let Ok(dir) = CString::new(dir) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Blocks until a read of `fd` returns (the lifeline: nobody writes to it, so that is its
/// end-of-file, when the parent's write end closed as it died, or an error).
pub(crate) fn wait_eof(fd: RawFd) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a valid local buffer.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

/// Whether descriptor `fd` is open (`fcntl(F_GETFD)`).
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only asks whether `fd` is open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// `/dev/null` opened for reading and writing, close-on-exec, on the lowest free descriptor.
pub(crate) fn open_dev_null() -> Option<OwnedFd> {
    // SAFETY: a valid C string; the result is checked.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    // SAFETY: a descriptor just opened, owned by nobody else.
    (null >= 0).then(|| unsafe { OwnedFd::from_raw_fd(null) })
}
