//! [`Manager::connect`] and [`RemoteManager`]: Python's `BaseManager(address, authkey).connect()`,
//! a process (on this host or another) using the objects of a manager served on TCP, and
//! [`Manager::register`]/[`RemoteManager::lookup`], the names by which a server offers objects
//! (Python's `register("jobs", callable=...)`).

use std::fmt;
use std::marker::PhantomData;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use serde_bytes::ByteBuf;

use super::object_client::{Conn, ConnPool, ObjectRef};
use super::object_names;
use super::object_wire::{Answer, Kind, Op};
use super::stream::Stream;
use super::tcp::{self, Refused};
use super::{
    ManagedDict, ManagedEvent, ManagedList, ManagedLock, ManagedNamespace, ManagedQueue,
    ManagedValue, Manager, ManagerError, REPLY_GRACE, ignore_sigpipe,
};
use crate::Wire;

/// A handle to any kind of manager object ([`ManagedQueue`], [`ManagedDict`], [`ManagedList`],
/// [`ManagedNamespace`], [`ManagedValue`], [`ManagedLock`], [`ManagedEvent`]): what
/// [`Manager::register`] names and [`RemoteManager::lookup`] finds. Sealed.
pub trait ManagedObject: sealed::Sealed {}

pub(super) mod sealed {
    use super::{Kind, ObjectRef};

    /// What a handle kind must say for [`ManagedObject`](super::ManagedObject).
    pub trait Sealed: Sized {
        #[doc(hidden)]
        fn kind_of() -> KindTag;
        #[doc(hidden)]
        fn parts(&self) -> Parts;
        #[doc(hidden)]
        fn from_parts(parts: Parts) -> Self;
    }

    /// Which kind of object (opaque outside the crate).
    #[doc(hidden)]
    pub struct KindTag(pub(in crate::manager) Kind);

    /// Which object, and a queue's bound (opaque outside the crate).
    #[doc(hidden)]
    pub struct Parts(
        pub(in crate::manager) ObjectRef,
        pub(in crate::manager) Option<usize>,
    );
}

use sealed::{KindTag, Parts};

macro_rules! managed_object {
    ($name:ident $(<$($p:ident),+>)?, $kind:expr) => {
        impl$(<$($p),+>)? sealed::Sealed for $name$(<$($p),+>)? {
            fn kind_of() -> KindTag {
                KindTag($kind)
            }
            fn parts(&self) -> Parts {
                Parts(self.obj.clone(), None)
            }
            fn from_parts(parts: Parts) -> Self {
                Self::new(parts.0)
            }
        }
        impl$(<$($p),+>)? ManagedObject for $name$(<$($p),+>)? {}
    };
}

managed_object!(ManagedDict<K, V>, Kind::Dict);
managed_object!(ManagedList<T>, Kind::List);
managed_object!(ManagedNamespace, Kind::Namespace);
managed_object!(ManagedValue<T>, Kind::Value);
managed_object!(ManagedLock, Kind::Lock);
managed_object!(ManagedEvent, Kind::Event);

impl<T> sealed::Sealed for ManagedQueue<T> {
    fn kind_of() -> KindTag {
        KindTag(Kind::Queue)
    }
    fn parts(&self) -> Parts {
        Parts(self.obj.clone(), self.maxsize)
    }
    fn from_parts(Parts(obj, maxsize): Parts) -> Self {
        ManagedQueue {
            obj,
            maxsize,
            local: None,
            feed: OnceLock::new(),
            put_any: AtomicBool::new(false),
            types: PhantomData,
        }
    }
}
impl<T> ManagedObject for ManagedQueue<T> {}

