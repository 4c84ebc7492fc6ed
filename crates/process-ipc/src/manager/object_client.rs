//! What every handle to a manager's object shares ([`ObjectRef`]): which object, where its
//! manager listens, and how one call becomes one round trip. In the manager's own process a
//! handle the manager made calls the objects directly; elsewhere it takes a connection from
//! this process's pool for that manager (opening one on first use, one per call running at
//! once), writes the call, reads the answer, and puts the connection back.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::error::ManagerError;
use super::object_server::{Caller, Objects};
use super::object_wire::{Answer, Call, Kind, Op, Refusal, SpinRead, read_frame, write_frame};
use super::rendezvous::{self, Unreachable};
use super::stream::Stream;
use super::{REPLY_GRACE, ignore_sigpipe};
use crate::wire::serialize_message;

/// The owner id of calls made in the manager's process outside a lock guard (never a
/// connection's: those start at 2).
const LOCAL_OWNER: u64 = 0;

/// One connection to a manager's objects, carrying one call at a time.
pub(super) struct Conn {
    reader: BufReader<SpinRead>,
    writer: Stream,
    buf: Vec<u8>,
    /// The read timeout set on the socket now (changed only when a call needs another).
    read_timeout: Option<Duration>,
}

impl Conn {
    fn open(address: &str) -> Result<Self, Unreachable> {
        let stream = rendezvous::connect(address)?;
        Self::from_stream(stream).map_err(Unreachable::Io)
    }

    /// A connection on a stream already open (and, over TCP, authenticated).
    pub(super) fn from_stream(stream: Stream) -> io::Result<Self> {
        let reader = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(SpinRead::new(reader)),
            writer: stream,
            buf: Vec::new(),
            read_timeout: None,
        })
    }

    /// Whether its reads poll before they sleep (see [`SpinRead`]).
    pub(super) fn set_spin(&mut self, spin: Duration) {
        self.reader.get_mut().spin = spin;
    }

    /// Writes `call` and reads its answer, waiting at most `wait` for it (`None`: no bound).
    fn exchange(&mut self, call: &Call, wait: Option<Duration>) -> io::Result<Answer> {
        write_frame(&mut self.writer, call, &mut self.buf)?;
        self.read(wait)
    }

    /// Reads the next answer, waiting at most `wait` for it.
    fn read(&mut self, wait: Option<Duration>) -> io::Result<Answer> {
        if self.read_timeout != wait {
            self.writer.set_read_timeout(wait)?;
            self.read_timeout = wait;
        }
        read_frame(&mut self.reader, &mut self.buf)
    }

    /// Whether an answer has begun to arrive (reading it then does not wait long).
    pub(super) fn ready(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        crate::sys::readable_now(std::os::fd::AsRawFd::as_raw_fd(&self.writer))
    }
}

/// Idle connections of this process to one manager.
#[derive(Default)]
pub(super) struct ConnPool {
    idle: Mutex<Vec<Conn>>,
}

impl ConnPool {
    /// This process's pool for the manager at `address`.
    pub(super) fn for_address(address: &str) -> Arc<Self> {
        static POOLS: OnceLock<Mutex<HashMap<String, Arc<ConnPool>>>> = OnceLock::new();
        let mut pools = POOLS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(address) {
            return Arc::clone(pool);
        }
        // Forget the pools of managers that shut down (their socket is gone): their
        // connections are closed, and a long-lived process would keep their descriptors.
        pools.retain(|address, _| rendezvous::may_be_alive(address));
        Arc::clone(pools.entry(address.to_string()).or_default())
    }

