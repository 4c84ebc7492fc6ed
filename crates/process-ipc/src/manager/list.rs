//! [`ManagedList`]: Python's `manager.list()` proxy.

use std::marker::PhantomData;

use super::REPLY_GRACE;
use super::error::ManagerError;
use super::object_client::{ObjectRef, object_handle};
use super::object_wire::{Answer, Kind, Op};
use crate::Wire;

/// A handle to a list hosted by a [`Manager`](super::Manager): Python's `manager.list()`
/// proxy, made by [`Manager::list`](super::Manager::list).
///
/// Clone it or pass it to other processes like any handle of the manager. Each call is one
/// round trip, done in the manager as one step: appends from many processes at once all land,
/// each once. Indexes are Rust's (`usize`, no negative indexes); an index past the end is
/// [`ManagerError::IndexOutOfRange`] (Python's `IndexError`), or `None` from
/// [`get`](ManagedList::get) and [`pop`](ManagedList::pop) as from a `Vec`.
///
/// ```
/// use process_ipc::manager::{ManagedList, Manager, ManagerError};
///
/// let manager = Manager::new()?;
/// let list: ManagedList<char> = manager.list()?;
/// list.append('b')?;
/// list.extend(['c', 'd'])?;
/// list.insert(0, 'a')?;
/// assert_eq!(list.to_vec()?, ['a', 'b', 'c', 'd']);
/// assert_eq!(list.pop()?, Some('d'));
/// assert_eq!(list.set(1, 'B')?, 'b');
/// assert_eq!(list.get(1)?, Some('B'));
/// assert!(matches!(list.remove(9), Err(ManagerError::IndexOutOfRange { index: 9, len: 3, .. })));
/// # Ok::<(), ManagerError>(())
/// ```
pub struct ManagedList<T> {
    pub(super) obj: ObjectRef,
    pub(super) types: PhantomData<fn() -> T>,
}

object_handle!(ManagedList<T>, Kind::List, "list");

fn wide(index: usize) -> u64 {
    index as u64
}

impl<T: Wire> ManagedList<T> {
    fn call(&self, op: Op) -> Result<Answer, ManagerError> {
        self.obj.call(op, Some(REPLY_GRACE))
    }

    /// Python's `l.append(item)`.
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `item` does not serialize (nothing is sent);
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn append(&self, item: T) -> Result<(), ManagerError> {
        let item = self.obj.encode("item", &item)?;
        let answer = self.call(Op::ListAppend(item))?;
        self.obj.done(answer)
    }

    /// Python's `l.extend(items)`: appends them all in one round trip, as one step.
    ///
    /// # Errors
    /// As [`append`](ManagedList::append) (if any item does not serialize, none is sent).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let items = items
            .into_iter()
            .map(|item| self.obj.encode("item", &item))
            .collect::<Result<Vec<_>, _>>()?;
        let answer = self.call(Op::ListExtend(items))?;
        self.obj.done(answer)
    }

    /// Python's `l[index]`: the item at `index`, or `None` past the end.
    ///
    /// # Errors
    /// [`ManagerError::Decode`] if the item is not a `T`; [`ManagerError::ObjectGone`] if the
    /// manager is gone.
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        let answer = self.call(Op::ListGet(wide(index)))?;
        self.obj.one(answer)
    }

    /// Python's `l[index] = item`: replaces the item at `index`, handing back the old one.
    ///
    /// # Errors
    /// [`ManagerError::IndexOutOfRange`] past the end; otherwise as
    /// [`append`](ManagedList::append) and [`get`](ManagedList::get).
    #[doc(alias = "__setitem__")]
    pub fn set(&self, index: usize, item: T) -> Result<T, ManagerError> {
        let item = self.obj.encode("item", &item)?;
        let answer = self.call(Op::ListSet(wide(index), item))?;
        self.required(answer)
    }

    /// Python's `l.insert(index, item)`: inserts before `index` (`len` appends).
    ///
    /// # Errors
    /// [`ManagerError::IndexOutOfRange`] if `index > len` (Python would clamp it); otherwise
    /// as [`append`](ManagedList::append).
    pub fn insert(&self, index: usize, item: T) -> Result<(), ManagerError> {
        let item = self.obj.encode("item", &item)?;
        let answer = self.call(Op::ListInsert(wide(index), item))?;
        self.obj.done(answer)
    }

    /// Python's `l.pop(index)`: removes the item at `index` and hands it back.
    ///
    /// # Errors
    /// [`ManagerError::IndexOutOfRange`] past the end; otherwise as [`get`](ManagedList::get).
    pub fn remove(&self, index: usize) -> Result<T, ManagerError> {
        let answer = self.call(Op::ListRemove(wide(index)))?;
        self.required(answer)
    }

    /// Python's `l.pop()`: removes the last item and hands it back; `None` when empty.
    ///
    /// # Errors
    /// As [`get`](ManagedList::get).
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        let answer = self.call(Op::ListPop)?;
        self.obj.one(answer)
    }

    /// Python's `len(l)`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn len(&self) -> Result<usize, ManagerError> {
        let answer = self.call(Op::Len)?;
        self.obj.count(answer)
    }

    /// Whether [`len`](ManagedList::len) is zero.
    ///
    /// # Errors
    /// As [`len`](ManagedList::len).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Python's `list(l)` / `l[:]`: every item, in order (a copy, taken as one step).
    ///
    /// # Errors
    /// As [`get`](ManagedList::get).
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        let answer = self.call(Op::ListAll)?;
        self.obj.many(answer)
    }

    /// Python's `l.clear()`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn clear(&self) -> Result<(), ManagerError> {
        let answer = self.call(Op::Clear)?;
        self.obj.done(answer)
    }

    fn required(&self, answer: Answer) -> Result<T, ManagerError> {
        match self.obj.one(answer)? {
            Some(item) => Ok(item),
            None => Err(self.obj.unexpected(&Answer::One(None))),
        }
    }
}
