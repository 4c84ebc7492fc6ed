//! `Value` and `Array`: plain-old-data in shared memory, with a lock (Python's
//! `multiprocessing.Value` / `Array`), and `RawValue` / `RawArray` without one.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CELL_SIZE, CellRef, Kind, deadline_after};
use super::error::SharedError;
use super::memory::{SharedMemory, check_size};
use super::sync::{LockGuard, acquire_cell};

/// One `T` in shared memory, behind a process-wide lock (Python's `multiprocessing.Value`).
///
/// `T` is plain old data ([`bytemuck::Pod`]: integers, floats, arrays and `#[repr(C)]`
/// structs of them), since the bytes are the value in every process. A handle is a serde
/// value, so it can be a `Process` or pool argument.
///
/// Python's `with v.get_lock(): v.value += 1` is `*v.lock()? += 1`:
///
/// ```
/// use process_ipc::Value;
///
/// let counter = Value::new(0u64).unwrap();
/// *counter.lock().unwrap() += 1;
/// counter.set(counter.get().unwrap() + 1).unwrap(); // two steps: not atomic as a whole
/// assert_eq!(counter.get().unwrap(), 2);
/// ```
///
/// A type that is not plain old data does not compile:
///
/// ```compile_fail
/// let _ = process_ipc::Value::new(String::from("heap")); // String: not Pod
/// ```
pub struct Value<T: Pod> {
    cell: CellRef,
    _marker: PhantomData<T>,
}

/// `len` values of `T` in shared memory, behind a process-wide lock (Python's
/// `multiprocessing.Array`).
///
/// ```
/// use process_ipc::Array;
///
/// let samples = Array::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
/// samples.lock().unwrap()[1] = 20.0;
/// assert_eq!(samples.to_vec().unwrap(), [1.0, 20.0, 3.0]);
/// assert_eq!(samples.len(), 3);
/// ```
pub struct Array<T: Pod> {
    cell: CellRef,
    len: usize,
    _marker: PhantomData<T>,
}

/// The value of a [`Value`], held under its lock.
pub struct ValueGuard<'a, T> {
    _lock: LockGuard<'a>,
    value: *mut T,
}

/// The items of an [`Array`], held under its lock.
pub struct ArrayGuard<'a, T> {
    _lock: LockGuard<'a>,
    items: *mut T,
    len: usize,
}

/// Bytes a cell-prefixed block needs after its cell for `len` values of `T`, each aligned
/// for `T`; [`SharedError::TooLarge`] if the whole block could not be backed (see
/// [`check_size`]), the count overflowing included.
fn payload<T>(len: usize) -> Result<usize, SharedError> {
    let bytes = std::mem::size_of::<T>() as u128 * len as u128;
    check_size(CELL_SIZE as u128 + bytes)?;
    Ok(bytes as usize)
}

impl<T: Pod> Value<T> {
    /// A shared value holding `value`.
    ///
    /// # Errors
    /// [`SharedError::Os`] if the shared block cannot be made.
    pub fn new(value: T) -> Result<Self, SharedError> {
        assert_cell_alignment::<T>();
        let cell = CellRef::create(Kind::Value, payload::<T>(1)?)?;
        // SAFETY: the block has room for one T right after the cell, aligned (the cell is
        // 64-byte aligned and sized), and nobody else knows the block yet.
        unsafe { (cell.extra() as *mut T).write(value) };
        Ok(Value {
            cell,
            _marker: PhantomData,
        })
    }

    /// The lock that guards the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> ValueLock<'_> {
        ValueLock { cell: &self.cell }
    }

    /// Takes the lock and gives the value to read and write.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if a holder died holding the lock (it is free again; the value
    /// is as the dead holder left it).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, SharedError> {
        Ok(ValueGuard {
            _lock: acquire_cell(&self.cell, None)?,
            value: self.cell.extra() as *mut T,
        })
    }

    /// As [`lock`](Value::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SharedError::Timeout`], or as [`lock`](Value::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, SharedError> {
        Ok(ValueGuard {
            _lock: acquire_cell(&self.cell, deadline_after(timeout))?,
            value: self.cell.extra() as *mut T,
        })
    }

    /// A copy of the value, read under the lock (Python's `v.value`).
    ///
    /// # Errors
    /// As [`lock`](Value::lock).
    pub fn get(&self) -> Result<T, SharedError> {
        Ok(*self.lock()?)
    }

    /// Replaces the value under the lock (Python's `v.value = x`).
    ///
    /// # Errors
    /// As [`lock`](Value::lock).
    pub fn set(&self, value: T) -> Result<(), SharedError> {
        *self.lock()? = value;
        Ok(())
    }
}