impl Manager {
    /// Python's `BaseManager(address=..., authkey=...).connect()`: connects to the manager
    /// served at `address` (see [`ManagerBuilder`](super::ManagerBuilder)), proving this
    /// process holds `authkey` and checking that the manager does, and returns a
    /// [`RemoteManager`] that makes objects there and finds the ones it registered.
    ///
    /// The key is remembered in this process for that address, so handles to the manager's
    /// objects work here however they arrive; a process that decodes such a handle without
    /// having connected gets [`ManagerError::AuthenticationFailed`] at its first call.
    ///
    /// # Errors
    /// [`ManagerError::AuthenticationFailed`] if the manager refused the key (the server said
    /// nothing else, and logged the refusal naming this peer) or could not prove it holds it;
    /// [`ManagerError::Connect`] if nothing answers at `address`.
    pub fn connect<A: ToSocketAddrs + fmt::Debug>(
        address: A,
        authkey: impl AsRef<[u8]>,
    ) -> Result<RemoteManager, ManagerError> {
        ignore_sigpipe();
        let key: Arc<[u8]> = authkey.as_ref().into();
        let unreachable = |source| ManagerError::Connect {
            address: format!("{address:?}"),
            source,
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address");
        for socket in address.to_socket_addrs().map_err(unreachable)? {
            let name = format!("{}{socket}", tcp::SCHEME);
            match tcp::connect_with(&name, &key, REPLY_GRACE) {
                Ok((stream, pid)) => {
                    tcp::remember_key(&name, key);
                    // The connection just proven starts this process's pool (a process that
                    // connects again and again keeps one, not one per connect).
                    let pool = ConnPool::for_address(&name);
                    if pool.is_empty() {
                        if let Ok(conn) = Conn::from_stream(Stream::Tcp(stream)) {
                            pool.give_back(conn);
                        }
                    }
                    return Ok(RemoteManager {
                        pid,
                        socket,
                        address: name.into(),
                    });
                }
                Err(Refused::Auth(why)) => {
                    return Err(ManagerError::AuthenticationFailed { address: name, why });
                }
                Err(Refused::Unreachable(e)) => last = e,
            }
        }
        Err(unreachable(last))
    }

    /// Python's `register(name, callable=lambda: obj)` on the server: offers `handle`'s object
    /// under `name` to clients ([`RemoteManager::lookup`]). A name given again moves to the
    /// new object.
    ///
    /// # Errors
    /// [`ManagerError::ObjectRefused`] if `handle` is an object of another manager;
    /// [`ManagerError::ObjectGone`] after shutdown.
    pub fn register<H: ManagedObject>(&self, name: &str, handle: &H) -> Result<(), ManagerError> {
        let Parts(obj, _) = handle.parts();
        if *obj.address != *self.address {
            return Err(ManagerError::ObjectRefused {
                pid: obj.pid,
                object: obj.object,
                kind: obj.kind.name(),
                why: format!(
                    "it belongs to another manager than the one at {}",
                    self.address
                ),
            });
        }
        let answer = object_names::register(&*self.objects, name, obj.object, H::kind_of().0);
        obj.answered(answer).map(drop)
    }
}

/// A connection to a manager served on TCP, from [`Manager::connect`]: makes objects in that
/// manager and finds the ones it [registered](Manager::register), as handles of the same types
/// a local manager gives, usable from any thread and passable to other processes (which must
/// [`connect`](Manager::connect) once themselves, for the key).
///
/// Dropping it changes nothing in the manager: its objects live as long as the manager.
#[derive(Debug, Clone)]
pub struct RemoteManager {
    pid: u32,
    socket: SocketAddr,
    address: Arc<str>,
}

impl RemoteManager {
    /// The pid of the manager's process (on its host).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address this process reaches the manager at.
    pub fn addr(&self) -> SocketAddr {
        self.socket
    }

    fn obj(&self, object: u64, kind: Kind) -> ObjectRef {
        ObjectRef {
            pid: self.pid,
            object,
            kind,
            address: Arc::clone(&self.address),
            local: None,
            pool: OnceLock::new(),
        }
    }

    fn make(
        &self,
        kind: Kind,
        maxsize: Option<usize>,
        initial: Option<ByteBuf>,
    ) -> Result<ObjectRef, ManagerError> {
        let manager = self.obj(0, kind);
        let op = Op::Make {
            maxsize: maxsize.map(|m| m as u64),
            initial,
        };
        let answer = manager.call(op, Some(REPLY_GRACE))?;
        match answer {
            Answer::Len(id) => Ok(self.obj(id, kind)),
            other => Err(manager.unexpected(&other)),
        }
    }

    /// A new unbounded queue in the manager (as [`Manager::queue`]).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the manager is gone; a connection's errors.
    pub fn queue<T: Wire>(&self) -> Result<ManagedQueue<T>, ManagerError> {
        let obj = self.make(Kind::Queue, None, None)?;
        Ok(<ManagedQueue<T> as sealed::Sealed>::from_parts(Parts(
            obj, None,
        )))
    }

