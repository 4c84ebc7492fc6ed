//! The spawn machinery: the token a child finds in its environment, the constructor that runs
//! the child's target before `main`, the lifeline that kills children with their parent, and the
//! watchdog that keeps `start()` from hanging on a child that never connects.
//!
//! How a target crosses the process boundary: the child is the same executable, so a function
//! has the same offset from [`anchor`] in both processes even under ASLR. The parent sends that
//! offset (of a monomorphized entry point) in the token, along with the identity of the
//! executable (device, inode, size, mtime); the child refuses to jump anywhere unless its own
//! `/proc/self/exe` has the same identity.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ipc_channel::ipc::IpcSender;

use crate::process::ChildMsg;

/// Environment variable that turns a re-executed binary into a child.
pub(crate) const TOKEN_VAR: &str = "PROCESS_IPC_CHILD_TOKEN";
/// The child's name, from `Process::named`.
pub(crate) const NAME_VAR: &str = "PROCESS_IPC_CHILD_NAME";
/// Test-only fault injection (see `Process::__exit_before_connect`).
pub(crate) const FAULT_VAR: &str = "PROCESS_IPC_TEST_FAULT";
/// Token format version, so a stale binary never misreads a token.
const TOKEN_VERSION: &str = "pipc1";
/// A child that neither connects nor dies in this time is killed.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// How often the watchdog looks for children that died before connecting.
const WATCH_POLL: Duration = Duration::from_millis(5);

/// Entry point of a child: receives the one-shot server name, returns the exit code.
pub(crate) type ChildEntry = fn(String) -> i32;

/// The fixed point every entry offset is measured from.
#[inline(never)]
fn anchor() -> i32 {
    std::hint::black_box(7)
}

/// Offset of `entry` from [`anchor`] in this executable.
pub(crate) fn entry_offset(entry: ChildEntry) -> isize {
    offset_of(entry as usize)
}

/// Offset of any code address from [`anchor`] in this executable.
pub(crate) fn offset_of(address: usize) -> isize {
    address.wrapping_sub(anchor as fn() -> i32 as usize) as isize
}

/// The code address at `offset` from [`anchor`] in this executable.
pub(crate) fn address_at(offset: isize) -> usize {
    (anchor as fn() -> i32 as usize).wrapping_add(offset as usize)
}

