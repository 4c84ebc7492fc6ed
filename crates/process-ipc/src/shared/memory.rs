//! `SharedMemory`: a block of memory that several processes map, found by name.
//!
//! The block is a `memfd` (anonymous, in the kernel's page cache), never a file under
//! `/dev/shm`: its name is the creator's pid, the descriptor's number there and a nonce (a
//! counter scrambled with a per-process random key), and another process of the same user
//! attaches by opening `/proc/<pid>/fd/<fd>`; the creating process attaches by sharing its own
//! mapping (see [`super::mapping`], which also keeps small blocks for reuse). So a crash
//! leaves nothing behind: when the last process that maps the block exits, however it exits,
//! the kernel frees it. Other users cannot attach: `/proc/<pid>/fd` admits only processes
//! that may trace the creator, the descriptor is `0600`, and an attacher checks the owner,
//! the mode and the nonce before it trusts what it mapped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::SharedError;
use super::mapping::{HEADER, Header, MAGIC, Mapping, own_block};

/// A block of memory shared between processes (Python's
/// `multiprocessing.shared_memory.SharedMemory`).
///
/// [`create`](SharedMemory::create) makes one; [`attach`](SharedMemory::attach) maps an
/// existing one by its [`name`](SharedMemory::name) in any process of the same user. A handle
/// is also a serde value (its name), so it can be a [`Process`](crate::Process) or pool
/// argument: the receiving process attaches on arrival.
///
/// Unlike Python's, a block never outlives the processes that use it: the name works while
/// a handle lives in the creating process, or, once a handle has been sent to another process
/// (as Python's name stays until `unlink()`), until [`unlink`](SharedMemory::unlink) or the
/// creator's exit. A process that attached a block passes it on under a name of its own,
/// which works while it holds a handle, whether or not the creator still does. The memory
/// lives while any process maps it, and nothing is left in `/dev/shm` by a crash. (The blocks
/// inside a [`Queue`](crate::Queue), [`Lock`](crate::Lock), [`Value`](crate::Value) and the
/// other primitives, whose names the program never sees, are held for a child only until it
/// has attached them when they are process arguments: a program that makes a queue per child
/// does not collect descriptors.) A small block that nothing
/// maps any more (here or elsewhere) may be handed out again, zeroed and under a new name, by
/// a later `create` of the same size in its creating process: its old name stays refused.
///
/// ```
/// use process_ipc::SharedMemory;
///
/// let mut block = SharedMemory::create(4096).unwrap();
/// block.as_mut_slice()[..5].copy_from_slice(b"hello");
/// let other = SharedMemory::attach(block.name()).unwrap(); // in any process of ours
/// assert_eq!(&other.as_slice()[..5], b"hello");
/// assert_eq!(other.size(), 4096);
/// ```
pub struct SharedMemory {
    map: Arc<Mapping>,
    size: usize,
    name: String,
    /// Made by this handle and not unlinked: sending it pins the block in [`PINNED`] (the
    /// primitives' blocks: only outside a [`TransferScope`]).
    creator: bool,
}

/// Blocks made here and sent to another process by name: kept mapped (their descriptor open)
/// so that the receiver can attach even after the sending handle is dropped, at whatever later
/// time it decodes the name (a pool task's arguments, say). `unlink()` or process exit ends
/// them. This holds for every `SharedMemory` sent (its name is the program's, to attach by
/// later, as Python's stays until `unlink()`), and for the blocks of the other primitives sent
/// outside a [`TransferScope`]; inside one, the scope holds those instead.
static PINNED: Mutex<Option<HashMap<String, Arc<Mapping>>>> = Mutex::new(None);

thread_local! {
    /// The open [`TransferScope`]s of this thread, innermost last, each with its pins.
    static SCOPE: RefCell<Vec<Vec<Arc<Mapping>>>> = const { RefCell::new(Vec::new()) };
}

/// While it lives, blocks sent by this thread ([`SharedMemory::name_for_transfer`]) are kept
/// attachable by this scope instead of being pinned for the rest of the process: for a send
/// whose receiver is known to have attached (or to be gone) when the scope ends, such as a
/// process start, which returns once the child has decoded its arguments. Scopes nest.
pub(crate) struct TransferScope {
    /// Tied to the thread whose list it pushed.
    _thread: std::marker::PhantomData<*const ()>,
}

