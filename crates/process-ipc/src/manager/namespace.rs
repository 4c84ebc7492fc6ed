//! [`ManagedNamespace`] and [`ManagedValue`]: Python's `manager.Namespace()` and
//! `manager.Value(typecode, value)` proxies.

use std::marker::PhantomData;

use super::REPLY_GRACE;
use super::error::ManagerError;
use super::object_client::{ObjectRef, object_handle};
use super::object_wire::{Answer, Kind, Op};
use crate::Wire;

/// A handle to a namespace hosted by a [`Manager`](super::Manager): Python's
/// `manager.Namespace()`, whose attributes any process sets and reads, made by
/// [`Manager::namespace`](super::Manager::namespace).
///
/// Python's `ns.x = 1` is `ns.set("x", 1)`, and `ns.x` is `ns.get::<T>("x")`. Each name holds
/// a value of any serde type; reading it as another type is [`ManagerError::Decode`], naming
/// the type asked for.
///
/// ```
/// use process_ipc::manager::{Manager, ManagerError};
///
/// let manager = Manager::new()?;
/// let ns = manager.namespace()?;
/// ns.set("rounds", 3u32)?;
/// ns.set("label", "warm-up".to_string())?;
/// assert_eq!(ns.get::<u32>("rounds")?, Some(3));
/// assert_eq!(ns.get::<String>("missing")?, None);
/// assert!(matches!(ns.get::<bool>("label"), Err(ManagerError::Decode { type_name: "bool", .. })));
/// assert_eq!(ns.names()?, ["label", "rounds"]);
/// # Ok::<(), ManagerError>(())
/// ```
pub struct ManagedNamespace {
    pub(super) obj: ObjectRef,
    pub(super) types: PhantomData<()>,
}

object_handle!(ManagedNamespace, Kind::Namespace, "namespace");

impl ManagedNamespace {
    fn call(&self, op: Op) -> Result<Answer, ManagerError> {
        self.obj.call(op, Some(REPLY_GRACE))
    }

    /// Python's `ns.name = value`: sets `name` (any serde type).
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `value` does not serialize (nothing is sent);
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    #[doc(alias = "__setattr__")]
    pub fn set<T: Wire>(&self, name: &str, value: T) -> Result<(), ManagerError> {
        let value = self.obj.encode("value", &value)?;
        self.call(Op::NsSet(name.to_string(), value)).map(drop)
    }

    /// Python's `ns.name`: the value of `name` as a `T`, or `None` if it is not set (Python's
    /// `AttributeError`).
    ///
    /// # Errors
    /// [`ManagerError::Decode`] if the value is not a `T`; [`ManagerError::ObjectGone`] if the
    /// manager is gone.
    #[doc(alias = "__getattr__")]
    pub fn get<T: Wire>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let answer = self.call(Op::NsGet(name.to_string()))?;
        self.obj.one(answer)
    }

    /// Python's `del ns.name`: removes `name`, handing back its value as a `T`.
    ///
    /// # Errors
    /// As [`get`](ManagedNamespace::get) (a value that is not a `T` is removed all the same).
    #[doc(alias = "__delattr__")]
    pub fn remove<T: Wire>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let answer = self.call(Op::NsRemove(name.to_string()))?;
        self.obj.one(answer)
    }

    /// Python's `vars(ns)` keys: every name set, sorted.
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone.
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        let answer = self.call(Op::NsNames)?;
        self.obj.many(answer)
    }
}

/// A handle to one value hosted by a [`Manager`](super::Manager): Python's
/// `manager.Value(typecode, value)`, made by [`Manager::value`](super::Manager::value).
///
/// Python's `v.value` is [`get`](ManagedValue::get), and `v.value = x` is
/// [`set`](ManagedValue::set); any serde type, not only C types. As in Python, a
/// read-then-write of two calls is not atomic: guard it with a
/// [`ManagedLock`](super::ManagedLock).
///
/// ```
/// use process_ipc::manager::Manager;
///
/// let manager = Manager::new()?;
/// let status = manager.value("starting".to_string())?;
/// assert_eq!(status.get()?, "starting");
/// assert_eq!(status.set("running".to_string())?, "starting");
/// assert_eq!(status.get()?, "running");
/// # Ok::<(), process_ipc::manager::ManagerError>(())
/// ```
pub struct ManagedValue<T> {
    pub(super) obj: ObjectRef,
    pub(super) types: PhantomData<fn() -> T>,
}

object_handle!(ManagedValue<T>, Kind::Value, "value");

impl<T: Wire> ManagedValue<T> {
    /// Python's `v.value`.
    ///
    /// # Errors
    /// [`ManagerError::Decode`] if the value is not a `T`; [`ManagerError::ObjectGone`] if the
    /// manager is gone.
    pub fn get(&self) -> Result<T, ManagerError> {
        let answer = self.obj.call(Op::ValueGet, Some(REPLY_GRACE))?;
        self.required(answer)
    }

    /// Python's `v.value = value`, handing back the value it replaced.
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `value` does not serialize (nothing is sent); otherwise as
    /// [`get`](ManagedValue::get).
    pub fn set(&self, value: T) -> Result<T, ManagerError> {
        let value = self.obj.encode("value", &value)?;
        let answer = self.obj.call(Op::ValueSet(value), Some(REPLY_GRACE))?;
        self.required(answer)
    }

    fn required(&self, answer: Answer) -> Result<T, ManagerError> {
        match self.obj.one(answer)? {
            Some(value) => Ok(value),
            None => Err(self.obj.unexpected(&Answer::One(None))),
        }
    }
}
