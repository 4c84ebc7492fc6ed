//! The calls a client makes on the manager itself rather than on one object: make a new object
//! (a remote client's `dict()`, `queue()`, ...), give an object a name, and find an object by
//! its name, as Python's `BaseManager.register("jobs", callable=...)` lets a client ask for the
//! server's job queue.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_bytes::ByteBuf;

use super::object_wire::{Answer, Call, Kind, Op, Refusal};

/// Objects registered under a name: name to object number.
#[derive(Default)]
pub(crate) struct Names(Mutex<HashMap<String, u64>>);

impl Names {
    fn set(&self, name: String, object: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, object);
    }

    fn get(&self, name: &str) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }
}

/// What the manager-level calls need of the objects' store (`object_server::Objects`).
pub(crate) trait Store {
    /// A fresh object number.
    fn next_object(&self) -> u64;
    /// Adds object `id` of `kind` (a queue bounded by `maxsize`, a value holding `initial`);
    /// false once the manager is closed.
    fn make(&self, id: u64, kind: Kind, maxsize: Option<usize>, initial: ByteBuf) -> bool;
    /// The kind of object `id` (and a queue's bound), if it exists.
    fn kind_of(&self, id: u64) -> Option<(Kind, Option<usize>)>;
    /// The names given to objects.
    fn names(&self) -> &Names;
}

/// Does `call` when it is addressed to the manager rather than an object; `None` otherwise.
pub(crate) fn manager_call(store: &impl Store, call: &Call) -> Option<Answer> {
    Some(match &call.op {
        Op::Make { maxsize, initial } => make(store, call.kind, *maxsize, initial.clone()),
        Op::Register(name) => register(store, name, call.object, call.kind),
        Op::Lookup(name) => lookup(store, name, call.kind),
        _ => return None,
    })
}

/// Makes an object of `kind`: `Len`, its number.
fn make(store: &impl Store, kind: Kind, maxsize: Option<u64>, initial: Option<ByteBuf>) -> Answer {
    let id = store.next_object();
    let maxsize = maxsize
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
        .filter(|m| *m > 0);
    if store.make(id, kind, maxsize, initial.unwrap_or_default()) {
        Answer::Len(id)
    } else {
        Answer::Refused(Refusal::Gone)
    }
}

/// Names object `id` (of `kind`) `name`.
pub(crate) fn register(store: &impl Store, name: &str, id: u64, kind: Kind) -> Answer {
    match store.kind_of(id) {
        None => Answer::Refused(Refusal::NoSuchObject),
        Some((is, _)) if is != kind => wrong(is, kind),
        Some(_) => {
            store.names().set(name.to_string(), id);
            Answer::Done
        }
    }
}

/// The object named `name`, if it is a `kind`.
fn lookup(store: &impl Store, name: &str, kind: Kind) -> Answer {
    let Some(id) = store.names().get(name) else {
        return Answer::Refused(Refusal::NoSuchName(name.to_string()));
    };
    match store.kind_of(id) {
        None => Answer::Refused(Refusal::Gone),
        Some((is, _)) if is != kind => wrong(is, kind),
        Some((_, maxsize)) => Answer::Named {
            object: id,
            maxsize: maxsize.map(|m| m as u64),
        },
    }
}

fn wrong(is: Kind, wanted: Kind) -> Answer {
    Answer::Refused(Refusal::WrongKind {
        is: is.name().into(),
        wanted: wanted.name().into(),
    })
}
