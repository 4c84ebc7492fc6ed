//! What a [`ThreadPool`](crate::ThreadPool) hands back for one task: [`AsyncResult`] (and the
//! cells behind it). Many results, in order or as they finish, are [`IMap`](crate::IMap), a
//! layer above (it uses `as_completed`, which uses this).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::error::{PoolError, panic_message};

type Callback<R> = Box<dyn FnOnce(Result<&R, &PoolError>) + Send + 'static>;

/// The life of one task, under its cell's lock.
enum Slot<R> {
    /// Queued, not started: [`AsyncResult::cancel`] can still stop it.
    Pending,
    Running,
    /// Done; its done-callbacks are running with the outcome (waiters keep waiting).
    Completing,
    Ready(Result<R, PoolError>),
    /// The value was taken by a `get`; how the task had ended.
    Taken(Ended),
}

/// How a task whose value was taken had ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Ok,
    Raised,
    Cancelled,
}

impl Ended {
    fn of<R>(outcome: &Result<R, PoolError>) -> Self {
        match outcome {
            Ok(_) => Ended::Ok,
            Err(PoolError::Cancelled { .. }) => Ended::Cancelled,
            Err(_) => Ended::Raised,
        }
    }
}

struct State<R> {
    slot: Slot<R>,
    /// Who to tell when the task is done; boxed and absent until someone asks, so that the
    /// common task's cell stays small (one small allocation).
    listeners: Option<Box<Listeners<R>>>,
}

struct Listeners<R> {
    callbacks: Vec<Callback<R>>,
    /// `wait`/`as_completed` calls to tell: (their id, their channel, this task's index there).
    waiters: Vec<(u64, Sender<usize>, usize)>,
}

impl<R> State<R> {
    fn listeners(&mut self) -> &mut Listeners<R> {
        self.listeners.get_or_insert_with(|| {
            Box::new(Listeners {
                callbacks: Vec::new(),
                waiters: Vec::new(),
            })
        })
    }

    /// The done-callbacks registered so far, taken out.
    fn take_callbacks(&mut self) -> Vec<Callback<R>> {
        self.listeners
            .as_mut()
            .map(|l| std::mem::take(&mut l.callbacks))
            .unwrap_or_default()
    }

    fn has_callbacks(&self) -> bool {
        self.listeners
            .as_ref()
            .is_some_and(|l| !l.callbacks.is_empty())
    }
}

/// The shared cell of one task: filled once by its worker (or by `cancel`), read by its
/// [`AsyncResult`]. One allocation per task.
pub(crate) struct TaskCell<R> {
    state: parking_lot::Mutex<State<R>>,
    settled: parking_lot::Condvar,
}

