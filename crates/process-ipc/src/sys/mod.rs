//! The operating-system calls the spawn machinery needs, each behind a safe wrapper: a nameless
//! socket pair with kernel-checked credentials, `poll` with a deadline, `getauxval(AT_SECURE)`,
//! a random nonce, a temporary umask, and ownership checks on a directory.
//!
//! The bottom layer: it imports no other module of this crate.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Who sent a message or created a socket, as the kernel vouches for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Creds {
    /// The process id (in this process's pid namespace).
    pub(crate) pid: i32,
    /// The effective user id.
    pub(crate) uid: u32,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
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

/// Waits until `fd` is readable or `deadline` passes. `Ok(false)` on timeout.
pub(crate) fn wait_readable(fd: RawFd, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up, so a wait never ends early and spins.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Calls `look` until it finds something, for up to `time`, yielding the CPU between looks (the
/// peer we wait for may share it); `None` if nothing came in time, and then sleeping until it
/// comes is the caller's. Used wherever an answer usually comes within microseconds: taken
/// this way it costs no sleep and wake-up, which on this kind of VM cost more than the rest of
/// the exchange. The clock is read only if the first look finds nothing.
pub(crate) fn look_for<T>(time: Duration, mut look: impl FnMut() -> Option<T>) -> Option<T> {
    if let Some(found) = look() {
        return Some(found);
    }
    if time.is_zero() {
        return None;
    }
    let until = Instant::now() + time;
    loop {
        std::thread::yield_now();
        if let Some(found) = look() {
            return Some(found);
        }
        if Instant::now() >= until {
            return None;
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

/// `getauxval(AT_SECURE)`: the kernel runs this process with more privilege than its invoker
/// (setuid, setgid or file capabilities), so its environment is not to be trusted.
pub(crate) fn at_secure() -> bool {
    // SAFETY: getauxval has no preconditions; 0 means "not set" or "not secure".
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The parent's pid.
pub(crate) fn ppid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// Whether the calling thread is the process's only one, asked of the kernel in one system
/// call and no file: `unshare(CLONE_THREAD)` (which implies `CLONE_SIGHAND` and `CLONE_VM`)
/// changes nothing for a single-threaded process and is refused with `EINVAL` for one with
/// other threads. A refusal for any other reason (a seccomp filter, say) also answers `false`.
pub(crate) fn single_threaded() -> bool {
    // SAFETY: unshare with these flags either fails or, for a process with one thread, is a
    // no-op; it touches no memory of ours.
    unsafe { libc::unshare(libc::CLONE_THREAD) == 0 }
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

/// Sends `signal` to `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory preconditions.
    check(unsafe { libc::kill(pid as i32, signal) })?;
    Ok(())
}

/// A child process started by [`spawn_self`]: its pid, until it is reaped.
#[derive(Debug)]
pub(crate) struct Child {
    pid: libc::pid_t,
    status: Option<std::process::ExitStatus>,
}

impl Child {
    /// The child's pid.
    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    fn reap(&mut self, flags: libc::c_int) -> io::Result<Option<std::process::ExitStatus>> {
        use std::os::unix::process::ExitStatusExt;
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        loop {
            // SAFETY: a valid out pointer; the pid is our unreaped child.
            let rc = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if rc == self.pid {
                let status = std::process::ExitStatus::from_raw(raw);
                self.status = Some(status);
                return Ok(Some(status));
            }
            if rc == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits for the child to exit and reaps it.
    pub(crate) fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        self.reap(0)
            .map(|s| s.expect("a blocking waitpid returns a status"))
    }

    /// Reaps the child if it has exited; `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// SIGKILL, unless it was already reaped (then its pid may name another process).
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        kill(self.pid as u32, libc::SIGKILL)
    }
}

/// Starts `/proc/self/exe` again with the current environment plus `env`, inheriting stdio and
/// exactly the extra descriptors in `keep` (close-on-exec here; `posix_spawn`'s dup2 of a
/// descriptor onto itself clears the flag in the child only). `posix_spawn` starts the child
/// without copying this process's address space, unlike a `fork`.
pub(crate) fn spawn_self(env: &[(&str, &str)], keep: &[RawFd]) -> io::Result<Child> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the environment")
        })
    };
    let path = cstr(b"/proc/self/exe")?;
    let mut vars: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        if env.iter().any(|(k, _)| key.as_bytes() == k.as_bytes()) {
            continue;
        }
        let mut entry = key.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        if let Ok(c) = CString::new(entry) {
            vars.push(c);
        }
    }
    for (key, value) in env {
        vars.push(cstr(format!("{key}={value}").as_bytes())?);
    }
    let mut envp: Vec<*mut libc::c_char> = vars.iter().map(|v| v.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());
    let argv: [*mut libc::c_char; 2] = [path.as_ptr() as *mut _, std::ptr::null_mut()];

    struct Actions(libc::posix_spawn_file_actions_t);
    impl Drop for Actions {
        fn drop(&mut self) {
            // SAFETY: initialised in spawn_self before this guard exists.
            unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
        }
    }
    struct Attr(libc::posix_spawnattr_t);
    impl Drop for Attr {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
        }
    }
    let rc_err = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    };
    // SAFETY: plain data, initialised by the init calls right below before any other use.
    let mut actions = Actions(unsafe { std::mem::zeroed() });
    // SAFETY: a valid pointer to storage for the actions.
    rc_err(unsafe { libc::posix_spawn_file_actions_init(&mut actions.0) })?;
    for &fd in keep {
        // SAFETY: initialised actions; fd is a descriptor of ours.
        rc_err(unsafe { libc::posix_spawn_file_actions_adddup2(&mut actions.0, fd, fd) })?;
    }
    // SAFETY: as above.
    let mut attr = Attr(unsafe { std::mem::zeroed() });
    // SAFETY: a valid pointer to storage for the attributes.
    rc_err(unsafe { libc::posix_spawnattr_init(&mut attr.0) })?;
    // Like std: the child starts with no signal blocked and SIGPIPE at its default.
    // SAFETY: sigset_t is plain data; the sigset calls initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to initialised attributes and sets throughout.
    unsafe {
        libc::sigemptyset(&mut set);
        rc_err(libc::posix_spawnattr_setsigmask(&mut attr.0, &set))?;
        libc::sigaddset(&mut set, libc::SIGPIPE);
        rc_err(libc::posix_spawnattr_setsigdefault(&mut attr.0, &set))?;
        rc_err(libc::posix_spawnattr_setflags(
            &mut attr.0,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        ))?;
    }
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid and NUL-terminated where required, and outlives the call.
    rc_err(unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            &actions.0,
            &attr.0,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    })?;
    Ok(Child { pid, status: None })
}

