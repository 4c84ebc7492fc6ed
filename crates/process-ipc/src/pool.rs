//! `Pool`: reused worker processes that survive their workers dying; `AsyncResult`, and the
//! `map` family's iterators.
//!
//! How it stays robust: the parent assigns each task to one worker and remembers which tasks
//! each worker holds, in order. A worker runs its tasks in that order and answers on its own
//! channel, so when a worker's channel reaches end-of-file the parent knows exactly which task
//! was running (the oldest one it holds): that task fails with the worker's pid and signal, the
//! tasks queued behind it (never started) go back to the pending queue, and a new worker takes
//! the dead one's place. Tasks and results travel over two channels per worker that live as
//! long as the worker; a feeder thread per worker ships tasks in batches.
//!
//! Tasks are plain functions like [`Process`](crate::Process) targets; their arguments and
//! results are serde values encoded as bytes, so queue handles (which carry file descriptors)
//! cannot be task arguments: pass them to a `Process`, or use a [`Manager`](crate::Manager)
//! queue, as in Python.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{self, IpcReceiver, IpcReceiverSet, IpcSelectionResult, IpcSender};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::bootstrap;
use crate::error::{PoolError, ProcessError, signal_name};
use crate::process::{Process, ProcessHandle, Target, conjure};

/// Tasks a worker may hold at once (one running, the rest queued in its channel).
const PREFETCH: usize = 32;
/// A worker gets more tasks once it holds this many or fewer, so tasks go out in batches.
const REFILL_AT: usize = PREFETCH / 2;
/// How often the result collector wakes up with nothing to read (timeouts, safety).
const TICK: Duration = Duration::from_millis(100);

type TaskFn = fn(&[u8]) -> Result<Vec<u8>, String>;
type Completer = Box<dyn FnOnce(Result<Vec<u8>, PoolError>) + Send>;

fn task_offset(f: TaskFn) -> isize {
    bootstrap::offset_of(f as usize)
}

/// Runs one call: decode the argument tuple, call, encode the value.
fn run_one<F, Args>(bytes: &[u8]) -> Result<Vec<u8>, String>
where
    F: Target<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let args: Args =
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let f: F = conjure();
    postcard::to_stdvec(&f.call(args)).map_err(|e| format!("cannot encode the result: {e}"))
}

/// Runs a chunk of calls: `Vec<Args>` in, `Vec<Output>` out.
fn run_chunk<F, Args>(bytes: &[u8]) -> Result<Vec<u8>, String>
where
    F: Target<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let items: Vec<Args> =
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let f: F = conjure();
    let out: Vec<F::Output> = items.into_iter().map(|a| f.call(a)).collect();
    postcard::to_stdvec(&out).map_err(|e| format!("cannot encode the results: {e}"))
}

/// A task as the worker receives it.
#[derive(Deserialize)]
struct TaskMsg {
    id: u64,
    call: isize,
    args: ByteBuf,
}

/// A task as the feeder sends it (the bytes are shared with the pending copy, not cloned).
struct TaskOut {
    id: u64,
    call: isize,
    args: Arc<Vec<u8>>,
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

#[derive(Serialize, Deserialize)]
enum Outcome {
    Value(ByteBuf),
    Panicked { message: String, location: String },
    Serde(String),
}

#[derive(Serialize, Deserialize)]
enum WorkerMsg {
    Done { id: u64, outcome: Outcome },
    InitFailed { message: String },
}

#[derive(Serialize, Deserialize)]
struct WorkerConfig {
    tasks: IpcReceiver<Vec<TaskMsg>>,
    results: IpcSender<WorkerMsg>,
    init: Option<(isize, ByteBuf)>,
    max_tasks: Option<usize>,
}

// `IpcReceiver<T>` needs `T: Serialize` to be received; `TaskMsg` only ever arrives.
impl Serialize for TaskMsg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.id, self.call, &self.args).serialize(s)
    }
}

fn call_at(offset: isize, args: &[u8]) -> Outcome {
    let address = bootstrap::address_at(offset);
    // SAFETY: this worker is a child that passed the bootstrap's executable-identity check, so
    // the offset, taken by the parent from a `TaskFn` in the same binary, points at that `TaskFn`.
    let f: TaskFn = unsafe { std::mem::transmute::<usize, TaskFn>(address) };
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(Ok(bytes)) => Outcome::Value(ByteBuf::from(bytes)),
        Ok(Err(message)) => Outcome::Serde(message),
        Err(payload) => {
            let (message, location) = bootstrap::take_last_panic()
                .unwrap_or_else(|| (bootstrap::panic_message(&*payload), "<unknown>".into()));
            Outcome::Panicked { message, location }
        }
    }
}