/// The identity of the running executable: (device, inode, size, mtime seconds, mtime nanos).
fn exe_identity() -> std::io::Result<[i64; 5]> {
    let path = CString::new("/proc/self/exe").expect("no interior NUL");
    // SAFETY: `stat` is plain old data, fully written by a successful stat(2).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a valid out pointer.
    let rc = unsafe { libc::stat(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok([
        st.st_dev as i64,
        st.st_ino as i64,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
    ])
}

/// The parent's side of the lifeline pipe: the write end never closes while this process lives;
/// children inherit the read end and exit when a read returns end-of-file.
fn lifeline_read_fd() -> std::io::Result<i32> {
    static LIFELINE: OnceLock<Result<i32, i32>> = OnceLock::new();
    let fd = LIFELINE.get_or_init(|| {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // The read end must survive exec; the write end stays close-on-exec and is never closed.
        // SAFETY: fds[0] is the pipe's read end we just created.
        if unsafe { libc::fcntl(fds[0], libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(fds[0])
    });
    fd.map_err(std::io::Error::from_raw_os_error)
}

/// Builds the environment token for a child that will run the entry at `offset`.
pub(crate) fn token(offset: isize, server_name: &str) -> std::io::Result<String> {
    let id = exe_identity()?;
    let lifeline = lifeline_read_fd()?;
    Ok(format!(
        "{TOKEN_VERSION}:{}:{lifeline}:{}:{}:{}:{}:{}:{offset}:{server_name}",
        std::process::id(),
        id[0],
        id[1],
        id[2],
        id[3],
        id[4],
    ))
}

/// Referenced from `Process::start` so the linker always keeps this object file, and with it
/// the constructor below (an rlib's object is dropped when nothing refers to it).
pub(crate) fn ensure_linked() {
    std::hint::black_box(child_bootstrap as fn());
}

#[ctor::ctor(unsafe)]
fn child_bootstrap() {
    // SAFETY (ctor): runs before main, single-threaded; only std facilities that need no
    // runtime setup beyond libc are used until the token says this process is a child.
    let Some(token) = std::env::var_os(TOKEN_VAR) else {
        return;
    };
    // SAFETY: before main no other thread exists, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(TOKEN_VAR) };
    let name = std::env::var_os(NAME_VAR);
    if name.is_some() {
        // SAFETY: as above, still single-threaded.
        unsafe { std::env::remove_var(NAME_VAR) };
    }
    if let Some(fault) = std::env::var_os(FAULT_VAR) {
        // SAFETY: as above, still single-threaded.
        unsafe { std::env::remove_var(FAULT_VAR) };
        if fault == "exit-before-connect" {
            std::process::exit(7);
        }
    }
    let code = run_child(
        &token.to_string_lossy(),
        name.map(|n| n.to_string_lossy().into_owned()),
    );
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

/// Parses the token, checks it is safe to jump, and runs the entry. Returns the exit code.
fn run_child(token: &str, name: Option<String>) -> i32 {
    let fields: Vec<&str> = token.splitn(10, ':').collect();
    let reject = |server: Option<&str>, reason: String| {
        if let Some(server) = server {
            send_boot_failure(server, &reason);
        }
        eprintln!("process-ipc child {}: {reason}", std::process::id());
        3
    };
    if fields.len() != 10 || fields[0] != TOKEN_VERSION {
        return reject(None, format!("malformed bootstrap token {token:?}"));
    }
    let server = fields[9];
    let nums: Option<Vec<i64>> = fields[1..9].iter().map(|f| f.parse().ok()).collect();
    let Some(nums) = nums else {
        return reject(Some(server), format!("malformed bootstrap token {token:?}"));
    };
    let (parent, lifeline, identity, offset) = (nums[0], nums[1] as i32, &nums[2..7], nums[7]);
    // The parent may have died between spawn and now: then our parent is init or a subreaper.
    // SAFETY: getppid has no preconditions.
    if i64::from(unsafe { libc::getppid() }) != parent {
        return 4;
    }
    // SAFETY: the SIGPIPE disposition std's runtime would set before main; a write to a
    // closed socket then becomes an error value instead of killing the child.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    start_lifeline_watch(lifeline);
    match name {
        Some(name) => set_process_name(&name),
        None => name_after_parent(parent),
    }
    match exe_identity() {
        Ok(mine) if mine[..] == identity[..] => {}
        Ok(_) => {
            return reject(
                Some(server),
                "the executable changed between the parent's start and the child's \
                 (rebuilt or replaced on disk); refusing to run a target from a different binary"
                    .into(),
            );
        }
        Err(e) => return reject(Some(server), format!("cannot stat /proc/self/exe: {e}")),
    }
    install_panic_recorder();
    let address = address_at(offset as isize);
    // SAFETY: the executable's identity matches the parent's, so `address` is the entry the
    // parent took the offset of, a `fn(String) -> i32` in this very binary.
    let entry: ChildEntry = unsafe { std::mem::transmute::<usize, ChildEntry>(address) };
    entry(server.to_string())
}

/// Re-executing `/proc/self/exe` names the process `exe` in `ps` and `top`; take the parent's
/// name instead, as a forked Python child keeps its parent's.
fn name_after_parent(parent: i64) {
    if let Ok(name) = std::fs::read_to_string(format!("/proc/{parent}/comm")) {
        set_process_name(name.trim_end());
    }
}

/// Sets this thread's (here: the main thread's, so the process's) name, cut to 15 bytes.
fn set_process_name(name: &str) {
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

/// Reports a bootstrap failure to a parent blocked in `accept()`.
pub(crate) fn send_boot_failure(server: &str, reason: &str) {
    // `BootFailed` is variant 0 whatever the type parameters, so `<(), ()>` encodes identically.
    if let Ok(tx) = IpcSender::<ChildMsg<(), ()>>::connect(server.to_string()) {
        let _ = tx.send(ChildMsg::BootFailed(reason.to_string()));
    }
}

/// A thread that exits the child as soon as the parent's lifeline pipe reaches end-of-file.
fn start_lifeline_watch(fd: i32) {
    // Our own children get their own lifeline, not this one.
    // SAFETY: fcntl on an inherited descriptor; failure is harmless (it would only leak the fd).
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let spawned = std::thread::Builder::new()
        .name("process-ipc-lifeline".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut byte = 0u8;
            loop {
                // SAFETY: reading one byte into a valid local buffer.
                let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                // End-of-file (or an error): the parent process is gone.
                // SAFETY: _exit ends the process at once; nothing to unwind.
                unsafe { libc::_exit(1) };
            }
        });
    if spawned.is_err() {
        // Without a watcher we cannot honour "children die with their parent".
        // SAFETY: as above.
        unsafe { libc::_exit(5) };
    }
}

/// The last panic seen in this child: (message, location).
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn install_panic_recorder() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "<unknown>".into());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some((message, location));
        }
        previous(info);
    }));
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

