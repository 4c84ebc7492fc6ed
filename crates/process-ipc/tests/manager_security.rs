//! The manager's socket: private to its user whatever the umask, and a peer of another user
//! (should it reach the socket anyway) is closed unanswered.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use process_ipc::Process;
use process_ipc::manager::{ManagedQueue, Manager};
use serde::Deserialize;

const LIMIT: Duration = Duration::from_secs(20);

/// One test here changes the process-wide umask: the others wait while it does.
static UMASK: Mutex<()> = Mutex::new(());

/// A handle's wire form, to read the manager's socket path from it.
#[derive(Deserialize)]
struct HandleWire {
    _pid: u32,
    _queue: u64,
    _maxsize: Option<u64>,
    address: String,
}

fn socket_of<T>(queue: &ManagedQueue<T>) -> PathBuf {
    let bytes = postcard::to_stdvec(queue).unwrap();
    let wire: HandleWire = postcard::from_bytes(&bytes).unwrap();
    PathBuf::from(wire.address)
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn with_umask<R>(mask: libc::mode_t, f: impl FnOnce() -> R) -> R {
    let _one_at_a_time = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: umask(2) cannot fail; the old mask is restored below.
    let old = unsafe { libc::umask(mask) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    out
}

#[test]
fn smoke() {
    let _no_umask_change = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u8>().unwrap();
    let socket = socket_of(&queue);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
}

#[test]
fn the_socket_directory_is_private_whatever_the_umask() {
    for mask in [0o000, 0o022, 0o777] {
        let (manager, queue) = with_umask(mask, || {
            let manager = Manager::new().unwrap();
            let queue = manager.queue::<u32>().unwrap();
            (manager, queue)
        });
        let socket = socket_of(&queue);
        assert_eq!(mode(socket.parent().unwrap()), 0o700, "umask {mask:o}");
        assert_eq!(mode(&socket), 0o600, "umask {mask:o}");
        // And it still works, through the socket.
        let remote: ManagedQueue<u32> =
            postcard::from_bytes(&postcard::to_stdvec(&queue).unwrap()).unwrap();
        remote.put(mask).unwrap();
        assert_eq!(queue.get_timeout(LIMIT).unwrap(), mask);
        drop(manager);
        assert!(!socket.exists());
    }
}

/// Sends one request line to the manager's socket and returns the answer line ("" if the
/// manager closed the connection without one).
fn ask(socket: &str, line: &str) -> Result<String, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "{line}").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer.trim_end().to_string())
}

/// A child process's target: become user `nobody`, then ask the manager for queue 1.
fn ask_as_nobody(socket: String) -> Result<String, String> {
    const NOBODY: u32 = 65534;
    // A closed connection must be an error here, not a fatal SIGPIPE (this runs before main).
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: setgid/setuid change only this child's credentials.
    let changed = unsafe { libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0 };
    if !changed {
        return Err(format!(
            "cannot become nobody: {}",
            std::io::Error::last_os_error()
        ));
    }
    ask(&socket, "1 /nonexistent-one-shot-server")
}

#[test]
fn a_peer_of_another_user_gets_no_answer() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can start a peer of another user here");
        return;
    }
    let _no_umask_change = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u8>().unwrap();
    let socket = socket_of(&queue);
    // A same-user peer is served (here told that the one-shot server does not exist).
    let mine = ask(socket.to_str().unwrap(), "1 /nonexistent-one-shot-server").unwrap();
    assert!(mine.starts_with("err cannot connect back"), "{mine}");
    // Open the way on purpose, as a careless umask or a copied path might: the peer-credential
    // check still refuses.
    std::fs::set_permissions(socket.parent().unwrap(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, PermissionsExt::from_mode(0o777)).unwrap();
    let mut child = Process::new(ask_as_nobody, (socket.to_string_lossy().into_owned(),))
        .start()
        .unwrap();
    // It reached the socket (connected), and the manager closed the connection without a
    // word: end-of-file, or a reset or broken pipe since its line went unread.
    match child.join_timeout(LIMIT).unwrap() {
        Ok(answer) => assert_eq!(answer, "", "the other user was answered"),
        Err(e) => assert!(e.starts_with("read:") || e.starts_with("write:"), "{e}"),
    }
    // The queue is unharmed.
    queue.put(1).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 1);
}
