//! `RawValue` and `RawArray`: plain-old-data in shared memory with no lock (Python's
//! `multiprocessing.RawValue` / `RawArray`), and the unlocked views `get_obj()` gives of a
//! `Value` or `Array`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::memory::SharedMemory;

/// One `T` in shared memory with no lock (Python's `multiprocessing.RawValue`): each `get`
/// and `set` is a single copy, and a read-modify-write from two processes loses updates (the
/// seed's race, made visible).
///
/// ```
/// use process_ipc::RawValue;
///
/// let v = RawValue::new(7i32).unwrap();
/// v.set(v.get() + 1);
/// assert_eq!(v.get(), 8);
/// ```
pub struct RawValue<T: Pod> {
    mem: Arc<SharedMemory>,
    /// Where the value starts in the block's bytes (0, or after a `Value`'s cell).
    offset: usize,
    _marker: PhantomData<T>,
}

/// `len` values of `T` in shared memory with no lock (Python's `multiprocessing.RawArray`).
///
/// ```
/// use process_ipc::RawArray;
///
/// let a = RawArray::from_slice(&[1u8, 2, 3]).unwrap();
/// a.set(0, 9);
/// assert_eq!(a.to_vec(), [9, 2, 3]);
/// ```
pub struct RawArray<T: Pod> {
    mem: Arc<SharedMemory>,
    offset: usize,
    len: usize,
    _marker: PhantomData<T>,
}

impl<T: Pod> RawValue<T> {
    /// A shared value holding `value`.
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`](super::SharedError::ZeroSize) for a zero-sized `T`;
    /// [`SharedError::Os`](super::SharedError::Os) if the block cannot be made.
    pub fn new(value: T) -> Result<Self, super::SharedError> {
        let mut mem = SharedMemory::create(std::mem::size_of::<T>())?;
        mem.as_mut_slice()
            .copy_from_slice(bytemuck::bytes_of(&value));
        Ok(RawValue {
            mem: Arc::new(mem),
            offset: 0,
            _marker: PhantomData,
        })
    }

    /// The view of one `T` at `offset` of `mem` (checked by the caller: in bounds, aligned).
    pub(super) fn view(mem: Arc<SharedMemory>, offset: usize) -> Self {
        RawValue {
            mem,
            offset,
            _marker: PhantomData,
        }
    }

    fn ptr(&self) -> *mut T {
        self.mem.ptr_at(self.offset) as *mut T
    }

    /// A copy of the value as it is now.
    pub fn get(&self) -> T {
        // SAFETY: the block holds one T at `offset`, aligned (checked when the handle was
        // made); a volatile read copies whatever bytes are there, and any bytes are a valid Pod.
        unsafe { std::ptr::read_volatile(self.ptr()) }
    }

    /// Overwrites the value.
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; other processes may write at the same time, which is this
        // type's documented race, not memory unsafety for Pod bytes.
        unsafe { std::ptr::write_volatile(self.ptr(), value) }
    }
}

impl<T: Pod> RawArray<T> {
    /// A shared array holding a copy of `items`.
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`](super::SharedError::ZeroSize) for an empty slice;
    /// [`SharedError::Os`](super::SharedError::Os) if the block cannot be made.
    pub fn from_slice(items: &[T]) -> Result<Self, super::SharedError> {
        let mut mem = SharedMemory::create(std::mem::size_of_val(items))?;
        mem.as_mut_slice()
            .copy_from_slice(bytemuck::cast_slice(items));
        Ok(RawArray {
            mem: Arc::new(mem),
            offset: 0,
            len: items.len(),
            _marker: PhantomData,
        })
    }

    /// The view of `len` Ts at `offset` of `mem` (checked by the caller).
    pub(super) fn view(mem: Arc<SharedMemory>, offset: usize, len: usize) -> Self {
        RawArray {
            mem,
            offset,
            len,
            _marker: PhantomData,
        }
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: an array holds at least one item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ptr(&self) -> *mut T {
        self.mem.ptr_at(self.offset) as *mut T
    }

    /// A copy of item `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        (index < self.len).then(|| {
            // SAFETY: in bounds, aligned (checked when the handle was made); see RawValue.
            unsafe { std::ptr::read_volatile(self.ptr().add(index)) }
        })
    }

    /// Overwrites item `index`; `false` past the end.
    pub fn set(&self, index: usize, value: T) -> bool {
        if index >= self.len {
            return false;
        }
        // SAFETY: in bounds and aligned; see RawValue::set.
        unsafe { std::ptr::write_volatile(self.ptr().add(index), value) };
        true
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).filter_map(|i| self.get(i)).collect()
    }
}

/// On the wire: the block (its name), where the items start and how many there are; the
/// receiver checks that they fit the block and are aligned before it trusts them.
#[derive(Serialize, Deserialize)]
struct RawWire {
    mem: SharedMemory,
    offset: usize,
    len: usize,
}

/// [`RawWire`] as sent: the block by its name (as `SharedMemory` serialises).
#[derive(Serialize)]
struct RawWireOut<'a> {
    mem: &'a str,
    offset: usize,
    len: usize,
}

fn serialize_raw<S: Serializer>(
    mem: &SharedMemory,
    offset: usize,
    len: usize,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    RawWireOut {
        mem: &mem.name_for_transfer(),
        offset,
        len,
    }
    .serialize(serializer)
}

/// The block, offset and length of a raw view that arrived, checked against `T`.
fn deserialize_raw<'de, T, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<(SharedMemory, usize, usize), D::Error> {
    let RawWire { mem, offset, len } = RawWire::deserialize(deserializer)?;
    let size = std::mem::size_of::<T>();
    let fits = size
        .checked_mul(len)
        .and_then(|bytes| bytes.checked_add(offset))
        .is_some_and(|end| end <= mem.size());
    if size == 0 || len == 0 || !fits || offset % std::mem::align_of::<T>() != 0 {
        return Err(serde::de::Error::custom(format!(
            "shared memory {:?} holds {} bytes: no room for {len} aligned {size}-byte items at \
             offset {offset}",
            mem.name(),
            mem.size()
        )));
    }
    Ok((mem, offset, len))
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_raw(&self.mem, self.offset, 1, serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (mem, offset, len) = deserialize_raw::<T, D>(deserializer)?;
        if len != 1 {
            return Err(serde::de::Error::custom(format!(
                "shared memory {:?}: {len} items where a RawValue holds one",
                mem.name()
            )));
        }
        Ok(RawValue::view(Arc::new(mem), offset))
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_raw(&self.mem, self.offset, self.len, serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (mem, offset, len) = deserialize_raw::<T, D>(deserializer)?;
        Ok(RawArray::view(Arc::new(mem), offset, len))
    }
}

impl<T: Pod> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("name", &self.mem.name())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("name", &self.mem.name())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// `clone()` is another handle on the same shared value (a new reference, not a copy).
impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue::view(Arc::clone(&self.mem), self.offset)
    }
}

/// `clone()` is another handle on the same shared items (a new reference, not a copy).
impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray::view(Arc::clone(&self.mem), self.offset, self.len)
    }
}
