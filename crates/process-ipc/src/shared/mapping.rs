//! One process's mapping of a shared block, and what becomes of it when its last handle goes.
//!
//! The creating process lists its blocks by descriptor number (so that it attaches to its own
//! with no system call), and when its mapping of a small block ends, it keeps the block for
//! the next `create` of that size instead of giving it back to the kernel: creating, mapping,
//! unmapping and closing a memfd is most of the cost of a short-lived block.
//!
//! A block may be reused only if no other process can still see it. Every mapping in another
//! process counts itself in the header's `users` before it trusts the block and out when it
//! ends, and the creator takes a block back only by swapping a `users` of 0 for
//! [`RECYCLING`]: an attach that counts itself in from then on sees the mark (or, once the
//! block is reissued, its new nonce) and refuses. A process that forked while the block
//! existed may hold it unannounced, so a fork since the block was issued rules reuse out.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::error::SharedError;
use crate::sys;

/// Bytes at the start of every mapping that hold [`Header`]; the user's bytes follow.
pub(crate) const HEADER: usize = 64;
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"mt-shm\0\x02");

/// Set in `users` while the creator takes the block back for reuse.
const RECYCLING: u64 = 1 << 63;
/// The largest block (header included) kept for reuse, and how many are kept at most.
const REUSE_MAX_LEN: usize = 256 << 10;
const REUSE_MAX_COUNT: usize = 16;

/// The start of every block: what an attacher checks before it trusts the rest.
#[repr(C)]
pub(super) struct Header {
    pub(super) magic: AtomicU64,
    pub(super) nonce: AtomicU64,
    pub(super) size: AtomicU64,
    /// Set by `unlink()`: attaching by name is refused from then on.
    pub(super) unlinked: AtomicU32,
    _pad: AtomicU32,
    /// Mappings of the block in processes other than its creator, and [`RECYCLING`].
    users: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER);

/// Forks of this process so far (counted before each, by a `pthread_atfork` handler).
static FORKS: AtomicU64 = AtomicU64::new(0);

fn forks() -> u64 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        extern "C" fn count_fork() {
            FORKS.fetch_add(1, Ordering::AcqRel);
        }
        // The handler only adds to an atomic (async-signal-safe).
        sys::at_fork(Some(count_fork), None);
    });
    FORKS.load(Ordering::Acquire)
}

/// Whose mapping this is.
enum Role {
    /// The creator's: the descriptor the name leads to, and [`FORKS`] when it was issued.
    Creator { fd: OwnedFd, forks: u64 },
    /// Another process's, counted in `users`, with the descriptor it was opened by: kept
    /// open so that this process can pass the block on under a name of its own (see
    /// `SharedMemory::name_for_transfer`) after the creator has let it go.
    /// (A named block's mapping keeps none: its name is a path, not a descriptor.)
    Counted(Option<OwnedFd>),
    /// Another process's, not (yet) counted; or a mapping being dropped.
    Uncounted(Option<OwnedFd>),
}

/// One mapping of a block (`HEADER` + size bytes). The handles of one process share one.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    role: Role,
}

// SAFETY: a mapping is plain memory owned by the process, not tied to a thread; it is only
// unmapped (or kept for reuse) in `drop`.
unsafe impl Send for Mapping {}
// SAFETY: as for Send; a `&Mapping` hands out nothing but its address, length and header.
unsafe impl Sync for Mapping {}

/// A block kept for reuse: still mapped, its descriptor open.
struct Kept {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    forks: u64,
}

// SAFETY: as for Mapping.
unsafe impl Send for Kept {}

static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

type Own = Option<HashMap<i32, Weak<Mapping>>>;

/// Blocks made by this process and still mapped here, by descriptor number.
static OWN: Mutex<Own> = Mutex::new(None);

