//! The feeder: a background thread that sends a handle's puts to the queue's server in
//! batches, as Python's `multiprocessing.Queue` sends through its feeder thread.
//!
//! One feeder serves a handle and its clones in one process other than the manager's. `put`
//! hands the item over a bounded in-process channel and returns; the feeder takes whatever
//! has piled up (up to a batch's worth) and sends it as one message, so a busy producer pays
//! one socket write per batch instead of one per item, while an idle one still sends each item
//! at once. The feeder lives as long as the process: every handle to the queue decoded in
//! this process shares it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::IpcError;
use ipc_channel::ipc::{IpcSender, OpaqueIpcSender};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{PutOut, Request};

/// Items a `put` may hand over before it waits for the feeder (back-pressure).
const BACKLOG: usize = 4096;
/// Most items in one message.
const MAX_BATCH: usize = 512;
/// Rough cap on one message's encoded size: large items travel in small batches.
const BATCH_BYTES: usize = 64 * 1024;

/// What the feeder thread takes from its channel.
enum Feed<T> {
    Item(T),
    /// Answer once every item handed over before this one has been sent.
    Flush(Sender<()>),
}

/// Why items handed to the feeder did not reach the server.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The server is gone; every later put fails too.
    Gone(&'static str),
    /// A batch could not be encoded; it was dropped (reported once).
    Dropped(String),
}

/// What the feeder thread and the handles share.
struct Status {
    failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
    /// Items handed over and not yet sent.
    pending: AtomicUsize,
}

impl Status {
    fn record(&self, failure: Failure) {
        let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*slot, Some(Failure::Gone(_))) {
            *slot = Some(failure);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Whether the server is known to be gone.
    fn gone(&self) -> Option<Failure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        slot.clone().filter(|f| matches!(f, Failure::Gone(_)))
    }

    /// The failure to report now, if any: `Gone` stays, `Dropped` is reported once.
    fn take(&self) -> Option<Failure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        match slot.clone() {
            Some(Failure::Gone(why)) => Some(Failure::Gone(why)),
            Some(dropped) => {
                *slot = None;
                self.failed.store(false, Ordering::Release);
                Some(dropped)
            }
            None => None,
        }
    }
}

/// The handle side of a feeder thread.
pub(crate) struct Feeder<T> {
    feed: Option<Sender<Feed<T>>>,
    status: Arc<Status>,
    /// Never receives: disconnects when the thread ends, which every waiter can see.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Feeder<T> {
    /// Starts a feeder thread that sends on `requests`.
    pub(crate) fn start(requests: IpcSender<Request<T>>, name: String) -> std::io::Result<Self> {
        let (feed, incoming) = crossbeam_channel::bounded(BACKLOG);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let status = Arc::new(Status {
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            pending: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&status);
        let puts = requests.to_opaque();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            run(&puts, &incoming, &shared);
            drop(done_tx);
        })?;
        Ok(Self {
            feed: Some(feed),
            status,
            done,
            thread: Some(thread),
        })
    }

    /// Hands `item` to the feeder; waits only while `BACKLOG` items are already waiting.
    /// Fails only once the server is known to be gone (`Dropped` is for the next flush).
    pub(crate) fn put(&self, item: T) -> Result<(), Failure> {
        if let Some(failure) = self.status.gone() {
            return Err(failure);
        }
        let Some(feed) = &self.feed else {
            return Err(Failure::Gone("its feeder stopped"));
        };
        self.status.pending.fetch_add(1, Ordering::AcqRel);
        feed.send(Feed::Item(item)).map_err(|_| {
            self.status.pending.fetch_sub(1, Ordering::AcqRel);
            self.status
                .gone()
                .unwrap_or(Failure::Gone("its feeder stopped"))
        })
    }
}

