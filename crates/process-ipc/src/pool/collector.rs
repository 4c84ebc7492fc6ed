//! The parent's side of the workers: the pool's state, and the collector thread, which reads
//! results (from the workers' result rings, [`crate::ring`], and from their channels when a
//! result does not fit), learns of exits from the watchers (see [`launch`](super::launch)),
//! kills overdue workers and replaces dead ones.
//!
//! A result ring is memory the worker shares, so it is untrusted: before every read the
//! collector checks the ring's positions and the extent of its records
//! (`Ring::checked_records`), reads at most [`VISIT_RECORDS`] records per ring
//! per visit, and a ring that fails a check, returns an error, or holds a record that is not a
//! result is that worker's death: it is killed, its running task fails with
//! [`PoolError::WorkerDied`] naming the check, and a replacement starts. So a scribbled ring
//! costs the collector a bounded time under the pool's lock, never a hang.
//! What each event means for the tasks is [`Schedule`]'s decision; this file only moves
//! messages.
//!
//! A worker's death is known from the process itself: its watcher blocks in
//! `waitid(WNOWAIT)` on the worker's pid and then wakes the collector through a control
//! channel, so a descendant that keeps the worker's sockets open cannot hide the death. Before
//! it judges what the dead worker lost, the collector reads every answer the worker published
//! in its ring or sent on its channel.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiverSet, IpcSelectionResult, IpcSender};

use crate::error::PoolError;
use crate::ring::{Next, Ring, WaitLimit};

use super::builder::Config;
use super::doorbell::Doorbell;
use super::launch::{Control, OwnedRing, RING_RECORDS, Worker, spawn_error, start_worker};
use super::schedule::{REFILL_AT, Schedule, TaskId, WorkerKey};
use super::worker::{TaskOut, TaskOutcome, WorkerMsg};

mod api;
mod exits;

use exits::{check_timeouts, on_exit};

/// How often the collector wakes with nothing to read (per-task timeouts).
const TICK: Duration = Duration::from_millis(100);
/// How long the collector waits for a dead worker's feeder to say what it never sent. Only a
/// descendant of the worker that holds its task channel and does not read can make the feeder
/// late; its tasks then count as delivered.
const FEEDER_GRACE: Duration = Duration::from_millis(200);

/// Records read from one ring per visit (a worker holds at most 32 tasks, so a live worker's
/// results are all read in one visit; a busy loop visits again at once).
const VISIT_RECORDS: usize = 64;

/// Non-blocking reads after an exit, to take in everything the dead worker sent (each read
/// drains every channel that has data).
const DRAIN_ROUNDS: usize = 16;

/// Called once with a task's value bytes or its error.
pub(super) type Completer = Box<dyn FnOnce(Result<Vec<u8>, PoolError>) + Send>;

/// What a task is called in an error, made only if one needs it (for `apply_async` a closure
/// that captures nothing, so boxing it allocates nothing).
pub(super) type Describe = Box<dyn Fn() -> String + Send>;

/// A submitted task: what to run, what to call it in an error, where its result goes.
pub(super) struct Task {
    pub(super) call: isize,
    pub(super) args: Arc<Vec<u8>>,
    pub(super) what: Describe,
    pub(super) complete: Completer,
    /// Runs ended by its worker's death so far; it runs again while this is at most the
    /// pool's `retries`.
    pub(super) deaths: usize,
}

/// Everything the pool knows, behind one lock.
#[derive(Default)]
pub(super) struct PoolState {
    schedule: Option<Schedule>,
    tasks: HashMap<TaskId, Task>,
    workers: HashMap<WorkerKey, Worker>,
    /// Result rings of dead workers, every record read: the next replacements take them.
    spare_rings: Vec<OwnedRing>,
    next_id: TaskId,
    closed: bool,
    terminated: bool,
    broken: Option<PoolError>,
}

impl PoolState {
    fn schedule(&mut self) -> &mut Schedule {
        self.schedule.as_mut().expect("set at start")
    }
}

