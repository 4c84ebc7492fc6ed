//! The manager's objects (dicts, lists, namespaces, values, locks, events): their state,
//! behind one lock, and the loop that serves one client connection.
//!
//! Every object holds postcard bytes, never typed values: a call is one step under the lock,
//! so each operation is atomic with respect to every other (a dict `update` or a list
//! `extend` lands as a whole). A lock acquire or an event wait waits on a condition variable
//! outside the lock, in the thread of the connection that asked (one thread per client
//! connection, as Python's manager has one per proxy connection).
//!
//! A lock remembers who holds it: an owner id per connection (a remote holder) or per guard
//! (a holder in the manager's process), and the holder's pid. When a connection ends while
//! its owner holds a lock (the kernel closes a dead process's sockets), the lock is freed and
//! marked with the dead pid; the next acquire gets that pid as an error.

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::object_dict::Dict;
use super::object_names::{self, Names, Store};
use super::object_ops::{LockState, Object, apply, wrong_kind};
use super::object_wire::{
    Answer, Call, Kind, Op, Refusal, SPIN, SpinRead, WireWait, read_call, write_frame,
};
use super::server::{self, Item, QueueObj};
use super::stream::{Limits, Peer, Stream};

/// What the manager's one lock guards: its objects (but for the queues' contents, each behind
/// a lock of its own), its client connections, and whether it closed.
struct ObjectTable {
    closed: bool,
    objects: HashMap<u64, Object>,
    /// The queues: each behind a lock of its own, so a get waiting on one holds up nobody.
    queues: HashMap<u64, Arc<QueueObj>>,
    /// Client connections, so shutdown can end them (their threads then return).
    connections: HashMap<u64, Stream>,
    next_owner: u64,
}

/// Every object of one manager.
pub(crate) struct Objects {
    state: Mutex<ObjectTable>,
    /// Signalled when a lock is released or freed, an event is set, or the manager closes.
    changed: Condvar,
    /// The number the next object made gets (queues and every other kind share the count).
    next_object: AtomicU64,
    /// Objects registered under a name (`Manager::register`), for clients to look up.
    names: Names,
}

/// Who makes a call: an owner id (see the module docs) and its process.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) owner: u64,
    pub(crate) pid: u32,
}

