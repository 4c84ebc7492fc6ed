//! The server side of one managed queue: its state, shared with handles in the manager's own
//! process, and the thread that serves clients in other processes.
//!
//! Invariants: items are queued only while no getter waits (`items` non-empty implies
//! `getters` empty), so a new item always goes to the getter that has waited longest, whether
//! it waits in this process or in another one; and in a bounded queue putters wait only while
//! it is full (`putters` non-empty implies `items.len() == maxsize`), and each item taken out
//! admits the putter that has waited longest.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ipc_channel::IpcError;
use ipc_channel::ipc::IpcReceiver;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{ReplyOut, ReplySender, Request};
use crate::Wire;
use crate::wire::serialize_message;

/// One getter waiting for an item, in arrival order.
enum Getter<T> {
    /// A thread of the manager's own process, parked on a one-slot channel.
    Local { id: u64, slot: Sender<T> },
    /// A client in any process, waiting on its reply channel for get `seq`.
    Remote { client: u64, seq: u64 },
}

/// One putter waiting for room in a bounded queue, holding its item, in arrival order.
enum Putter<T> {
    /// A thread of the manager's own process, parked until `admitted` fires.
    Local {
        id: u64,
        item: T,
        admitted: Sender<()>,
    },
    /// A client in any process, waiting on its reply channel for put `seq`.
    Remote { client: u64, seq: u64, item: T },
}

/// Everything a queue holds, behind one lock.
pub(crate) struct State<T> {
    /// Set once by the manager's shutdown; every operation then fails with `Gone`.
    pub(crate) closed: bool,
    maxsize: Option<usize>,
    items: VecDeque<T>,
    getters: VecDeque<Getter<T>>,
    putters: VecDeque<Putter<T>>,
    clients: HashMap<u64, ReplySender<T>>,
    /// Per producer: items that did not decode since its last flush, and the first error.
    dropped: HashMap<u64, (u64, String)>,
    next_client: u64,
    next_local: u64,
}

/// A queue's state plus what identifies it; shared by the server thread and local handles.
pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
}

/// What a local `get` found.
pub(crate) enum LocalGet<T> {
    /// An item was queued.
    Item(T),
    /// Nothing queued; the caller waits on this slot (registered as getter `id`).
    Wait { id: u64, slot: Receiver<T> },
    /// Nothing queued and the caller did not want to wait.
    Empty,
    /// The manager shut the queue down.
    Closed,
}

/// How full a queue is and who waits on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) items: usize,
    pub(crate) getters: usize,
    pub(crate) putters: usize,
}

/// What a local put into a bounded queue found.
pub(crate) enum LocalPut<T> {
    /// The item is in (or went straight to a getter).
    Done,
    /// Full, and the caller did not want to wait: the item back.
    Full(T),
    /// Full: the caller waits for `admitted` (registered as putter `id`, holding the item).
    Wait { id: u64, admitted: Receiver<()> },
    /// The manager shut the queue down: the item back.
    Closed(T),
}

impl<T: Serialize> Shared<T> {
    /// An empty queue; `maxsize` bounds it.
    pub(crate) fn new(maxsize: Option<usize>) -> Self {
        Self {
            state: Mutex::new(State {
                closed: false,
                maxsize,
                items: VecDeque::new(),
                getters: VecDeque::new(),
                putters: VecDeque::new(),
                clients: HashMap::new(),
                dropped: HashMap::new(),
                next_client: 1,
                next_local: 1,
            }),
        }
    }

    /// The lock; a panic while holding it cannot leave the state half-changed (every change
    /// is a single push or pop), so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an item: to the longest-waiting getter that can still take it, else to the queue.
    /// Returns false if the queue is closed (the item is dropped).
    pub(crate) fn put(&self, item: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.deliver(item);
        true
    }