impl TransferScope {
    /// Opens a scope on this thread.
    pub(crate) fn enter() -> Self {
        SCOPE.with(|scope| scope.borrow_mut().push(Vec::new()));
        TransferScope {
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for TransferScope {
    fn drop(&mut self) {
        // Taken out first: dropping a mapping takes the mapping module's locks, never this.
        let pins = SCOPE.with(|scope| scope.borrow_mut().pop());
        drop(pins);
    }
}

fn pinned() -> std::sync::MutexGuard<'static, Option<HashMap<String, Arc<Mapping>>>> {
    PINNED.lock().unwrap_or_else(|poison| poison.into_inner())
}

// SAFETY: the mapping is plain memory shared with other processes; the handle owns its
// mapping and descriptor, neither is tied to a thread. Access through `&self` hands out only
// shared views, through `&mut self` exclusive ones.
unsafe impl Send for SharedMemory {}
// SAFETY: see `Send`; `&SharedMemory` gives only `&[u8]` views and atomic header access.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Makes a block of `size` zeroed bytes that other processes of this user can attach to.
    ///
    /// The block is sparse, as Python's: no memory is taken here; each page is allocated
    /// when some process first touches it, so a large block that is mostly untouched costs
    /// only what is touched. The size is checked against what the system could ever back
    /// (RAM + swap as the kernel reports them): more is [`SharedError::TooLarge`] at once.
    /// A block within that limit is not a reservation, though: if the memory is short when
    /// a page is first touched, the kernel's out-of-memory killer acts then (on this or
    /// another process), as it would for Python's block.
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`] for 0; [`SharedError::TooLarge`] for more than RAM + swap;
    /// [`SharedError::Os`] if the kernel refuses the descriptor or the mapping.
    pub fn create(size: usize) -> Result<Self, SharedError> {
        if size == 0 {
            return Err(SharedError::ZeroSize);
        }
        let size = check_size(size as u128)?;
        let (map, nonce) = Mapping::create(size)?;
        let name = format!(
            "mt_psm_{}_{}_{nonce:016x}",
            super::pid::my_pid(),
            map.fd_number()
        );
        Ok(SharedMemory {
            map,
            size,
            name,
            creator: true,
        })
    }

    /// Makes a block of `size` zeroed bytes under `name`, which any process of this user can
    /// then [`attach`](SharedMemory::attach) to, related or not (Python's
    /// `SharedMemory(name, create=True, size=n)`).
    ///
    /// The name is 1 to 200 of `[A-Za-z0-9._-]`, not starting with `.`: never a path. It lives
    /// in a directory private to this user (see the `named` module: `$XDG_RUNTIME_DIR` or
    /// `/dev/shm/multitask-shm-<uid>`, 0700), so no other user can attach or squat it. The
    /// block is complete before its name appears. Unlike a block from
    /// [`create`](SharedMemory::create), it outlives its creator, crash included, until
    /// [`unlink`](SharedMemory::unlink) (Python's with `track=False`).
    ///
    /// ```
    /// use process_ipc::{SharedError, SharedMemory};
    ///
    /// let name = format!("doc-example-{}", std::process::id());
    /// let mut block = SharedMemory::create_named(&name, 16).unwrap();
    /// block.as_mut_slice()[0] = 7;
    /// assert!(matches!(
    ///     SharedMemory::create_named(&name, 16),
    ///     Err(SharedError::Exists { .. }) // Python's FileExistsError
    /// ));
    /// assert_eq!(SharedMemory::attach(&name).unwrap().as_slice()[0], 7);
    /// block.unlink();
    /// ```
    ///
    /// # Errors
    /// [`SharedError::Exists`] if a block of that name exists; [`SharedError::Refused`] for a
    /// name that is not allowed or a directory that is not private to this user;
    /// as [`create`](SharedMemory::create) for the size.
    pub fn create_named(name: &str, size: usize) -> Result<Self, SharedError> {
        if size == 0 {
            return Err(SharedError::ZeroSize);
        }
        let size = check_size(size as u128)?;
        let map = super::named::create(name, size)?;
        Ok(SharedMemory {
            map: Arc::new(map),
            size,
            name: name.to_string(),
            creator: false,
        })
    }

    /// Maps the block called `name`: one made by [`create`](SharedMemory::create) in a process
    /// of this user that still holds it, or by [`create_named`](SharedMemory::create_named)
    /// in any process of this user and not unlinked.
    ///
    /// # Errors
    /// [`SharedError::NotFound`] for a name that was never made, has been unlinked, or whose
    /// creator has gone; [`SharedError::Refused`] for something that is not a block of ours
    /// (another owner, a mode open to others, a header that does not match the file, a name
    /// that is a path).
    pub fn attach(name: &str) -> Result<Self, SharedError> {
        let not_found = |reason: &str| SharedError::NotFound {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let Some((pid, fd_number, nonce)) = parse_name(name) else {
            // A name the program chose (`create_named`).
            let (map, size) = super::named::attach(name)?;
            return Ok(SharedMemory {
                map: Arc::new(map),
                size,
                name: name.to_string(),
                creator: false,
            });
        };
        if pid == super::pid::my_pid() {
            // Our own block: share this process's mapping of it.
            let map = own_block(fd_number)
                .ok_or_else(|| not_found("every handle on it here has been dropped"))?;
            let block = SharedMemory {
                size: map.len() - HEADER,
                map,
                name: name.to_string(),
                creator: false,
            };
            return block.checked(nonce, not_found);
        }
        let fd = {
            let path = CString::new(format!("/proc/{pid}/fd/{fd_number}"))
                .expect("digits and slashes hold no NUL");
            crate::sys::file::open(&path, libc::O_RDWR).map_err(|e| {
                not_found(&format!(
                    "its creator (pid {pid}) has exited or dropped it ({e})"
                ))
            })?
        };
        let (mut map, size) = super::named::map_private(&fd, name)?;
        // Kept open with the mapping: a handle passed on from here names this descriptor.
        map.hold(fd);
        if !map.count_in() {
            return Err(not_found("it has been unlinked"));
        }
        let map = Arc::new(map);
        Mapping::list_attached(&map);
        SharedMemory {
            map,
            size,
            name: name.to_string(),
            creator: false,
        }
        .checked(nonce, not_found)
    }

    /// This handle, if its header is that of the block named with `nonce`, not unlinked.
    fn checked(
        self,
        nonce: u64,
        not_found: impl Fn(&str) -> SharedError,
    ) -> Result<Self, SharedError> {
        let header = self.header();
        if header.magic.load(Ordering::Acquire) != MAGIC
            || header.nonce.load(Ordering::Relaxed) != nonce
            || header.size.load(Ordering::Relaxed) != self.size as u64
        {
            return Err(not_found("that descriptor now holds something else"));
        }
        if header.unlinked.load(Ordering::Acquire) != 0 {
            return Err(not_found("it has been unlinked"));
        }
        Ok(self)
    }

    /// Another handle on the same block (Python: attaching by name).
    ///
    /// # Errors
    /// As [`attach`](SharedMemory::attach), if the block has been unlinked.
    pub fn try_clone(&self) -> Result<Self, SharedError> {
        SharedMemory::attach(&self.name)
    }

    /// The name other processes attach with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes, as created.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The bytes. Other processes may write them at any time: synchronise with a
    /// [`Lock`](crate::Lock), or use [`Value`](crate::Value) / [`Array`](crate::Array).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping holds HEADER + size bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.map.ptr().add(HEADER), self.size) }
    }

    /// The bytes, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes the view exclusive in this process.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr().add(HEADER), self.size) }
    }

