//! The calls a client makes on the manager itself rather than on one object: make a new object
//! (a remote client's `dict()`, `queue()`, ...), give an object a name, and find an object by
//! its name, as Python's `BaseManager.register("jobs", callable=...)` lets a client ask for the
//! server's job queue.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_bytes::ByteBuf;

use super::object_server::Objects;
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

impl Objects {
    /// Does `call` when it is addressed to the manager rather than an object; `None` otherwise.
    pub(crate) fn manager_call(&self, call: &Call) -> Option<Answer> {
        Some(match &call.op {
            Op::Make { maxsize, initial } => self.make(call.kind, *maxsize, initial.clone()),
            Op::Register(name) => self.register(name, call.object, call.kind),
            Op::Lookup(name) => self.lookup(name, call.kind),
            _ => return None,
        })
    }

    /// Makes an object of `kind`: `Len`, its number.
    fn make(&self, kind: Kind, maxsize: Option<u64>, initial: Option<ByteBuf>) -> Answer {
        let id = self.next_object();
        let made = if kind == Kind::Queue {
            let maxsize = maxsize.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
            self.add_queue(id, maxsize.filter(|m| *m > 0)).is_some()
        } else {
            self.add(id, kind, Some(initial.unwrap_or_default()))
        };
        if made {
            Answer::Len(id)
        } else {
            Answer::Refused(Refusal::Gone)
        }
    }

    /// Names object `id` (of `kind`) `name`.
    pub(crate) fn register(&self, name: &str, id: u64, kind: Kind) -> Answer {
        match self.kind_of(id) {
            None => Answer::Refused(Refusal::NoSuchObject),
            Some((is, _)) if is != kind => wrong(is, kind),
            Some(_) => {
                self.names.set(name.to_string(), id);
                Answer::Done
            }
        }
    }

    /// The object named `name`, if it is a `kind`.
    fn lookup(&self, name: &str, kind: Kind) -> Answer {
        let Some(id) = self.names.get(name) else {
            return Answer::Refused(Refusal::NoSuchName(name.to_string()));
        };
        match self.kind_of(id) {
            None => Answer::Refused(Refusal::Gone),
            Some((is, _)) if is != kind => wrong(is, kind),
            Some((_, maxsize)) => Answer::Named {
                object: id,
                maxsize: maxsize.map(|m| m as u64),
            },
        }
    }
}

fn wrong(is: Kind, wanted: Kind) -> Answer {
    Answer::Refused(Refusal::WrongKind {
        is: is.name().into(),
        wanted: wanted.name().into(),
    })
}