impl<R> TaskCell<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(TaskCell {
            state: parking_lot::Mutex::new(State {
                slot: Slot::Pending,
                listeners: None,
            }),
            settled: parking_lot::Condvar::new(),
        })
    }

    /// Pending → Running; `false` if the task was cancelled (then it must not run).
    pub(crate) fn begin(&self) -> bool {
        let mut state = self.state.lock();
        if matches!(state.slot, Slot::Pending) {
            state.slot = Slot::Running;
            true
        } else {
            false
        }
    }

    /// For a task done in parts ([`Gather`]): Pending → Running, and `true` while it runs;
    /// `false` once cancelled (the part must not run).
    pub(crate) fn begin_part(&self) -> bool {
        let mut state = self.state.lock();
        match state.slot {
            Slot::Pending => {
                state.slot = Slot::Running;
                true
            }
            Slot::Running => true,
            _ => false,
        }
    }

    /// Records the outcome of a task that began (or was cancelled), runs done-callbacks
    /// (outside the lock, so a callback may use the pool), then wakes waiters.
    pub(crate) fn finish(&self, outcome: Result<R, PoolError>) {
        let mut state = self.state.lock();
        if !state.has_callbacks() {
            self.settle(state, outcome);
            return;
        }
        state.slot = Slot::Completing;
        let callbacks = state.take_callbacks();
        drop(state);
        self.run_callbacks(callbacks, outcome);
    }

    /// Runs `callbacks` (and any added meanwhile) with `outcome`, then stores it.
    fn run_callbacks(&self, mut callbacks: Vec<Callback<R>>, outcome: Result<R, PoolError>) {
        loop {
            for callback in callbacks.drain(..) {
                let called = catch_unwind(AssertUnwindSafe(|| callback(outcome.as_ref())));
                if let Err(payload) = called {
                    log::warn!("a done-callback panicked: {}", panic_message(&*payload));
                }
            }
            let mut state = self.state.lock();
            if !state.has_callbacks() {
                self.settle(state, outcome);
                return;
            }
            callbacks = state.take_callbacks();
        }
    }

    fn settle(
        &self,
        mut state: parking_lot::MutexGuard<'_, State<R>>,
        outcome: Result<R, PoolError>,
    ) {
        state.slot = Slot::Ready(outcome);
        let waiters = match state.listeners.take() {
            Some(listeners) if !listeners.waiters.is_empty() => listeners.waiters,
            _ => {
                drop(state);
                self.settled.notify_all();
                return;
            }
        };
        drop(state);
        self.settled.notify_all();
        for (_, tx, index) in waiters {
            // A waiter that gave up has dropped its receiver: nothing to tell.
            let _ = tx.send(index);
        }
    }

    /// Pending → cancelled; `true` also if it was cancelled already (as Python's).
    fn cancel(&self, task: u64) -> bool {
        let mut state = self.state.lock();
        match state.slot {
            Slot::Pending => {}
            Slot::Ready(Err(PoolError::Cancelled { .. })) | Slot::Taken(Ended::Cancelled) => {
                return true;
            }
            _ => return false,
        }
        state.slot = Slot::Running;
        drop(state);
        self.finish(Err(PoolError::Cancelled { task }));
        true
    }

    /// Adds a waiter unless the task is settled already; returns whether it is.
    pub(crate) fn register(&self, id: u64, tx: &Sender<usize>, index: usize) -> bool {
        let mut state = self.state.lock();
        match state.slot {
            Slot::Ready(_) | Slot::Taken(_) => true,
            _ => {
                state.listeners().waiters.push((id, tx.clone(), index));
                false
            }
        }
    }

    pub(crate) fn unregister(&self, id: u64) {
        if let Some(listeners) = self.state.lock().listeners.as_mut() {
            listeners.waiters.retain(|(w, _, _)| *w != id);
        }
    }

    /// Whether the task ended in an error other than a cancel (`FirstException`).
    pub(crate) fn raised(&self) -> bool {
        match &self.state.lock().slot {
            Slot::Ready(Err(PoolError::Cancelled { .. })) => false,
            Slot::Ready(outcome) => outcome.is_err(),
            Slot::Taken(ended) => *ended == Ended::Raised,
            _ => false,
        }
    }
}

/// The worker's side of one task: runs it if not cancelled, and settles the cell even if the
/// job is dropped unrun (a terminated pool, a pool dropped with work queued after `close`).
pub(crate) struct TaskRun<R> {
    /// `None` once `run` took it.
    cell: Option<Arc<TaskCell<R>>>,
    task: u64,
}

impl<R> TaskRun<R> {
    pub(crate) fn new(cell: Arc<TaskCell<R>>, task: u64) -> Self {
        TaskRun {
            cell: Some(cell),
            task,
        }
    }

    /// Runs `job` unless the task was cancelled; a panic becomes [`PoolError::TaskPanicked`].
    pub(crate) fn run(mut self, job: impl FnOnce() -> R) {
        let Some(cell) = self.cell.take() else { return };
        if !cell.begin() {
            return;
        }
        let outcome = catch_unwind(AssertUnwindSafe(job)).map_err(|p| PoolError::TaskPanicked {
            task: self.task,
            message: panic_message(&*p),
        });
        cell.finish(outcome);
    }
}

impl<R> Drop for TaskRun<R> {
    fn drop(&mut self) {
        // A job dropped without running: its task is cancelled, so no `get` waits forever.
        if let Some(cell) = self.cell.take() {
            cell.cancel(self.task);
        }
    }
}

/// The pending outcome of a task submitted to a [`ThreadPool`](crate::ThreadPool) (Python:
/// `AsyncResult`, with `concurrent.futures.Future`'s `cancel` and `add_done_callback`).
pub struct AsyncResult<R> {
    pub(crate) task: u64,
    pub(crate) cell: Arc<TaskCell<R>>,
}

impl<R> AsyncResult<R> {
    /// The task's submission number within its pool.
    pub fn task(&self) -> u64 {
        self.task
    }