    /// The block as a slice of plain-old-data values: as many whole `T`s as fit in
    /// [`size`](SharedMemory::size) bytes (bytes after the last whole `T` are not in the view).
    /// Python reaches the same place with `shm.buf.cast('I')` or
    /// `numpy.ndarray(shape, dtype, buffer=shm.buf)`. As with
    /// [`as_slice`](SharedMemory::as_slice), other processes may write the block at any
    /// time: synchronise with a [`Lock`](crate::Lock).
    ///
    /// ```
    /// use process_ipc::SharedMemory;
    ///
    /// let mut block = SharedMemory::create(4 * 1000 + 3).unwrap();
    /// block.as_mut_slice_of::<u32>().unwrap()[999] = 7;
    /// let other = SharedMemory::attach(block.name()).unwrap();
    /// let view = other.as_slice_of::<u32>().unwrap();
    /// assert_eq!((view.len(), view[999]), (1000, 7));
    /// ```
    ///
    /// # Errors
    /// [`SharedError::Refused`] if `T` needs an alignment above 64 bytes (the data of a block
    /// starts 64 bytes into a page) or is zero-sized.
    pub fn as_slice_of<T: bytemuck::Pod>(&self) -> Result<&[T], SharedError> {
        let bytes = self.as_slice();
        Ok(bytemuck::cast_slice(&bytes[..self.whole_bytes::<T>()?]))
    }

