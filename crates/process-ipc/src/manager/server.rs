//! The server side of one managed queue: its items (encoded bytes), and the getters and
//! putters waiting on it, whether they wait in a thread of the manager's own process (a handle
//! the manager made) or in the thread serving a client's connection (a handle elsewhere).
//! Either way a waiter is the same: a place in a FIFO and a one-slot channel it sleeps on.
//!
//! Invariants: items are queued only while no getter waits (`items` non-empty implies
//! `getters` empty), so a new item always goes to the getter that has waited longest, whatever
//! process it waits for; and in a bounded queue putters wait only while it is full (`putters`
//! non-empty implies `items.len() >= maxsize`), and each item taken out admits the putter that
//! has waited longest.
//!
//! Items are stored as their postcard bytes: the manager never needs their type, and an item
//! that does not decode fails only the get that took it, in the process that took it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Mutex, MutexGuard};
use serde_bytes::ByteBuf;

use super::object_wire::{Answer, Kind, Op, Refusal, WireWait};
use crate::ring::frame::read_len;

/// How many bytes an item may have to be kept inline (no buffer of its own, no share of one).
const INLINE: usize = 22;

/// One item's bytes. A small item (a number, a short string) is kept inline, so that queuing
/// and taking it touches no shared count: a batch's buffer shared by thousands of small items
/// would have its count bounced between the thread that queues them and the thread that takes
/// them, once per item. A larger one is a range of the batch it came in, so a batch of puts
/// costs one buffer, not one per item.
pub(crate) enum Item {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Shared {
        batch: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
}

impl Item {
    /// An item that came alone.
    pub(crate) fn alone(bytes: Vec<u8>) -> Self {
        Self::inline(&bytes).unwrap_or_else(|| {
            let end = bytes.len();
            Self::Shared {
                batch: Arc::new(bytes),
                start: 0,
                end,
            }
        })
    }

    /// `bytes` kept inline, if they are few enough.
    fn inline(bytes: &[u8]) -> Option<Self> {
        let mut inline = [0; INLINE];
        inline.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self::Inline {
            len: bytes.len() as u8,
            bytes: inline,
        })
    }

    /// Bytes `start..end` of `batch` (checked by the caller to lie inside it).
    fn in_batch(batch: &Arc<Vec<u8>>, start: usize, end: usize) -> Self {
        Self::inline(&batch[start..end]).unwrap_or_else(|| Self::Shared {
            batch: Arc::clone(batch),
            start,
            end,
        })
    }

    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Shared { batch, start, end } => &batch[*start..*end],
        }
    }
}

/// One getter waiting for an item, in arrival order.
struct Getter {
    id: u64,
    slot: Sender<Item>,
}

/// One putter waiting for room in a bounded queue, holding its item, in arrival order.
struct Putter {
    id: u64,
    item: Item,
    admitted: Sender<()>,
}

/// What a queue's lock guards: its items and the getters and putters waiting on it.
struct QueueState {
    /// Set once by the manager's shutdown; every operation then fails.
    closed: bool,
    /// Set by the queue's own `shutdown` (Python 3.13): puts fail, gets drain then fail.
    shut: Shut,
    maxsize: Option<usize>,
    items: VecDeque<Item>,
    getters: VecDeque<Getter>,
    putters: VecDeque<Putter>,
    next_waiter: u64,
}

/// Whether the queue itself was shut down (Python 3.13's `Queue.shutdown`), and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shut {
    Open,
    /// Puts refused; gets take what is left, then are refused.
    Drain,
    /// Puts and gets refused; what was left is dropped.
    Immediate,
}

/// How full a queue is and who waits on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) items: usize,
    pub(crate) getters: usize,
    pub(crate) putters: usize,
}

/// Why a queue operation did not happen.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The manager shut the queue down.
    Closed,
    /// The queue's own `shutdown` was called: no put, and no get once it is empty.
    ShutDown,
    /// A batch of framed items did not parse (a client of another build, or a hostile one).
    Malformed(String),
}

/// One queue of a manager.
pub(crate) struct QueueObj {
    state: Mutex<QueueState>,
}

impl QueueObj {
    /// An empty queue; `maxsize` bounds it.
    pub(crate) fn new(maxsize: Option<usize>) -> Self {
        Self {
            state: Mutex::new(QueueState {
                closed: false,
                shut: Shut::Open,
                maxsize,
                items: VecDeque::new(),
                getters: VecDeque::new(),
                putters: VecDeque::new(),
                next_waiter: 1,
            }),
        }
    }

    /// The queue's bound (`None`: unbounded).
    pub(crate) fn maxsize(&self) -> Option<usize> {
        self.lock().maxsize
    }