impl<T> Feeder<T> {
    /// Waits until every item handed over so far has been sent (at most until `deadline`).
    /// Returns false if the deadline came first.
    pub(crate) fn wait_sent(&self, deadline: Option<Instant>) -> bool {
        let feed = self
            .feed
            .as_ref()
            .filter(|_| self.status.pending.load(Ordering::Acquire) > 0);
        let Some(feed) = feed else {
            return true;
        };
        let (ack, acked) = crossbeam_channel::bounded(1);
        if feed.send(Feed::Flush(ack)).is_err() {
            // The feeder thread ended: nothing is left to wait for.
            return true;
        }
        // The thread may end (server gone) with the flush still in its channel, where the ack
        // sender stays alive: so wait for the ack or for the thread's end, whichever first.
        let done = &self.done;
        match deadline {
            Some(deadline) => {
                let timeout = deadline.saturating_duration_since(Instant::now());
                crossbeam_channel::select! {
                    recv(acked) -> _ => true,
                    recv(done) -> _ => true,
                    default(timeout) => false,
                }
            }
            None => crossbeam_channel::select! {
                recv(acked) -> _ => true,
                recv(done) -> _ => true,
            },
        }
    }

    /// What went wrong with items already handed over, if anything (see [`Failure`]).
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.status.take()
    }
}

impl<T> Drop for Feeder<T> {
    /// Closes the feed and waits for the thread to send what it holds. A server that stopped
    /// reading (alive but stuck) cannot hold the caller forever: after a grace period the
    /// thread is left to finish on its own.
    fn drop(&mut self) {
        drop(self.feed.take());
        let thread = self.thread.take();
        let ended = matches!(
            self.done.recv_timeout(Duration::from_secs(5)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if ended {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

/// The feeder thread: batch whatever has piled up, send it, answer flushes.
fn run<T>(puts: &OpaqueIpcSender, incoming: &Receiver<Feed<T>>, status: &Status)
where
    T: Serialize,
{
    let mut batch: Vec<T> = Vec::new();
    let mut acks: Vec<Sender<()>> = Vec::new();
    let take = |feed, batch: &mut Vec<T>, acks: &mut Vec<Sender<()>>| match feed {
        Feed::Item(item) => batch.push(item),
        Feed::Flush(ack) => acks.push(ack),
    };
    while let Ok(first) = incoming.recv() {
        take(first, &mut batch, &mut acks);
        let mut cap = MAX_BATCH;
        while batch.len() < cap {
            let Ok(feed) = incoming.try_recv() else {
                break;
            };
            take(feed, &mut batch, &mut acks);
            if batch.len() == 2 {
                // More than one item: size the batch by the first item's encoding.
                // (An item that carries ipc channels registers them once more here; the
                // extra copies ride along with the next send and are closed by the receiver.)
                let size = postcard::experimental::serialized_size(&batch[0]).unwrap_or(1);
                cap = (BATCH_BYTES / size.max(1)).clamp(2, MAX_BATCH);
            }
        }
        if !batch.is_empty() {
            let n = batch.len();
            let sent = send_batch(puts, &batch);
            batch.clear();
            status.pending.fetch_sub(n, Ordering::AcqRel);
            match sent {
                Ok(0) => {}
                Ok(dropped) => status.record(Failure::Dropped(format!(
                    "{dropped} earlier items could not be encoded and were dropped"
                ))),
                Err(()) => {
                    status.record(Failure::Gone("its request channel is closed"));
                    break;
                }
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    // Leaving (feed closed, or the server gone): whoever still waits on a flush is answered
    // by the acks being dropped here.
}

/// Sends a batch as one message; if it does not encode, sends its items one by one so that
/// only the items that do not encode are lost. Returns how many were lost, or `Err` if the
/// server is gone.
fn send_batch<T: Serialize>(puts: &OpaqueIpcSender, batch: &[T]) -> Result<usize, ()> {
    // A batch goes out as `PutOut`, which borrows it: the same bytes as `Request::Put`. The
    // conversion only re-types a clone of the same file descriptor handle.
    let send = |items: &[T]| puts.clone().to::<PutOut<'_, T>>().send(PutOut::Put(items));
    match send(batch) {
        Ok(()) => return Ok(0),
        Err(IpcError::SerializationError(_)) => {}
        Err(_) => return Err(()),
    }
    let mut dropped = 0;
    for item in batch {
        match send(std::slice::from_ref(item)) {
            Ok(()) => {}
            Err(IpcError::SerializationError(e)) => {
                log::warn!("manager queue feeder: an item that does not encode was dropped: {e}");
                dropped += 1;
            }
            Err(_) => return Err(()),
        }
    }
    Ok(dropped)
}
