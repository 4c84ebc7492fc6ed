//! How a `ManagedQueue` in a process other than the manager's sends its puts: through the
//! crate's one feeder (`queue::feed`, the `Queue`'s), whose sink here is a connection to the
//! manager. `put` serializes the item at once (so an item that does not encode fails its own
//! put) into this process's buffer for that queue; the feeder thread sends what piled up as one
//! call ([`Op::QueuePutFramed`]) and waits for its answer, so a busy producer pays one round
//! trip per batch and an idle one still sends each item at once. One feed per queue per
//! process, shared by every handle decoded there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::REPLY_GRACE;
use super::error::ManagerError;
use super::object_client::{Conn, ObjectRef};
use super::object_wire::{self, Answer, Op};
use super::server::Until;
use crate::error::QueueError;
use crate::queue::feed::{Feed, Sink};

/// How long a queue get or a bounded put may wait, as its caller gave it: the deadline, and
/// the timeout it came from (for the error that names it).
#[derive(Clone, Copy)]
pub(super) enum QueueWait {
    No,
    Until(Instant, Duration),
    Forever,
}

impl QueueWait {
    /// The timeout a timed wait was given (zero otherwise).
    pub(super) fn timeout(self) -> Duration {
        match self {
            QueueWait::Until(_, timeout) => timeout,
            _ => Duration::ZERO,
        }
    }

    /// The deadline, for a timed wait.
    pub(super) fn deadline(self) -> Option<Instant> {
        match self {
            QueueWait::Until(deadline, _) => Some(deadline),
            _ => None,
        }
    }