/// Takes the recorded (message, location) of the last panic, if the hook saw one.
pub(crate) fn take_last_panic() -> Option<(String, String)> {
    LAST_PANIC.lock().ok().and_then(|mut p| p.take())
}

enum WatchMsg {
    Watch { pid: u32, server: String },
    Unwatch { pid: u32 },
}

fn watchdog() -> &'static Sender<WatchMsg> {
    static WATCHDOG: OnceLock<Sender<WatchMsg>> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("process-ipc-watchdog".into())
            .spawn(move || watchdog_loop(rx))
            .expect("process-ipc: cannot start the bootstrap watchdog thread");
        tx
    })
}

/// Watches `pid` until [`unwatch`]: if it exits before connecting to `server`, the watchdog
/// connects in its place and reports the failure, which unblocks the parent's `accept()`.
pub(crate) fn watch(pid: u32, server: String) {
    let _ = watchdog().send(WatchMsg::Watch { pid, server });
}

/// Stops watching `pid` (it connected, or the caller handled its failure).
pub(crate) fn unwatch(pid: u32) {
    let _ = watchdog().send(WatchMsg::Unwatch { pid });
}

fn watchdog_loop(rx: Receiver<WatchMsg>) {
    let mut watched: HashMap<u32, (String, Instant)> = HashMap::new();
    loop {
        let msg = if watched.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(WATCH_POLL)
        };
        match msg {
            Ok(WatchMsg::Watch { pid, server }) => {
                watched.insert(pid, (server, Instant::now()));
            }
            Ok(WatchMsg::Unwatch { pid }) => {
                watched.remove(&pid);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        watched.retain(|&pid, (server, since)| {
            if let Some(status) = exited_status(pid) {
                send_boot_failure(
                    server,
                    &format!("the child exited before connecting back ({status})"),
                );
                return false;
            }
            if since.elapsed() > CONNECT_DEADLINE {
                // SAFETY: `pid` is our unreaped child (reaping happens only after unwatch).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            true
        });
    }
}

/// If child `pid` has exited, a description of how; the child is left unreaped (WNOWAIT).
fn exited_status(pid: u32) -> Option<String> {
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer; WNOWAIT leaves the child for its owner to reap.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: after a successful waitid the pid/status fields of the union are valid.
    let (si_pid, si_status) = unsafe { (info.si_pid(), info.si_status()) };
    if rc != 0 || si_pid == 0 {
        return None;
    }
    Some(if info.si_code == libc::CLD_EXITED {
        format!("exit code {si_status}")
    } else {
        format!(
            "killed by signal {si_status} ({})",
            crate::error::signal_name(si_status)
        )
    })
}