impl<T: Pod> Array<T> {
    /// A shared array holding a copy of `items`.
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`] for an empty slice; [`SharedError::Os`] if the block cannot
    /// be made.
    pub fn from_slice(items: &[T]) -> Result<Self, SharedError> {
        assert_cell_alignment::<T>();
        if items.is_empty() || std::mem::size_of::<T>() == 0 {
            return Err(SharedError::ZeroSize);
        }
        let cell = CellRef::create(Kind::Value, payload::<T>(items.len())?)?;
        // SAFETY: the block has room for `items.len()` Ts after the cell, aligned, and is
        // known to nobody else yet.
        unsafe {
            std::ptr::copy_nonoverlapping(items.as_ptr(), cell.extra() as *mut T, items.len())
        };
        Ok(Array {
            cell,
            len: items.len(),
            _marker: PhantomData,
        })
    }

    /// A shared array of `len` zeroes (Python's `Array('d', 10)`). Its memory is taken as
    /// its pages are first touched, not here (see [`SharedMemory::create`]).
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`] for 0 items; [`SharedError::TooLarge`] for more than the
    /// system can back (or than the address space holds); [`SharedError::Os`] if the block
    /// cannot be made.
    pub fn zeroed(len: usize) -> Result<Self, SharedError> {
        assert_cell_alignment::<T>();
        if len == 0 || std::mem::size_of::<T>() == 0 {
            return Err(SharedError::ZeroSize);
        }
        // A new block is all zeroes, and all-zero bytes are a valid T (Pod): nothing to copy.
        let cell = CellRef::create(Kind::Value, payload::<T>(len)?)?;
        Ok(Array {
            cell,
            len,
            _marker: PhantomData,
        })
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: an array holds at least one item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lock that guards the items (Python's `get_lock()`).
    pub fn get_lock(&self) -> ValueLock<'_> {
        ValueLock { cell: &self.cell }
    }

    /// Takes the lock and gives the items to read and write.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if a holder died holding the lock (it is free again).
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, SharedError> {
        Ok(ArrayGuard {
            _lock: acquire_cell(&self.cell, None)?,
            items: self.cell.extra() as *mut T,
            len: self.len,
        })
    }

    /// A copy of the items, read under the lock.
    ///
    /// # Errors
    /// As [`lock`](Array::lock).
    pub fn to_vec(&self) -> Result<Vec<T>, SharedError> {
        Ok(self.lock()?.to_vec())
    }
}

/// The lock of a [`Value`] or [`Array`] (Python's `get_lock()`), to hold across several
/// steps; the value itself is reached through `lock()`.
#[derive(Clone, Copy)]
pub struct ValueLock<'a> {
    cell: &'a CellRef,
}

impl<'a> ValueLock<'a> {
    /// Takes the lock.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if a holder died holding it (it is free again).
    pub fn acquire(&self) -> Result<LockGuard<'a>, SharedError> {
        acquire_cell(self.cell, None)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SharedError::Timeout`], or as [`acquire`](ValueLock::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'a>, SharedError> {
        acquire_cell(self.cell, deadline_after(timeout))
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the pointer is into a live block, aligned, and the lock is held.
        unsafe { &*self.value }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the lock makes this the only access among lock users.
        unsafe { &mut *self.value }
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` Ts in a live block, aligned, under the lock.
        unsafe { std::slice::from_raw_parts(self.items, self.len) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`.
        unsafe { std::slice::from_raw_parts_mut(self.items, self.len) }
    }
}

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
    len: usize,
    _marker: PhantomData<T>,
}

impl<T: Pod> RawValue<T> {
    /// A shared value holding `value`.
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`] for a zero-sized `T`; [`SharedError::Os`] if the block
    /// cannot be made.
    pub fn new(value: T) -> Result<Self, SharedError> {
        let mut mem = SharedMemory::create(std::mem::size_of::<T>())?;
        mem.as_mut_slice()
            .copy_from_slice(bytemuck::bytes_of(&value));
        Ok(RawValue {
            mem: Arc::new(mem),
            _marker: PhantomData,
        })
    }

