//! Processes: who this one is, starting a copy of it (`posix_spawn` of `/proc/self/exe`, or a
//! `clone3` fork of a single-threaded one), waiting for and reaping a child, and following one
//! through a pidfd, and leaving at once (`_exit`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::check;
use super::signal::kill;

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

/// A child process started by [`spawn_self`]: its pid, until it is reaped.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: libc::pid_t,
    status: Option<std::process::ExitStatus>,
}

impl ChildProcess {
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
pub(crate) fn spawn_self(env: &[(&str, &str)], keep: &[RawFd]) -> io::Result<ChildProcess> {
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
    Ok(ChildProcess { pid, status: None })
}

impl ChildProcess {
    /// Takes charge of `pid`, a child of this process started by other means than
    /// [`spawn_self`] (the fork server clones with `CLONE_PARENT`, so its children are ours).
    pub(crate) fn adopt(pid: u32) -> ChildProcess {
        ChildProcess {
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
    let (robust_head, robust_len) = super::futex::robust_list().unwrap_or((0, 0));
    ThreadRegs {
        tid_address: super::futex::tid_address().unwrap_or(0),
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
        unsafe { super::futex::set_robust_list(regs.robust_head, regs.robust_len) };
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

/// `pidfd_open(2)`: a descriptor (close-on-exec) that follows process `pid`.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is fresh and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` has exited by `deadline` (`None`: wait as long as it
/// takes). A pidfd turns readable when its process exits, reaped or not.
pub(crate) fn has_exited(pidfd: &OwnedFd, deadline: Option<Instant>) -> bool {
    // A pidfd poll does not fail otherwise; treat the child as gone rather than hang.
    super::poll_ready(&[pidfd.as_raw_fd()], deadline).map_or(true, |ready| !ready.is_empty())
}

/// Blocks until child `pid` has exited, leaving it unreaped (`waitid` with `WNOWAIT`: its pid
/// cannot be reused before whoever holds it reaps it).
pub(crate) fn wait_exited(pid: u32) {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid place to write; WNOWAIT leaves the child a zombie.
        let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The identity of the running executable: (device, inode, size, mtime seconds, mtime nanos).
pub(crate) fn exe_identity() -> io::Result<[i64; 5]> {
    let path = CString::new("/proc/self/exe").expect("no interior NUL");
    // SAFETY: `stat` is plain old data, fully written by a successful stat(2).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a valid out pointer.
    check(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok([
        st.st_dev as i64,
        st.st_ino as i64,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
    ])
}

/// Sets this thread's (in a child before `main`: the process's) name, cut to 15 bytes; `ps`
/// and `top` show it.
pub(crate) fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name
        .trim_end()
        .bytes()
        .filter(|&b| b != 0)
        .take(15)
        .collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a valid pointer.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Test faults only: a plain `fork(2)`, 0 in the copy. The caller must be single-threaded.
#[cfg(any(test, feature = "test-fault"))]
pub(crate) fn fork_single_threaded() -> io::Result<u32> {
    // SAFETY: the callers (a child's bootstrap before `main`) are single-threaded, so the copy
    // holds no lock another thread had taken.
    let pid = unsafe { libc::fork() };
    check(pid).map(|p| p as u32)
}

/// Test faults only: `setuid(uid)`.
#[cfg(any(test, feature = "test-fault"))]
pub(crate) fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid has no memory preconditions.
    check(unsafe { libc::setuid(uid) }).map(drop)
}

/// `_exit(2)`: ends the process at once with `code`, running nothing more of it (no exit
/// handlers, no destructors, no stream flushes).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process; no memory of ours is touched.
    unsafe { libc::_exit(code) }
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG)`: reaps the exited child behind `pidfd`; nothing if it
/// runs still, and ECHILD (reaped by someone else first) is fine.
pub(crate) fn reap_pidfd(pidfd: &OwnedFd) {
    const P_PIDFD: libc::idtype_t = 3;
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pidfd and a siginfo_t owned by this frame.
    unsafe {
        libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
}

/// `pthread_atfork`: `prepare` runs in the process about to fork, before each fork; `child` in
/// the copy, after. Both must be async-signal-safe (they run inside `fork`).
pub(crate) fn at_fork(prepare: Option<extern "C" fn()>, child: Option<extern "C" fn()>) {
    let as_unsafe = |f: extern "C" fn()| f as unsafe extern "C" fn();
    // SAFETY: registers plain `extern "C" fn()`s that live as long as the program.
    unsafe { libc::pthread_atfork(prepare.map(as_unsafe), None, child.map(as_unsafe)) };
}
