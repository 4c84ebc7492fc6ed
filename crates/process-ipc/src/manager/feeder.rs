//! The feeder: a background thread that sends a handle's puts to the queue's server in
//! batches, as Python's `multiprocessing.Queue` sends through its feeder thread.
//!
//! One feeder serves a handle and its clones in one process other than the manager's. `put`
//! hands the item over a bounded in-process channel and returns; the feeder takes whatever
//! has piled up (up to a batch's worth) and sends it as one message, so a busy producer pays
//! one socket write per batch instead of one per item, while an idle one still sends each item
//! at once. The feeder lives as long as the process: every handle to the queue decoded in
//! this process shares it.
//!
//! Each item is encoded on its own ([`Frames`]): one that does not encode is left out here,
//! one that does not decode is left out by the server, and either way every other item of
//! the batch arrives; the next flush reports what was left out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{IpcSender, OpaqueIpcSender};
use serde::Serialize;

use super::wire::{Frames, PutOut, Request};
use crate::Wire;
use crate::wire::serialize_message;

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
    /// Items did not encode; they alone were left out (reported once).
    Dropped { count: u64, why: String },
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
        *slot = match (slot.take(), failure) {
            (Some(Failure::Gone(why)), _) | (_, Failure::Gone(why)) => Some(Failure::Gone(why)),
            (Some(Failure::Dropped { count, why }), Failure::Dropped { count: more, .. }) => {
                Some(Failure::Dropped {
                    count: count + more,
                    why,
                })
            }
            (None, dropped) => Some(dropped),
        };
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

impl<T: Wire> Feeder<T> {
    /// Starts a feeder thread that sends on `requests`, as `producer`.
    pub(crate) fn start(
        requests: IpcSender<Request<T>>,
        producer: u64,
        name: String,
    ) -> std::io::Result<Self> {
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
            run(&puts, producer, &incoming, &shared);
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

    /// What went wrong with items already handed over, if anything (see [`Failure`]);
    /// `Dropped` is reported once.
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
fn run<T>(puts: &OpaqueIpcSender, producer: u64, incoming: &Receiver<Feed<T>>, status: &Status)
where
    T: Serialize,
{
    let mut batch = Batch::default();
    let mut acks: Vec<Sender<()>> = Vec::new();
    while let Ok(first) = incoming.recv() {
        let mut taken = 0usize;
        let mut take = |feed, batch: &mut Batch, acks: &mut Vec<Sender<()>>| match feed {
            Feed::Item(item) => {
                taken += 1;
                batch.push(&item);
            }
            Feed::Flush(ack) => acks.push(ack),
        };
        take(first, &mut batch, &mut acks);
        while batch.frames.len() < MAX_BATCH && batch.frames.bytes() < BATCH_BYTES {
            let Ok(feed) = incoming.try_recv() else {
                break;
            };
            take(feed, &mut batch, &mut acks);
        }
        if taken > 0 {
            // Sent as `PutOut`, which borrows the frames: the same bytes as `Request::Put`.
            // The conversion only re-types a clone of the same file descriptor handle.
            let items = &batch.frames;
            let sent = items.len() == 0
                || puts
                    .clone()
                    .to::<PutOut<'_>>()
                    .send(PutOut::Put { producer, items })
                    .is_ok();
            batch.frames.clear();
            // Failures first: a flush that sees nothing pending must see them too.
            if let Some((count, why)) = batch.dropped.take() {
                status.record(Failure::Dropped { count, why });
            }
            if !sent {
                status.record(Failure::Gone("its request channel is closed"));
            }
            status.pending.fetch_sub(taken, Ordering::AcqRel);
            if !sent {
                break;
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    // Leaving (feed closed, or the server gone): whoever still waits on a flush is answered
    // by the acks being dropped here.
}

/// The items of one message, and those left out because they do not encode.
#[derive(Default)]
struct Batch {
    frames: Frames,
    dropped: Option<(u64, String)>,
}

impl Batch {
    fn push<T: Serialize>(&mut self, item: &T) {
        if let Err(e) = self.frames.push(item) {
            let why = serialize_message(item, e);
            let dropped = self.dropped.get_or_insert((0, why));
            dropped.0 += 1;
        }
    }
}
