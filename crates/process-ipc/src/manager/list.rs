//! [`ManagedList`]: Python's `manager.list()` proxy.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use serde::Serialize;

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
/// [`get`](ManagedList::get) and [`pop`](ManagedList::pop) as from a `Vec`. Slices clamp to
/// the list as Python's do ([`slice`](ManagedList::slice)). [`iter`](ManagedList::iter)
/// iterates over a snapshot taken in one round trip, not live as Python's proxy does. Searches
/// ([`count`](ManagedList::count), [`index`](ManagedList::index),
/// [`remove_value`](ManagedList::remove_value)) compare items by their serialized bytes, in the
/// manager, and a miss is [`ManagerError::NotInList`] (Python's `ValueError`).
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

/// A range's first index and its end (one past its last), for the wire; an end of `u64::MAX`
/// means the list's end.
fn bounds(range: &impl RangeBounds<usize>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => wide(s),
        Bound::Excluded(&s) => wide(s).saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => wide(e).saturating_add(1),
        Bound::Excluded(&e) => wide(e),
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
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

    /// Python's `iter(l)` / `for x in l`: an iterator over a snapshot of the list, taken in one
    /// round trip as one step (as [`to_vec`](ManagedList::to_vec)). Changes made after the call,
    /// by this process or another, do not show in it; Python's proxy iterates live instead
    /// (each `next` a round trip, and a list changed meanwhile shows its change).
    ///
    /// ```
    /// use process_ipc::manager::{ManagedList, Manager};
    ///
    /// let manager = Manager::new()?;
    /// let list: ManagedList<u32> = manager.list()?;
    /// list.extend([1, 2, 3])?;
    /// let mut total = 0;
    /// for x in list.iter()? {
    ///     total += x;
    /// }
    /// assert_eq!(total, 6);
    /// # Ok::<(), process_ipc::manager::ManagerError>(())
    /// ```
    ///
    /// # Errors
    /// As [`get`](ManagedList::get); an item that does not decode fails the call, before any
    /// item is handed out.
    #[doc(alias = "__iter__")]
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ManagerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Python's `l.copy()` / `list(l)`: a plain copy of every item, collected into any
    /// collection (a `Vec`, a `VecDeque`, ...), taken as one step.
    ///
    /// # Errors
    /// As [`get`](ManagedList::get).
    pub fn copy<C: FromIterator<T>>(&self) -> Result<C, ManagerError> {
        Ok(self.to_vec()?.into_iter().collect())
    }

    /// Python's `l[a:b]`: the items of `range`, in order, in one round trip. As Python's
    /// slices, and unlike a `Vec`'s, the range is clamped to the list: `slice(2..100)` of a
    /// list of 5 is its last 3 items, and a range past the end is empty, never an error. (No
    /// step: take every `k`th of the result for Python's `l[a:b:k]`.)
    ///
    /// ```
    /// use process_ipc::manager::{ManagedList, Manager};
    ///
    /// let manager = Manager::new()?;
    /// let list: ManagedList<u8> = manager.list()?;
    /// list.extend(0..5)?;
    /// assert_eq!(list.slice(1..3)?, [1, 2]);
    /// assert_eq!(list.slice(2..10)?, [2, 3, 4]);
    /// assert_eq!(list.slice(..)?, [0, 1, 2, 3, 4]);
    /// assert_eq!(list.splice(1..4, [9])?, [1, 2, 3]);
    /// assert_eq!(list.to_vec()?, [0, 9, 4]);
    /// # Ok::<(), process_ipc::manager::ManagerError>(())
    /// ```
    ///
    /// # Errors
    /// As [`get`](ManagedList::get).
    #[doc(alias = "__getitem__")]
    #[doc(alias = "get_range")]
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, ManagerError> {
        let (start, end) = bounds(&range);
        let answer = self.call(Op::ListSlice(start, end))?;
        self.obj.many(answer)
    }

    /// Python's `l[a:b] = items` (and, with no items, `del l[a:b]`): replaces the items of
    /// `range` (clamped to the list, as [`slice`](ManagedList::slice)) by `items`, as one step,
    /// and hands back the items it replaced (as `Vec::splice`).
    ///
    /// # Errors
    /// As [`extend`](ManagedList::extend) and [`get`](ManagedList::get).
    #[doc(alias = "__setitem__")]
    #[doc(alias = "__delitem__")]
    pub fn splice(
        &self,
        range: impl RangeBounds<usize>,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<T>, ManagerError> {
        let items = items
            .into_iter()
            .map(|item| self.obj.encode("item", &item))
            .collect::<Result<Vec<_>, _>>()?;
        let (start, end) = bounds(&range);
        let answer = self.call(Op::ListSplice(start, end, items))?;
        self.obj.many(answer)
    }

    /// Python's `l.count(x)`: how many items equal `item`.
    ///
    /// Items are compared in the manager by their serialized bytes, as a
    /// [`ManagedDict`](super::ManagedDict)'s keys are: equal for equal values of every ordinary
    /// type; `item` may be any borrowed form of `T` that serializes as `T` does (`&str` for a
    /// `String`).
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `item` does not serialize (nothing is sent);
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn count<Q>(&self, item: &Q) -> Result<usize, ManagerError>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let item = self.obj.encode("item", item)?;
        let answer = self.call(Op::ListCount(item))?;
        self.obj.count(answer)
    }

    /// Python's `l.index(x)`: the index of the first item equal to `item` (compared as
    /// [`count`](ManagedList::count) compares).
    ///
    /// ```
    /// use process_ipc::manager::{ManagedList, Manager, ManagerError};
    ///
    /// let manager = Manager::new()?;
    /// let list: ManagedList<String> = manager.list()?;
    /// list.extend(["a".to_string(), "b".to_string(), "a".to_string()])?;
    /// assert_eq!(list.index("a")?, 0);
    /// assert_eq!(list.index_in("a", 1..)?, 2);
    /// assert_eq!(list.count("a")?, 2);
    /// assert!(matches!(list.index("z"), Err(ManagerError::NotInList { .. })));
    /// list.remove_value("a")?;
    /// list.reverse()?;
    /// assert_eq!(list.to_vec()?, ["a", "b"]);
    /// # Ok::<(), ManagerError>(())
    /// ```
    ///
    /// # Errors
    /// [`ManagerError::NotInList`] if no item equals it (Python's `ValueError`); otherwise as
    /// [`count`](ManagedList::count).
    pub fn index<Q>(&self, item: &Q) -> Result<usize, ManagerError>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.index_in(item, ..)
    }

    /// Python's `l.index(x, start, end)`: as [`index`](ManagedList::index), searching only
    /// `range` (clamped to the list, as [`slice`](ManagedList::slice)); the index is the list's.
    ///
    /// # Errors
    /// As [`index`](ManagedList::index).
    pub fn index_in<Q>(
        &self,
        item: &Q,
        range: impl RangeBounds<usize>,
    ) -> Result<usize, ManagerError>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let item = self.obj.encode("item", item)?;
        let (start, end) = bounds(&range);
        let answer = self.call(Op::ListIndex(item, start, end))?;
        self.obj.count(answer)
    }

    /// Python's `x in l` (compared as [`count`](ManagedList::count) compares).
    ///
    /// # Errors
    /// As [`count`](ManagedList::count).
    #[doc(alias = "__contains__")]
    pub fn contains<Q>(&self, item: &Q) -> Result<bool, ManagerError>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match self.index(item) {
            Ok(_) => Ok(true),
            Err(ManagerError::NotInList { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Python's `l.remove(x)`: removes the first item equal to `item` (compared as
    /// [`count`](ManagedList::count) compares). Named apart from
    /// [`remove`](ManagedList::remove), which takes an index as `Vec::remove` does.
    ///
    /// # Errors
    /// [`ManagerError::NotInList`] if no item equals it (Python's `ValueError`; the list is
    /// unchanged); otherwise as [`count`](ManagedList::count).
    pub fn remove_value<Q>(&self, item: &Q) -> Result<(), ManagerError>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let item = self.obj.encode("item", item)?;
        let answer = self.call(Op::ListRemoveValue(item))?;
        self.obj.done(answer)
    }

    /// Python's `l.reverse()`: reverses the list in place, as one step.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn reverse(&self) -> Result<(), ManagerError> {
        let answer = self.call(Op::ListReverse)?;
        self.obj.done(answer)
    }

    fn required(&self, answer: Answer) -> Result<T, ManagerError> {
        match self.obj.one(answer)? {
            Some(item) => Ok(item),
            None => Err(self.obj.unexpected(&Answer::One(None))),
        }
    }
}