    /// The block as a mutable slice of plain-old-data values: see
    /// [`as_slice_of`](SharedMemory::as_slice_of).
    ///
    /// # Errors
    /// As [`as_slice_of`](SharedMemory::as_slice_of).
    pub fn as_mut_slice_of<T: bytemuck::Pod>(&mut self) -> Result<&mut [T], SharedError> {
        let end = self.whole_bytes::<T>()?;
        Ok(bytemuck::cast_slice_mut(&mut self.as_mut_slice()[..end]))
    }

    /// The bytes a view of whole `T`s covers, refusing a `T` the block's alignment cannot
    /// hold and a zero-sized one.
    fn whole_bytes<T>(&self) -> Result<usize, SharedError> {
        let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        let refuse = |why: String| SharedError::Refused {
            name: self.name.clone(),
            reason: format!("a view of {}: {why}", std::any::type_name::<T>()),
        };
        if align > HEADER {
            return Err(refuse(format!(
                "needs {align}-byte alignment; a block's data is aligned to {HEADER} bytes"
            )));
        }
        if size == 0 {
            return Err(refuse("a zero-sized type has no items to view".into()));
        }
        Ok(self.size / size * size)
    }

    /// A copy of the bytes (Python's `bytes(shm.buf)`), as `as_slice().to_vec()` makes, but
    /// cheaper for large blocks: the new buffer asks the kernel for huge pages (where
    /// `/sys/kernel/mm/transparent_hugepage/enabled` allows them), so that a copy of 256 MiB
    /// takes its fresh memory in 128 huge pages instead of 65 536 small ones, and has the
    /// kernel provide all of them in one call before the copy starts instead of in a page
    /// fault inside the copy (measured 57 ms instead of 77 ms for 256 MiB).
    ///
    /// ```
    /// use process_ipc::SharedMemory;
    ///
    /// let mut block = SharedMemory::create(3).unwrap();
    /// block.as_mut_slice().copy_from_slice(b"abc");
    /// assert_eq!(block.to_vec(), b"abc");
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        // One thread copies: sharing the copy (and its page faults) among threads measured
        // slower on a busy machine, where the helpers wait for a CPU.
        let mut out = Vec::with_capacity(self.size);
        prepare_fresh(out.as_mut_ptr(), self.size);
        out.extend_from_slice(self.as_slice());
        out
    }

    /// Removes the name: no process can attach any more (Python's `unlink()`). Processes
    /// already attached keep their mapping; the memory goes when the last of them unmaps it.
    /// Any process may call it; calling it twice does nothing more.
    ///
    /// For a named block ([`create_named`](SharedMemory::create_named)), the name is removed
    /// from the directory; a failure to (someone removed it first) is ignored, as the block
    /// is unlinked either way.
    pub fn unlink(&mut self) {
        self.header().unlinked.store(1, Ordering::Release);
        if parse_name(&self.name).is_none() {
            let _ = super::named::unlink(&self.name);
        }
        self.creator = false;
        if let Some(map) = pinned().as_mut() {
            map.remove(&self.name);
        }
    }

    /// The name of a block inside one of the primitives (a queue's ring, a lock's cell), for
    /// sending to another process, which attaches by it.
    ///
    /// The name leads to a descriptor this process holds: the block's own name here in its
    /// creator, and elsewhere a name of this process's (its pid, the descriptor it attached
    /// by, the same nonce), so that a block passed on keeps working after its creator has
    /// let it go.
    ///
    /// The block must stay attachable until the receiver has attached, however soon this
    /// handle drops (a handle moved into a `Process` argument is dropped as soon as it is
    /// sent). Inside a [`TransferScope`] (a process start, which returns only once the child
    /// has attached its arguments, or is gone) the scope keeps the mapping until it ends.
    /// Outside one, a block made here is pinned in [`PINNED`] until `unlink()` or the end of
    /// this process.
    pub(crate) fn name_for_transfer(&self) -> String {
        self.transfer_name(true)
    }

    /// The name a `SharedMemory` handle is sent by: as [`name_for_transfer`], but a block
    /// made here is pinned for good (until `unlink()`), scope or not: the program knows the
    /// name and may attach by it after the child is done, as with Python's.
    ///
    /// [`name_for_transfer`]: SharedMemory::name_for_transfer
    fn name_for_user_transfer(&self) -> String {
        self.transfer_name(false)
    }

    /// The name to send; `scope_is_enough`: a scope's hold spares a block made here its pin.
    fn transfer_name(&self, scope_is_enough: bool) -> String {
        let live = self.header().unlinked.load(Ordering::Acquire) == 0;
        // Any handle (one attached here too, which is passed on by its own descriptor) is
        // held by the open scope.
        let scoped = live
            && SCOPE.with(|scope| match scope.borrow_mut().last_mut() {
                Some(pins) => {
                    if !pins.iter().any(|p| Arc::ptr_eq(p, &self.map)) {
                        pins.push(Arc::clone(&self.map));
                    }
                    true
                }
                None => false,
            });
        if self.creator && !(scoped && scope_is_enough) {
            pinned()
                .get_or_insert_with(HashMap::new)
                .entry(self.name.clone())
                .or_insert_with(|| Arc::clone(&self.map));
        }
        match (parse_name(&self.name), self.map.fd_number()) {
            (Some((_, _, nonce)), fd) if fd >= 0 => {
                format!("mt_psm_{}_{fd}_{nonce:016x}", super::pid::my_pid())
            }
            _ => self.name.clone(),
        }
    }

    /// A pointer to byte `offset` of the user's area, for the types built on a block.
    pub(crate) fn ptr_at(&self, offset: usize) -> *mut u8 {
        assert!(
            offset < self.size,
            "offset {offset} past a block of {}",
            self.size
        );
        // SAFETY: checked to be inside the mapping.
        unsafe { self.map.ptr().add(HEADER + offset) }
    }

    fn header(&self) -> &Header {
        self.map.header()
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("creator", &self.creator)
            .finish()
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name_for_user_transfer())
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SharedMemory::attach(&name).map_err(serde::de::Error::custom)
    }
}