impl Child {
    /// Takes charge of `pid`, a child of this process started by other means than
    /// [`spawn_self`] (the fork server clones with `CLONE_PARENT`, so its children are ours).
    pub(crate) fn adopt(pid: u32) -> Child {
        Child {
            pid: pid as libc::pid_t,
            status: None,
        }
    }
}

/// What the main thread of this process needs a forked copy of itself to re-register with the
/// kernel, as libc's `fork` does: the address of its thread id word and its robust-futex list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadRegs {
    tid_address: usize,
    robust_head: usize,
    robust_len: usize,
}

/// Reads [`ThreadRegs`] of the calling thread. `tid_address` is 0 where the kernel does not
/// tell it (`PR_GET_TID_ADDRESS` needs checkpoint/restore support).
pub(crate) fn thread_regs() -> ThreadRegs {
    let mut tid_address: usize = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer-sized value to a valid address.
    let rc = unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address as *mut usize) };
    if rc != 0 {
        tid_address = 0;
    }
    let mut robust_head: usize = 0;
    let mut robust_len: libc::size_t = 0;
    // SAFETY: get_robust_list of the calling thread (pid 0) writes a pointer and a length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut robust_head as *mut usize,
            &mut robust_len as *mut libc::size_t,
        )
    };
    if rc != 0 {
        robust_head = 0;
    }
    ThreadRegs {
        tid_address,
        robust_head,
        robust_len,
    }
}

/// `clone(CLONE_PARENT)`: a copy of this (single-threaded) process whose parent is this
/// process's parent, so that process can wait for it, reap it and read its exit status as for
/// any child of its own. Returns the new pid here and 0 in the copy, like `fork`.
///
/// Unlike libc's `fork` it runs no `pthread_atfork` handlers; the caller must be
/// single-threaded and hold no lock. The copy re-registers the thread id word and the robust
/// futex list with the kernel as libc's `fork` does, from `regs` read in this process.
pub(crate) fn clone_parent(regs: &ThreadRegs) -> io::Result<u32> {
    /// The kernel's `struct clone_args`, first version (64 bytes, Linux 5.3).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let mut flags = libc::CLONE_PARENT as u64;
    if regs.tid_address != 0 {
        // The kernel writes the copy's thread id where libc keeps it, so libc's idea of "this
        // thread" is right in the copy.
        flags |= (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    }
    let args = CloneArgs {
        flags,
        pidfd: 0,
        child_tid: regs.tid_address as u64,
        parent_tid: 0,
        // With CLONE_PARENT the kernel takes this process's own exit signal (SIGCHLD, as it was
        // spawned) and refuses any other value than 0 here.
        exit_signal: 0,
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: a fork-like clone3 (no CLONE_VM, no new stack): the copy runs on its own copy of
    // this stack and address space; `args` is a valid clone_args of the stated size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 && regs.robust_head != 0 {
        // SAFETY: the list head is libc's for this thread, copied with the address space.
        unsafe { libc::syscall(libc::SYS_set_robust_list, regs.robust_head, regs.robust_len) };
    }
    Ok(rc as u32)
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`, then checks that the parent is still `parent`: the
/// caller dies when the *thread* that is its parent exits (so that thread must live as long as
/// its process). False if the parent was already gone (then the caller should exit).
///
/// Both calls go through libc's generic `syscall` wrapper: a freshly forked child returns from
/// `clone3` inside it, so its code page is already mapped there, where `prctl` and `getppid`
/// would each cost the child a page fault of its own.
pub(crate) fn die_with_parent(parent: i32) -> bool {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is involved.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // SAFETY: getppid has no preconditions and cannot fail.
    let ppid = unsafe { libc::syscall(libc::SYS_getppid) };
    // Set before the check: a parent that dies after it is caught by the signal.
    rc == 0 && ppid == libc::c_long::from(parent)
}