    /// A new queue holding at most `maxsize` items (as [`Manager::bounded_queue`]).
    ///
    /// # Errors
    /// [`ManagerError::InvalidMaxsize`] for 0; otherwise as [`queue`](Self::queue).
    pub fn bounded_queue<T: Wire>(&self, maxsize: usize) -> Result<ManagedQueue<T>, ManagerError> {
        if maxsize == 0 {
            return Err(ManagerError::InvalidMaxsize { pid: self.pid });
        }
        let obj = self.make(Kind::Queue, Some(maxsize), None)?;
        Ok(<ManagedQueue<T> as sealed::Sealed>::from_parts(Parts(
            obj,
            Some(maxsize),
        )))
    }

    /// A new, empty dict in the manager (as [`Manager::dict`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectGone`] if the manager is gone; a connection's errors.
    pub fn dict<K: Wire, V: Wire>(&self) -> Result<ManagedDict<K, V>, ManagerError> {
        self.make(Kind::Dict, None, None).map(ManagedDict::new)
    }

    /// A new, empty list in the manager (as [`Manager::list`]).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn list<T: Wire>(&self) -> Result<ManagedList<T>, ManagerError> {
        self.make(Kind::List, None, None).map(ManagedList::new)
    }

    /// A new namespace in the manager (as [`Manager::namespace`]).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn namespace(&self) -> Result<ManagedNamespace, ManagerError> {
        self.make(Kind::Namespace, None, None)
            .map(ManagedNamespace::new)
    }

    /// A new value in the manager holding `initial` (as [`Manager::value`]).
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if `initial` does not serialize; otherwise as
    /// [`dict`](Self::dict).
    pub fn value<T: Wire>(&self, initial: T) -> Result<ManagedValue<T>, ManagerError> {
        let encoded = self.obj(0, Kind::Value).encode("value", &initial)?;
        self.make(Kind::Value, None, Some(encoded))
            .map(ManagedValue::new)
    }

    /// A new lock in the manager (as [`Manager::lock`]). A holder whose connection drops (its
    /// process died, or its host went away) frees it, and the next acquire is
    /// [`ManagerError::OwnerDied`] naming its pid and address.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn lock(&self) -> Result<ManagedLock, ManagerError> {
        self.make(Kind::Lock, None, None).map(ManagedLock::new)
    }

    /// A new event in the manager, not set (as [`Manager::event`]).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn event(&self) -> Result<ManagedEvent, ManagerError> {
        self.make(Kind::Event, None, None).map(ManagedEvent::new)
    }

    /// Names `handle`'s object `name` in the manager, for other clients to
    /// [`lookup`](Self::lookup) (as [`Manager::register`]).
    ///
    /// # Errors
    /// [`ManagerError::ObjectRefused`] if the manager has no such object (a handle of
    /// another manager); a connection's errors.
    pub fn register<H: ManagedObject>(&self, name: &str, handle: &H) -> Result<(), ManagerError> {
        let obj = self.obj(handle.parts().0.object, H::kind_of().0);
        let answer = obj.call(Op::Register(name.to_string()), Some(REPLY_GRACE))?;
        obj.done(answer)
    }

    /// The object the manager registered as `name` (Python's `manager.jobs()` after
    /// `register("jobs")`), as a handle of type `H`.
    ///
    /// ```
    /// use process_ipc::manager::{ManagedQueue, Manager};
    ///
    /// let server = Manager::builder().address("127.0.0.1:0").authkey(b"k").serve()?;
    /// let jobs = server.queue::<u32>()?;
    /// server.register("jobs", &jobs)?;
    /// let client = Manager::connect(server.local_addr().unwrap(), b"k")?;
    /// let remote_jobs: ManagedQueue<u32> = client.lookup("jobs")?;
    /// remote_jobs.put(7)?;
    /// assert_eq!(jobs.get()?, 7);
    /// # Ok::<(), process_ipc::manager::ManagerError>(())
    /// ```
    ///
    /// # Errors
    /// [`ManagerError::ObjectRefused`] if nothing is registered as `name`, or it is another
    /// kind of object than `H`; a connection's errors.
    pub fn lookup<H: ManagedObject>(&self, name: &str) -> Result<H, ManagerError> {
        let kind = H::kind_of().0;
        let manager = self.obj(0, kind);
        let answer = manager.call(Op::Lookup(name.to_string()), Some(REPLY_GRACE))?;
        match answer {
            Answer::Named { object, maxsize } => {
                let maxsize = maxsize.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
                Ok(H::from_parts(Parts(self.obj(object, kind), maxsize)))
            }
            other => Err(manager.unexpected(&other)),
        }
    }
}