    /// Takes an item, or registers the caller as a local getter when `wait` is set.
    pub(crate) fn get_local(&self, wait: bool) -> LocalGet<T> {
        let mut state = self.lock();
        if state.closed {
            return LocalGet::Closed;
        }
        if let Some(item) = state.items.pop_front() {
            state.admit();
            return LocalGet::Item(item);
        }
        if !wait {
            return LocalGet::Empty;
        }
        let (slot, receiver) = crossbeam_channel::bounded(1);
        let id = state.next_local;
        state.next_local += 1;
        state.getters.push_back(Getter::Local { id, slot });
        LocalGet::Wait { id, slot: receiver }
    }

    /// Withdraws local getter `id` after its timeout. True if it was still waiting (so no item
    /// was or will be sent to its slot); false if an item already went to its slot.
    pub(crate) fn cancel_local(&self, id: u64) -> bool {
        let mut state = self.lock();
        let position = state
            .getters
            .iter()
            .position(|g| matches!(g, Getter::Local { id: i, .. } if *i == id));
        match position {
            Some(p) => {
                state.getters.remove(p);
                true
            }
            None => false,
        }
    }

    /// Puts into a bounded queue, or registers the caller as a local putter when `wait` is set
    /// and the queue is full.
    pub(crate) fn put_local(&self, item: T, wait: bool) -> LocalPut<T> {
        let mut state = self.lock();
        if state.closed {
            return LocalPut::Closed(item);
        }
        let item = match state.offer(item) {
            Ok(()) => return LocalPut::Done,
            Err(item) => item,
        };
        if !wait {
            return LocalPut::Full(item);
        }
        let (admitted, receiver) = crossbeam_channel::bounded(1);
        let id = state.next_local;
        state.next_local += 1;
        state
            .putters
            .push_back(Putter::Local { id, item, admitted });
        LocalPut::Wait {
            id,
            admitted: receiver,
        }
    }

    /// Withdraws local putter `id` after its timeout: its item back if it was still waiting,
    /// `None` if it was admitted (the item is in the queue).
    pub(crate) fn cancel_local_put(&self, id: u64) -> Option<T> {
        let mut state = self.lock();
        let position = state
            .putters
            .iter()
            .position(|p| matches!(p, Putter::Local { id: i, .. } if *i == id))?;
        match state.putters.remove(position) {
            Some(Putter::Local { item, .. }) => Some(item),
            _ => None,
        }
    }

    /// Items queued, getters waiting and putters waiting, or `None` once closed.
    pub(crate) fn counts(&self) -> Option<Counts> {
        let state = self.lock();
        (!state.closed).then(|| state.counts())
    }

    /// Marks the queue gone and wakes every waiter: local getters see their slot disconnect,
    /// remote getters see their reply channel close (the server held its only sending end).
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.items.clear();
        state.getters.clear();
        state.putters.clear();
        state.clients.clear();
    }
}

