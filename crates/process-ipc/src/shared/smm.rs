//! `SharedMemoryManager`: named blocks that are removed when the manager ends, however its
//! process ends (Python's `multiprocessing.managers.SharedMemoryManager`).
//!
//! Python's manager is a server process that unlinks its blocks at `shutdown()`; killed with
//! its program, it leaves them in `/dev/shm`. Here a small watcher process holds the list of
//! names: `new` forks it (twice, so that it belongs to no one and needs no reaping) with one
//! end of a socket pair, the manager sends it each name *before* making the block, and when
//! the manager's end closes — [`shutdown`](SharedMemoryManager::shutdown), drop, `exit`, a
//! crash or SIGKILL alike, since the kernel closes it — the watcher unlinks every name it
//! was sent and exits. The watcher runs in its own session (a Ctrl-C to the program's group
//! does not stop it first), closes every other descriptor (another manager's socket kept open
//! by it would delay that manager's watcher), and does only what is safe after `fork` in a
//! threaded program: reads into a buffer made before the fork, `unlinkat`, `_exit`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::error::SharedError;
use super::list::{ShareableItem, ShareableList};
use super::memory::SharedMemory;
use super::named::scope_dir;

/// The bytes of names a watcher holds (each name and a newline): about 20 000 blocks.
const LIST_BYTES: usize = 1 << 20;

/// Blocks removed when it ends, even if the program crashes (Python's `SharedMemoryManager`;
/// `with SharedMemoryManager() as smm:` is a scope with one of these).
///
/// ```
/// use process_ipc::{SharedMemory, SharedMemoryManager};
///
/// let smm = SharedMemoryManager::new().unwrap();
/// let block = smm.shared_memory(4096).unwrap();
/// let name = block.name().to_string();
/// assert!(SharedMemory::attach(&name).is_ok()); // from any process of this user
/// smm.shutdown(); // or drop, exit, or a crash
/// assert!(SharedMemory::attach(&name).is_err());
/// ```
pub struct SharedMemoryManager {
    /// This end of the socket pair; the watcher's list ends when it closes.
    sock: OwnedFd,
    /// The names sent (removed here at `shutdown`; the watcher removes them otherwise).
    names: Mutex<Vec<String>>,
    /// Bytes of names sent, against [`LIST_BYTES`].
    sent: AtomicU64,
}

impl SharedMemoryManager {
    /// Starts a manager and its watcher (Python's `SharedMemoryManager()` and `start()`).
    ///
    /// # Errors
    /// [`SharedError::Os`] if the socket pair or the watcher cannot be made;
    /// [`SharedError::Refused`] if the directory of named blocks is not private to this user.
    pub fn new() -> Result<Self, SharedError> {
        let (dir, _) = scope_dir("(manager)")?;
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(SharedError::os("socketpair"));
        }
        // SAFETY: two descriptors we just made and own.
        let (mine, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Made before the fork: the watcher may not allocate.
        let mut buffer = vec![0u8; LIST_BYTES];
        // SAFETY: fork; the child runs only `watch` (async-signal-safe calls) and `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SharedError::os("fork"));
        }
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
        Ok(SharedMemoryManager {
            sock: mine,
            names: Mutex::new(Vec::new()),
            sent: AtomicU64::new(0),
        })
    }

    /// A name for a new block, sent to the watcher before the block exists.
    fn register(&self) -> Result<String, SharedError> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let mut random = [0u8; 8];
        // SAFETY: writes at most 8 bytes into `random`.
        unsafe { libc::getrandom(random.as_mut_ptr().cast(), 8, 0) };
        let name = format!(
            "mt_smm_{}_{}_{:016x}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed),
            u64::from_ne_bytes(random)
        );
        let line = format!("{name}\n");
        let total = self.sent.fetch_add(line.len() as u64, Ordering::Relaxed);
        if total + line.len() as u64 > LIST_BYTES as u64 {
            return Err(SharedError::Refused {
                name,
                reason: format!("a SharedMemoryManager tracks at most {LIST_BYTES} bytes of names"),
            });
        }
        // SAFETY: sends our bytes on our socket; MSG_NOSIGNAL: a dead watcher is an error, not
        // a SIGPIPE.
        let n = unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                line.as_ptr().cast(),
                line.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != line.len() as isize {
            return Err(SharedError::os("send to the SharedMemoryManager's watcher"));
        }
        self.names.lock().push(name.clone());
        Ok(name)
    }

    /// A new block of `size` bytes under a fresh name, removed when the manager ends
    /// (Python's `smm.SharedMemory(size)`); other processes attach by its name.
    ///
    /// # Errors
    /// As [`SharedMemory::create_named`]; [`SharedError::Os`] if the watcher is gone.
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, SharedError> {
        let name = self.register()?;
        SharedMemory::create_named(&name, size)
    }

    /// A new [`ShareableList`] under a fresh name, removed when the manager ends (Python's
    /// `smm.ShareableList(sequence)`).
    ///
    /// # Errors
    /// As [`shared_memory`](SharedMemoryManager::shared_memory).
    pub fn shareable_list(&self, items: &[ShareableItem]) -> Result<ShareableList, SharedError> {
        let name = self.register()?;
        ShareableList::create_named(&name, items)
    }

    /// The names of the blocks it made.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().clone()
    }

    /// Removes every block it made and stops the watcher (Python's `shutdown()`); dropping
    /// the manager does the same. Processes that have a block mapped keep it until they
    /// unmap it.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        for name in self.names.lock().drain(..) {
            let _ = super::named::unlink(&name);
        }
        // The socket closes after this: the watcher finds nothing left and exits.
    }
}

impl std::fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemoryManager")
            .field("blocks", &self.names.lock().len())
            .finish_non_exhaustive()
    }
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
        } else if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
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
        // hold no '/' (made by `register`).
        unsafe { libc::unlinkat(1, name.as_ptr().cast(), 0) };
    }
    // SAFETY: ends the watcher without running anything of the parent's.
    unsafe { libc::_exit(0) }
}