/// The worker process's target: run the initializer, then tasks until the channel closes.
fn worker_main(cfg: WorkerConfig) {
    if let Some((call, args)) = &cfg.init {
        let message = match call_at(*call, args) {
            Outcome::Value(_) => None,
            Outcome::Panicked { message, location } => Some(format!("{message} at {location}")),
            Outcome::Serde(message) => Some(message),
        };
        if let Some(message) = message {
            let _ = cfg.results.send(WorkerMsg::InitFailed { message });
            return;
        }
    }
    let mut done = 0usize;
    while let Ok(batch) = cfg.tasks.recv() {
        for task in batch {
            let outcome = call_at(task.call, &task.args);
            if cfg
                .results
                .send(WorkerMsg::Done {
                    id: task.id,
                    outcome,
                })
                .is_err()
            {
                return;
            }
            done += 1;
            if cfg.max_tasks.is_some_and(|m| done >= m) {
                return;
            }
        }
    }
}

struct Task {
    call: isize,
    args: Arc<Vec<u8>>,
    what: String,
    complete: Completer,
}

struct Worker {
    pid: u32,
    handle: Option<ProcessHandle<()>>,
    feeder: Option<Sender<Vec<TaskOut>>>,
    /// Returns the ids of tasks it could not deliver (the worker was already gone).
    feeder_thread: Option<JoinHandle<Vec<u64>>>,
    inflight: VecDeque<u64>,
    front_since: Option<Instant>,
    assigned: usize,
    timed_out: bool,
}

impl Worker {
    fn capacity(&self, max_tasks: Option<usize>) -> usize {
        if self.feeder.is_none() || self.timed_out {
            return 0;
        }
        let room = PREFETCH.saturating_sub(self.inflight.len());
        max_tasks.map_or(room, |m| room.min(m.saturating_sub(self.assigned)))
    }
}

#[derive(Clone)]
struct Config {
    processes: usize,
    max_tasks: Option<usize>,
    task_timeout: Option<Duration>,
    init: Option<(isize, Arc<Vec<u8>>)>,
}

#[derive(Default)]
struct State {
    workers: HashMap<u64, Worker>,
    pending: VecDeque<u64>,
    tasks: HashMap<u64, Task>,
    next_id: u64,
    closed: bool,
    terminated: bool,
    broken: Option<PoolError>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    config: Config,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands pending tasks to workers that hold at most `refill_at` tasks, in batches of up to
/// `PREFETCH`. Submitters pass 0 (only idle workers get work at once, so a burst of
/// submissions does not become a burst of one-task messages); the result collector passes
/// [`REFILL_AT`] as results come back. No worker takes more than its fair share of what is
/// pending, so a short map (say 8 chunks on 2 workers) is split between the workers instead
/// of filling the first one's prefetch.
fn dispatch(state: &mut State, cfg: &Config, refill_at: usize) {
    let eligible = |w: &Worker| w.inflight.len() <= refill_at && w.capacity(cfg.max_tasks) > 0;
    while !state.pending.is_empty() {
        let takers = state.workers.values().filter(|w| eligible(w)).count();
        let fair_share = state.pending.len().div_ceil(takers.max(1));
        let Some(worker) = state
            .workers
            .values_mut()
            .filter(|w| eligible(w))
            .min_by_key(|w| w.inflight.len())
        else {
            return;
        };
        let mut batch = Vec::new();
        let room = worker.capacity(cfg.max_tasks).min(fair_share);
        while batch.len() < room {
            let Some(id) = state.pending.pop_front() else {
                break;
            };
            let Some(task) = state.tasks.get(&id) else {
                continue;
            };
            batch.push(TaskOut {
                id,
                call: task.call,
                args: Arc::clone(&task.args),
            });
            if worker.inflight.is_empty() {
                worker.front_since = Some(Instant::now());
            }
            worker.inflight.push_back(id);
            worker.assigned += 1;
        }
        let ids: Vec<u64> = batch.iter().map(|t| t.id).collect();
        let handed = worker
            .feeder
            .as_ref()
            .is_some_and(|f| f.send(batch).is_ok());
        if !handed {
            // The feeder already stopped: its worker is gone. These tasks never left.
            worker.feeder = None;
            worker.inflight.retain(|id| !ids.contains(id));
            for id in ids.into_iter().rev() {
                state.pending.push_front(id);
            }
        }
    }
}

fn feeder_loop(rx: Receiver<Vec<TaskOut>>, tx: IpcSender<Vec<TaskOut>>) -> Vec<u64> {
    while let Ok(mut batch) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        let ids: Vec<u64> = batch.iter().map(|t| t.id).collect();
        if tx.send(batch).is_err() {
            // The worker is gone: report what never reached it, so the collector requeues those
            // tasks instead of blaming them for the death.
            let mut lost = ids;
            while let Ok(more) = rx.try_recv() {
                lost.extend(more.iter().map(|t| t.id));
            }
            return lost;
        }
    }
    Vec::new()
}