    /// The queue's lock (parking_lot's, as the feeder's buffer: it hands over faster between
    /// the thread serving a connection and a getter). A panic under it leaves the state whole:
    /// every change there is a single push or pop.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock()
    }

    /// Puts one item, waiting `wait` for room in a bounded queue. `Ok(false)`: still full, and
    /// the item was dropped (the caller kept its own copy).
    pub(crate) fn put(&self, item: Item, wait: Until) -> Result<bool, Refused> {
        let mut state = self.lock();
        state.may_put()?;
        if !state.is_full() {
            state.deliver(item);
            return Ok(true);
        }
        if matches!(wait, Until::No) {
            return Ok(false);
        }
        let (admitted, receiver) = crossbeam_channel::bounded(1);
        let id = state.next_id();
        state.putters.push_back(Putter { id, item, admitted });
        drop(state);
        let outcome = match wait.deadline() {
            Some(deadline) => receiver.recv_deadline(deadline),
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(RecvTimeoutError::Disconnected) => Err(self.lock().refusal()),
            Err(RecvTimeoutError::Timeout) => {
                let mut state = self.lock();
                let waiting = state.putters.iter().position(|p| p.id == id);
                match waiting {
                    Some(p) => {
                        state.putters.remove(p);
                        Ok(false)
                    }
                    // Admitted between the timeout and the withdrawal: the put happened.
                    None if receiver.try_recv().is_ok() => Ok(true),
                    None => Err(state.refusal()),
                }
            }
        }
    }

    /// Puts every item of `framed` (each a LEB128 length, then its bytes), in order, as one
    /// step; an unbounded queue's batched puts. The whole batch is checked before any of it is
    /// put. Returns how many.
    pub(crate) fn put_framed(&self, framed: Vec<u8>) -> Result<u64, Refused> {
        let batch = Arc::new(framed);
        // Made before the lock is taken, so that a getter waits for the batch only while its
        // items are queued.
        let mut items = Vec::new();
        let mut at = 0;
        while at < batch.len() {
            let (len, head) = read_len(&batch[at..])
                .ok_or_else(|| Refused::Malformed("a batch item's length does not parse".into()))?;
            let start = at + head;
            let end = start.checked_add(len).filter(|&end| end <= batch.len());
            let Some(end) = end else {
                return Err(Refused::Malformed(format!(
                    "a batch item of {len} bytes runs past the batch's end"
                )));
            };
            items.push(Item::in_batch(&batch, start, end));
            at = end;
        }
        let count = items.len() as u64;
        let mut items = items.into_iter();
        let mut state = self.lock();
        state.may_put()?;
        while !state.getters.is_empty() {
            match items.next() {
                Some(item) => state.deliver(item),
                None => break,
            }
        }
        // No getter waits now (each took an item, or none was there): the rest is queued.
        state.items.extend(items);
        Ok(count)
    }

    /// Takes the oldest item, waiting `wait` for one; `Ok(None)` when none came in time (the
    /// getter is then withdrawn, so no item is ever left for a getter that stopped waiting).
    /// The wait is made only if no item is there: a timed get reads the clock (about as costly
    /// as the rest of a get that finds an item) only then.
    pub(crate) fn get(&self, wait: impl FnOnce() -> Until) -> Result<Option<Item>, Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if let Some(item) = state.items.pop_front() {
            state.admit();
            return Ok(Some(item));
        }
        if state.shut != Shut::Open {
            return Err(Refused::ShutDown);
        }
        let wait = wait();
        if matches!(wait, Until::No) {
            return Ok(None);
        }
        let (slot, receiver) = crossbeam_channel::bounded(1);
        let id = state.next_id();
        state.getters.push_back(Getter { id, slot });
        drop(state);
        self.wait_item(id, &receiver, wait.deadline())
    }

    fn wait_item(
        &self,
        id: u64,
        receiver: &Receiver<Item>,
        deadline: Option<Instant>,
    ) -> Result<Option<Item>, Refused> {
        let outcome = match deadline {
            Some(deadline) => receiver.recv_deadline(deadline),
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match outcome {
            Ok(item) => Ok(Some(item)),
            Err(RecvTimeoutError::Disconnected) => Err(self.lock().refusal()),
            Err(RecvTimeoutError::Timeout) => {
                let mut state = self.lock();
                match state.getters.iter().position(|g| g.id == id) {
                    Some(p) => {
                        state.getters.remove(p);
                        Ok(None)
                    }
                    // Delivered between the timeout and the withdrawal: it is ours.
                    None => receiver.try_recv().map(Some).map_err(|_| state.refusal()),
                }
            }
        }
    }

    /// Gives back an item a getter took but could not hand on (its client's connection
    /// closed): to the getter waiting longest, else to the front of the queue.
    pub(crate) fn unget(&self, item: Item) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        match state.offer_to_getter(item) {
            Ok(()) => {}
            Err(item) => state.items.push_front(item),
        }
    }

    /// Items queued, getters waiting and putters waiting, or `None` once closed.
    pub(crate) fn counts(&self) -> Option<Counts> {
        let state = self.lock();
        (!state.closed).then(|| Counts {
            items: state.items.len(),
            getters: state.getters.len(),
            putters: state.putters.len(),
        })
    }

    /// Python 3.13's `Queue.shutdown(immediate)`: puts are refused from now on, gets take what
    /// is left (nothing, with `immediate`: it is dropped), then are refused; every getter and
    /// putter waiting wakes refused (their slots disconnect; a putter keeps its own copy of its
    /// item, to hand back).
    pub(crate) fn shutdown(&self, immediate: bool) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        let want = if immediate {
            Shut::Immediate
        } else {
            Shut::Drain
        };
        state.shut = state.shut.max(want);
        if state.shut == Shut::Immediate {
            state.items.clear();
        }
        state.getters.clear();
        state.putters.clear();
        Ok(())
    }

    /// Marks the queue gone and wakes every waiter (their slots disconnect).
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.items.clear();
        state.getters.clear();
        state.putters.clear();
    }
}

