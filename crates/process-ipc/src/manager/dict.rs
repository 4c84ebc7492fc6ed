//! [`ManagedDict`]: Python's `manager.dict()` proxy.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;

use super::REPLY_GRACE;
use super::error::ManagerError;
use super::object_client::{ObjectRef, object_handle};
use super::object_wire::{Answer, Kind, Op};
use crate::Wire;

/// A handle to a dict hosted by a [`Manager`](super::Manager): Python's `manager.dict()`
/// proxy, made by [`Manager::dict`](super::Manager::dict).
///
/// Clone it, or pass it to another process (a `Process` argument, a `Pool` task argument, inside
/// any serde value): every copy reaches the same dict. Each call is one round trip to the
/// manager, done there as one step, so a call never sees half of another; a read-modify-write
/// of two calls is not atomic (as in Python: use [`update`](ManagedDict::update),
/// [`setdefault`](ManagedDict::setdefault) or a [`ManagedLock`](super::ManagedLock)).
///
/// Keys are compared by their serialized bytes: equal for equal values of every ordinary type
/// (numbers, strings, tuples, enums, `Vec`s). As with `HashMap`, a lookup takes any borrowed
/// form of the key (`&str` for a `String` key), which serializes as the key does. Iteration
/// follows insertion order, as Python's, over a snapshot taken in one round trip
/// ([`iter`](ManagedDict::iter)), not live as Python's proxy.
/// A handle is `Send + Sync` whatever `K` and `V` are: it holds none.
///
/// ```
/// use process_ipc::manager::{ManagedDict, Manager};
///
/// let manager = Manager::new()?;
/// let scores: ManagedDict<String, u32> = manager.dict()?;
/// scores.insert("ada".to_string(), 3)?;
/// assert_eq!(scores.get("ada")?, Some(3));
/// scores.update([("bob".to_string(), 5), ("ada".to_string(), 4)])?;
/// assert_eq!(scores.items()?, vec![("ada".to_string(), 4), ("bob".to_string(), 5)]);
/// assert_eq!(scores.remove("bob")?, Some(5));
/// assert_eq!(scores.len()?, 1);
/// # Ok::<(), process_ipc::manager::ManagerError>(())
/// ```
pub struct ManagedDict<K, V> {
    pub(super) obj: ObjectRef,
    pub(super) types: PhantomData<fn() -> (K, V)>,
}

object_handle!(ManagedDict<K, V>, Kind::Dict, "dict");

impl<K: Wire, V: Wire> ManagedDict<K, V> {
    fn call(&self, op: Op) -> Result<Answer, ManagerError> {
        self.obj.call(op, Some(REPLY_GRACE))
    }

    fn key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<serde_bytes::ByteBuf, ManagerError> {
        self.obj.encode("key", key)
    }