/// Starts one worker process with its two channels and its feeder thread.
fn spawn_worker(cfg: &Config) -> Result<(Worker, IpcReceiver<WorkerMsg>), PoolError> {
    let io = |e: std::io::Error| PoolError::Spawn(e.to_string());
    let (task_tx, task_rx) = ipc::channel::<Vec<TaskOut>>().map_err(io)?;
    let (result_tx, result_rx) = ipc::channel::<WorkerMsg>().map_err(io)?;
    // Same socket, typed for the worker's side (`TaskMsg` decodes what `TaskOut` encodes).
    let task_rx: IpcReceiver<Vec<TaskMsg>> = task_rx.to_opaque().to();
    let config = WorkerConfig {
        tasks: task_rx,
        results: result_tx,
        init: cfg
            .init
            .as_ref()
            .map(|(call, args)| (*call, ByteBuf::from(args.as_ref().clone()))),
        max_tasks: cfg.max_tasks,
    };
    let handle = Process::new(worker_main, (config,))
        .start()
        .map_err(|e: ProcessError| PoolError::Spawn(e.to_string()))?;
    let (feed_tx, feed_rx) = crossbeam_channel::unbounded();
    let feeder_thread = std::thread::Builder::new()
        .name(format!("process-ipc-pool-feeder-{}", handle.pid()))
        .spawn(move || feeder_loop(feed_rx, task_tx))
        .map_err(io)?;
    Ok((
        Worker {
            pid: handle.pid(),
            handle: Some(handle),
            feeder: Some(feed_tx),
            feeder_thread: Some(feeder_thread),
            inflight: VecDeque::new(),
            front_since: None,
            assigned: 0,
            timed_out: false,
        },
        result_rx,
    ))
}

fn run_completer(complete: Completer, result: Result<Vec<u8>, PoolError>) {
    // A panicking user callback must not take the collector down with it.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || complete(result)));
}

fn collector_loop(shared: Arc<Shared>, mut set: IpcReceiverSet) {
    let tick = shared
        .config
        .task_timeout
        .map_or(TICK, |t| (t / 4).clamp(Duration::from_millis(1), TICK));
    loop {
        let events = match set.try_select_timeout(tick) {
            Ok(events) => events,
            Err(ipc_channel::TrySelectError::Empty) => Vec::new(),
            Err(ipc_channel::TrySelectError::IoError(e)) => {
                log::error!("process-ipc pool: select failed: {e}");
                Vec::new()
            }
        };
        for event in events {
            match event {
                IpcSelectionResult::MessageReceived(key, msg) => match msg.to::<WorkerMsg>() {
                    Ok(msg) => on_message(&shared, key, msg),
                    Err(e) => log::error!("process-ipc pool: bad message from a worker: {e}"),
                },
                IpcSelectionResult::ChannelClosed(key) => on_exit(&shared, &mut set, key),
            }
        }
        check_timeouts(&shared);
        let st = shared.lock();
        if st.workers.is_empty() && (st.terminated || st.closed || st.broken.is_some()) {
            shared.changed.notify_all();
            return;
        }
    }
}

fn on_message(shared: &Shared, key: u64, msg: WorkerMsg) {
    match msg {
        WorkerMsg::Done { id, outcome } => {
            let (task, pid, idle) = {
                let mut st = shared.lock();
                let Some(worker) = st.workers.get_mut(&key) else {
                    return;
                };
                let pid = worker.pid;
                if let Some(pos) = worker.inflight.iter().position(|&t| t == id) {
                    worker.inflight.remove(pos);
                }
                worker.front_since = (!worker.inflight.is_empty()).then(Instant::now);
                let task = st.tasks.remove(&id);
                dispatch(&mut st, &shared.config, REFILL_AT);
                (task, pid, st.tasks.is_empty())
            };
            if let Some(task) = task {
                let result = match outcome {
                    Outcome::Value(bytes) => Ok(bytes.into_vec()),
                    Outcome::Panicked { message, location } => Err(PoolError::Panicked {
                        pid,
                        message,
                        location,
                    }),
                    Outcome::Serde(message) => Err(PoolError::Serde(message)),
                };
                run_completer(task.complete, result);
            }
            if idle {
                // Only `join` waits on this, for the last task; skip the wake-up otherwise.
                shared.changed.notify_all();
            }
        }
        WorkerMsg::InitFailed { message } => {
            let failed = {
                let mut st = shared.lock();
                let pid = st.workers.get(&key).map_or(0, |w| w.pid);
                let err = PoolError::InitializerFailed { pid, message };
                st.broken = Some(err.clone());
                st.pending.clear();
                let tasks: Vec<Task> = st.tasks.drain().map(|(_, t)| t).collect();
                for w in st.workers.values_mut() {
                    w.inflight.clear();
                    w.feeder = None;
                }
                (tasks, err)
            };
            for task in failed.0 {
                run_completer(task.complete, Err(failed.1.clone()));
            }
            shared.changed.notify_all();
        }
    }
}