    /// Whether no connection is idle.
    pub(super) fn is_empty(&self) -> bool {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn take(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    pub(super) fn give_back(&self, conn: Conn) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Which object a handle names, and how to reach it.
#[derive(Clone)]
pub(super) struct ObjectRef {
    pub(super) pid: u32,
    pub(super) object: u64,
    pub(super) kind: Kind,
    pub(super) address: Arc<str>,
    /// The objects themselves, in a handle the manager made (in its process).
    pub(super) local: Option<Arc<Objects>>,
    /// This process's connections to the manager, once looked up.
    pub(super) pool: OnceLock<Arc<ConnPool>>,
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.kind.name())
            .field("manager_pid", &self.pid)
            .field("object", &self.object)
            .field("in_manager_process", &self.local.is_some())
            .finish()
    }
}

/// What a handle is on the wire: which object, and where to ask for it. Plain data, so any
/// encoder carries it (like the address in a pickled Python proxy).
#[derive(Serialize, Deserialize)]
pub(super) struct RefWire<A> {
    pid: u32,
    object: u64,
    address: A,
}

impl ObjectRef {
    pub(super) fn to_wire(&self) -> RefWire<&str> {
        RefWire {
            pid: self.pid,
            object: self.object,
            address: &self.address,
        }
    }

    pub(super) fn from_wire(wire: RefWire<String>, kind: Kind) -> Self {
        Self {
            pid: wire.pid,
            object: wire.object,
            kind,
            address: wire.address.into(),
            local: None,
            pool: OnceLock::new(),
        }
    }

    /// Does `op`: one round trip (or a direct call in the manager's process). `wait` bounds
    /// the wait for the answer (`None`: no bound, for a call that may wait forever).
    pub(super) fn call(&self, op: Op, wait: Option<Duration>) -> Result<Answer, ManagerError> {
        self.call_as(LOCAL_OWNER, op, wait)
    }

    /// As [`call`](Self::call), as owner `owner` in the manager's process.
    pub(super) fn call_as(
        &self,
        owner: u64,
        op: Op,
        wait: Option<Duration>,
    ) -> Result<Answer, ManagerError> {
        let call = Call {
            object: self.object,
            kind: self.kind,
            op,
        };
        if let Some(objects) = &self.local {
            let caller = Caller {
                owner,
                pid: self.pid,
            };
            return self.accepted(objects.call(caller, call));
        }
        let mut conn = self.conn()?;
        let answer = self.exchange(&mut conn, &call, wait)?;
        self.pool().give_back(conn);
        self.accepted(answer)
    }

    /// A call whose connection the caller keeps (a lock guard keeps the one it acquired
    /// through, so the manager knows its holder by that connection).
    pub(super) fn call_keeping(
        &self,
        op: Op,
        wait: Option<Duration>,
    ) -> Result<(Answer, Conn), ManagerError> {
        let mut conn = self.conn()?;
        let call = Call {
            object: self.object,
            kind: self.kind,
            op,
        };
        let answer = self.exchange(&mut conn, &call, wait)?;
        match self.accepted(answer) {
            Ok(answer) => Ok((answer, conn)),
            Err(e) => {
                self.pool().give_back(conn);
                Err(e)
            }
        }
    }

    /// A call on a connection the caller kept; the connection goes back to the pool after.
    pub(super) fn call_on(&self, mut conn: Conn, op: Op) -> Result<Answer, ManagerError> {
        let call = Call {
            object: self.object,
            kind: self.kind,
            op,
        };
        let answer = self.exchange(&mut conn, &call, Some(REPLY_GRACE))?;
        self.pool().give_back(conn);
        self.accepted(answer)
    }

    /// A connection of this process's pool (or a new one) that the caller keeps.
    pub(super) fn take_conn(&self) -> Result<Conn, ManagerError> {
        self.conn()
    }

    /// Gives a kept connection back without a call.
    pub(super) fn give_back(&self, conn: Conn) {
        self.pool().give_back(conn);
    }

    fn pool(&self) -> &Arc<ConnPool> {
        self.pool
            .get_or_init(|| ConnPool::for_address(&self.address))
    }

    fn conn(&self) -> Result<Conn, ManagerError> {
        if let Some(conn) = self.pool().take() {
            return Ok(conn);
        }
        ignore_sigpipe();
        Conn::open(&self.address).map_err(|e| match e {
            Unreachable::Gone(why) => self.gone(why),
            Unreachable::Denied { peer_uid, uid } => ManagerError::PermissionDenied {
                pid: self.pid,
                peer_uid,
                uid,
            },
            Unreachable::Io(source) => self.io("cannot connect to the manager", source),
            Unreachable::Auth(why) => ManagerError::AuthenticationFailed {
                address: self.address.to_string(),
                why,
            },
        })
    }