/// What the Pool API and the collector share.
pub(super) struct PoolShared {
    state: Mutex<PoolState>,
    changed: Condvar,
    pub(super) config: Config,
    /// Cloned into every watcher.
    control: Mutex<IpcSender<Control>>,
    /// Rung by a worker that publishes a result while the collector is about to block.
    doorbell: Doorbell,
}

/// Starts the workers and the collector.
pub(super) fn start(config: Config) -> Result<(Arc<PoolShared>, JoinHandle<()>), PoolError> {
    let mut set = IpcReceiverSet::new().map_err(spawn_error)?;
    let (control, control_rx) = ipc::channel::<Control>().map_err(spawn_error)?;
    let control_key = set.add(control_rx).map_err(spawn_error)?;
    let doorbell = Doorbell::create().map_err(spawn_error)?;
    let mut state = PoolState {
        schedule: Some(Schedule::new(config.max_tasks)),
        ..PoolState::default()
    };
    for _ in 0..config.processes {
        match start_worker(&config, &control, &mut set, &doorbell, None) {
            Ok((key, worker)) => {
                state.schedule().add_worker(key);
                state.workers.insert(key, worker);
            }
            Err(e) => {
                for w in state.workers.values_mut() {
                    if let Some(mut h) = w.handle.take() {
                        let _ = h.kill();
                        let _ = h.join_timeout(Duration::from_secs(5));
                    }
                }
                return Err(e);
            }
        }
    }
    let shared = Arc::new(PoolShared {
        state: Mutex::new(state),
        changed: Condvar::new(),
        config,
        control: Mutex::new(control),
        doorbell,
    });
    let collecting = Arc::clone(&shared);
    let collector = std::thread::Builder::new()
        .name("process-ipc-pool-collector".into())
        .spawn(move || collector_loop(&collecting, set, control_key))
        .map_err(spawn_error)?;
    Ok((shared, collector))
}

fn run_completer(complete: Completer, result: Result<Vec<u8>, PoolError>) {
    // A panicking user callback must not take the collector down with it.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || complete(result)));
}

/// Hands pending tasks to workers (see [`Schedule::dispatch`]); a worker whose feeder already
/// stopped gives its batch back.
fn dispatch(st: &mut PoolState, refill_at: usize) {
    loop {
        let batches = st.schedule().dispatch(refill_at, Instant::now());
        if batches.is_empty() {
            return;
        }
        let mut refused = false;
        for (key, ids) in batches {
            let batch: Vec<TaskOut> = ids
                .iter()
                .map(|&id| {
                    let task = &st.tasks[&id];
                    TaskOut {
                        id,
                        call: task.call,
                        args: Arc::clone(&task.args),
                    }
                })
                .collect();
            let handed = st
                .workers
                .get(&key)
                .and_then(|w| w.feeder.as_ref())
                .is_some_and(|f| f.send(batch).is_ok());
            if !handed {
                st.schedule().undelivered(key, &ids);
                refused = true;
            }
        }
        if !refused {
            return;
        }
    }
}

fn collector_loop(shared: &PoolShared, mut set: IpcReceiverSet, control_key: u64) {
    let tick = shared
        .config
        .task_timeout
        .map_or(TICK, |t| (t / 4).clamp(Duration::from_millis(1), TICK));
    loop {
        let mut exited = Vec::new();
        // Results first, from shared memory; block on the channels only with every ring empty
        // and every worker told to ring the doorbell (see `ring`).
        let mut busy = drain_rings(shared, &[]) > 0;
        if !busy {
            shared.doorbell.set_asleep(true);
            busy = drain_rings(shared, &[]) > 0;
        }
        let selected = if busy {
            set.try_select()
        } else {
            set.try_select_timeout(tick)
        };
        if !busy {
            shared.doorbell.set_asleep(false);
        }
        match selected {
            Ok(events) => handle(shared, events, control_key, &mut exited),
            Err(ipc_channel::TrySelectError::Empty) => {}
            Err(ipc_channel::TrySelectError::IoError(e)) => {
                log::error!("process-ipc pool: select failed: {e}");
            }
        }
        if !exited.is_empty() {
            // A dead worker's last answers are already in its ring and its channel: read them
            // all before judging which task it lost. (Bounded: busy live workers keep
            // answering.)
            drain_rings(shared, &exited);
            for _ in 0..DRAIN_ROUNDS {
                let Ok(events) = set.try_select() else {
                    break;
                };
                handle(shared, events, control_key, &mut exited);
            }
            drain_rings(shared, &exited);
            for key in exited {
                on_exit(shared, &mut set, key);
            }
        }
        check_timeouts(shared);
        let st = shared.lock();
        if st.workers.is_empty() && (st.terminated || st.closed || st.broken.is_some()) {
            shared.changed.notify_all();
            return;
        }
    }
}

