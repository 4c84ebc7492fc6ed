//! `ShareableList`: a fixed-length list of small values in one shared block (Python's
//! `multiprocessing.shared_memory.ShareableList`).
//!
//! Layout of the block's bytes (all words little-endian `u64`, 8-aligned):
//!
//! ```text
//! 0   magic            "mt-slst\x01"
//! 8   count            number of items
//! 16  data_len         bytes of the data area
//! 24  (reserved)
//! 32  count slots of 4 words: tag, capacity, offset (in the data area), len (str/bytes)
//! ..  the data area: each slot's `capacity` bytes, fixed at creation
//! ```
//!
//! The block is shared memory, so any process of the user may have written anything there:
//! every word is read once and checked before use (a known tag, a slot inside the data area,
//! a length within its slot, UTF-8 for a string), and a bad one is
//! [`SharedError::Corrupt`] naming the block and the word, never an out-of-bounds access or
//! a panic. As in Python, the list has no lock: a read that races a write of the same item
//! may see a mix of the two (or a string that is no longer UTF-8: an error). Hold a
//! [`Lock`](crate::Lock) around items that change.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::SharedError;
use super::memory::SharedMemory;

const MAGIC: u64 = u64::from_le_bytes(*b"mt-slst\x01");
const HEAD: usize = 32;
const SLOT: usize = 32;
/// ShareableItem sizes are rounded up to this (Python's alignment of 8).
const ALIGN: usize = 8;

const TAG_NONE: u64 = 0;
const TAG_INT: u64 = 1;
const TAG_FLOAT: u64 = 2;
const TAG_BOOL: u64 = 3;
const TAG_STR: u64 = 4;
const TAG_BYTES: u64 = 5;

/// One item of a [`ShareableList`]: the types Python's `ShareableList` holds.
#[derive(Clone, Debug, PartialEq)]
pub enum ShareableItem {
    /// `None`.
    None,
    /// An `int` (64 bits, as Python's `q` format).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
}

impl ShareableItem {
    fn tag(&self) -> u64 {
        match self {
            ShareableItem::None => TAG_NONE,
            ShareableItem::Int(_) => TAG_INT,
            ShareableItem::Float(_) => TAG_FLOAT,
            ShareableItem::Bool(_) => TAG_BOOL,
            ShareableItem::Str(_) => TAG_STR,
            ShareableItem::Bytes(_) => TAG_BYTES,
        }
    }

    /// The bytes stored for it.
    fn encoded(&self) -> Vec<u8> {
        match self {
            ShareableItem::None => vec![0; 8],
            ShareableItem::Int(v) => v.to_le_bytes().to_vec(),
            ShareableItem::Float(v) => v.to_le_bytes().to_vec(),
            ShareableItem::Bool(v) => u64::from(*v).to_le_bytes().to_vec(),
            ShareableItem::Str(s) => s.as_bytes().to_vec(),
            ShareableItem::Bytes(b) => b.clone(),
        }
    }

    /// The room a new slot for it gets: 8 for a number, a bool or None; for a string or
    /// bytes, its length rounded up to the next multiple of 8 past it (Python's rule).
    fn capacity(&self) -> usize {
        match self {
            ShareableItem::Str(s) => (s.len() / ALIGN + 1) * ALIGN,
            ShareableItem::Bytes(b) => (b.len() / ALIGN + 1) * ALIGN,
            _ => 8,
        }
    }
}

impl From<i64> for ShareableItem {
    fn from(v: i64) -> Self {
        ShareableItem::Int(v)
    }
}
impl From<f64> for ShareableItem {
    fn from(v: f64) -> Self {
        ShareableItem::Float(v)
    }
}
impl From<bool> for ShareableItem {
    fn from(v: bool) -> Self {
        ShareableItem::Bool(v)
    }
}
impl From<&str> for ShareableItem {
    fn from(v: &str) -> Self {
        ShareableItem::Str(v.to_string())
    }
}
impl From<&[u8]> for ShareableItem {
    fn from(v: &[u8]) -> Self {
        ShareableItem::Bytes(v.to_vec())
    }
}

/// A fixed-length list of [`ShareableItem`]s in shared memory (Python's `ShareableList`): any
/// process that has it (as an argument, or by name for a named one) reads and writes the same
/// items.
/// An item may be replaced by another of any type that fits its slot: a string or bytes no
/// longer than the first one's room (its length rounded up past the next multiple of 8), as
/// in Python.
///
/// ```
/// use process_ipc::{ShareableItem, ShareableList};
///
/// use ShareableItem as It;
/// let list = ShareableList::new(&[It::Int(1), "howdy".into(), It::None]).unwrap();
/// list.set(0, ShareableItem::Float(2.5)).unwrap();
/// list.set(1, "hi".into()).unwrap(); // shorter: fits
/// assert!(list.set(1, "far too long to fit".into()).is_err());
/// assert_eq!(list.get(1).unwrap(), ShareableItem::Str("hi".into()));
/// assert_eq!(list.len(), 3);
/// assert_eq!(list.index(&ShareableItem::None).unwrap(), Some(2));
/// ```
pub struct ShareableList {
    mem: SharedMemory,
    /// The item count, read once and checked against the block when it was attached.
    count: usize,
}