fn own() -> std::sync::MutexGuard<'static, Own> {
    OWN.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Mapping {
    /// A new block of `size` user bytes, zeroed, made by (or reissued in) this process, with
    /// its nonce; listed for [`own_block`].
    pub(super) fn create(size: usize) -> Result<(Arc<Mapping>, u64), SharedError> {
        let len = HEADER + size;
        let forks = forks();
        let map = match reissue(len, forks) {
            Some(map) => map,
            None => {
                let fd = new_memfd(len)?;
                // Not populated: every page would be allocated (a fresh block is all holes).
                let ptr = map_fd(&fd, len, false)?;
                let map = Mapping {
                    ptr,
                    len,
                    role: Role::Creator { fd, forks },
                };
                let header = map.header();
                header.size.store(size as u64, Ordering::Relaxed);
                header.magic.store(MAGIC, Ordering::Release);
                map
            }
        };
        let nonce = next_nonce();
        let header = map.header();
        header.nonce.store(nonce, Ordering::Relaxed);
        header.unlinked.store(0, Ordering::Relaxed);
        // Open to attachers again (a reissued block); the nonce is in place before this.
        header.users.fetch_and(!RECYCLING, Ordering::Release);
        let map = Arc::new(map);
        own()
            .get_or_insert_with(HashMap::new)
            .insert(map.fd_number(), Arc::downgrade(&map));
        Ok((map, nonce))
    }

    /// Maps the block behind `fd` (`len` bytes) for another process than its creator. The
    /// caller then [`count_in`](Mapping::count_in)s before it reads the header.
    ///
    /// `allocated` says every page of the block exists already (the descriptor's allocated
    /// blocks cover its size): then all are mapped at once, one walk instead of a fault per
    /// page at first touch. A block with holes is mapped lazily, since mapping a hole
    /// allocates it, and the block would no longer be sparse.
    pub(super) fn attach(
        fd: &OwnedFd,
        len: usize,
        allocated: bool,
    ) -> Result<Mapping, SharedError> {
        Ok(Mapping {
            ptr: map_fd(fd, len, allocated)?,
            len,
            role: Role::Uncounted(None),
        })
    }

    /// Keeps `fd`, the descriptor this mapping (of another process's block) was opened by,
    /// open as long as the mapping: see [`Role::Counted`].
    pub(super) fn hold(&mut self, fd: OwnedFd) {
        self.role = match std::mem::replace(&mut self.role, Role::Uncounted(None)) {
            Role::Counted(_) => Role::Counted(Some(fd)),
            Role::Uncounted(_) => Role::Uncounted(Some(fd)),
            creator => creator,
        };
    }

    /// Counts this mapping in the block's users; `false` if its creator is taking it back.
    pub(super) fn count_in(&mut self) -> bool {
        let before = self.header().users.fetch_add(1, Ordering::AcqRel);
        self.role = match std::mem::replace(&mut self.role, Role::Uncounted(None)) {
            Role::Uncounted(fd) => Role::Counted(fd),
            other => other,
        };
        before & RECYCLING == 0
    }

    /// The number of the descriptor this process holds the block by (-1 if none).
    pub(super) fn fd_number(&self) -> i32 {
        match &self.role {
            Role::Creator { fd, .. } | Role::Counted(Some(fd)) | Role::Uncounted(Some(fd)) => {
                fd.as_raw_fd()
            }
            Role::Counted(None) | Role::Uncounted(None) => -1,
        }
    }

    /// Lists an attached, counted mapping for [`own_block`], so that a name this process
    /// hands on (its pid and this descriptor) leads back here without a system call.
    pub(super) fn list_attached(map: &Arc<Mapping>) {
        if let Role::Counted(Some(fd)) = &map.role {
            own()
                .get_or_insert_with(HashMap::new)
                .insert(fd.as_raw_fd(), Arc::downgrade(map));
        }
    }

    pub(super) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: every mapping starts with HEADER bytes, page-aligned, which hold a Header
        // (all-atomic, so any bit pattern is a valid value).
        unsafe { &*(self.ptr.as_ptr() as *const Header) }
    }
}

/// This process's mapping of the block it holds by descriptor `number` (one it made, or one
/// it attached and may have passed on), if it still has one.
pub(super) fn own_block(number: i32) -> Option<Arc<Mapping>> {
    own()
        .as_ref()
        .and_then(|own| own.get(&number))
        .and_then(Weak::upgrade)
}

impl Drop for Mapping {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.role, Role::Uncounted(None)) {
            Role::Counted(fd) => {
                if let (Some(own), Some(fd)) = (own().as_mut(), &fd) {
                    remove_if_dead(own, fd.as_raw_fd());
                }
                self.header().users.fetch_sub(1, Ordering::Release);
                drop(fd);
            }
            Role::Uncounted(fd) => drop(fd),
            Role::Creator { fd, forks } => {
                if let Some(own) = own().as_mut() {
                    remove_if_dead(own, fd.as_raw_fd());
                }
                if let Err(fd) = self.keep(fd, forks) {
                    drop(fd);
                } else {
                    return;
                }
            }
        }
        // SAFETY: `ptr` came from `map_shared` with this length and is unmapped once, here.
        unsafe { sys::memory::unmap(self.ptr, self.len) };
    }
}