    /// Python's `d.get(key)`: the value under `key`, if any.
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `key` does not serialize (nothing is sent);
    /// [`ManagerError::Decode`] if the value is not a `V`; [`ManagerError::ObjectGone`] if the
    /// manager is gone.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let answer = self.call(Op::DictGet(self.key(key)?))?;
        self.obj.one(answer)
    }

    /// Python's `d[key] = value`: sets `key`, handing back the value it replaced.
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `key` or `value` does not serialize (nothing is sent);
    /// otherwise as [`get`](ManagedDict::get).
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        let key = self.key(&key)?;
        let value = self.obj.encode("value", &value)?;
        let answer = self.call(Op::DictInsert(key, value))?;
        self.obj.one(answer)
    }

    /// Python's `del d[key]` (without its `KeyError`): removes `key`, handing back its value.
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    #[doc(alias = "__delitem__")]
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let answer = self.call(Op::DictRemove(self.key(key)?))?;
        self.obj.one(answer)
    }

    /// Python's `d.pop(key, default)`: removes `key` and hands back its value, or `default`
    /// if it was missing.
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    pub fn pop<Q>(&self, key: &Q, default: V) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        Ok(self.remove(key)?.unwrap_or(default))
    }

    /// Python's `key in d`.
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    #[doc(alias = "__contains__")]
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let answer = self.call(Op::DictContains(self.key(key)?))?;
        self.obj.flag(answer)
    }

    /// Python's `len(d)`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn len(&self) -> Result<usize, ManagerError> {
        let answer = self.call(Op::Len)?;
        self.obj.count(answer)
    }

    /// Whether [`len`](ManagedDict::len) is zero.
    ///
    /// # Errors
    /// As [`len`](ManagedDict::len).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Python's `d.keys()`: every key, in insertion order (a copy: later changes do not show).
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let answer = self.call(Op::DictKeys)?;
        self.obj.many(answer)
    }

    /// Python's `d.values()`: every value, in insertion order (a copy).
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        let answer = self.call(Op::DictValues)?;
        self.obj.many(answer)
    }

    /// Python's `d.items()`: every pair, in insertion order (a copy, taken as one step).
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.call(Op::DictItems)? {
            Answer::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((self.obj.decode(k)?, self.obj.decode(v)?)))
                .collect(),
            other => Err(self.obj.unexpected(&other)),
        }
    }

    /// Python's `iter(d)` / `for k in d`: an iterator over a snapshot of the keys, in insertion
    /// order, taken in one round trip (as [`keys`](ManagedDict::keys)). Changes made after the
    /// call do not show in it, and none makes it fail; Python's proxy iterates live instead,
    /// and raises `RuntimeError` when the dict changes size meanwhile.
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get); a key that does not decode fails the call, before any key
    /// is handed out.
    #[doc(alias = "__iter__")]
    pub fn iter(&self) -> Result<std::vec::IntoIter<K>, ManagerError> {
        Ok(self.keys()?.into_iter())
    }

    /// Python's `d.copy()`: a plain copy of every pair, in insertion order, collected into any
    /// collection of pairs (a `HashMap`, a `BTreeMap`, a `Vec`), taken as one step.
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// use process_ipc::manager::{ManagedDict, Manager};
    ///
    /// let manager = Manager::new()?;
    /// let d: ManagedDict<u8, char> = manager.dict()?;
    /// d.update([(1, 'a'), (2, 'b')])?;
    /// let plain: HashMap<u8, char> = d.copy()?;
    /// assert_eq!(plain, HashMap::from([(1, 'a'), (2, 'b')]));
    /// assert_eq!(d.popitem()?, Some((2, 'b')));
    /// assert_eq!(d.iter()?.collect::<Vec<_>>(), [1]);
    /// # Ok::<(), process_ipc::manager::ManagerError>(())
    /// ```
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    pub fn copy<C: FromIterator<(K, V)>>(&self) -> Result<C, ManagerError> {
        Ok(self.items()?.into_iter().collect())
    }

    /// Python's `d.popitem()`: removes the pair inserted last and hands it back (LIFO, as
    /// Python's); `None` when the dict is empty (Python's `KeyError`).
    ///
    /// # Errors
    /// As [`get`](ManagedDict::get).
    pub fn popitem(&self) -> Result<Option<(K, V)>, ManagerError> {
        match self.call(Op::DictPopItem)? {
            Answer::Pairs(pairs) if pairs.len() <= 1 => pairs
                .first()
                .map(|(k, v)| Ok((self.obj.decode(k)?, self.obj.decode(v)?)))
                .transpose(),
            other => Err(self.obj.unexpected(&other)),
        }
    }

    /// Python's `d.clear()`.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn clear(&self) -> Result<(), ManagerError> {
        let answer = self.call(Op::Clear)?;
        self.obj.done(answer)
    }

    /// Python's `d.update(pairs)`: sets every pair, in order, in one round trip and as one
    /// step (no other call sees some of them set and others not).
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if any key or value does not serialize (nothing is sent);
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((self.key(&k)?, self.obj.encode("value", &v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        let answer = self.call(Op::DictUpdate(pairs))?;
        self.obj.done(answer)
    }

    /// Python's `d.setdefault(key, default)`: the value under `key`, after setting it to
    /// `default` if it was missing (one step).
    ///
    /// # Errors
    /// As [`insert`](ManagedDict::insert).
    pub fn setdefault(&self, key: K, default: V) -> Result<V, ManagerError> {
        let key = self.key(&key)?;
        let value = self.obj.encode("value", &default)?;
        let answer = self.call(Op::DictSetDefault(key, value))?;
        match self.obj.one(answer)? {
            Some(v) => Ok(v),
            None => Err(self.obj.unexpected(&Answer::One(None))),
        }
    }
}