/// Sizes up to this are taken without asking the kernel how much memory there is: every
/// system this runs on has more.
const SURELY_BACKED: u128 = 16 << 20;

/// `bytes` as a block size, if a block of that many user bytes can be backed: no more than
/// RAM + swap (see [`SharedMemory::create`]), and within what a mapping and a slice can span.
pub(crate) fn check_size(bytes: u128) -> Result<usize, SharedError> {
    if bytes <= SURELY_BACKED {
        return Ok(bytes as usize);
    }
    let limit = memory_limit();
    // A slice spans at most isize::MAX bytes, and the header and the page rounding come on
    // top: far above any RAM + swap, but it keeps the arithmetic below exact.
    let span = (isize::MAX as u128) - (HEADER as u128) - 4096;
    if bytes > u128::from(limit) || bytes > span {
        return Err(SharedError::TooLarge { size: bytes, limit });
    }
    Ok(bytes as usize)
}

/// RAM + swap, in bytes, as `sysinfo` reports them (`u64::MAX` if it cannot say).
fn memory_limit() -> u64 {
    crate::sys::memory::ram_and_swap().unwrap_or(u64::MAX)
}

/// Readies `len` bytes at `ptr` (memory this process owns, not yet touched) for one large
/// write, when they are worth it: asks for transparent huge pages in the 2 MiB-aligned part,
/// then has the kernel supply every page of the page-aligned part at once
/// (`MADV_POPULATE_WRITE`, Linux 5.14) rather than fault by fault under the copy. Both are only
/// advice: a kernel that refuses either leaves the memory as it was, and the copy's own
/// faults supply it.
fn prepare_fresh(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < 4 * HUGE {
        return;
    }
    // SAFETY: the caller's `len` bytes at `ptr` are memory of ours not yet written.
    unsafe { crate::sys::memory::advise_fresh(ptr, len) };
}

fn parse_name(name: &str) -> Option<(u32, i32, u64)> {
    let mut parts = name.strip_prefix("mt_psm_")?.split('_');
    let pid = parts.next()?.parse().ok()?;
    let fd = parts.next()?.parse().ok()?;
    let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((pid, fd, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_junk_is_not_a_name() {
        assert_eq!(
            parse_name("mt_psm_12_7_00000000000000ff"),
            Some((12, 7, 255))
        );
        assert_eq!(parse_name("mt_psm_12_7"), None);
        assert_eq!(parse_name("/psm_abc"), None);
        assert_eq!(parse_name("mt_psm_12_7_ff_extra"), None);
    }
}
