//! The worker process: the messages between it and the parent, and its loop (run the
//! initializer, then each task in the order received, answering on its own channel).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
#[cfg(feature = "test-fault")]
use std::sync::OnceLock;

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::Wire;
use crate::start::child::{self, Target, conjure};

use crate::ring::{Ring, RingParts};
use crate::sys;

use super::doorbell::BellArg;

/// What a task is in the worker: argument bytes in, value bytes or a message out.
pub(super) type TaskFn = fn(&[u8]) -> Result<Vec<u8>, String>;

/// The distance of a task function from the anchor, the same in the worker (same binary).
pub(super) fn task_offset(f: TaskFn) -> isize {
    sys::offset_of(f as usize)
}

/// Runs one call: decode the argument tuple, call, encode the value.
pub(super) fn run_one<F, Args>(bytes: &[u8]) -> Result<Vec<u8>, String>
where
    F: Target<Args>,
    Args: Wire,
    F::Output: Wire,
{
    let args: Args =
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let f: F = conjure();
    let value = f.call(args);
    postcard::to_stdvec(&value).map_err(|e| {
        let why = crate::wire::serialize_message(&value, e);
        format!("cannot encode the result: {why}")
    })
}

/// Runs a chunk of calls: `Vec<Args>` in, `Vec<Output>` out.
pub(super) fn run_chunk<F, Args>(bytes: &[u8]) -> Result<Vec<u8>, String>
where
    F: Target<Args>,
    Args: Wire,
    F::Output: Wire,
{
    let items: Vec<Args> =
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let f: F = conjure();
    let out: Vec<F::Output> = items.into_iter().map(|a| f.call(a)).collect();
    postcard::to_stdvec(&out).map_err(|e| {
        let why = crate::wire::serialize_message(&out, e);
        format!("cannot encode the results: {why}")
    })
}

/// A task as the worker receives it.
#[derive(Deserialize)]
pub(super) struct TaskMsg {
    id: u64,
    call: isize,
    args: ByteBuf,
}

// `IpcReceiver<T>` needs `T: Serialize` to be received; `TaskMsg` only ever arrives.
impl Serialize for TaskMsg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.id, self.call, &self.args).serialize(s)
    }
}

/// A task as the parent sends it (the bytes are shared with the pending copy, not cloned).
pub(super) struct TaskOut {
    pub(super) id: u64,
    pub(super) call: isize,
    pub(super) args: Arc<Vec<u8>>,
}

// ipc-channel's typed channels want both directions; this one is only ever sent.
impl<'de> Deserialize<'de> for TaskOut {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let msg = TaskMsg::deserialize(d)?;
        Ok(TaskOut {
            id: msg.id,
            call: msg.call,
            args: Arc::new(msg.args.into_vec()),
        })
    }
}

impl Serialize for TaskOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.id, self.call, serde_bytes::Bytes::new(&self.args)).serialize(s)
    }
}

/// How one task ended in the worker.
#[derive(Serialize, Deserialize)]
pub(super) enum TaskOutcome {
    Value(ByteBuf),
    Panicked { message: String, location: String },
    Serde(String),
}

/// The worker's message to the parent: in its result ring (`Done`), or on its channel (a
/// `Done` that does not fit the ring, and the others).
#[derive(Serialize, Deserialize)]
pub(super) enum WorkerMsg {
    Done {
        id: u64,
        outcome: TaskOutcome,
    },
    InitFailed {
        message: String,
    },
    /// The doorbell: results wait in the ring and the collector was asleep.
    Wake,
    /// The worker found its result ring damaged (by a task with a memory bug, say) and leaves
    /// without answering: its task fails, naming `why`.
    Broken {
        why: String,
    },
}

/// A result ring in a worker's argument: its parts on the way, attached on arrival (while the
/// worker's arguments are read, so before its start is confirmed).
pub(super) enum RingArg {
    /// In the parent: what the worker attaches.
    Parts(RingParts),
    /// In the worker: the attached ring.
    Mapped(Ring),
}

impl Serialize for RingArg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RingArg::Parts(parts) => parts.serialize(s),
            RingArg::Mapped(ring) => ring.parts().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RingArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parts = RingParts::deserialize(d)?;
        Ring::attach(parts)
            .map(RingArg::Mapped)
            .map_err(serde::de::Error::custom)
    }
}

