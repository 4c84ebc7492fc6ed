//! `Value` and `Array`: plain-old-data in shared memory, with a lock (Python's
//! `multiprocessing.Value` / `Array`); `RawValue` / `RawArray`, without one, are in
//! [`super::raw`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CELL_SIZE, CellRef, Kind, deadline_after};
use super::error::SharedError;
use super::memory::check_size;
use super::raw::{RawArray, RawValue};
use super::sync::{Lock, LockGuard, acquire_cell, try_acquire_cell};

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
    /// The cell whose lock guards the value: `cell` itself, or a [`Lock`]'s (Python's
    /// `lock=`).
    lock: CellRef,
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
    /// As [`Value`]'s.
    lock: CellRef,
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
        Self::make(value, None)
    }

    /// A shared value holding `value`, guarded by `lock` (Python's `Value(t, v, lock=l)`):
    /// several values and arrays made with one lock are changed together under it, and
    /// [`get_lock`](Value::get_lock) gives that lock. A handle sent to another process
    /// carries the lock with it.
    ///
    /// ```
    /// use process_ipc::{Array, Lock, Value};
    ///
    /// let lock = Lock::new().unwrap();
    /// let count = Value::with_lock(0u32, &lock).unwrap();
    /// let items = Array::from_slice_with_lock(&[0u32; 4], &lock).unwrap();
    /// let held = lock.acquire().unwrap();
    /// assert!(count.get_lock().try_acquire().unwrap().is_none()); // the same lock
    /// drop(held);
    /// items.lock().unwrap()[0] = 1;
    /// *count.lock().unwrap() += 1;
    /// ```
    ///
    /// # Errors
    /// As [`new`](Value::new).
    pub fn with_lock(value: T, lock: &Lock) -> Result<Self, SharedError> {
        Self::make(value, Some(lock))
    }

    fn make(value: T, lock: Option<&Lock>) -> Result<Self, SharedError> {
        assert_cell_alignment::<T>();
        let cell = CellRef::create(Kind::Value, payload::<T>(1)?)?;
        // SAFETY: the block has room for one T right after the cell, aligned (the cell is
        // 64-byte aligned and sized), and nobody else knows the block yet.
        unsafe { (cell.extra() as *mut T).write(value) };
        Ok(Value {
            lock: lock.map_or_else(|| cell.clone(), |l| l.cell.clone()),
            cell,
            _marker: PhantomData,
        })
    }

    /// The value without its lock (Python's `v.get_obj()`): a [`RawValue`] on the same
    /// memory, whose `get`/`set` take no lock. Hold [`get_lock`](Value::get_lock) around it
    /// to combine steps.
    pub fn get_obj(&self) -> RawValue<T> {
        RawValue::view(self.cell.memory(), CELL_SIZE)
    }

    /// The lock that guards the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> ValueLock<'_> {
        ValueLock { cell: &self.lock }
    }

    /// Takes the lock and gives the value to read and write.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if a holder died holding the lock (it is free again; the value
    /// is as the dead holder left it).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, SharedError> {
        Ok(ValueGuard {
            _lock: acquire_cell(&self.lock, None)?,
            value: self.cell.extra() as *mut T,
        })
    }

    /// As [`lock`](Value::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SharedError::Timeout`], or as [`lock`](Value::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, SharedError> {
        Ok(ValueGuard {
            _lock: acquire_cell(&self.lock, deadline_after(timeout))?,
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
        Self::copied(items, None)
    }

    /// A shared array holding a copy of `items`, guarded by `lock` (Python's
    /// `Array(t, items, lock=l)`; see [`Value::with_lock`]).
    ///
    /// # Errors
    /// As [`from_slice`](Array::from_slice).
    pub fn from_slice_with_lock(items: &[T], lock: &Lock) -> Result<Self, SharedError> {
        Self::copied(items, Some(lock))
    }

    fn copied(items: &[T], lock: Option<&Lock>) -> Result<Self, SharedError> {
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
            lock: lock.map_or_else(|| cell.clone(), |l| l.cell.clone()),
            cell,
            len: items.len(),
            _marker: PhantomData,
        })
    }

    /// A shared array of `len` zeroes (Python's `Array('d', 10)`). Its memory is taken as
    /// its pages are first touched, not here (see
    /// [`SharedMemory::create`](super::SharedMemory::create)).
    ///
    /// # Errors
    /// [`SharedError::ZeroSize`] for 0 items; [`SharedError::TooLarge`] for more than the
    /// system can back (or than the address space holds); [`SharedError::Os`] if the block
    /// cannot be made.
    pub fn zeroed(len: usize) -> Result<Self, SharedError> {
        Self::zeroes(len, None)
    }

    /// A shared array of `len` zeroes guarded by `lock` (Python's `Array('d', n, lock=l)`; see
    /// [`Value::with_lock`]).
    ///
    /// # Errors
    /// As [`zeroed`](Array::zeroed).
    pub fn zeroed_with_lock(len: usize, lock: &Lock) -> Result<Self, SharedError> {
        Self::zeroes(len, Some(lock))
    }

    fn zeroes(len: usize, lock: Option<&Lock>) -> Result<Self, SharedError> {
        assert_cell_alignment::<T>();
        if len == 0 || std::mem::size_of::<T>() == 0 {
            return Err(SharedError::ZeroSize);
        }
        // A new block is all zeroes, and all-zero bytes are a valid T (Pod): nothing to copy.
        let cell = CellRef::create(Kind::Value, payload::<T>(len)?)?;
        Ok(Array {
            lock: lock.map_or_else(|| cell.clone(), |l| l.cell.clone()),
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
        ValueLock { cell: &self.lock }
    }

    /// Takes the lock and gives the items to read and write.
    ///
    /// # Errors
    /// [`SharedError::OwnerDied`] if a holder died holding the lock (it is free again).
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, SharedError> {
        Ok(ArrayGuard {
            _lock: acquire_cell(&self.lock, None)?,
            items: self.cell.extra() as *mut T,
            len: self.len,
        })
    }

    /// The items without their lock (Python's `get_obj()`): a [`RawArray`] on the same
    /// memory, whose `get`/`set` take no lock.
    ///
    /// ```
    /// use process_ipc::Array;
    ///
    /// let a = Array::from_slice(&[1u8, 2, 3]).unwrap();
    /// let raw = a.get_obj();
    /// raw.set(0, 9);
    /// assert_eq!(a.to_vec().unwrap(), [9, 2, 3]);
    /// ```
    pub fn get_obj(&self) -> RawArray<T> {
        RawArray::view(self.cell.memory(), CELL_SIZE, self.len)
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

    /// Takes the lock if it is free (Python's `get_lock().acquire(False)`).
    ///
    /// # Errors
    /// As [`acquire`](ValueLock::acquire).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'a>>, SharedError> {
        try_acquire_cell(self.cell)
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

fn assert_cell_alignment<T>() {
    assert!(
        std::mem::align_of::<T>() <= 64,
        "shared values are placed at 64-byte alignment"
    );
}

/// On the wire: the block's name, the item count so that the receiver checks the shape, and
/// the name of the [`Lock`] that guards it when it is not the block's own.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    len: usize,
    lock: Option<String>,
}

/// The `lock` field of a [`Wire`] for a handle whose lock is `lock` and block `cell`.
fn lock_name(cell: &CellRef, lock: &CellRef) -> Option<String> {
    (!std::ptr::eq(cell.cell(), lock.cell())).then(|| lock.name_for_transfer().to_string())
}

/// The lock a [`Wire`] names: the block's own, or the `Lock` it names, attached.
fn wire_lock(cell: &CellRef, lock: Option<&str>) -> Result<CellRef, SharedError> {
    match lock {
        None => Ok(cell.clone()),
        Some(name) => CellRef::attach(name, Kind::Lock, 0),
    }
}

fn refuse_shape<E: serde::de::Error>(e: SharedError) -> E {
    E::custom(e)
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: self.cell.name_for_transfer(),
            len: 1,
            lock: lock_name(&self.cell, &self.lock),
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
            lock: wire_lock(&cell, wire.lock.as_deref()).map_err(refuse_shape)?,
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
            lock: lock_name(&self.cell, &self.lock),
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
            lock: wire_lock(&cell, wire.lock.as_deref()).map_err(refuse_shape)?,
            cell,
            len: wire.len,
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
debug_by_name!(Value, Array);

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
clone_handle!(Value { cell, lock }, Array { cell, len, lock });