fn describe_exit(result: Result<(), ProcessError>) -> (bool, String, Option<i32>) {
    match result {
        Ok(()) => (true, "exited normally".into(), None),
        Err(ProcessError::Killed { signal, .. }) => (
            false,
            format!("killed by signal {signal} ({})", signal_name(signal)),
            Some(signal),
        ),
        Err(ProcessError::Exited { code, .. }) => (false, format!("exited with code {code}"), None),
        Err(e) => (false, e.to_string(), None),
    }
}

fn on_exit(shared: &Shared, set: &mut IpcReceiverSet, key: u64) {
    let Some(mut worker) = shared.lock().workers.remove(&key) else {
        return;
    };
    let mut handle = worker.handle.take().expect("a live worker has its handle");
    let exit = match handle.join_timeout(Duration::from_secs(5)) {
        Err(ProcessError::Timeout { .. }) => {
            let _ = handle.kill();
            handle.join_timeout(Duration::from_secs(5))
        }
        other => other,
    };
    let (clean, cause, signal) = describe_exit(exit);
    // With the process gone, the feeder's sends fail at once; it then says what it never sent.
    let undelivered = {
        drop(worker.feeder.take());
        worker
            .feeder_thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    };
    let failed = {
        let mut st = shared.lock();
        let mut failed = None;
        let mut inflight = std::mem::take(&mut worker.inflight);
        inflight.retain(|id| !undelivered.contains(id));
        for &id in undelivered.iter().rev() {
            if st.tasks.contains_key(&id) {
                st.pending.push_front(id);
            }
        }
        if !clean {
            if let Some(id) = inflight.pop_front() {
                if let Some(task) = st.tasks.remove(&id) {
                    let err = match (worker.timed_out, shared.config.task_timeout) {
                        (true, Some(limit)) => PoolError::TaskTimeout {
                            pid: worker.pid,
                            limit,
                        },
                        _ => PoolError::WorkerDied {
                            pid: worker.pid,
                            cause: cause.clone(),
                            signal,
                            what: task.what.clone(),
                        },
                    };
                    failed = Some((task, err));
                }
            }
        }
        // Tasks queued behind the one that ran never started: they go back to the front.
        for id in inflight.into_iter().rev() {
            if st.tasks.contains_key(&id) {
                st.pending.push_front(id);
            }
        }
        failed
    };
    if let Some((task, err)) = failed {
        run_completer(task.complete, Err(err));
    }
    replace_workers(shared, set);
    shared.changed.notify_all();
}

/// Starts workers until the pool is back to its size, if it still needs them.
fn replace_workers(shared: &Shared, set: &mut IpcReceiverSet) {
    loop {
        {
            let st = shared.lock();
            let wanted = !st.terminated
                && st.broken.is_none()
                && (!st.closed || !st.tasks.is_empty())
                && st.workers.len() < shared.config.processes;
            if !wanted {
                return;
            }
        }
        match spawn_worker(&shared.config) {
            Ok((worker, rx)) => {
                let mut st = shared.lock();
                let key = match set.add(rx) {
                    Ok(key) => key,
                    Err(e) => {
                        log::error!("process-ipc pool: cannot watch a new worker: {e}");
                        return;
                    }
                };
                let mut worker = worker;
                if st.terminated {
                    if let Some(h) = worker.handle.as_mut() {
                        let _ = h.kill();
                    }
                    worker.feeder = None;
                }
                st.workers.insert(key, worker);
                dispatch(&mut st, &shared.config, REFILL_AT);
            }
            Err(e) => {
                let tasks: Vec<Task> = {
                    let mut st = shared.lock();
                    if !st.workers.is_empty() {
                        return; // the others carry on; try again on the next exit
                    }
                    st.broken = Some(e.clone());
                    st.pending.clear();
                    st.tasks.drain().map(|(_, t)| t).collect()
                };
                for task in tasks {
                    run_completer(task.complete, Err(e.clone()));
                }
                return;
            }
        }
    }
}

fn check_timeouts(shared: &Shared) {
    let Some(limit) = shared.config.task_timeout else {
        return;
    };
    let mut st = shared.lock();
    for worker in st.workers.values_mut() {
        let overdue = worker.front_since.is_some_and(|t| t.elapsed() > limit);
        if overdue && !worker.timed_out {
            worker.timed_out = true;
            if let Some(h) = worker.handle.as_mut() {
                let _ = h.kill();
            }
        }
    }
}

/// Configures a [`Pool`]: `Pool(processes, initializer, initargs, maxtasksperchild)` plus a
/// per-task timeout.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes: usize,
    max_tasks: Option<usize>,
    task_timeout: Option<Duration>,
    init: Option<(isize, Arc<Vec<u8>>)>,
    init_error: Option<PoolError>,
}