/// The worker's argument: its two channels, its result ring, the pool's doorbell and what to
/// run first.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerConfig {
    pub(super) tasks: IpcReceiver<Vec<TaskMsg>>,
    pub(super) results: IpcSender<WorkerMsg>,
    /// Its result ring (see the collector).
    pub(super) ring: RingArg,
    /// Rung after a result is published while the collector sleeps.
    pub(super) doorbell: BellArg,
    pub(super) init: Option<(isize, ByteBuf)>,
    pub(super) max_tasks: Option<usize>,
}

pub(super) fn call_at(offset: isize, args: &[u8]) -> TaskOutcome {
    let address = sys::address_at(offset);
    // SAFETY: this worker is a child that passed the bootstrap's executable-identity check (a
    // Redis pool's worker: that checked the task's build identity, the sha256 of the executable),
    // so the offset, taken by the submitter from a `TaskFn` in the same binary, points at that
    // `TaskFn`.
    let f: TaskFn = unsafe { std::mem::transmute::<usize, TaskFn>(address) };
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(Ok(bytes)) => TaskOutcome::Value(ByteBuf::from(bytes)),
        Ok(Err(message)) => TaskOutcome::Serde(message),
        Err(payload) => {
            let (message, location) = child::take_last_panic()
                .unwrap_or_else(|| (sys::panic_message(&*payload), "<unknown>".into()));
            TaskOutcome::Panicked { message, location }
        }
    }
}

/// The worker process's target: run the initializer, then tasks until the channel closes (or
/// `max_tasks` are done: the worker then leaves between two tasks, as Python's does).
pub(super) fn worker_main(cfg: WorkerConfig) {
    if let Some((call, args)) = &cfg.init {
        let message = match call_at(*call, args) {
            TaskOutcome::Value(_) => None,
            TaskOutcome::Panicked { message, location } => Some(format!("{message} at {location}")),
            TaskOutcome::Serde(message) => Some(message),
        };
        if let Some(message) = message {
            let _ = cfg.results.send(WorkerMsg::InitFailed { message });
            return;
        }
    }
    let (RingArg::Mapped(ring), BellArg::Mapped(doorbell)) = (cfg.ring, cfg.doorbell) else {
        let message = "the result ring or the doorbell was not mapped".to_string();
        let _ = cfg.results.send(WorkerMsg::InitFailed { message });
        return;
    };
    #[cfg(feature = "test-fault")]
    let _ = RESULT_RING.set(ring.clone());
    let mut done = 0usize;
    let mut record = Vec::new();
    while let Ok(batch) = cfg.tasks.recv() {
        for task in batch {
            #[cfg(feature = "trace")]
            let _task = crate::trace::task_span(task.id);
            let outcome = call_at(task.call, &task.args);
            let answer = WorkerMsg::Done {
                id: task.id,
                outcome,
            };
            if let Err(why) = ring.positions() {
                // Writing through damaged positions could land anywhere: leave instead.
                let _ = cfg.results.send(WorkerMsg::Broken { why });
                return;
            }
            // Straight into the ring; else through a buffer (it may need to wrap); else, too
            // big for a record (known at once for a big value) or no room now, over the
            // channel.
            let too_big = matches!(&answer, WorkerMsg::Done { outcome: TaskOutcome::Value(v), .. }
                if v.len() >= ring.max_record_item());
            let in_ring = !too_big
                && (ring
                    .put_direct(|region| postcard::to_slice(&answer, region).ok().map(|b| b.len()))
                    .is_some()
                    || {
                        record.clear();
                        postcard::to_io(&answer, &mut record).is_ok() && ring.try_put(&record)
                    });
            let sent = if !in_ring {
                cfg.results.send(answer)
            } else if doorbell.should_ring() {
                cfg.results.send(WorkerMsg::Wake)
            } else {
                Ok(())
            };
            if sent.is_err() {
                return;
            }
            done += 1;
            if cfg.max_tasks.is_some_and(|m| done >= m) {
                return;
            }
        }
    }
}

/// This worker's result ring, for `scribble_result_ring`.
#[cfg(feature = "test-fault")]
static RESULT_RING: OnceLock<Ring> = OnceLock::new();

/// Damages the result ring of the pool worker this runs in, as a task with a memory bug
/// would; false outside a pool worker. For tests of the pool's distrust of its rings only.
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub fn scribble_result_ring(how: crate::ring::Scribble) -> bool {
    RESULT_RING
        .get()
        .map(|ring| ring.scribble_as(how))
        .is_some()
}