impl Objects {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(ObjectTable {
                closed: false,
                objects: HashMap::new(),
                queues: HashMap::new(),
                connections: HashMap::new(),
                next_owner: 1,
            }),
            changed: Condvar::new(),
            next_object: AtomicU64::new(1),
            names: Names::default(),
        }
    }

    /// A fresh object number.
    pub(crate) fn next_object(&self) -> u64 {
        self.next_object.fetch_add(1, Ordering::Relaxed)
    }

    /// How many objects were made.
    pub(crate) fn made(&self) -> u64 {
        self.next_object.load(Ordering::Relaxed) - 1
    }

    /// Every change under the lock is a single step, so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, ObjectTable> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh owner id (for a connection, or a lock guard in the manager's process).
    pub(crate) fn new_owner(&self) -> u64 {
        let mut state = self.lock();
        state.next_owner += 1;
        state.next_owner
    }

    /// Adds object `id`, made from `value` (the initial value, for a `Value`). False once
    /// the manager is closed.
    pub(crate) fn add(&self, id: u64, kind: Kind, value: Option<ByteBuf>) -> bool {
        let object = match kind {
            Kind::Dict => Object::Dict(Dict::default()),
            Kind::List => Object::List(Vec::new()),
            Kind::Namespace => Object::Namespace(HashMap::new()),
            Kind::Value => Object::Value(value.unwrap_or_default()),
            Kind::Lock => Object::Lock(LockState::default()),
            Kind::Event => Object::Event(false),
            // Queues are made by `add_queue`.
            Kind::Queue => return false,
        };
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.objects.insert(id, object);
        true
    }

    /// Adds queue `id`, bounded by `maxsize`; `None` once the manager is closed.
    pub(crate) fn add_queue(&self, id: u64, maxsize: Option<usize>) -> Option<Arc<QueueObj>> {
        let queue = Arc::new(QueueObj::new(maxsize));
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.queues.insert(id, Arc::clone(&queue));
        Some(queue)
    }

    /// Ends every object: waiters wake, and every client connection is shut down, so clients
    /// blocked on an answer see the end at once.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.objects.clear();
        for queue in state.queues.values() {
            queue.close();
        }
        state.queues.clear();
        for connection in state.connections.values() {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
        state.connections.clear();
        drop(state);
        self.changed.notify_all();
    }

    /// Does one call for `caller` (from a connection, or a handle in the manager's process).
    pub(crate) fn call(&self, caller: Caller, call: Call) -> Answer {
        if let Some(answer) = object_names::manager_call(self, &call) {
            return answer;
        }
        let mut state = self.lock();
        if state.closed {
            return Answer::Refused(Refusal::Gone);
        }
        if let Some(queue) = state.queues.get(&call.object) {
            if call.kind != Kind::Queue {
                return Answer::Refused(Refusal::WrongKind {
                    is: Kind::Queue.name().into(),
                    wanted: call.kind.name().into(),
                });
            }
            let queue = Arc::clone(queue);
            drop(state);
            return server::call(&queue, call.op);
        }
        let Some(object) = state.objects.get_mut(&call.object) else {
            return Answer::Refused(Refusal::NoSuchObject);
        };
        if object.kind() != call.kind {
            return wrong_kind(object, call.kind);
        }
        match call.op {
            Op::Acquire(wait) => return self.acquire(state, call.object, caller, wait),
            Op::EventWait(wait) => return self.wait_event(state, call.object, wait),
            _ => {}
        }
        let (answer, notify) = apply(object, caller.owner, call.op);
        drop(state);
        if notify {
            self.changed.notify_all();
        }
        answer
    }

    fn acquire(
        &self,
        mut state: MutexGuard<'_, ObjectTable>,
        object: u64,
        caller: Caller,
        wait: WireWait,
    ) -> Answer {
        let deadline = deadline(wait);
        let me = (caller.owner, caller.pid);
        let mut queued = false;
        loop {
            if state.closed {
                return Answer::Refused(Refusal::Gone);
            }
            let lock = match state.objects.get_mut(&object) {
                Some(Object::Lock(lock)) => lock,
                Some(other) => return wrong_kind(other, Kind::Lock),
                None => return Answer::Refused(Refusal::NoSuchObject),
            };
            if queued {
                // A release hands the lock to the first waiter; a death frees it for the first
                // waiter to report.
                if lock.holder == Some(me) {
                    return Answer::Bool(true);
                }
                if lock.waiters.front() == Some(&me) {
                    if let Some((owner, peer)) = lock.died.take() {
                        lock.waiters.pop_front();
                        drop(state);
                        self.changed.notify_all();
                        let peer = peer.map(|p| p.to_string());
                        return Answer::Refused(Refusal::OwnerDied { owner, peer });
                    }
                    if lock.holder.is_none() {
                        lock.waiters.pop_front();
                        lock.holder = Some(me);
                        return Answer::Bool(true);
                    }
                }
            } else {
                if lock.waiters.is_empty() {
                    if let Some((owner, peer)) = lock.died.take() {
                        let peer = peer.map(|p| p.to_string());
                        return Answer::Refused(Refusal::OwnerDied { owner, peer });
                    }
                    if lock.holder.is_none() {
                        lock.holder = Some(me);
                        return Answer::Bool(true);
                    }
                }
                if matches!(wait, WireWait::No) {
                    return Answer::Bool(false);
                }
                lock.waiters.push_back(me);
                queued = true;
            }
            state = match self.park(state, wait, deadline) {
                Some(state) => state,
                None => return self.give_up(object, me),
            };
        }
    }

    /// A queued acquire whose time ran out: out of the queue, unless the lock was handed to
    /// it meanwhile (then it has it).
    fn give_up(&self, object: u64, me: (u64, u32)) -> Answer {
        let mut state = self.lock();
        let Some(Object::Lock(lock)) = state.objects.get_mut(&object) else {
            return Answer::Refused(Refusal::Gone);
        };
        if lock.holder == Some(me) {
            return Answer::Bool(true);
        }
        lock.waiters.retain(|w| *w != me);
        drop(state);
        // The next waiter may be first now.
        self.changed.notify_all();
        Answer::Bool(false)
    }

    fn wait_event(
        &self,
        mut state: MutexGuard<'_, ObjectTable>,
        object: u64,
        wait: WireWait,
    ) -> Answer {
        let deadline = deadline(wait);
        loop {
            if state.closed {
                return Answer::Refused(Refusal::Gone);
            }
            match state.objects.get(&object) {
                Some(Object::Event(true)) => return Answer::Bool(true),
                Some(Object::Event(false)) => {}
                Some(other) => return wrong_kind(other, Kind::Event),
                None => return Answer::Refused(Refusal::NoSuchObject),
            }
            state = match self.park(state, wait, deadline) {
                Some(state) => state,
                None => return Answer::Bool(false),
            };
        }
    }

    /// Waits for a change, within `wait`; `None` when the wait is over (or not allowed).
    fn park<'a>(
        &self,
        state: MutexGuard<'a, ObjectTable>,
        wait: WireWait,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, ObjectTable>> {
        match (wait, deadline) {
            (WireWait::No, _) => None,
            (_, Some(deadline)) => {
                let left = deadline.checked_duration_since(Instant::now())?;
                if left.is_zero() {
                    return None;
                }
                let (state, _) = self
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner());
                Some(state)
            }
            _ => Some(self.changed.wait(state).unwrap_or_else(|e| e.into_inner())),
        }
    }

    /// Serves one client connection until it closes; then frees the locks its owner holds,
    /// naming `peer` as their dead holder. A frame over `limits.max_frame`, or one whose rest
    /// does not come within `limits.frame_wait`, ends the connection.
    pub(crate) fn serve(&self, stream: Stream, peer: Peer, limits: Limits) {
        let owner = self.new_owner();
        let caller = Caller {
            owner,
            pid: peer.pid,
        };
        let (Ok(reader), Ok(watched)) = (stream.try_clone(), stream.try_clone()) else {
            return;
        };
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.connections.insert(owner, watched);
        }
        let mut reader = SpinRead::new(reader);
        reader.limits = limits;
        let mut reader = BufReader::new(reader);
        let mut writer = stream;
        let (mut inbox, mut outbox) = (Vec::new(), Vec::new());
        // A frame that is over the limit, cut short, stalled past its deadline or does not
        // decode ends this connection alone: the stream is not ours to read on.
        // Set once an answer could not be written: the client is gone, but the calls it sent
        // before it went are still read; its puts (a feeder sends batches without waiting for
        // their answers, and a process may exit right after) are still done, nothing else is.
        let mut client_gone = false;
        while let Ok(call) = read_call(&mut reader, &mut inbox) {
            let object = call.object;
            let acquiring = matches!(call.op, Op::Acquire(_));
            let getting = matches!(call.op, Op::QueueGet(_));
            let putting = matches!(call.op, Op::QueuePutFramed(_) | Op::QueuePut(..));
            if client_gone && !putting {
                continue;
            }
            // A feeder's next batch comes after it collected more puts: sleep, don't poll.
            reader.get_mut().spin = if matches!(call.op, Op::QueuePutFramed(_)) {
                Duration::ZERO
            } else {
                SPIN
            };
            let answer = self.call(caller, call);
            if client_gone || write_frame(&mut writer, &answer, &mut outbox).is_ok() {
                continue;
            }
            client_gone = true;
            // A client that died (or gave up) while it waited never learned it holds the
            // lock: it never held it, so it is released without naming anyone. An item it
            // never received goes back to the queue, first in line.
            if acquiring && matches!(answer, Answer::Bool(true)) {
                let release = Call {
                    object,
                    kind: Kind::Lock,
                    op: Op::Release,
                };
                self.call(caller, release);
            }
            if let (true, Answer::One(Some(item))) = (getting, answer) {
                self.unget(object, Item::alone(item.into_vec()));
            }
        }
        self.disconnected(owner, peer);
    }

    /// An item taken by a get whose client could not receive it goes back to queue `id`.
    fn unget(&self, id: u64, item: Item) {
        let queue = self.lock().queues.get(&id).cloned();
        if let Some(queue) = queue {
            queue.unget(item);
        }
    }

    /// A connection ended: locks its owner holds are freed, marked with its peer.
    fn disconnected(&self, owner: u64, peer: Peer) {
        let mut state = self.lock();
        state.connections.remove(&owner);
        let mut freed = false;
        for object in state.objects.values_mut() {
            if let Object::Lock(lock) = object {
                if lock.holder.is_some_and(|(o, _)| o == owner) {
                    lock.holder = None;
                    lock.died = Some((peer.pid, peer.addr.clone()));
                    freed = true;
                }
            }
        }
        drop(state);
        if freed {
            self.changed.notify_all();
        }
    }
}

impl Store for Objects {
    fn next_object(&self) -> u64 {
        Objects::next_object(self)
    }

    fn make(&self, id: u64, kind: Kind, maxsize: Option<usize>, initial: ByteBuf) -> bool {
        match kind {
            Kind::Queue => self.add_queue(id, maxsize).is_some(),
            _ => self.add(id, kind, Some(initial)),
        }
    }

    fn kind_of(&self, id: u64) -> Option<(Kind, Option<usize>)> {
        let state = self.lock();
        if let Some(queue) = state.queues.get(&id) {
            return Some((Kind::Queue, queue.maxsize()));
        }
        state.objects.get(&id).map(|object| (object.kind(), None))
    }

    fn names(&self) -> &Names {
        &self.names
    }
}

fn deadline(wait: WireWait) -> Option<Instant> {
    match wait {
        WireWait::Nanos(n) => Instant::now().checked_add(Duration::from_nanos(n)),
        _ => None,
    }
}