impl PoolBuilder {
    /// Number of worker processes (Python's `processes`); must be at least 1.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    /// `initializer(*initargs)`: runs once in each worker before its first task. If it panics,
    /// every task fails with [`PoolError::InitializerFailed`].
    pub fn initializer<F, Args>(mut self, f: F, args: Args) -> Self
    where
        F: Target<Args, Output = ()>,
        Args: Serialize + DeserializeOwned,
    {
        let _ = f;
        match postcard::to_stdvec(&args) {
            Ok(bytes) => {
                let call = task_offset(run_one::<F, Args>);
                self.init = Some((call, Arc::new(bytes)));
            }
            Err(e) => self.init_error = Some(PoolError::Serde(e.to_string())),
        }
        self
    }

    /// `maxtasksperchild`: a worker is replaced after running `k` tasks (chunks count as one).
    pub fn max_tasks_per_child(mut self, k: usize) -> Self {
        self.max_tasks = Some(k.max(1));
        self
    }

    /// A task running longer than `limit` has its worker killed and replaced, and fails with
    /// [`PoolError::TaskTimeout`].
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Pool, PoolError> {
        if self.processes == 0 {
            return Err(PoolError::NoWorkers(0));
        }
        if let Some(e) = self.init_error {
            return Err(e);
        }
        let config = Config {
            processes: self.processes,
            max_tasks: self.max_tasks,
            task_timeout: self.task_timeout,
            init: self.init,
        };
        let mut set = IpcReceiverSet::new().map_err(|e| PoolError::Spawn(e.to_string()))?;
        let mut state = State::default();
        for _ in 0..config.processes {
            let (worker, rx) = match spawn_worker(&config) {
                Ok(w) => w,
                Err(e) => {
                    for w in state.workers.values_mut() {
                        if let Some(mut h) = w.handle.take() {
                            let _ = h.kill();
                            let _ = h.join_timeout(Duration::from_secs(5));
                        }
                    }
                    return Err(e);
                }
            };
            let key = set.add(rx).map_err(|e| PoolError::Spawn(e.to_string()))?;
            state.workers.insert(key, worker);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            config,
        });
        let shared2 = Arc::clone(&shared);
        let collector = std::thread::Builder::new()
            .name("process-ipc-pool-collector".into())
            .spawn(move || collector_loop(shared2, set))
            .map_err(|e| PoolError::Spawn(e.to_string()))?;
        Ok(Pool {
            shared,
            collector: Mutex::new(Some(collector)),
        })
    }
}

/// `multiprocessing.Pool`: worker processes reused across tasks.
///
/// ```
/// use process_ipc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2).unwrap();
/// assert_eq!(pool.map(square, 0..5u64).unwrap(), vec![0, 1, 4, 9, 16]);
/// let pending = pool.apply_async(square, (7,)).unwrap();
/// assert_eq!(pending.get().unwrap(), 49);
/// ```
///
/// A worker killed mid-task fails only the task it was running (with its pid and the signal);
/// it is replaced and every other task completes. Dropping the pool terminates and reaps its
/// workers.
pub struct Pool {
    shared: Arc<Shared>,
    collector: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .finish_non_exhaustive()
    }
}

/// The shared result slot of one task.
struct Slot<R> {
    state: Mutex<SlotState<R>>,
    ready: Condvar,
    /// Threads blocked on `ready` (changed under `state`'s lock): `set` wakes only if any.
    waiters: std::sync::atomic::AtomicUsize,
}

enum SlotState<R> {
    Pending,
    Ready(Result<R, PoolError>),
    Taken,
}

impl<R> Slot<R> {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::Pending),
            ready: Condvar::new(),
            waiters: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn set(&self, value: Result<R, PoolError>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*st, SlotState::Pending) {
            *st = SlotState::Ready(value);
        }
        if self.waiters.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.ready.notify_all();
        }
    }
}

/// `multiprocessing.pool.AsyncResult`: the pending result of `apply_async` / `map_async`.
pub struct AsyncResult<R> {
    slot: Arc<Slot<R>>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    /// True once the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        !matches!(
            *self.slot.state.lock().unwrap_or_else(|p| p.into_inner()),
            SlotState::Pending
        )
    }

    /// `Some(true)` if it finished without error, `Some(false)` if it failed, `None` while
    /// running (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        match &*self.slot.state.lock().unwrap_or_else(|p| p.into_inner()) {
            SlotState::Pending => None,
            SlotState::Ready(r) => Some(r.is_ok()),
            SlotState::Taken => Some(true),
        }
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut st = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        while matches!(*st, SlotState::Pending) {
            self.slot.waiters.fetch_add(1, Relaxed);
            st = self.slot.ready.wait(st).unwrap_or_else(|p| p.into_inner());
            self.slot.waiters.fetch_sub(1, Relaxed);
        }
    }

    /// Waits at most `timeout`; returns whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        while matches!(*st, SlotState::Pending) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.slot
                .waiters
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            st = self
                .slot
                .ready
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.slot
                .waiters
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        true
    }

    /// Waits for and returns the task's value or its error.
    pub fn get(self) -> Result<R, PoolError> {
        self.wait();
        self.take()
    }

    /// Like [`get`](Self::get), giving up after `timeout` with [`PoolError::WaitTimeout`]; the
    /// task keeps running and a later call can still collect it.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        if !self.wait_timeout(timeout) {
            return Err(PoolError::WaitTimeout(timeout));
        }
        self.take()
    }

    fn take(&self) -> Result<R, PoolError> {
        let mut st = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *st, SlotState::Taken) {
            SlotState::Ready(r) => r,
            SlotState::Taken => Err(PoolError::ResultTaken),
            SlotState::Pending => unreachable!("take after wait"),
        }
    }
}

