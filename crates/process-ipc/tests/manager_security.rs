//! The manager's socket: private to its user whatever the umask; a peer of another user
//! (should it reach the socket anyway) is closed unanswered, and a client told plainly that a
//! manager of another user is not its to use; hostile frames close only their connection.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use process_ipc::Process;
use process_ipc::manager::{ManagedQueue, Manager, ManagerError};
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

/// One framed call of the manager's protocol, written by hand: queue 1's counts (`Call` is
/// postcard: object 1, kind `Queue` (variant 6), op `QueueCounts` (variant 42: the container calls added before it moved it from 35)).
const COUNTS_OF_QUEUE_1: [u8; 7] = [3, 0, 0, 0, 1, 6, 42];

/// Writes `bytes` to the manager's socket and returns everything it answers until it closes
/// the connection or `LIMIT` runs out (`Err` for an error on the way).
fn exchange(socket: &str, bytes: &[u8], then_close: bool) -> Result<Vec<u8>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    stream.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    if then_close {
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
    }
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer)
}

/// Reads one answer frame (length and body) from `stream`.
fn read_answer(stream: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

/// A child process's target: become user `nobody`, then ask the manager for queue 1's counts.
fn ask_as_nobody(socket: String) -> Result<Vec<u8>, String> {
    become_nobody()?;
    exchange(&socket, &COUNTS_OF_QUEUE_1, false)
}

const NOBODY: u32 = 65534;

fn become_nobody() -> Result<(), String> {
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
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can start a peer of another user here");
        return false;
    }
    true
}

#[test]
fn a_peer_of_another_user_gets_no_answer() {
    if !is_root() {
        return;
    }
    let _no_umask_change = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u8>().unwrap();
    let socket = socket_of(&queue);
    // A same-user peer is served: the frame of `Answer::Counts` (variant 7), all zero.
    let mut mine = UnixStream::connect(&socket).unwrap();
    mine.set_read_timeout(Some(LIMIT)).unwrap();
    mine.write_all(&COUNTS_OF_QUEUE_1).unwrap();
    assert_eq!(read_answer(&mut mine), [7, 0, 0, 0]);
    // Open the way on purpose, as a careless umask or a copied path might: the peer-credential
    // check still refuses.
    std::fs::set_permissions(socket.parent().unwrap(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, PermissionsExt::from_mode(0o777)).unwrap();
    let mut child = Process::new(ask_as_nobody, (socket.to_string_lossy().into_owned(),))
        .start()
        .unwrap();
    // It reached the socket (connected), and the manager closed the connection without a
    // word: end-of-file, or a reset or broken pipe since its call went unread.
    match child.join_timeout(LIMIT).unwrap() {
        Ok(answer) => assert!(answer.is_empty(), "the other user was answered: {answer:?}"),
        Err(e) => assert!(e.starts_with("read:") || e.starts_with("write:"), "{e}"),
    }
    // The queue is unharmed.
    queue.put(1).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 1);
}

/// A child process's target: become `nobody`, then use a handle to a manager of root's.
fn use_as_nobody(queue: ManagedQueue<u8>) -> Result<String, String> {
    become_nobody()?;
    match queue.put(1).map_err(ManagerError::from) {
        Ok(()) => Ok("the put went through".into()),
        Err(e @ ManagerError::PermissionDenied { .. }) => Err(e.to_string()),
        Err(other) => Ok(format!("another error: {other}")),
    }
}

#[test]
fn a_manager_of_another_user_is_permission_denied_naming_both_uids() {
    if !is_root() {
        return;
    }
    let _no_umask_change = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u8>().unwrap();
    let socket = socket_of(&queue);
    let denied = |queue: &ManagedQueue<u8>| {
        let mut child = Process::new(use_as_nobody, (queue.clone(),))
            .start()
            .unwrap();
        child.join_timeout(LIMIT).unwrap().unwrap_err()
    };
    // The socket's directory is private: the kernel refuses the connection.
    let refused_by_the_kernel = denied(&queue);
    // Opened on purpose: the peer credentials refuse it.
    std::fs::set_permissions(socket.parent().unwrap(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, PermissionsExt::from_mode(0o777)).unwrap();
    let refused_by_the_client = denied(&queue);
    for message in [refused_by_the_kernel, refused_by_the_client] {
        assert!(message.contains("permission denied"), "{message}");
        assert!(!message.contains("is gone"), "{message}");
        assert!(message.contains("uid 0"), "{message}");
        assert!(message.contains(&format!("uid {NOBODY}")), "{message}");
    }
    queue.put(1).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 1);
}

/// Whether the manager still serves: a call on a fresh connection is answered.
fn still_serves(socket: &str) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(&COUNTS_OF_QUEUE_1).unwrap();
    assert_eq!(read_answer(&mut stream), [7, 0, 0, 0]);
}

#[test]
fn an_undecodable_oversized_or_truncated_frame_closes_only_its_connection() {
    let _no_umask_change = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u8>().unwrap();
    let socket = socket_of(&queue);
    let socket = socket.to_str().unwrap();
    // A connection that keeps working beside the hostile ones.
    let mut bystander = UnixStream::connect(socket).unwrap();
    bystander.set_read_timeout(Some(LIMIT)).unwrap();
    let undecodable = [1, 0, 0, 0, 0xff];
    let oversized = u32::MAX.to_le_bytes();
    let mut truncated = 100u32.to_le_bytes().to_vec();
    truncated.extend([1, 6, 42]);
    // Queue 1, a batch (`QueuePutFramed`, variant 40) whose item claims 200 bytes of a 3-byte
    // batch.
    let bad_batch = [6, 0, 0, 0, 1, 6, 40, 2, 200, 1];
    for (what, bytes) in [
        ("undecodable", &undecodable[..]),
        ("oversized", &oversized[..]),
        ("truncated", &truncated[..]),
    ] {
        let answer = exchange(socket, bytes, true).unwrap();
        assert!(answer.is_empty(), "{what}: answered {answer:?}");
        bystander.write_all(&COUNTS_OF_QUEUE_1).unwrap();
        assert_eq!(read_answer(&mut bystander), [7, 0, 0, 0], "{what}");
    }
    // A batch that does not parse is refused whole (a frame of its own, in step).
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(&bad_batch).unwrap();
    assert_eq!(read_answer(&mut stream)[0], 6, "Answer::Refused");
    still_serves(socket);
    queue.put(1).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 1);
}

#[test]
fn a_peer_that_stalls_mid_frame_is_dropped_after_the_frame_deadline() {
    let _no_umask_change = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u8>().unwrap();
    let socket = socket_of(&queue);
    let mut stalled = UnixStream::connect(&socket).unwrap();
    stalled.set_read_timeout(Some(LIMIT)).unwrap();
    // The first bytes of a frame, and then nothing: the connection stays open on our side.
    stalled.write_all(&[100, 0, 0, 0, 1, 6]).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = stalled.read_to_end(&mut rest);
    // The manager closed it (end of file), well before our own 20 s bound.
    assert!(matches!(read, Ok(0)), "{read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    still_serves(socket.to_str().unwrap());
}