    /// A copy of the value as it is now.
    pub fn get(&self) -> T {
        // SAFETY: the block holds one T at a 64-byte-aligned address; a volatile read copies
        // whatever bytes are there, and any bytes are a valid Pod.
        unsafe { std::ptr::read_volatile(self.mem.ptr_at(0) as *const T) }
    }

    /// Overwrites the value.
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; other processes may write at the same time, which is this
        // type's documented race, not memory unsafety for Pod bytes.
        unsafe { std::ptr::write_volatile(self.mem.ptr_at(0) as *mut T, value) }
    }
}

impl<T: Pod> RawArray<T> {
    /// A shared array holding a copy of `items`.
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`] for an empty slice; [`SharedError::Os`] if the block cannot
    /// be made.
    pub fn from_slice(items: &[T]) -> Result<Self, SharedError> {
        let mut mem = SharedMemory::create(std::mem::size_of_val(items))?;
        mem.as_mut_slice()
            .copy_from_slice(bytemuck::cast_slice(items));
        Ok(RawArray {
            mem: Arc::new(mem),
            len: items.len(),
            _marker: PhantomData,
        })
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: an array holds at least one item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of item `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        (index < self.len).then(|| {
            // SAFETY: in bounds, aligned (64-byte block start, T-sized steps); see RawValue.
            unsafe { std::ptr::read_volatile((self.mem.ptr_at(0) as *const T).add(index)) }
        })
    }

    /// Overwrites item `index`; `false` past the end.
    pub fn set(&self, index: usize, value: T) -> bool {
        if index >= self.len {
            return false;
        }
        // SAFETY: in bounds and aligned; see RawValue::set.
        unsafe { std::ptr::write_volatile((self.mem.ptr_at(0) as *mut T).add(index), value) };
        true
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).filter_map(|i| self.get(i)).collect()
    }
}

fn assert_cell_alignment<T>() {
    assert!(
        std::mem::align_of::<T>() <= 64,
        "shared values are placed at 64-byte alignment"
    );
}

/// On the wire: the block's name, and the item count so that the receiver checks the shape.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    len: usize,
}

fn refuse_shape<E: serde::de::Error>(e: SharedError) -> E {
    E::custom(e)
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: self.cell.name_for_transfer(),
            len: 1,
        }
        .serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let cell = CellRef::attach(
            &wire.name,
            Kind::Value,
            payload::<T>(1).map_err(refuse_shape)?,
        )
        .map_err(refuse_shape)?;
        Ok(Value {
            cell,
            _marker: PhantomData,
        })
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: self.cell.name_for_transfer(),
            len: self.len,
        }
        .serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let cell = CellRef::attach(
            &wire.name,
            Kind::Value,
            payload::<T>(wire.len).map_err(refuse_shape)?,
        )
        .map_err(refuse_shape)?;
        Ok(Array {
            cell,
            len: wire.len,
            _marker: PhantomData,
        })
    }
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.mem.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mem = SharedMemory::deserialize(deserializer)?;
        if mem.size() != std::mem::size_of::<T>() {
            return Err(serde::de::Error::custom(format!(
                "shared memory {:?} holds {} bytes, not one {}-byte value",
                mem.name(),
                mem.size(),
                std::mem::size_of::<T>()
            )));
        }
        Ok(RawValue {
            mem: Arc::new(mem),
            _marker: PhantomData,
        })
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.mem.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mem = SharedMemory::deserialize(deserializer)?;
        let size = std::mem::size_of::<T>();
        if size == 0 || mem.size() % size != 0 {
            return Err(serde::de::Error::custom(format!(
                "shared memory {:?} holds {} bytes, not a whole number of {size}-byte items",
                mem.name(),
                mem.size()
            )));
        }
        let len = mem.size() / size;
        Ok(RawArray {
            mem: Arc::new(mem),
            len,
            _marker: PhantomData,
        })
    }
}

macro_rules! debug_by_name {
    ($($ty:ident),*) => {$(
        impl<T: Pod> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    )*};
}
debug_by_name!(Value, Array, RawValue, RawArray);

/// `clone()` is another handle on the same shared value (a new reference, not a copy).
macro_rules! clone_handle {
    ($($ty:ident { $($field:ident),* }),*) => {$(
        impl<T: Pod> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { $($field: self.$field.clone(),)* _marker: PhantomData }
            }
        }
    )*};
}
clone_handle!(
    Value { cell },
    Array { cell, len },
    RawValue { mem },
    RawArray { mem, len }
);