    /// One exchange; a connection that failed is dropped (never reused).
    fn exchange(
        &self,
        conn: &mut Conn,
        call: &Call,
        wait: Option<Duration>,
    ) -> Result<Answer, ManagerError> {
        conn.exchange(call, wait).map_err(|e| self.failed(e, wait))
    }

    /// Writes a call on a connection the caller keeps, without reading its answer (a
    /// feeder's batch: it reads the answers later, in order, with [`recv_on`](Self::recv_on)).
    pub(super) fn send_on(&self, conn: &mut Conn, op: Op) -> Result<(), ManagerError> {
        let call = Call {
            object: self.object,
            kind: self.kind,
            op,
        };
        write_frame(&mut conn.writer, &call, &mut conn.buf).map_err(|e| self.failed(e, None))
    }

    /// Reads the next answer on a connection the caller keeps.
    pub(super) fn recv_on(
        &self,
        conn: &mut Conn,
        wait: Option<Duration>,
    ) -> Result<Answer, ManagerError> {
        let answer = conn.read(wait).map_err(|e| self.failed(e, wait))?;
        self.accepted(answer)
    }

    /// What a failed exchange means.
    fn failed(&self, e: io::Error, wait: Option<Duration>) -> ManagerError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                self.no_reply(wait.unwrap_or_default())
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => self.gone("its connection closed"),
            _ => self.io("the exchange with the manager failed", e),
        }
    }

    /// An answer given in the manager's process, or its refusal as an error.
    pub(super) fn answered(&self, answer: Answer) -> Result<Answer, ManagerError> {
        self.accepted(answer)
    }

    /// The answer, or the refusal as an error.
    fn accepted(&self, answer: Answer) -> Result<Answer, ManagerError> {
        let Answer::Refused(refusal) = answer else {
            return Ok(answer);
        };
        let refused = |why: String| ManagerError::ObjectRefused {
            pid: self.pid,
            object: self.object,
            kind: self.kind.name(),
            why,
        };
        Err(match refusal {
            Refusal::Gone => self.gone("it was shut down"),
            Refusal::NoSuchObject => refused("the manager has no such object".into()),
            Refusal::WrongKind { is, wanted } => {
                refused(format!("the object is a {is}, not a {wanted}"))
            }
            Refusal::OwnerDied { owner, peer } => ManagerError::OwnerDied {
                pid: self.pid,
                object: self.object,
                owner,
                peer,
            },
            Refusal::NoSuchName(name) => {
                refused(format!("the manager has no object registered as {name:?}"))
            }
            Refusal::IndexOutOfRange { index, len } => ManagerError::IndexOutOfRange {
                pid: self.pid,
                object: self.object,
                index,
                len,
            },
            Refusal::NotInList => ManagerError::NotInList {
                pid: self.pid,
                object: self.object,
            },
            Refusal::NotHeld => refused("released by a caller that does not hold it".into()),
            Refusal::Malformed(why) => refused(format!("the manager could not read a call: {why}")),
            Refusal::ShutDown => ManagerError::ShutDown {
                pid: self.pid,
                queue: self.object,
            },
        })
    }

    /// The manager is gone (a queue's error for a queue, an object's for the others).
    pub(super) fn gone(&self, why: impl Into<String>) -> ManagerError {
        if self.kind == Kind::Queue {
            return ManagerError::Gone {
                pid: self.pid,
                queue: self.object,
                why: why.into(),
            };
        }
        ManagerError::ObjectGone {
            pid: self.pid,
            object: self.object,
            kind: self.kind.name(),
            why: why.into(),
        }
    }

    /// The manager did not answer within `waited`.
    fn no_reply(&self, waited: Duration) -> ManagerError {
        if self.kind == Kind::Queue {
            return ManagerError::NoReply {
                pid: self.pid,
                queue: self.object,
                waited,
            };
        }
        ManagerError::ObjectNoReply {
            pid: self.pid,
            object: self.object,
            kind: self.kind.name(),
            waited,
        }
    }

    fn io(&self, what: &'static str, source: io::Error) -> ManagerError {
        if self.kind == Kind::Queue {
            return ManagerError::Io {
                pid: self.pid,
                queue: self.object,
                what,
                source,
            };
        }
        ManagerError::ObjectIo {
            pid: self.pid,
            object: self.object,
            kind: self.kind.name(),
            what,
            source,
        }
    }

    /// An answer of a shape the call never gets (a manager of another build).
    pub(super) fn unexpected(&self, answer: &Answer) -> ManagerError {
        ManagerError::ObjectRefused {
            pid: self.pid,
            object: self.object,
            kind: self.kind.name(),
            why: format!("unexpected answer from the manager: {answer:?}"),
        }
    }

    /// Encodes a key, value, item or name (`what`) before anything is sent.
    pub(super) fn encode<T: Serialize + ?Sized>(
        &self,
        what: &'static str,
        value: &T,
    ) -> Result<ByteBuf, ManagerError> {
        postcard::to_stdvec(value)
            .map(ByteBuf::from)
            .map_err(|e| ManagerError::Encode {
                pid: self.pid,
                object: self.object,
                kind: self.kind.name(),
                what,
                message: serialize_message(value, e),
            })
    }

    /// Decodes a value as `T`, naming `T` if it does not decode.
    pub(super) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ManagerError> {
        postcard::from_bytes(bytes).map_err(|e| ManagerError::Decode {
            pid: self.pid,
            object: self.object,
            kind: self.kind.name(),
            type_name: std::any::type_name::<T>(),
            message: e.to_string(),
        })
    }

    /// Answer `One`, decoded.
    pub(super) fn one<T: DeserializeOwned>(
        &self,
        answer: Answer,
    ) -> Result<Option<T>, ManagerError> {
        match answer {
            Answer::One(Some(bytes)) => self.decode(&bytes).map(Some),
            Answer::One(None) => Ok(None),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Answer `Many`, each decoded.
    pub(super) fn many<T: DeserializeOwned>(&self, answer: Answer) -> Result<Vec<T>, ManagerError> {
        match answer {
            Answer::Many(all) => all.iter().map(|bytes| self.decode(bytes)).collect(),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Answer `Bool`.
    pub(super) fn flag(&self, answer: Answer) -> Result<bool, ManagerError> {
        match answer {
            Answer::Bool(b) => Ok(b),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Answer `Len`.
    pub(super) fn count(&self, answer: Answer) -> Result<usize, ManagerError> {
        match answer {
            Answer::Len(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Answer `Done`.
    pub(super) fn done(&self, answer: Answer) -> Result<(), ManagerError> {
        match answer {
            Answer::Done => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }
}

/// Implements `Debug`, `Clone`, `Serialize` and `Deserialize` for a handle type whose only
/// data is `obj: ObjectRef` (plus `PhantomData`), of object kind `$kind`.
macro_rules! object_handle {
    ($name:ident $(<$($p:ident),+>)?, $kind:expr, $what:literal) => {
        impl$(<$($p),+>)? $name$(<$($p),+>)? {
            pub(super) fn new(obj: $crate::manager::object_client::ObjectRef) -> Self {
                Self {
                    obj,
                    types: ::std::marker::PhantomData,
                }
            }

            #[doc = concat!("The process id of the manager that hosts this ", $what, ".")]
            pub fn manager_pid(&self) -> u32 {
                self.obj.pid
            }
        }

        impl$(<$($p),+>)? ::std::fmt::Debug for $name$(<$($p),+>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.obj, f)
            }
        }

        impl$(<$($p),+>)? Clone for $name$(<$($p),+>)? {
            /// Another handle to the same object.
            fn clone(&self) -> Self {
                Self {
                    obj: self.obj.clone(),
                    types: ::std::marker::PhantomData,
                }
            }
        }

        impl$(<$($p),+>)? ::serde::Serialize for $name$(<$($p),+>)? {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.obj.to_wire().serialize(serializer)
            }
        }

        impl<'de, $($($p),+)?> ::serde::Deserialize<'de> for $name$(<$($p),+>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = $crate::manager::object_client::RefWire::<String>::deserialize(deserializer)?;
                Ok(Self {
                    obj: $crate::manager::object_client::ObjectRef::from_wire(wire, $kind),
                    types: ::std::marker::PhantomData,
                })
            }
        }
    };
}
pub(super) use object_handle;
