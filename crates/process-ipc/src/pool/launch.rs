//! Starting one worker: its process, the feeder thread that ships its tasks, and the watcher
//! thread that waits for its exit and tells the collector.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{self, IpcReceiverSet, IpcSender};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::PoolError;
use crate::process::{Process, ProcessHandle};

use super::builder::Config;
use crate::ring::Ring;

use super::doorbell::Doorbell;
use super::schedule::{TaskId, WorkerKey};
use super::worker::{RingArg, TaskMsg, TaskOut, WorkerConfig, WorkerMsg, worker_main};

/// From a watcher to the collector.
#[derive(Serialize, Deserialize)]
pub(super) enum Control {
    /// The worker with this key has exited (its zombie waits for the collector to reap it).
    Exited(WorkerKey),
}

pub(super) fn spawn_error(e: impl std::fmt::Display) -> PoolError {
    PoolError::Spawn(e.to_string())
}

/// The processes and threads of one worker.
pub(super) struct Worker {
    pub(super) pid: u32,
    pub(super) handle: Option<ProcessHandle<()>>,
    pub(super) feeder: Option<Sender<Vec<TaskOut>>>,
    /// The feeder's last word: the ids of the tasks it could not deliver.
    pub(super) feeder_done: Receiver<Vec<TaskId>>,
    /// Its result ring (the parent's mapping outlives the worker).
    pub(super) ring: OwnedRing,
    /// Why its result ring cannot be trusted, once it was found corrupt (the worker is then
    /// killed, and its ring no longer read).
    pub(super) broken: Option<String>,
}

/// Bytes of record space in a worker's result ring. A worker never has more unread results
/// than tasks it holds (at most `schedule::PREFETCH`, 32), so small results always fit; one
/// over a quarter of it goes over the worker's channel instead. Small, so a pool starts fast.
const RING_BYTES: usize = 64 << 10;
/// The most records a result ring holds (each takes 16 bytes at least).
pub(super) const RING_RECORDS: usize = RING_BYTES / 16;

/// A result ring the parent made: made unattachable by name when the pool lets it go. A ring
/// whose worker died with every result read is kept for its replacement, so replacing workers
/// (`max_tasks_per_child`, deaths) makes no new blocks.
pub(super) struct OwnedRing(pub(super) Ring);

impl OwnedRing {
    pub(super) fn create() -> Result<OwnedRing, PoolError> {
        Ring::create(RING_BYTES, 0, RING_BYTES / 4)
            .map(OwnedRing)
            .map_err(spawn_error)
    }
}

impl Drop for OwnedRing {
    fn drop(&mut self) {
        self.0.unlink();
    }
}

/// Starts one worker process with its two channels, its result ring (`spare`, or a new one),
/// its feeder and its watcher.
pub(super) fn start_worker(
    cfg: &Config,
    control: &IpcSender<Control>,
    set: &mut IpcReceiverSet,
    doorbell: &Doorbell,
    spare: Option<OwnedRing>,
) -> Result<(WorkerKey, Worker), PoolError> {
    // The ring's name is taken before the start, so the scope opens here: the pool keeps the
    // ring itself, and nothing it sends stays pinned once the worker has attached.
    let _pins = crate::shared::TransferScope::enter();
    let (task_tx, task_rx) = ipc::channel::<Vec<TaskOut>>().map_err(spawn_error)?;
    let (result_tx, result_rx) = ipc::channel::<WorkerMsg>().map_err(spawn_error)?;
    // Same socket, typed for the worker's side (`TaskMsg` decodes what `TaskOut` encodes).
    let task_rx: ipc::IpcReceiver<Vec<TaskMsg>> = task_rx.to_opaque().to();
    let ring = match spare {
        Some(ring) => ring,
        None => OwnedRing::create()?,
    };
    let config = WorkerConfig {
        tasks: task_rx,
        results: result_tx,
        ring: RingArg::Parts(ring.0.parts()),
        doorbell: doorbell.arg(),
        init: cfg
            .init
            .as_ref()
            .map(|(call, args)| (*call, ByteBuf::from(args.as_ref().clone()))),
        max_tasks: cfg.max_tasks,
    };
    let mut process = Process::new(worker_main, (config,)).daemon(true);
    if let Some(method) = cfg.method {
        process = process.start_method(method);
    }
    let mut handle = process.start().map_err(spawn_error)?;
    let pid = handle.pid();
    let started = (|| {
        let key = set.add(result_rx).map_err(spawn_error)?;
        watch(pid, key, control.clone()).map_err(spawn_error)?;
        let (feed_tx, feed_rx) = crossbeam_channel::unbounded();
        let (done_tx, feeder_done) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name(format!("process-ipc-pool-feeder-{pid}"))
            .spawn(move || feeder_loop(&feed_rx, &task_tx, &done_tx))
            .map_err(spawn_error)?;
        Ok((key, feed_tx, feeder_done))
    })();
    match started {
        Ok((key, feeder, feeder_done)) => Ok((
            key,
            Worker {
                pid,
                handle: Some(handle),
                feeder: Some(feeder),
                feeder_done,
                ring,
                broken: None,
            },
        )),
        Err(e) => {
            let _ = handle.kill();
            let _ = handle.join_timeout(Duration::from_secs(5));
            Err(e)
        }
    }
}

/// Ships a worker's task batches; at the end, says which tasks it could not deliver.
fn feeder_loop(
    rx: &Receiver<Vec<TaskOut>>,
    tx: &IpcSender<Vec<TaskOut>>,
    done: &Sender<Vec<TaskId>>,
) {
    let mut lost = Vec::new();
    while let Ok(mut batch) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        let ids: Vec<TaskId> = batch.iter().map(|t| t.id).collect();
        if tx.send(batch).is_err() {
            // The worker is gone: report what never reached it, so the collector requeues those
            // tasks instead of blaming them for the death.
            lost = ids;
            while let Ok(more) = rx.try_recv() {
                lost.extend(more.iter().map(|t| t.id));
            }
            break;
        }
    }
    let _ = done.send(lost);
}

/// Waits (on a small thread of its own) for worker `pid` to exit, then tells the collector.
fn watch(pid: u32, key: WorkerKey, control: IpcSender<Control>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("process-ipc-pool-watch-{pid}"))
        .stack_size(128 * 1024)
        .spawn(move || {
            // Leaves it unreaped for its handle: its pid cannot be reused meanwhile.
            crate::sys::wait_exited(pid);
            let _ = control.send(Control::Exited(key));
        })?;
    Ok(())
}
