//! [`ThreadPool`]: Python's `multiprocessing.pool.ThreadPool`, on worker threads of its own
//! (so that a refused thread is an error, and a queued task can be cancelled).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::{PoolError, SpawnRefused};
pub use crate::map_options::MapOptions;
use crate::registry;
use crate::results::{AsyncResult, TaskCell, TaskRun};
use crate::thread::Target;

mod imap;
mod map;

type Job = Box<dyn FnOnce() + Send + 'static>;

enum Message {
    Run(Job),
    /// One worker exits (sent once per worker by `close`).
    Stop,
}

/// What the workers share with the pool.
struct Shared {
    /// Set by `terminate`: workers drop the jobs still queued instead of running them.
    terminated: AtomicBool,
}

/// Whether a blocking `map`'s calling thread maps runs too while it waits.
const CALLER_HELPS: bool = true;

static NEXT_POOL_NUMBER: AtomicU64 = AtomicU64::new(1);

/// Options of a [`ThreadPool`] beyond its size (Python: `ThreadPool(processes=..)`).
#[derive(Debug, Clone, Default)]
pub struct ThreadPoolBuilder {
    threads: Option<usize>,
    name: Option<String>,
}

impl ThreadPoolBuilder {
    /// The number of workers (default: the machine's available parallelism, as Python's
    /// `os.cpu_count()`); 0 is [`PoolError::NoThreads`] at [`build`](ThreadPoolBuilder::build).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Names the workers `<name>-<i>` (default `ThreadPool-<n>-<i>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Starts the workers; [`PoolError::Spawn`] (naming the OS error) if the system refuses
    /// one, after stopping those already started.
    pub fn build(self) -> Result<ThreadPool, PoolError> {
        let threads = match self.threads {
            Some(threads) => threads,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if threads == 0 {
            return Err(PoolError::NoThreads { threads });
        }
        let prefix = self.name.unwrap_or_else(|| {
            format!(
                "ThreadPool-{}",
                NEXT_POOL_NUMBER.fetch_add(1, Ordering::Relaxed)
            )
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Message>();
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        let (exit_tx, exited) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::new(Shared {
            terminated: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(threads);
        for worker in 0..threads {
            let (rx, exit_tx, shared) = (Arc::clone(&rx), exit_tx.clone(), Arc::clone(&shared));
            let name: Arc<str> = Arc::from(format!("{prefix}-{worker}"));
            match registry::spawn(name, true, move || work(&rx, &shared, exit_tx)) {
                Ok(spawned) => handles.push(spawned.handle),
                Err(err) => {
                    for _ in 0..handles.len() {
                        let _ = tx.send(Message::Stop);
                    }
                    for handle in handles {
                        let _ = handle.join();
                    }
                    return Err(PoolError::Spawn(Box::new(SpawnRefused {
                        threads,
                        worker,
                        error: err.to_string(),
                        kind: err.kind(),
                    })));
                }
            }
        }
        Ok(ThreadPool {
            tx,
            threads,
            shared,
            closed: AtomicBool::new(false),
            next_task: AtomicU64::new(0),
            handles: parking_lot::Mutex::new(handles),
            exited,
        })
    }
}

/// A worker's loop: run jobs until told to stop or the pool is gone.
///
/// Workers take turns at the queue: one waits in `recv` while the others wait for the turn
/// (as the `threadpool` crate does). With every idle worker spinning in `recv` instead, they
/// take the CPU from the thread that submits the work, which on a small machine costs more
/// than the handoff. Only a worker that has just finished a job looks on for [`LOOK_FOR`],
/// yielding its CPU between looks, before it sleeps: a `map` that follows another (or its
/// own helpers' jobs, sent together) then finds the workers awake instead of paying a
/// wake-up each, which on a VM whose other CPU idles is tens of microseconds.
fn work(rx: &parking_lot::Mutex<Receiver<Message>>, shared: &Shared, _exit: Sender<()>) {
    let mut just_worked = false;
    loop {
        let message = if just_worked {
            next_soon(rx)
        } else {
            rx.lock().recv()
        };
        just_worked = true;
        let Ok(Message::Run(job)) = message else {
            return;
        };
        if shared.terminated.load(Ordering::Acquire) {
            // Dropping the job cancels its task (see `TaskRun`).
            drop(job);
        } else {
            #[cfg(feature = "trace")]
            let _task = crate::trace::task_span();
            job();
        }
    }
}

/// How long a worker that has just finished a job looks for the next before it sleeps.
const LOOK_FOR: Duration = Duration::from_micros(50);

/// The next message, looked for (turn and queue both) for [`LOOK_FOR`], then waited for.
fn next_soon(
    rx: &parking_lot::Mutex<Receiver<Message>>,
) -> Result<Message, crossbeam_channel::RecvError> {
    let until = std::time::Instant::now() + LOOK_FOR;
    loop {
        if let Some(turn) = rx.try_lock() {
            match turn.try_recv() {
                Ok(message) => return Ok(message),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err(crossbeam_channel::RecvError);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
        }
        if std::time::Instant::now() >= until {
            return rx.lock().recv();
        }
        std::thread::yield_now();
    }
}

/// Python's `multiprocessing.pool.ThreadPool(n)`: `n` worker threads running submitted tasks.
///
/// A task that panics is an `Err` for that task only ([`PoolError::TaskPanicked`]); the pool
/// goes on. Dropping the pool lets queued tasks finish on the workers, then they exit.
///
/// ```python
/// with ThreadPool(2) as pool:
///     assert pool.map(square, range(4)) == [0, 1, 4, 9]
///     assert pool.apply_async(add, (2, 3)).get() == 5
/// ```
/// ```
/// use threads_sync::ThreadPool;
/// fn add(a: u64, b: u64) -> u64 { a + b }
/// let pool = ThreadPool::new(2)?;
/// assert_eq!(pool.size(), 2);
/// assert_eq!(pool.map(|x: u64| x * x, 0..4)?, vec![0, 1, 4, 9]);
/// assert_eq!(pool.apply_async(add, (2, 3))?.get()?, 5);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), threads_sync::PoolError>(())
/// ```
pub struct ThreadPool {
    tx: Sender<Message>,
    threads: usize,
    shared: Arc<Shared>,
    closed: AtomicBool,
    next_task: AtomicU64,
    handles: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// Disconnected once every worker has exited.
    exited: Receiver<()>,
}

impl ThreadPool {
    /// A pool of `threads` workers; [`PoolError::NoThreads`] for 0, [`PoolError::Spawn`] if
    /// the OS refuses a thread.
    pub fn new(threads: usize) -> Result<Self, PoolError> {
        Self::builder().threads(threads).build()
    }

    /// A builder for a pool with options (worker names, a default size).
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// The number of worker threads.
    pub fn size(&self) -> usize {
        self.threads
    }

    /// The next task number; [`PoolError::Closed`] after `close`.
    fn next_task(&self) -> Result<u64, PoolError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        Ok(self.next_task.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues `job` as task number `task`, returning its result.
    fn submit<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError> {
        let task = self.next_task()?;
        let cell = TaskCell::new();
        let run = TaskRun::new(Arc::clone(&cell), task);
        // After the workers have exited (a `close` racing this call) the send fails and
        // dropping the job cancels the task, so its `get` does not hang.
        let _ = self.tx.send(Message::Run(Box::new(move || run.run(job))));
        Ok(AsyncResult { task, cell })
    }

    /// Runs `target(args...)` on a worker and returns at once (Python: `apply_async(f, args)`).
    pub fn apply_async<Args, F>(
        &self,
        target: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Send + 'static,
    {
        self.submit(move || target.call(args))
    }

    /// Runs `target(args...)` on a worker and waits for its value (Python: `apply(f, args)`).
    pub fn apply<Args, F>(&self, target: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: Target<Args>,
        Args: Send + 'static,
    {
        self.apply_async(target, args)?.get()
    }

    /// Refuses new tasks from now on (Python: `close`); queued tasks still run, then the
    /// workers exit.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            for _ in 0..self.threads {
                let _ = self.tx.send(Message::Stop);
            }
        }
    }

    /// Closes the pool and cancels every task not started yet (Python: `terminate`, which
    /// cannot stop a running thread either): their results are [`PoolError::Cancelled`].
    pub fn terminate(&self) {
        self.shared.terminated.store(true, Ordering::Release);
        self.close();
    }

    /// Waits for every submitted task to finish and the workers to exit;
    /// [`PoolError::StillRunning`] before `close`.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_inner(None)
    }

    /// Like [`join`](ThreadPool::join) for at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_inner(Some(timeout))
    }

    fn join_inner(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        if !self.closed.load(Ordering::Acquire) {
            return Err(PoolError::StillRunning);
        }
        // Only disconnection ends the wait: nothing is ever sent.
        match timeout {
            None => {
                let _ = self.exited.recv();
            }
            Some(timeout) => {
                if let Err(RecvTimeoutError::Timeout) = self.exited.recv_timeout(timeout) {
                    return Err(PoolError::Timeout { timeout });
                }
            }
        }
        // Every worker's body has returned: these joins do not block long.
        for handle in self.handles.lock().drain(..) {
            let _ = handle.join();
        }
        Ok(())
    }
}

impl Drop for ThreadPool {
    /// Lets queued tasks finish, then the workers exit (they are not waited for).
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("queued", &self.tx.len())
            .finish()
    }
}