/// How a map's results are delivered.
enum MapMode<R> {
    Collect(Arc<Slot<Vec<R>>>),
    Ordered,
    Unordered(Sender<Result<R, PoolError>>),
}

enum ChunkSlot<R> {
    Pending,
    Ready(std::vec::IntoIter<R>),
    Failed(PoolError),
}

struct MapState<R> {
    chunks: Vec<ChunkSlot<R>>,
    chunk_size: usize,
    chunks_left: usize,
    mode: MapMode<R>,
}

struct MapShared<R> {
    state: Mutex<MapState<R>>,
    filled: Condvar,
}

impl<R> MapShared<R> {
    fn complete_chunk(&self, index: usize, len: usize, result: Result<Vec<R>, PoolError>) {
        let result = match result {
            Ok(values) if values.len() != len => Err(PoolError::Serde(format!(
                "chunk returned {} values for {len} items",
                values.len()
            ))),
            other => other,
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match (&st.mode, result) {
            (MapMode::Unordered(tx), Ok(values)) => {
                for v in values {
                    let _ = tx.send(Ok(v));
                }
            }
            (MapMode::Unordered(tx), Err(e)) => {
                for _ in 0..len {
                    let _ = tx.send(Err(e.clone()));
                }
            }
            (_, Ok(values)) => st.chunks[index] = ChunkSlot::Ready(values.into_iter()),
            (_, Err(e)) => st.chunks[index] = ChunkSlot::Failed(e),
        }
        st.chunks_left -= 1;
        if st.chunks_left == 0 {
            if let MapMode::Collect(slot) = &st.mode {
                let slot = Arc::clone(slot);
                let chunks = std::mem::take(&mut st.chunks);
                let mut all = Vec::with_capacity(chunks.len() * st.chunk_size);
                let mut failed = None;
                for chunk in chunks {
                    match chunk {
                        ChunkSlot::Ready(values) => all.extend(values),
                        ChunkSlot::Failed(e) => {
                            failed = Some(e);
                            break;
                        }
                        ChunkSlot::Pending => unreachable!("every chunk completed"),
                    }
                }
                slot.set(failed.map_or(Ok(all), Err));
            }
        }
        self.filled.notify_all();
    }
}

/// `Pool.imap`: results in input order, each as soon as it (and those before it) are ready.
/// A failed item (its chunk's worker died, or it panicked) is an `Err` at its position; the
/// iteration goes on with the next items.
pub struct IMap<R> {
    shared: Arc<MapShared<R>>,
    next: usize,
    len: usize,
}

impl<R> std::fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("next", &self.next)
            .field("len", &self.len)
            .finish()
    }
}

impl<R> IMap<R> {
    /// Like `next()`, waiting at most `timeout`: `Some(Err(WaitTimeout))` if the next item is not
    /// ready in time (the position does not advance), `None` at the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, PoolError>> {
        self.next_until(Some(Instant::now() + timeout), timeout)
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Option<Result<R, PoolError>> {
        if self.next >= self.len {
            return None;
        }
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let chunk = self.next / st.chunk_size;
            let got = match &mut st.chunks[chunk] {
                ChunkSlot::Pending => None,
                ChunkSlot::Ready(values) => values.next().map(Ok),
                ChunkSlot::Failed(e) => Some(Err(e.clone())),
            };
            if let Some(v) = got {
                self.next += 1;
                return Some(v);
            }
            st = match deadline {
                None => self
                    .shared
                    .filled
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return Some(Err(PoolError::WaitTimeout(timeout)));
                    }
                    self.shared
                        .filled
                        .wait_timeout(st, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None, Duration::ZERO)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.next;
        (left, Some(left))
    }
}

/// `Pool.imap_unordered`: every item's result once, in completion order.
pub struct IMapUnordered<R> {
    rx: Receiver<Result<R, PoolError>>,
    left: usize,
}

impl<R> std::fmt::Debug for IMapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapUnordered")
            .field("left", &self.left)
            .finish()
    }
}

