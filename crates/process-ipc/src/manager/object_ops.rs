//! The objects a manager holds (dicts, lists, namespaces, values, locks, events) and the calls
//! on them that never wait: each one step on one object, done under the manager's lock by
//! `object_server`. The calls that may wait (a lock acquire, an event wait) and the queues are
//! `object_server`'s and `server`'s.

use std::collections::HashMap;
use std::sync::Arc;

use serde_bytes::ByteBuf;

use super::object_dict::Dict;
use super::object_list;
use super::object_wire::{Answer, Kind, Op, Refusal};

/// A lock's state.
#[derive(Default)]
pub(super) struct LockState {
    /// Owner id and pid of the holder.
    pub(super) holder: Option<(u64, u32)>,
    /// Acquires waiting, in arrival order (owner id and pid): a release hands the lock to
    /// the first.
    pub(super) waiters: std::collections::VecDeque<(u64, u32)>,
    /// The pid of a holder that died holding it (and its address, over TCP), until an acquire
    /// reports it.
    pub(super) died: Option<(u32, Option<Arc<str>>)>,
}

pub(super) enum Object {
    Dict(Dict),
    List(Vec<ByteBuf>),
    Namespace(HashMap<String, ByteBuf>),
    Value(ByteBuf),
    Lock(LockState),
    Event(bool),
}

impl Object {
    pub(super) fn kind(&self) -> Kind {
        match self {
            Object::Dict(_) => Kind::Dict,
            Object::List(_) => Kind::List,
            Object::Namespace(_) => Kind::Namespace,
            Object::Value(_) => Kind::Value,
            Object::Lock(_) => Kind::Lock,
            Object::Event(_) => Kind::Event,
        }
    }
}

pub(super) fn wrong_kind(object: &Object, wanted: Kind) -> Answer {
    Answer::Refused(Refusal::WrongKind {
        is: object.kind().name().into(),
        wanted: wanted.name().into(),
    })
}

pub(super) fn len(n: usize) -> u64 {
    n as u64
}

/// Applies an operation that never waits, for the caller `owner` (a lock's release checks it);
/// also says whether waiters must look again.
pub(super) fn apply(object: &mut Object, owner: u64, op: Op) -> (Answer, bool) {
    let answer = match (object, op) {
        (Object::Dict(d), Op::Len) => Answer::Len(len(d.len())),
        (Object::List(l), Op::Len) => Answer::Len(len(l.len())),
        (Object::Namespace(n), Op::Len) => Answer::Len(len(n.len())),
        (Object::Dict(d), Op::Clear) => {
            d.clear();
            Answer::Done
        }
        (Object::List(l), Op::Clear) => {
            l.clear();
            Answer::Done
        }
        (Object::Dict(d), Op::DictGet(k)) => Answer::One(d.get(&k).cloned()),
        (Object::Dict(d), Op::DictInsert(k, v)) => Answer::One(d.insert(k, v)),
        (Object::Dict(d), Op::DictRemove(k)) => Answer::One(d.remove(&k)),
        (Object::Dict(d), Op::DictContains(k)) => Answer::Bool(d.get(&k).is_some()),
        (Object::Dict(d), Op::DictUpdate(pairs)) => {
            for (k, v) in pairs {
                d.insert(k, v);
            }
            Answer::Done
        }
        (Object::Dict(d), Op::DictSetDefault(k, v)) => match d.get(&k) {
            Some(current) => Answer::One(Some(current.clone())),
            None => {
                d.insert(k, v.clone());
                Answer::One(Some(v))
            }
        },
        (Object::Dict(d), Op::DictKeys) => Answer::Many(d.entries().map(|e| e.0.clone()).collect()),
        (Object::Dict(d), Op::DictValues) => {
            Answer::Many(d.entries().map(|e| e.1.clone()).collect())
        }
        (Object::Dict(d), Op::DictItems) => Answer::Pairs(d.entries().cloned().collect()),
        (Object::List(l), Op::ListAppend(v)) => {
            l.push(v);
            Answer::Done
        }
        (Object::List(l), Op::ListExtend(vs)) => {
            l.extend(vs);
            Answer::Done
        }
        (Object::List(l), Op::ListGet(i)) => {
            Answer::One(usize::try_from(i).ok().and_then(|i| l.get(i)).cloned())
        }
        (Object::List(l), Op::ListSet(i, v)) => match index(l, i, false) {
            Ok(i) => Answer::One(Some(std::mem::replace(&mut l[i], v))),
            Err(refused) => refused,
        },
        (Object::List(l), Op::ListInsert(i, v)) => match index(l, i, true) {
            Ok(i) => {
                l.insert(i, v);
                Answer::Done
            }
            Err(refused) => refused,
        },
        (Object::List(l), Op::ListRemove(i)) => match index(l, i, false) {
            Ok(i) => Answer::One(Some(l.remove(i))),
            Err(refused) => refused,
        },
        (Object::List(l), Op::ListPop) => Answer::One(l.pop()),
        (Object::List(l), Op::ListAll) => Answer::Many(l.clone()),
        (Object::Dict(d), Op::DictPopItem) => Answer::Pairs(d.pop_last().into_iter().collect()),
        (Object::List(l), op) => match object_list::apply(l, op) {
            Ok(answer) => answer,
            Err(op) => wrong_op(Kind::List, op),
        },
        (Object::Namespace(n), Op::NsGet(name)) => Answer::One(n.get(&name).cloned()),
        (Object::Namespace(n), Op::NsSet(name, v)) => Answer::One(n.insert(name, v)),
        (Object::Namespace(n), Op::NsRemove(name)) => Answer::One(n.remove(&name)),
        (Object::Namespace(n), Op::NsNames) => {
            let mut names: Vec<&String> = n.keys().collect();
            names.sort();
            let encoded = names
                .into_iter()
                .filter_map(|name| postcard::to_stdvec(name).ok().map(ByteBuf::from));
            Answer::Many(encoded.collect())
        }
        (Object::Value(v), Op::ValueGet) => Answer::One(Some(v.clone())),
        (Object::Value(v), Op::ValueSet(new)) => Answer::One(Some(std::mem::replace(v, new))),
        (Object::Lock(lock), Op::Release) => {
            if lock.holder.is_some_and(|(holder, _)| holder == owner) {
                lock.holder = lock.waiters.pop_front();
                return (Answer::Done, true);
            }
            Answer::Refused(Refusal::NotHeld)
        }
        (Object::Lock(lock), Op::LockWaiting) => Answer::Len(len(lock.waiters.len())),
        (Object::Event(flag), Op::EventSet) => {
            *flag = true;
            return (Answer::Done, true);
        }
        (Object::Event(flag), Op::EventClear) => {
            *flag = false;
            Answer::Done
        }
        (Object::Event(flag), Op::EventIsSet) => Answer::Bool(*flag),
        (object, op) => wrong_op(object.kind(), op),
    };
    (answer, false)
}