impl<T: Serialize + DeserializeOwned> Shared<T> {
    /// Handles one request from the channel; false means stop serving.
    fn serve(&self, request: Request<T>) -> bool {
        let mut state = self.lock();
        if state.closed {
            // Dropping the request drops any reply sender in it, which tells its client.
            return !matches!(request, Request::Shutdown);
        }
        match request {
            Request::Put { producer, items } => {
                for item in items.decode::<T>() {
                    match item {
                        Ok(item) => state.deliver(item),
                        Err(e) => state.record_dropped(producer, e),
                    }
                }
            }
            Request::Register { reply } => {
                let client = state.next_client;
                state.next_client += 1;
                let reply = ReplySender::new(reply);
                if reply.send(ReplyOut::Registered { client }).is_ok() {
                    state.clients.insert(client, reply);
                }
            }
            Request::Get { client, seq, block } => state.get_remote(client, seq, block),
            Request::PutWait {
                client,
                seq,
                item,
                block,
            } => match postcard::from_bytes::<T>(&item) {
                Ok(item) => state.put_remote(client, seq, item, block),
                Err(e) => {
                    let why = format!("the item does not decode in the manager: {e}");
                    state.reply(client, ReplyOut::PutFailed { seq, why });
                }
            },
            Request::Cancel { client, seq } => {
                let position = state.getters.iter().position(
                    |g| matches!(g, Getter::Remote { client: c, seq: s } if *c == client && *s == seq),
                );
                if let Some(p) = position {
                    state.getters.remove(p);
                    state.reply(client, ReplyOut::Cancelled { seq });
                } else {
                    let position = state.putters.iter().position(|p| {
                        matches!(p, Putter::Remote { client: c, seq: s, .. } if *c == client && *s == seq)
                    });
                    if let Some(Putter::Remote { .. }) =
                        position.and_then(|p| state.putters.remove(p))
                    {
                        state.reply(client, ReplyOut::PutRefused { seq });
                    }
                }
                // Not found: the get or put was already answered, and the client will read it.
            }
            Request::Qsize { client, seq } => {
                let counts = state.counts();
                let wide = |n: usize| n as u64;
                let size = ReplyOut::Size {
                    seq,
                    len: wide(counts.items),
                    getters: wide(counts.getters),
                    putters: wide(counts.putters),
                };
                state.reply(client, size);
            }
            Request::Flush {
                client,
                seq,
                producer,
            } => {
                let (dropped, why) = state.dropped.remove(&producer).unwrap_or_default();
                state.reply(client, ReplyOut::Flushed { seq, dropped, why });
            }
            Request::Unregister { client } => {
                state.clients.remove(&client);
                state
                    .getters
                    .retain(|g| !matches!(g, Getter::Remote { client: c, .. } if *c == client));
                state
                    .putters
                    .retain(|p| !matches!(p, Putter::Remote { client: c, .. } if *c == client));
            }
            Request::Shutdown => return false,
        }
        true
    }
}

impl<T> State<T> {
    fn counts(&self) -> Counts {
        Counts {
            items: self.items.len(),
            getters: self.getters.len(),
            putters: self.putters.len(),
        }
    }
}

impl<T: Serialize> State<T> {
    /// Counts an item of `producer` that did not decode, for its next flush to report.
    fn record_dropped(&mut self, producer: u64, error: impl Display) {
        let entry = self.dropped.entry(producer).or_default();
        if entry.0 == 0 {
            entry.1 = error.to_string();
        }
        entry.0 += 1;
    }

    fn is_full(&self) -> bool {
        self.maxsize.is_some_and(|m| self.items.len() >= m)
    }

    /// Adds an item if there is room (a waiting getter always makes room): else hands it back.
    fn offer(&mut self, item: T) -> Result<(), T> {
        if self.is_full() {
            return Err(item);
        }
        self.deliver(item);
        Ok(())
    }

    /// After an item was taken out: lets waiting putters in while there is room.
    fn admit(&mut self) {
        if self.putters.is_empty() {
            return;
        }
        while !self.is_full() {
            let Some(putter) = self.putters.pop_front() else {
                return;
            };
            match putter {
                Putter::Local { item, admitted, .. } => {
                    self.deliver(item);
                    let _ = admitted.try_send(());
                }
                Putter::Remote { client, seq, item } => {
                    self.deliver(item);
                    // A putter that died meanwhile still put its item.
                    self.reply(client, ReplyOut::PutAck { seq });
                }
            }
        }
    }

    fn put_remote(&mut self, client: u64, seq: u64, item: T, block: bool) {
        if !self.clients.contains_key(&client) {
            return;
        }
        match self.offer(item) {
            Ok(()) => self.reply(client, ReplyOut::PutAck { seq }),
            Err(item) if block => self.putters.push_back(Putter::Remote { client, seq, item }),
            Err(_) => self.reply(client, ReplyOut::PutRefused { seq }),
        }
    }

    /// Hands `item` to the first getter that takes it, or queues it.
    fn deliver(&mut self, item: T) {
        let mut item = item;
        while let Some(getter) = self.getters.pop_front() {
            match getter {
                Getter::Local { slot, .. } => match slot.try_send(item) {
                    Ok(()) => return,
                    // The slot holds at most this one item, so only a vanished getter refuses.
                    Err(TrySendError::Disconnected(back) | TrySendError::Full(back)) => {
                        item = back;
                    }
                },
                Getter::Remote { client, seq } => match self.send_item(client, seq, &item) {
                    Sent::Yes | Sent::Undeliverable => return,
                    // That client's process is gone: the item stays for the next getter.
                    Sent::Gone => {}
                },
            }
        }
        self.items.push_back(item);
    }