impl<R> IMapUnordered<R> {
    /// Like `next()`, waiting at most `timeout`: `Some(Err(WaitTimeout))` if nothing arrived.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, PoolError>> {
        if self.left == 0 {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(v) => {
                self.left -= 1;
                Some(v)
            }
            Err(_) => Some(Err(PoolError::WaitTimeout(timeout))),
        }
    }
}

impl<R> Iterator for IMapUnordered<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let v = self.rx.recv().ok()?;
        self.left -= 1;
        Some(v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// A submitted map: its shared result state and its item count.
type Submitted<R> = (Arc<MapShared<R>>, usize);

/// Python's default `map` chunk size: `ceil(len / (4 * processes))`.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes).max(1)
}

impl Pool {
    /// `Pool(n)`: starts `n` worker processes; `n == 0` is [`PoolError::NoWorkers`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// A builder with Python's options: initializer, max tasks per child, a per-task timeout.
    /// It starts with as many processes as the machine has CPUs.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_tasks: None,
            task_timeout: None,
            init: None,
            init_error: None,
        }
    }

    /// The number of worker processes the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// The pids of the current workers (they change as workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.shared.lock().workers.values().map(|w| w.pid).collect();
        pids.sort_unstable();
        pids
    }

    fn submit(&self, tasks: Vec<(isize, Vec<u8>, String, Completer)>) -> Result<(), PoolError> {
        let mut st = self.shared.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        if st.closed || st.terminated {
            return Err(PoolError::Closed);
        }
        for (call, args, what, complete) in tasks {
            let id = st.next_id;
            st.next_id += 1;
            st.tasks.insert(
                id,
                Task {
                    call,
                    args: Arc::new(args),
                    what,
                    complete,
                },
            );
            st.pending.push_back(id);
        }
        dispatch(&mut st, &self.shared.config, 0);
        Ok(())
    }

    /// `Pool.apply(f, args)`: runs `f(args...)` in a worker and waits for the value.
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// `Pool.apply_async(f, args)`: queues `f(args...)` and returns at once.
    pub fn apply_async<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, |_| {}, |_| {})
    }

    /// `apply_async(f, args, callback, error_callback)`: exactly one of the callbacks runs,
    /// exactly once, on the pool's result thread, before the result becomes ready. Keep them
    /// short, as in Python, and do not wait on the pool from inside one (`join`, `terminate`,
    /// `get`): the result thread would be waiting for itself.
    pub fn apply_async_with<F, Args, C, E>(
        &self,
        f: F,
        args: Args,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        C: FnOnce(&F::Output) + Send + 'static,
        E: FnOnce(&PoolError) + Send + 'static,
    {
        let _ = f;
        let bytes = postcard::to_stdvec(&args).map_err(|e| PoolError::Serde(e.to_string()))?;
        let slot = Slot::<F::Output>::new();
        let filled = Arc::clone(&slot);
        let complete: Completer = Box::new(move |result| {
            let value = result.and_then(|b| {
                postcard::from_bytes::<F::Output>(&b).map_err(|e| PoolError::Serde(e.to_string()))
            });
            match &value {
                Ok(v) => callback(v),
                Err(e) => error_callback(e),
            }
            filled.set(value);
        });
        let call = task_offset(run_one::<F, Args>);
        let what = format!("apply_async({})", std::any::type_name::<F>());
        self.submit(vec![(call, bytes, what, complete)])?;
        Ok(AsyncResult { slot })
    }

    fn map_inner<F, Args, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        mode: MapMode<F::Output>,
    ) -> Result<Submitted<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        let _ = f;
        let items: Vec<Args> = items.into_iter().collect();
        let len = items.len();
        let chunk = chunksize
            .unwrap_or_else(|| auto_chunksize(len, self.processes()))
            .max(1);
        let chunks = len.div_ceil(chunk);
        let shared = Arc::new(MapShared {
            state: Mutex::new(MapState {
                chunks: (0..chunks).map(|_| ChunkSlot::Pending).collect(),
                chunk_size: chunk,
                chunks_left: chunks,
                mode,
            }),
            filled: Condvar::new(),
        });
        if chunks == 0 {
            if let MapMode::Collect(slot) =
                &shared.state.lock().unwrap_or_else(|p| p.into_inner()).mode
            {
                slot.set(Ok(Vec::new()));
            }
            return Ok((shared, 0));
        }
        let call = task_offset(run_chunk::<F, Args>);
        let mut tasks = Vec::with_capacity(chunks);
        for (i, part) in items.chunks(chunk).enumerate() {
            let start = i * chunk;
            let n = part.len();
            let bytes = postcard::to_stdvec(part).map_err(|e| PoolError::Serde(e.to_string()))?;
            let target = Arc::clone(&shared);
            let complete: Completer = Box::new(move |result| {
                let values = result.and_then(|b| {
                    postcard::from_bytes::<Vec<F::Output>>(&b)
                        .map_err(|e| PoolError::Serde(e.to_string()))
                });
                target.complete_chunk(i, n, values);
            });
            let what = format!(
                "items {start}..{} of a map of {}",
                start + n,
                std::any::type_name::<F>()
            );
            tasks.push((call, bytes, what, complete));
        }
        self.submit(tasks)?;
        Ok((shared, len))
    }

    /// `Pool.map(f, items)`: `f(item)` for every item, in order, with Python's automatic chunk
    /// size. The first failed item's error is returned (a lost chunk fails with
    /// [`PoolError::WorkerDied`] naming its items); use [`imap`](Self::imap) for per-item errors.
    pub fn map<F, A, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with_chunksize(f, items, None)?.get()
    }

    /// `map` with an explicit chunk size (items sent to a worker as one task).
    pub fn map_with_chunksize<F, A, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with_chunksize(f, items, Some(chunksize))?
            .get()
    }

    /// `Pool.map_async`: like [`map`](Self::map), returning at once.
    pub fn map_async<F, A, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with_chunksize(f, items, None)
    }

    fn map_async_with_chunksize<F, A, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let slot = Slot::new();
        let wrapped = items.into_iter().map(|a| (a,));
        self.map_inner(f, wrapped, chunksize, MapMode::Collect(Arc::clone(&slot)))?;
        Ok(AsyncResult { slot })
    }

    /// `Pool.starmap(f, tuples)`: `f(a, b, ...)` for every argument tuple, in order.
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, items)?.get()
    }

    /// `Pool.starmap_async`: like [`starmap`](Self::starmap), returning at once.
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        let slot = Slot::new();
        self.map_inner(f, items, None, MapMode::Collect(Arc::clone(&slot)))?;
        Ok(AsyncResult { slot })
    }

    /// `Pool.imap(f, items)`: ordered results as they become ready (chunk size 1, as Python).
    pub fn imap<F, A, I>(&self, f: F, items: I) -> Result<IMap<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with_chunksize(f, items, 1)
    }

    /// `imap` with an explicit chunk size.
    pub fn imap_with_chunksize<F, A, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<IMap<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let wrapped = items.into_iter().map(|a| (a,));
        let (shared, len) = self.map_inner(f, wrapped, Some(chunksize), MapMode::Ordered)?;
        Ok(IMap {
            shared,
            next: 0,
            len,
        })
    }

    /// `Pool.imap_unordered(f, items)`: every result once, in completion order.
    pub fn imap_unordered<F, A, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<IMapUnordered<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wrapped = items.into_iter().map(|a| (a,));
        let (_, len) = self.map_inner(f, wrapped, Some(1), MapMode::Unordered(tx))?;
        Ok(IMapUnordered { rx, left: len })
    }

    /// `Pool.close()`: no new tasks; queued ones still run. Then [`join`](Self::join).
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
    }

    /// `Pool.join()`: after `close()`, waits for every task and for the workers to exit.
    /// [`PoolError::StillOpen`] if the pool was neither closed nor terminated.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`PoolError::WaitTimeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_until(Some((Instant::now() + timeout, timeout)))
    }

    fn join_until(&self, deadline: Option<(Instant, Duration)>) -> Result<(), PoolError> {
        let mut st = self.shared.lock();
        if !st.closed && !st.terminated {
            return Err(PoolError::StillOpen);
        }
        // First every task, then the workers (their task channels close once the queue is empty).
        loop {
            if st.tasks.is_empty() {
                for w in st.workers.values_mut() {
                    w.feeder = None;
                }
            }
            if st.workers.is_empty() {
                break;
            }
            st = match deadline {
                None => self
                    .shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner()),
                Some((at, timeout)) => {
                    let now = Instant::now();
                    if now >= at {
                        return Err(PoolError::WaitTimeout(timeout));
                    }
                    self.shared
                        .changed
                        .wait_timeout(st, (at - now).min(TICK))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        drop(st);
        if let Some(collector) = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = collector.join();
        }
        Ok(())
    }

    /// `Pool.terminate()`: kills the workers at once; unfinished tasks fail with
    /// [`PoolError::Terminated`]. Returns once every worker is reaped.
    pub fn terminate(&self) {
        let tasks: Vec<Task> = {
            let mut st = self.shared.lock();
            st.terminated = true;
            st.closed = true;
            st.pending.clear();
            for w in st.workers.values_mut() {
                w.feeder = None;
                w.inflight.clear();
                if let Some(h) = w.handle.as_mut() {
                    let _ = h.kill();
                }
            }
            st.tasks.drain().map(|(_, t)| t).collect()
        };
        for task in tasks {
            run_completer(task.complete, Err(PoolError::Terminated));
        }
        self.shared.changed.notify_all();
        let _ = self.join_until(None);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let joined = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
        if !joined {
            self.terminate();
        }
    }
}