/// Removes the entry for descriptor `number` if it is the mapping being dropped (its weak
/// reference no longer upgrades). The descriptor is still open while its mapping drops, so
/// no other mapping can have taken the number: the check only guards the rule.
fn remove_if_dead(own: &mut HashMap<i32, Weak<Mapping>>, number: i32) {
    if own.get(&number).is_some_and(|w| w.upgrade().is_none()) {
        own.remove(&number);
    }
}

impl Mapping {
    /// Keeps the block for reuse if it is small, nobody else can see it and there is room;
    /// gives the descriptor back otherwise.
    fn keep(&self, fd: OwnedFd, forks: u64) -> Result<(), OwnedFd> {
        if self.len > REUSE_MAX_LEN || forks != FORKS.load(Ordering::Acquire) {
            return Err(fd);
        }
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= REUSE_MAX_COUNT {
            return Err(fd);
        }
        let header = self.header();
        if header
            .users
            .compare_exchange(0, RECYCLING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(fd);
        }
        header.unlinked.store(1, Ordering::Release);
        kept.push(Kept {
            ptr: self.ptr,
            len: self.len,
            fd,
            forks,
        });
        Ok(())
    }
}

/// A kept block of `len` bytes, zeroed again, if there is one from since the last fork.
fn reissue(len: usize, forks: u64) -> Option<Mapping> {
    let kept = {
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        // Blocks kept from before a fork are no longer ours alone: let them go.
        let stale: Vec<Kept> = if kept.iter().any(|k| k.forks != forks) {
            let (stale, fresh) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|k| k.forks != forks);
            *kept = fresh;
            stale
        } else {
            Vec::new()
        };
        for k in stale {
            // SAFETY: a kept mapping of this length, unmapped once, here; its fd closes.
            unsafe { sys::memory::unmap(k.ptr, k.len) };
        }
        let at = kept.iter().position(|k| k.len == len)?;
        kept.swap_remove(at)
    };
    // SAFETY: the block is ours alone (no user, no fork since it was issued): clearing the
    // user's bytes races with nothing.
    unsafe { std::ptr::write_bytes(kept.ptr.as_ptr().add(HEADER), 0, len - HEADER) };
    Some(Mapping {
        ptr: kept.ptr,
        len,
        role: Role::Creator { fd: kept.fd, forks },
    })
}

/// A new memfd of `len` bytes, private to this user whatever the umask, all holes: pages
/// are allocated as they are first touched (sparse, as Python's `SharedMemory`).
///
/// What sparse means in trouble: the kernel's internal tmpfs has no size limit, so a first
/// touch that finds memory short meets the out-of-memory killer, not an error (the size is
/// checked against RAM + swap before this, see `memory::check_size`). A page beyond the
/// file's end raises SIGBUS; the file is only ever sized here, once, so only a process of
/// this user that truncates the descriptor through `/proc` on purpose can cause that.
fn new_memfd(len: usize) -> Result<OwnedFd, SharedError> {
    // Never on descriptors 0-2: a program that closed a standard descriptor would otherwise
    // print into the block, over its header.
    let fd =
        sys::memory::memfd(c"multitask-shm").map_err(|e| SharedError::io("memfd_create", e))?;
    // Private whatever the umask was: a memfd starts out 0777 less the umask.
    sys::memory::fchmod(&fd, 0o600).map_err(|e| SharedError::io("fchmod", e))?;
    sys::memory::ftruncate(&fd, len).map_err(|e| SharedError::io("ftruncate", e))?;
    Ok(fd)
}

/// Maps `len` bytes of `fd`, shared; with `populate`, every page at once (only for a block
/// whose pages all exist: populating a hole allocates it).
fn map_fd(fd: &OwnedFd, len: usize, populate: bool) -> Result<NonNull<u8>, SharedError> {
    sys::memory::map_shared(fd, len, populate).map_err(|e| SharedError::io("mmap", e))
}

/// A nonce no other block of this process has had: a counter, scrambled with a key drawn once
/// per process (so that names are not guessable from one another either).
fn next_nonce() -> u64 {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let key = *KEY.get_or_init(|| {
        if let Ok(bytes) = sys::nonce() {
            return u64::from_ne_bytes(bytes[..8].try_into().expect("8 of 16 bytes"));
        }
        // getrandom is missing only on kernels older than 3.17: the clock will do.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    // A bijection of the counter (splitmix64's finaliser): distinct counts, distinct nonces.
    let mut z = COUNT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(key)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
