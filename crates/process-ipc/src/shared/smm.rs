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

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::error::SharedError;
use super::list::{ShareableItem, ShareableList};
use super::memory::SharedMemory;
use super::named::scope_dir;
use crate::sys;

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
        let mine = sys::watcher::start_unlink_watcher(&dir, LIST_BYTES)
            .map_err(|e| SharedError::io("start the SharedMemoryManager's watcher", e))?;
        Ok(SharedMemoryManager {
            sock: mine,
            names: Mutex::new(Vec::new()),
            sent: AtomicU64::new(0),
        })
    }

    /// A name for a new block, sent to the watcher before the block exists.
    fn register(&self) -> Result<String, SharedError> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let random: [u8; 8] = sys::nonce().unwrap_or_default()[..8]
            .try_into()
            .expect("8 of 16 bytes");
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
        // A dead watcher is an error, not a SIGPIPE.
        let op = "send to the SharedMemoryManager's watcher";
        match sys::watcher::send_names(&self.sock, line.as_bytes()) {
            Ok(n) if n == line.len() => {}
            Ok(_) => return Err(SharedError::io(op, std::io::ErrorKind::WriteZero.into())),
            Err(e) => return Err(SharedError::io(op, e)),
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
