//! The spawn handshake under attack: silent and foreign peers, a setuid copy of the binary,
//! umask 000, and descriptors that must not leak into programs run with `Command`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process_ipc::{Process, ProcessError, StartMethod};

const WAIT: Duration = Duration::from_secs(30);

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn bootstrap_reason(result: Result<process_ipc::ProcessHandle<u64>, ProcessError>) -> String {
    match result {
        Err(ProcessError::Bootstrap { reason, .. }) => reason,
        other => panic!("expected a bootstrap error, got {other:?}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_silent_child_is_killed_at_the_start_deadline() {
    let started = Instant::now();
    let result = Process::new(add, (1, 2))
        .__test_fault("silent")
        .start_timeout(Duration::from_millis(300));
    let reason = bootstrap_reason(result);
    assert!(reason.contains("silent"), "{reason}");
    assert!(reason.contains("killed by signal 9"), "{reason}");
    // start() came back (bounded by the test's own limit, far above the 300 ms deadline).
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
}

#[test]
fn a_handshake_message_from_another_pid_is_dropped() {
    // The nameless handshake pair is Spawn's: a forked child gets its channels from the fork
    // server instead, with nothing on them a third process could speak on.
    let result = Process::new(add, (1, 2))
        .start_method(StartMethod::Spawn)
        .__test_fault("grandchild-speaks")
        .start_timeout(WAIT);
    let reason = bootstrap_reason(result);
    assert!(reason.contains("not from the child"), "{reason}");
}

#[test]
fn a_handshake_message_from_another_uid_is_dropped() {
    if !is_root() {
        eprintln!("skipped: only root can make the child speak as another uid");
        return;
    }
    // The nameless handshake pair is Spawn's: a forked child gets its channels from the fork
    // server instead, with nothing on them a third process could speak on.
    let result = Process::new(add, (1, 2))
        .start_method(StartMethod::Spawn)
        .__test_fault("other-uid-speaks")
        .start_timeout(WAIT);
    let reason = bootstrap_reason(result);
    assert!(reason.contains("uid 65534"), "{reason}");
    assert!(reason.contains("not from the child"), "{reason}");
}

#[test]
fn children_still_start_under_umask_000() {
    // The child makes its socket directory under its own umask 077 whatever it inherits; the
    // parent would refuse the socket otherwise (see the unit tests of the private-socket check).
    let old = Umask::set(0);
    let mut child = Process::new(add, (40, 2)).start().unwrap();
    drop(old);
    assert_eq!(child.join_timeout(WAIT).unwrap(), 42);
}

struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: umask cannot fail.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(self.0) };
    }
}

#[test]
fn a_setuid_copy_of_the_binary_refuses_the_child_token() {
    if !is_root() {
        eprintln!("skipped: making a setuid-root binary needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("process-ipc-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("setuid-copy");
    // Copied by `cp`, not by this process: a writable descriptor of ours, inherited for a moment
    // by a child another test is starting, would make the exec below fail with ETXTBSY.
    let copied = Command::new("cp")
        .arg(std::env::current_exe().unwrap())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    if nosuid(&dir) {
        eprintln!("skipped: {} is on a nosuid mount", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    // Run it as nobody: the kernel marks the process AT_SECURE (its euid is root).
    let out = Command::new(&copy)
        .uid(65534)
        .gid(65534)
        .env(
            "PROCESS_IPC_CHILD_TOKEN",
            format!("pipc2:{}:3", std::process::id()),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refusing to run as a child"), "{stderr}");
}

fn nosuid(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs is plain data filled by a successful call on a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc != 0 || st.f_flag & libc::ST_NOSUID != 0
}

/// (fd number, what it points at) of every open descriptor of `pid`.
fn fds_of(pid: &str) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                target.display().to_string(),
            )
        })
        .collect()
}

fn is_cloexec(fd: &str) -> bool {
    // /proc/self/fdinfo/N: "flags:\t0NNNNNNN" in octal; O_CLOEXEC is 02000000.
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| i64::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|f| f & 0o2000000 != 0)
}

#[test]
fn programs_run_with_command_inherit_no_descriptor_of_ours() {
    // Make sure the lifeline exists: start (and finish) one child first.
    let mut child = Process::new(add, (1, 1)).start().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 2);
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let theirs = fds_of(&sleeper.id().to_string());
    // Ours: what this process opened itself (Rust opens everything close-on-exec; a descriptor
    // without the flag here came from whoever started the test, like a jobserver pipe).
    let ours: Vec<String> = fds_of("self")
        .into_iter()
        .filter(|(fd, _)| is_cloexec(fd))
        .map(|(_, target)| target)
        .collect();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        ours.iter().any(|t| t.starts_with("pipe:")),
        "the lifeline pipe should be among our descriptors: {ours:?}"
    );
    let leaked: Vec<_> = theirs
        .iter()
        .filter(|(fd, target)| fd.parse::<i32>().unwrap() > 2 && ours.contains(target))
        .collect();
    assert!(
        leaked.is_empty(),
        "descriptors of ours leaked into a Command child: {leaked:?}"
    );
}