    /// The wait as the manager is asked to do it: what is left of it now.
    pub(super) fn on_wire(self) -> object_wire::WireWait {
        match self {
            QueueWait::No => object_wire::WireWait::No,
            QueueWait::Forever => object_wire::WireWait::Forever,
            QueueWait::Until(deadline, _) => {
                let left = deadline.saturating_duration_since(Instant::now());
                object_wire::WireWait::Nanos(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }

    /// The wait as the manager's own process does it.
    pub(super) fn local(self) -> Until {
        match self {
            QueueWait::No => Until::No,
            QueueWait::Until(deadline, _) => Until::At(deadline),
            QueueWait::Forever => Until::Forever,
        }
    }

    /// How long the client reads for the manager's answer to a call that waits this long
    /// there: the wait plus a grace the manager's answer needs, so that a call returns within
    /// its timeout (+ the grace) even when the manager is stopped and never answers.
    pub(super) fn answer_within(self) -> Option<Duration> {
        match self {
            QueueWait::No => Some(REPLY_GRACE),
            QueueWait::Forever => None,
            QueueWait::Until(deadline, _) => {
                Some(deadline.saturating_duration_since(Instant::now()) + ANSWER_GRACE)
            }
        }
    }
}

/// How long past a timed call's deadline the client still reads for the manager's answer.
const ANSWER_GRACE: Duration = Duration::from_millis(30);

/// The largest item a put sends (a batch is one frame).
pub(super) const ITEM_LIMIT: usize = object_wire::MAX_FRAME - 64;

/// Batches a feeder may have sent whose answers it has not read yet.
const IN_FLIGHT: u64 = 64;

/// A feeder's sink: one connection to the manager, one call per batch. Batches are sent
/// without waiting for their answers (which come back in order and are read as they arrive,
/// and all of them before the feeder sleeps), so a producer never waits for the manager's
/// round trip; [`Acks`] tells a caller when the manager holds what was sent.
struct ManagerSink {
    obj: ObjectRef,
    conn: Option<Conn>,
    acks: Arc<Acks>,
}

/// How many batches were sent and how many the manager answered; shared by a feeder and the
/// handles that wait for the manager to hold their items.
#[derive(Default)]
pub(super) struct Acks {
    state: Mutex<AckState>,
    answered: Condvar,
    /// The manager answered that the queue was shut down: this process's later puts are
    /// refused here, handing their items back.
    pub(super) shut: AtomicBool,
}

#[derive(Default)]
struct AckState {
    sent: u64,
    answered: u64,
    /// Why the connection failed: every batch not yet answered is lost.
    failed: Option<String>,
}

impl Acks {
    /// Waits until the manager has answered every batch sent so far (at most until
    /// `deadline`): `Ok(true)` when it has, `Ok(false)` at the deadline, the reason the
    /// connection failed otherwise.
    pub(super) fn wait_all(&self, deadline: Option<Instant>) -> Result<bool, String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let target = state.sent;
        loop {
            if let Some(why) = &state.failed {
                return Err(why.clone());
            }
            if state.answered >= target {
                return Ok(true);
            }
            state = match deadline {
                None => self.answered.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.answered
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn update(&self, change: impl FnOnce(&mut AckState)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.answered.notify_all();
    }
}

impl ManagerSink {
    /// Batches sent and not answered yet.
    fn outstanding(&self) -> u64 {
        let state = self.acks.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sent - state.answered
    }

    /// Reads answers: those already arriving, and all of them when `all` (or while more than
    /// [`IN_FLIGHT`] are outstanding). A failure is recorded for every waiter and returned.
    fn collect(&mut self, all: bool) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        loop {
            let outstanding = {
                let state = self.acks.state.lock().unwrap_or_else(|e| e.into_inner());
                state.sent - state.answered
            };
            if outstanding == 0 || !(all || outstanding > IN_FLIGHT || conn.ready()) {
                return Ok(());
            }
            match self.obj.recv_on(conn, Some(REPLY_GRACE)) {
                Ok(Answer::Len(_)) => self.acks.update(|s| s.answered += 1),
                failed => {
                    let error = match failed {
                        Ok(other) => self.obj.unexpected(&other),
                        Err(e) => e,
                    };
                    if matches!(error, ManagerError::ShutDown { .. }) {
                        self.acks.shut.store(true, Ordering::SeqCst);
                    }
                    let why = reason(error);
                    self.conn = None;
                    self.acks.update(|s| s.failed = Some(why.clone()));
                    return Err(why);
                }
            }
        }
    }
}

impl Sink for ManagerSink {
    fn write_framed(&mut self, framed: &[u8], count: usize) -> Result<(), QueueError> {
        self.send_batch(framed, count).map_err(QueueError::Io)
    }

    fn idle(&mut self) {
        self.finish_in_flight();
    }
}

impl ManagerSink {
    /// Sends one batch of framed items as one call, without waiting for its answer.
    fn send_batch(&mut self, framed: &[u8], _count: usize) -> Result<(), String> {
        if let Some(why) = &self
            .acks
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
        {
            return Err(why.clone());
        }
        self.collect(false)?;
        if self.conn.is_none() {
            let mut conn = self.obj.take_conn().map_err(reason)?;
            conn.set_spin(Duration::ZERO);
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("a connection was just made");
        let op = Op::QueuePutFramed(ByteBuf::from(framed));
        match self.obj.send_on(conn, op) {
            Ok(()) => {
                self.acks.update(|s| s.sent += 1);
                Ok(())
            }
            Err(e) => {
                let why = reason(e);
                self.conn = None;
                self.acks.update(|s| s.failed = Some(why.clone()));
                Err(why)
            }
        }
    }

    /// Reads the answers of the batches still in flight (before the feeder sleeps).
    fn finish_in_flight(&mut self) {
        if self.outstanding() > 0 {
            let _ = self.collect(true);
        }
    }
}

/// What a failed batch says to the puts after it: the bare reason for a manager that is gone
/// (the handle wraps it in its own `Gone`), the whole error otherwise.
fn reason(error: ManagerError) -> String {
    match error {
        ManagerError::Gone { why, .. } => why,
        other => other.to_string(),
    }
}

/// This process's feed into one queue; closing it lets its thread end.
pub(super) struct ProcessFeed {
    pub(super) feed: Arc<Feed>,
    /// What the manager answered of the batches sent.
    pub(super) acks: Arc<Acks>,
}

impl ProcessFeed {
    /// Waits until the manager holds every item this process put into the queue (at most
    /// until `deadline`): `Ok(false)` at the deadline; the reason items were lost otherwise.
    pub(super) fn settle(&self, deadline: Option<Instant>) -> Result<bool, String> {
        if !self.feed.wait_drained(deadline) {
            return Ok(false);
        }
        if let Some(why) = self.feed.broken() {
            return Err(why);
        }
        self.acks.wait_all(deadline)
    }
}

impl Drop for ProcessFeed {
    fn drop(&mut self) {
        self.feed.close();
    }
}

/// This process's feeds, by (manager address, queue).
type Feeds = HashMap<(Arc<str>, u64), Arc<ProcessFeed>>;
static FEEDS: Mutex<Option<Feeds>> = Mutex::new(None);

/// This process's feed into the queue `obj` names, if one was started.
pub(super) fn existing_feed(obj: &ObjectRef) -> Option<Arc<ProcessFeed>> {
    let guard = FEEDS.lock().unwrap_or_else(|e| e.into_inner());
    let key = (Arc::clone(&obj.address), obj.object);
    guard.as_ref()?.get(&key).cloned()
}

/// This process's feed into the queue `obj` names, started (with its connection opened, so a
/// manager that cannot be reached is the first put's error) on first use.
pub(super) fn feed_for(obj: &ObjectRef) -> Result<Arc<ProcessFeed>, ManagerError> {
    let mut guard = FEEDS.lock().unwrap_or_else(|e| e.into_inner());
    let feeds = guard.get_or_insert_with(HashMap::new);
    let key = (Arc::clone(&obj.address), obj.object);
    if let Some(feed) = feeds.get(&key) {
        return Ok(Arc::clone(feed));
    }
    let mut conn = obj.take_conn()?;
    // The feeder reads answers only when they are there or before it sleeps: it sleeps
    // rather than polls, leaving the processor to the putters and the manager.
    conn.set_spin(Duration::ZERO);
    let acks = Arc::new(Acks::default());
    let sink = ManagerSink {
        obj: obj.clone(),
        conn: Some(conn),
        acks: Arc::clone(&acks),
    };
    let name = format!("manager-feeder-{}", obj.object);
    let feed = Feed::start_with(sink, &name).map_err(|e| ManagerError::Io {
        pid: obj.pid,
        queue: obj.object,
        what: "cannot start this process's feeder thread",
        source: std::io::Error::other(e.to_string()),
    })?;
    let feed = Arc::new(ProcessFeed { feed, acks });
    feeds.insert(key, Arc::clone(&feed));
    // Forget the feeds into managers that shut down (their socket is gone), so a process that
    // outlives many managers does not keep their threads; dropped after unlocking.
    let gone: Vec<_> = feeds
        .keys()
        .filter(|(address, _)| !super::rendezvous::may_be_alive(address))
        .cloned()
        .collect();
    let stale: Vec<_> = gone.iter().filter_map(|key| feeds.remove(key)).collect();
    drop(guard);
    drop(stale);
    Ok(feed)
}