impl ShareableList {
    /// A list holding `items`, in a new block (Python's `ShareableList(sequence)`).
    ///
    /// # Errors
    /// As [`SharedMemory::create`].
    pub fn new(items: &[ShareableItem]) -> Result<Self, SharedError> {
        let mem = SharedMemory::create(layout_size(items))?;
        Ok(Self::fill(mem, items))
    }

    /// A list holding `items` in a new block named `name` (Python's
    /// `ShareableList(sequence, name=name)`): see [`SharedMemory::create_named`]. The items
    /// are written just after the name appears: an attach in that instant is
    /// [`SharedError::Corrupt`] ("no list's magic"), as Python's can read a half-made list.
    ///
    /// # Errors
    /// As [`SharedMemory::create_named`].
    pub fn create_named(name: &str, items: &[ShareableItem]) -> Result<Self, SharedError> {
        let mem = SharedMemory::create_named(name, layout_size(items))?;
        Ok(Self::fill(mem, items))
    }

    /// The list in the block called `name` (Python's `ShareableList(name=name)`).
    ///
    /// # Errors
    /// As [`SharedMemory::attach`]; [`SharedError::Corrupt`] for a block that does not hold
    /// a list.
    pub fn attach(name: &str) -> Result<Self, SharedError> {
        Self::from_memory(SharedMemory::attach(name)?)
    }

    fn fill(mem: SharedMemory, items: &[ShareableItem]) -> Self {
        let list = ShareableList {
            mem,
            count: items.len(),
        };
        let mut offset = 0;
        for (index, item) in items.iter().enumerate() {
            let slot = HEAD + index * SLOT;
            let capacity = item.capacity();
            list.word(slot + 8)
                .store(capacity as u64, Ordering::Relaxed);
            list.word(slot + 16).store(offset as u64, Ordering::Relaxed);
            list.write(index, HEAD + items.len() * SLOT + offset, item);
            offset += capacity;
        }
        list.word(8).store(items.len() as u64, Ordering::Relaxed);
        list.word(16).store(offset as u64, Ordering::Relaxed);
        list.word(0).store(MAGIC, Ordering::Release);
        list
    }

    /// Checks a block's header before trusting it as a list.
    fn from_memory(mem: SharedMemory) -> Result<Self, SharedError> {
        let name = mem.name().to_string();
        let corrupt = |what: String| SharedError::Corrupt {
            name: name.clone(),
            what,
        };
        if mem.size() < HEAD {
            return Err(corrupt(format!(
                "{} bytes: too small for a list",
                mem.size()
            )));
        }
        let list = ShareableList { mem, count: 0 };
        if list.word(0).load(Ordering::Acquire) != MAGIC {
            return Err(corrupt("no list's magic at its start".into()));
        }
        let count = list.word(8).load(Ordering::Relaxed);
        let data_len = list.word(16).load(Ordering::Relaxed);
        let size = list.mem.size() as u64;
        let slots_end = (count as u128) * (SLOT as u128) + HEAD as u128;
        if slots_end + u128::from(data_len) != u128::from(size) {
            return Err(corrupt(format!(
                "a header of {count} items and {data_len} data bytes in a block of {size}"
            )));
        }
        Ok(ShareableList {
            count: count as usize,
            ..list
        })
    }

    /// The word at byte `at` of the block (8-aligned, inside it: callers check).
    fn word(&self, at: usize) -> &AtomicU64 {
        assert!(
            at % 8 == 0 && at + 8 <= self.mem.size(),
            "word {at} checked"
        );
        // SAFETY: in bounds and 8-aligned (the block starts 64-aligned); any bits are a valid
        // AtomicU64, shared memory written by other processes only through atomics or copies.
        unsafe { &*(self.mem.ptr_at(at) as *const AtomicU64) }
    }

    fn data_start(&self) -> usize {
        HEAD + self.count * SLOT
    }

    /// How many items (fixed at creation).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it holds no items.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The block's name (Python's `sl.shm.name`).
    pub fn name(&self) -> &str {
        self.mem.name()
    }