/// Takes the results published in the workers' rings (every one, for the workers in `dead`;
/// at most [`VISIT_RECORDS`] per ring otherwise) and completes their tasks, under one lock and
/// with one dispatch for all of them. A ring found corrupt is its worker's death (see the
/// module notes). Returns how many results there were.
fn drain_rings(shared: &PoolShared, dead: &[WorkerKey]) -> usize {
    let mut finished = Vec::new();
    let count;
    let idle = {
        let mut st = shared.lock();
        let mut records = Vec::new();
        let mut corrupt = Vec::new();
        for (&key, w) in &st.workers {
            if w.broken.is_some() {
                continue;
            }
            let mut msgs = Vec::new();
            let read = if dead.contains(&key) {
                read_all(&w.ring.0, &mut msgs)
            } else {
                read_ring(&w.ring.0, VISIT_RECORDS, &mut msgs).map(|_| ())
            };
            records.extend(
                msgs.into_iter()
                    .map(|(id, outcome)| (key, w.pid, id, outcome)),
            );
            if let Err(why) = read {
                corrupt.push((key, why));
            }
        }
        for (key, why) in corrupt {
            log::error!("process-ipc pool: a worker's result ring is corrupt: {why}");
            if let Some(w) = st.workers.get_mut(&key) {
                w.broken = Some(why);
                w.feeder = None;
                if let Some(h) = w.handle.as_mut() {
                    let _ = h.kill();
                }
            }
        }
        if records.is_empty() {
            return 0;
        }
        count = records.len();
        for (key, pid, id, outcome) in records {
            if let Some(task) = take_finished(&mut st, key, id) {
                finished.push((task, pid, outcome));
            }
        }
        dispatch(&mut st, REFILL_AT);
        st.tasks.is_empty()
    };
    for (task, pid, outcome) in finished {
        run_completer(task.complete, outcome_result(pid, outcome));
    }
    if idle {
        // Only `join` waits on this, for the last task; skip the wake-up otherwise.
        shared.changed.notify_all();
    }
    count
}