    /// Waits up to `timeout` (forever for `None`) for the outcome; returns whether it is in
    /// (or was already taken).
    fn poll(&self, timeout: Option<Duration>) -> bool {
        let mut state = self.cell.state.lock();
        let deadline = timeout.map(crate::deadline_after);
        loop {
            if let Slot::Ready(_) | Slot::Taken(_) = state.slot {
                return true;
            }
            match deadline {
                None => self.cell.settled.wait(&mut state),
                Some(deadline) => {
                    if self
                        .cell
                        .settled
                        .wait_until(&mut state, deadline)
                        .timed_out()
                    {
                        return matches!(state.slot, Slot::Ready(_) | Slot::Taken(_));
                    }
                }
            }
        }
    }

    fn take(&self) -> Result<R, PoolError> {
        let mut state = self.cell.state.lock();
        match std::mem::replace(&mut state.slot, Slot::Taken(Ended::Ok)) {
            Slot::Ready(outcome) => {
                state.slot = Slot::Taken(Ended::of(&outcome));
                outcome
            }
            Slot::Taken(ended) => {
                state.slot = Slot::Taken(ended);
                Err(PoolError::AlreadyTaken)
            }
            other => {
                state.slot = other;
                unreachable!("take() follows a poll that saw the task settled")
            }
        }
    }

    /// Waits for the task and returns its value, or [`PoolError::TaskPanicked`] /
    /// [`PoolError::Cancelled`].
    pub fn get(self) -> Result<R, PoolError> {
        self.poll(None);
        self.take()
    }

    /// Like [`get`](AsyncResult::get) for at most `timeout`; after [`PoolError::Timeout`] it can
    /// be asked again, after a value was returned it is [`PoolError::AlreadyTaken`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        if self.poll(Some(timeout)) {
            self.take()
        } else {
            Err(PoolError::Timeout { timeout })
        }
    }

    /// Whether the task has finished (or was cancelled).
    pub fn ready(&self) -> bool {
        self.poll(Some(Duration::ZERO))
    }

    /// Whether the task finished without panicking: `None` until it is ready; unchanged
    /// after its value is taken. A cancelled task is `Some(false)`.
    pub fn successful(&self) -> Option<bool> {
        match &self.cell.state.lock().slot {
            Slot::Ready(outcome) => Some(outcome.is_ok()),
            Slot::Taken(ended) => Some(*ended == Ended::Ok),
            _ => None,
        }
    }

    /// Waits until the task has finished.
    pub fn wait(&self) {
        self.poll(None);
    }

    /// Waits at most `timeout` for the task; returns whether it has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.poll(Some(timeout))
    }

    /// Stops the task if no worker has started it (Python's `Future.cancel()`): returns
    /// whether it is cancelled (so `true` again on a second call). `false` once the task
    /// runs or is done. A cancelled task's result is
    /// [`PoolError::Cancelled`].
    pub fn cancel(&self) -> bool {
        self.cell.cancel(self.task)
    }

    /// Whether the task was cancelled before it started.
    pub fn cancelled(&self) -> bool {
        matches!(
            self.cell.state.lock().slot,
            Slot::Ready(Err(PoolError::Cancelled { .. })) | Slot::Taken(Ended::Cancelled)
        )
    }

    /// Calls `callback` with the outcome once the task is done (Python's
    /// `add_done_callback`, and `apply_async`'s `callback`/`error_callback`): on the worker
    /// that ran it, before anyone waiting on the result wakes, or at once, in this thread,
    /// if the task is done already. After the value was taken by `get`, the callback gets
    /// [`PoolError::AlreadyTaken`]. A panicking callback is logged and ignored. The callback
    /// must not wait for this same result (it would wait for itself).
    pub fn add_done_callback(&self, callback: impl FnOnce(Result<&R, &PoolError>) + Send + 'static)
    where
        R: 'static,
    {
        let mut state = self.cell.state.lock();
        match std::mem::replace(&mut state.slot, Slot::Completing) {
            Slot::Ready(outcome) => {
                // Call outside the lock, with the slot marked busy so that `get` waits.
                drop(state);
                self.cell.run_callbacks(vec![Box::new(callback)], outcome);
            }
            Slot::Taken(ended) => {
                state.slot = Slot::Taken(ended);
                drop(state);
                callback(Err(&PoolError::AlreadyTaken));
            }
            other => {
                state.slot = other;
                state.listeners().callbacks.push(Box::new(callback));
            }
        }
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("task", &self.task)
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    /// A result that is settled already with `value` (an empty `map_async`).
    pub(crate) fn settled(task: u64, value: R) -> Self {
        let cell = TaskCell::new();
        cell.begin();
        cell.finish(Ok(value));
        AsyncResult { task, cell }
    }
}

/// One chunk's values, each item's panic caught on its own.
pub(crate) type Chunk<R> = Vec<Result<R, String>>;