    fn get_remote(&mut self, client: u64, seq: u64, block: bool) {
        if !self.clients.contains_key(&client) {
            return;
        }
        if let Some(item) = self.items.pop_front() {
            match self.send_item(client, seq, &item) {
                Sent::Yes | Sent::Undeliverable => self.admit(),
                Sent::Gone => self.items.push_front(item),
            }
        } else if block {
            self.getters.push_back(Getter::Remote { client, seq });
        } else {
            self.reply(client, ReplyOut::Empty { seq });
        }
    }

    /// Sends `item` to get `seq` of `client`. An item that does not encode cannot travel to
    /// anyone: the get is told so (and fails alone) and the item is dropped, instead of being
    /// offered to every getter in turn. A client that cannot receive is forgotten.
    fn send_item(&mut self, client: u64, seq: u64, item: &T) -> Sent {
        let Some(reply) = self.clients.get(&client) else {
            return Sent::Gone;
        };
        match reply.send(ReplyOut::Item { seq, item }) {
            Ok(()) => Sent::Yes,
            Err(IpcError::SerializationError(e)) => {
                let why = serialize_message(item, e);
                self.reply(client, ReplyOut::Undeliverable { seq, why });
                Sent::Undeliverable
            }
            Err(_) => {
                self.clients.remove(&client);
                Sent::Gone
            }
        }
    }

    /// Sends a reply that carries no item; a client that cannot receive it is forgotten.
    fn reply(&mut self, client: u64, reply: ReplyOut<'_, T>) {
        let ok = self
            .clients
            .get(&client)
            .is_some_and(|r| r.send(reply).is_ok());
        if !ok {
            self.clients.remove(&client);
        }
    }
}

/// What became of an item sent to a remote getter.
enum Sent {
    Yes,
    /// It does not encode: dropped, and the getter told.
    Undeliverable,
    /// The getter's process is gone: the item is still ours.
    Gone,
}

/// The thread serving one queue's request channel, and how to stop it.
pub(crate) struct ServerThread {
    stop: Box<dyn Fn() + Send>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Starts the thread that serves `requests` for `shared`; `shutdown` is a request sender
    /// kept so that stopping can wake the thread.
    pub(crate) fn start<T>(
        name: String,
        shared: Arc<Shared<T>>,
        requests: IpcReceiver<Request<T>>,
        shutdown: ipc_channel::ipc::IpcSender<Request<T>>,
    ) -> std::io::Result<Self>
    where
        T: Wire,
    {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            loop {
                match requests.recv() {
                    Ok(request) => {
                        if !serving.serve(request) {
                            break;
                        }
                    }
                    // Every sender gone, or the socket failed: nothing more can arrive.
                    Err(ipc_channel::IpcError::Disconnected | ipc_channel::IpcError::Io(_)) => {
                        break;
                    }
                    // A message that does not decode came from a client built for another
                    // item type; skip it rather than stop serving everyone else.
                    Err(ipc_channel::IpcError::SerializationError(e)) => {
                        log::warn!("manager queue: undecodable request skipped: {e}");
                    }
                }
            }
            serving.close();
            drop(requests);
            let _ = done_tx.send(());
        })?;
        let stop = Box::new(move || {
            shared.close();
            let _ = shutdown.send(Request::Shutdown);
        });
        Ok(Self {
            stop,
            done,
            thread: Some(thread),
        })
    }

    /// Closes the queue, stops the thread and joins it (waiting at most `grace`; a thread
    /// stuck in a send to a client that stopped reading is left to finish on its own).
    pub(crate) fn stop(&mut self, grace: Duration) {
        (self.stop)();
        if self.done.recv_timeout(grace).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        } else {
            self.thread.take();
        }
    }
}