/// The refusal of `op` on an object of kind `is`, which is not the kind `op` is for.
fn wrong_op(is: Kind, op: Op) -> Answer {
    let wanted = match op {
        Op::Len | Op::Clear => "a dict, list or namespace".to_string(),
        Op::DictGet(_)
        | Op::DictInsert(..)
        | Op::DictRemove(_)
        | Op::DictContains(_)
        | Op::DictUpdate(_)
        | Op::DictSetDefault(..)
        | Op::DictKeys
        | Op::DictValues
        | Op::DictItems
        | Op::DictPopItem => Kind::Dict.name().into(),
        Op::ListAppend(_)
        | Op::ListExtend(_)
        | Op::ListGet(_)
        | Op::ListSet(..)
        | Op::ListInsert(..)
        | Op::ListRemove(_)
        | Op::ListPop
        | Op::ListAll
        | Op::ListCount(_)
        | Op::ListIndex(..)
        | Op::ListRemoveValue(_)
        | Op::ListReverse
        | Op::ListSlice(..)
        | Op::ListSplice(..) => Kind::List.name().into(),
        Op::NsGet(_) | Op::NsSet(..) | Op::NsRemove(_) | Op::NsNames => {
            Kind::Namespace.name().into()
        }
        Op::ValueGet | Op::ValueSet(_) => Kind::Value.name().into(),
        Op::Acquire(_) | Op::Release | Op::LockWaiting => Kind::Lock.name().into(),
        Op::EventSet | Op::EventClear | Op::EventIsSet | Op::EventWait(_) => {
            Kind::Event.name().into()
        }
        Op::QueuePut(..)
        | Op::QueuePutFramed(_)
        | Op::QueueGet(_)
        | Op::QueueCounts
        | Op::QueueShutdown(_) => Kind::Queue.name().into(),
        // Done by `object_names::manager_call` before any object is looked at.
        Op::Make { .. } | Op::Register(_) | Op::Lookup(_) => "the manager".into(),
    };
    Answer::Refused(Refusal::WrongKind {
        is: is.name().into(),
        wanted,
    })
}

/// `i` as an index into `list` (`end_ok`: one past the end too), or the refusal.
fn index(list: &[ByteBuf], i: u64, end_ok: bool) -> Result<usize, Answer> {
    let limit = if end_ok { list.len() + 1 } else { list.len() };
    match usize::try_from(i) {
        Ok(i) if i < limit => Ok(i),
        _ => Err(Answer::Refused(Refusal::IndexOutOfRange {
            index: i,
            len: len(list.len()),
        })),
    }
}