    /// The block (Python's `sl.shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.mem
    }

    /// Slot `index`'s tag, capacity, data offset (from the block's start) and length, each
    /// checked.
    fn slot(&self, index: usize) -> Result<(u64, usize, usize, usize), SharedError> {
        if index >= self.count {
            return Err(SharedError::IndexOutOfRange {
                index,
                len: self.count,
            });
        }
        let corrupt = |what: String| SharedError::Corrupt {
            name: self.mem.name().to_string(),
            what: format!("item {index}: {what}"),
        };
        let at = HEAD + index * SLOT;
        let tag = self.word(at).load(Ordering::Acquire);
        let capacity = self.word(at + 8).load(Ordering::Relaxed);
        let offset = self.word(at + 16).load(Ordering::Relaxed);
        let len = self.word(at + 24).load(Ordering::Relaxed);
        let data_len = (self.mem.size() - self.data_start()) as u64;
        if tag > TAG_BYTES {
            return Err(corrupt(format!("type tag {tag} is not a type")));
        }
        if offset % ALIGN as u64 != 0
            || offset
                .checked_add(capacity)
                .is_none_or(|end| end > data_len)
        {
            return Err(corrupt(format!(
                "a slot of {capacity} bytes at {offset} past a data area of {data_len}"
            )));
        }
        if capacity < 8 {
            return Err(corrupt(format!("a slot of {capacity} bytes (at least 8)")));
        }
        if len > capacity {
            return Err(corrupt(format!(
                "a length of {len} in a slot of {capacity}"
            )));
        }
        let start = self.data_start() + offset as usize;
        Ok((tag, capacity as usize, start, len as usize))
    }

    /// ShareableItem `index` (Python's `sl[index]`).
    ///
    /// # Errors
    /// [`SharedError::IndexOutOfRange`]; [`SharedError::Corrupt`] if its slot was scribbled on.
    pub fn get(&self, index: usize) -> Result<ShareableItem, SharedError> {
        let (tag, _, start, len) = self.slot(index)?;
        let copy = |n: usize| -> Vec<u8> {
            let mut out = vec![0u8; n];
            // SAFETY: `start + n` is within the block (checked in `slot`: n is at most the
            // capacity, or 8 which the capacity is at least); a copy of bytes others may be
            // writing gives some bytes, all valid for u8.
            unsafe { std::ptr::copy_nonoverlapping(self.mem.ptr_at(start), out.as_mut_ptr(), n) };
            out
        };
        let word = |bytes: Vec<u8>| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        Ok(match tag {
            TAG_NONE => ShareableItem::None,
            TAG_INT => ShareableItem::Int(word(copy(8)) as i64),
            TAG_FLOAT => ShareableItem::Float(f64::from_bits(word(copy(8)))),
            TAG_BOOL => ShareableItem::Bool(word(copy(8)) != 0),
            TAG_STR => ShareableItem::Str(String::from_utf8(copy(len)).map_err(|_| {
                SharedError::Corrupt {
                    name: self.mem.name().to_string(),
                    what: format!("item {index}: a string that is not UTF-8"),
                }
            })?),
            _ => ShareableItem::Bytes(copy(len)),
        })
    }

    /// Replaces item `index` (Python's `sl[index] = item`).
    ///
    /// # Errors
    /// [`SharedError::IndexOutOfRange`]; [`SharedError::TooLong`] for a string or bytes
    /// longer than the slot's room (Python's `ValueError`); [`SharedError::Corrupt`].
    pub fn set(&self, index: usize, item: ShareableItem) -> Result<(), SharedError> {
        let (_, capacity, start, _) = self.slot(index)?;
        let needed = item.encoded().len();
        if needed > capacity {
            return Err(SharedError::TooLong {
                index,
                needed,
                capacity,
            });
        }
        self.write(index, start, &item);
        Ok(())
    }

    /// Writes `item` into slot `index`, whose data starts at byte `start` of the block and has
    /// room for it (checked by the caller: the offset is not read again from the block).
    fn write(&self, index: usize, start: usize, item: &ShareableItem) {
        let at = HEAD + index * SLOT;
        let bytes = item.encoded();
        assert!(
            start + bytes.len() <= self.mem.size(),
            "checked by the caller"
        );
        // SAFETY: in bounds (asserted); shared bytes, written by copy.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.mem.ptr_at(start), bytes.len())
        };
        self.word(at + 24)
            .store(bytes.len() as u64, Ordering::Relaxed);
        self.word(at).store(item.tag(), Ordering::Release);
    }

    /// Every item, in order.
    ///
    /// # Errors
    /// As [`get`](ShareableList::get).
    pub fn to_vec(&self) -> Result<Vec<ShareableItem>, SharedError> {
        (0..self.count).map(|i| self.get(i)).collect()
    }

    /// How many items equal `item` (Python's `count`).
    ///
    /// # Errors
    /// As [`get`](ShareableList::get).
    pub fn count(&self, item: &ShareableItem) -> Result<usize, SharedError> {
        Ok(self.to_vec()?.iter().filter(|x| *x == item).count())
    }

    /// The first index holding `item`, if any (Python's `index`, whose `ValueError` is `None`).
    ///
    /// # Errors
    /// As [`get`](ShareableList::get).
    pub fn index(&self, item: &ShareableItem) -> Result<Option<usize>, SharedError> {
        for i in 0..self.count {
            if self.get(i)? == *item {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// Bytes a block needs for `items`.
fn layout_size(items: &[ShareableItem]) -> usize {
    HEAD + items.len() * SLOT + items.iter().map(ShareableItem::capacity).sum::<usize>()
}

impl std::fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.mem.name())
            .field("len", &self.count)
            .finish_non_exhaustive()
    }
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.mem.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mem = SharedMemory::deserialize(deserializer)?;
        ShareableList::from_memory(mem).map_err(serde::de::Error::custom)
    }
}
