//! How a `ManagedQueue` in a process other than the manager's sends its puts: through the
//! crate's one feeder (`queue::feed`, the `Queue`'s), whose sink here is a connection to the
//! manager. `put` serializes the item at once (so an item that does not encode fails its own
//! put) into this process's buffer for that queue; the feeder thread sends what piled up as one
//! call ([`Op::QueuePutFramed`]) and waits for its answer, so a busy producer pays one round
//! trip per batch and an idle one still sends each item at once. One feed per queue per
//! process, shared by every handle decoded there.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::REPLY_GRACE;
use super::error::ManagerError;
use super::object_client::{Conn, ObjectRef};
use super::object_wire::{self, Answer, Op};
use crate::queue::feed::{Feed, Sink};

/// How long a get or a bounded put may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    No,
    Until(Instant, Duration),
    Forever,
}

impl Wait {
    /// The timeout a timed wait was given (zero otherwise).
    pub(super) fn timeout(self) -> Duration {
        match self {
            Wait::Until(_, timeout) => timeout,
            _ => Duration::ZERO,
        }
    }

    /// The deadline, for a timed wait.
    pub(super) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline, _) => Some(deadline),
            _ => None,
        }
    }

    /// The wait as the manager is asked to do it: what is left of it now.
    pub(super) fn on_wire(self) -> object_wire::Wait {
        match self {
            Wait::No => object_wire::Wait::No,
            Wait::Forever => object_wire::Wait::Forever,
            Wait::Until(deadline, _) => {
                let left = deadline.saturating_duration_since(Instant::now());
                object_wire::Wait::Nanos(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }

    /// How long the client reads for the manager's answer to a call that waits this long
    /// there: the wait plus a grace the manager's answer needs, so that a call returns within
    /// its timeout (+ the grace) even when the manager is stopped and never answers.
    pub(super) fn answer_within(self) -> Option<Duration> {
        match self {
            Wait::No => Some(REPLY_GRACE),
            Wait::Forever => None,
            Wait::Until(deadline, _) => {
                Some(deadline.saturating_duration_since(Instant::now()) + ANSWER_GRACE)
            }
        }
    }
}

/// How long past a timed call's deadline the client still reads for the manager's answer.
const ANSWER_GRACE: Duration = Duration::from_millis(30);

/// The largest item a put sends (a batch is one frame).
pub(super) const ITEM_LIMIT: usize = object_wire::MAX_FRAME - 64;

/// A feeder's sink: one connection to the manager, one call per batch.
struct ManagerSink {
    obj: ObjectRef,
    conn: Option<Conn>,
}

impl Sink for ManagerSink {
    fn write_framed(&mut self, framed: &[u8], count: usize) -> Result<(), String> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.obj.take_conn().map_err(reason)?,
        };
        let mut conn = conn;
        let op = Op::QueuePutFramed(ByteBuf::from(framed));
        match self.obj.call_with(&mut conn, op, Some(REPLY_GRACE)) {
            Ok(Answer::Len(n)) if n == count as u64 => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(other) => Err(reason(self.obj.unexpected(&other))),
            // A connection that failed is not reused.
            Err(e) => Err(reason(e)),
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
    let conn = obj.take_conn()?;
    let sink = ManagerSink {
        obj: obj.clone(),
        conn: Some(conn),
    };
    let name = format!("manager-feeder-{}", obj.object);
    let feed = Feed::start_with(sink, &name).map_err(|e| ManagerError::Io {
        pid: obj.pid,
        queue: obj.object,
        what: "cannot start this process's feeder thread",
        source: std::io::Error::other(e.to_string()),
    })?;
    let feed = Arc::new(ProcessFeed { feed });
    feeds.insert(key, Arc::clone(&feed));
    // Forget the feeds into managers that shut down (their socket is gone), so a process that
    // outlives many managers does not keep their threads; dropped after unlocking.
    let gone: Vec<_> = feeds
        .keys()
        .filter(|(address, _)| !Path::new(&**address).exists())
        .cloned()
        .collect();
    let stale: Vec<_> = gone.iter().filter_map(|key| feeds.remove(key)).collect();
    drop(guard);
    drop(stale);
    Ok(feed)
}