/// Reads every result of a ring whose writer is dead: at most as many records as the ring
/// can hold (a descendant that kept the mapping and goes on writing cannot hold the lock for
/// longer).
fn read_all(ring: &Ring, out: &mut Vec<(TaskId, TaskOutcome)>) -> Result<(), String> {
    for _ in 0..RING_RECORDS.div_ceil(VISIT_RECORDS) {
        if read_ring(ring, VISIT_RECORDS, out)? < VISIT_RECORDS {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads up to `max` records of results from `ring` into `out`, reading only records checked
/// first (see [`Ring::checked_records`]). Returns how many records were read, or why the ring
/// cannot be trusted.
fn read_ring(
    ring: &Ring,
    max: usize,
    out: &mut Vec<(TaskId, TaskOutcome)>,
) -> Result<usize, String> {
    let decode = |bytes: &[u8]| match postcard::from_bytes::<WorkerMsg>(bytes) {
        Ok(WorkerMsg::Done { id, outcome }) => Ok((id, outcome)),
        Ok(_) => Err("a record is not a result".to_string()),
        Err(e) => Err(format!("a record does not decode: {e}")),
    };
    let mut read = 0;
    while read < max {
        let checked = ring.checked_records()?;
        if checked == 0 {
            break;
        }
        for _ in 0..checked.min(max - read) {
            match ring.next(WaitLimit::No, decode) {
                Ok(Next::One(done)) => out.push(done?),
                Ok(Next::Lost(why) | Next::Damaged(why)) => return Err(why.to_string()),
                Ok(Next::Empty | Next::Disconnected | Next::Timeout) => return Ok(read),
                Err(e) => return Err(e.to_string()),
            }
            read += 1;
        }
    }
    Ok(read)
}

/// Worker `key` finished task `id`: the schedule learns it, and the task leaves the pool.
fn take_finished(st: &mut PoolState, key: WorkerKey, id: TaskId) -> Option<Task> {
    st.schedule().finished(key, id, Instant::now());
    if st.schedule().retiring(key) {
        // It leaves by itself now (max_tasks_per_child): nothing more goes to it.
        if let Some(w) = st.workers.get_mut(&key) {
            w.feeder = None;
        }
    }
    st.tasks.remove(&id)
}

/// A task's result from how it ended in worker `pid`.
fn outcome_result(pid: u32, outcome: TaskOutcome) -> Result<Vec<u8>, PoolError> {
    match outcome {
        TaskOutcome::Value(bytes) => Ok(bytes.into_vec()),
        TaskOutcome::Panicked { message, location } => Err(PoolError::Panicked {
            pid,
            message,
            location,
        }),
        TaskOutcome::Serde(message) => Err(PoolError::Serde(message)),
    }
}

fn handle(
    shared: &PoolShared,
    events: Vec<IpcSelectionResult>,
    control_key: u64,
    exited: &mut Vec<WorkerKey>,
) {
    for event in events {
        match event {
            IpcSelectionResult::MessageReceived(key, msg) if key == control_key => {
                match msg.to::<Control>() {
                    Ok(Control::Exited(worker)) => exited.push(worker),
                    Err(e) => log::error!("process-ipc pool: bad control message: {e}"),
                }
            }
            IpcSelectionResult::MessageReceived(key, msg) => match msg.to::<WorkerMsg>() {
                Ok(msg) => on_message(shared, key, msg),
                Err(e) => log::error!("process-ipc pool: bad message from a worker: {e}"),
            },
            // The worker's watcher reports its exit; a closed channel alone proves nothing.
            IpcSelectionResult::ChannelClosed(_) => {}
        }
    }
}

fn on_message(shared: &PoolShared, key: WorkerKey, msg: WorkerMsg) {
    match msg {
        WorkerMsg::Done { id, outcome } => {
            let (task, pid, idle) = {
                let mut st = shared.lock();
                let Some(pid) = st.workers.get(&key).map(|w| w.pid) else {
                    return;
                };
                let task = take_finished(&mut st, key, id);
                dispatch(&mut st, REFILL_AT);
                (task, pid, st.tasks.is_empty())
            };
            if let Some(task) = task {
                run_completer(task.complete, outcome_result(pid, outcome));
            }
            if idle {
                shared.changed.notify_all();
            }
        }
        // The collector is awake now; the results are read from the rings.
        WorkerMsg::Wake => {}
        WorkerMsg::Broken { why } => {
            log::error!("process-ipc pool: a worker found its result ring corrupt: {why}");
            if let Some(w) = shared.lock().workers.get_mut(&key) {
                w.broken.get_or_insert(why);
                w.feeder = None;
                if let Some(h) = w.handle.as_mut() {
                    let _ = h.kill();
                }
            }
        }
        WorkerMsg::InitFailed { message } => {
            let (tasks, err) = {
                let mut st = shared.lock();
                let pid = st.workers.get(&key).map_or(0, |w| w.pid);
                let err = PoolError::InitializerFailed { pid, message };
                st.broken = Some(err.clone());
                st.schedule().clear();
                for w in st.workers.values_mut() {
                    w.feeder = None;
                }
                let tasks: Vec<Task> = st.tasks.drain().map(|(_, t)| t).collect();
                (tasks, err)
            };
            for task in tasks {
                run_completer(task.complete, Err(err.clone()));
            }
            shared.changed.notify_all();
        }
    }
}