/// How long a get or a bounded put may wait: the manager's process knows the deadline as an
/// instant (read from the clock only for a call that arrived with a timeout).
#[derive(Clone, Copy)]
pub(crate) enum Until {
    No,
    At(Instant),
    Forever,
}

impl Until {
    /// A call's wait, as the manager counts it from now (a timeout too far ahead to name is
    /// no bound).
    pub(crate) fn from_wire(wait: WireWait) -> Self {
        match wait {
            WireWait::No => Until::No,
            WireWait::Forever => Until::Forever,
            WireWait::Nanos(n) => Instant::now()
                .checked_add(std::time::Duration::from_nanos(n))
                .map_or(Until::Forever, Until::At),
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Until::At(deadline) => Some(deadline),
            Until::No | Until::Forever => None,
        }
    }
}

impl QueueState {
    /// Why a put is refused now, if it is.
    fn may_put(&self) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        if self.shut != Shut::Open {
            return Err(Refused::ShutDown);
        }
        Ok(())
    }

    /// Why a waiter's slot was dropped: the manager's end, or the queue's shutdown.
    fn refusal(&self) -> Refused {
        if self.closed {
            Refused::Closed
        } else {
            Refused::ShutDown
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_waiter += 1;
        self.next_waiter
    }

    fn is_full(&self) -> bool {
        self.maxsize.is_some_and(|m| self.items.len() >= m)
    }

    /// After an item was taken out: lets waiting putters in while there is room.
    fn admit(&mut self) {
        while !self.putters.is_empty() && !self.is_full() {
            let Some(putter) = self.putters.pop_front() else {
                return;
            };
            self.deliver(putter.item);
            // A putter that gave up meanwhile finds itself admitted when it withdraws.
            let _ = putter.admitted.try_send(());
        }
    }

    /// Hands `item` to the first getter that takes it, or queues it.
    fn deliver(&mut self, item: Item) {
        if let Err(item) = self.offer_to_getter(item) {
            self.items.push_back(item);
        }
    }

    fn offer_to_getter(&mut self, mut item: Item) -> Result<(), Item> {
        while let Some(getter) = self.getters.pop_front() {
            match getter.slot.try_send(item) {
                Ok(()) => return Ok(()),
                // The slot holds at most this one item, so only a vanished getter refuses.
                Err(TrySendError::Disconnected(back) | TrySendError::Full(back)) => item = back,
            }
        }
        Err(item)
    }
}

/// Does queue call `op` on `queue` (for a client's connection, or a handle in the manager's
/// process), blocking this thread while a get or a bounded put waits.
pub(crate) fn call(queue: &QueueObj, op: Op) -> Answer {
    let refused = |r: Refused| match r {
        Refused::Closed => Answer::Refused(Refusal::Gone),
        Refused::ShutDown => Answer::Refused(Refusal::ShutDown),
        Refused::Malformed(why) => Answer::Refused(Refusal::Malformed(why)),
    };
    match op {
        Op::QueuePut(item, wait) => queue
            .put(Item::alone(item.into_vec()), Until::from_wire(wait))
            .map_or_else(refused, Answer::Bool),
        Op::QueuePutFramed(framed) => queue
            .put_framed(framed.into_vec())
            .map_or_else(refused, Answer::Len),
        Op::QueueGet(wait) => match queue.get(|| Until::from_wire(wait)) {
            Ok(item) => Answer::One(item.map(|item| ByteBuf::from(item.bytes()))),
            Err(r) => refused(r),
        },
        Op::QueueShutdown(immediate) => queue
            .shutdown(immediate)
            .map_or_else(refused, |()| Answer::Done),
        Op::QueueCounts => match queue.counts() {
            Some(c) => Answer::Counts {
                items: c.items as u64,
                getters: c.getters as u64,
                putters: c.putters as u64,
            },
            None => Answer::Refused(Refusal::Gone),
        },
        _ => Answer::Refused(Refusal::WrongKind {
            is: Kind::Queue.name().into(),
            wanted: "another kind of object".into(),
        }),
    }
}
