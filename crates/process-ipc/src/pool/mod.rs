//! `Pool`: reused worker processes that survive their workers dying; `AsyncResult`, and the
//! `map` family's iterators.
//!
//! How it stays robust: the parent assigns each task to one worker and remembers which tasks
//! each worker holds, in order ([`schedule`], pure bookkeeping). A worker runs its tasks in
//! that order and answers on its own channel ([`worker`]); a watcher thread per worker learns
//! of its exit from the process itself, so the parent knows exactly which task was running
//! (the oldest one it held): that task fails with the worker's pid and signal, the tasks queued
//! behind it (never started) go back to the pending queue, and a new worker takes the dead
//! one's place ([`collector`]). A task that ends its worker itself (`exit(0)` included) fails
//! the same way, once: a task is never run twice unless the pool was built with
//! [`PoolBuilder::retries`], which runs a task whose worker died again, on a fresh worker, up
//! to that many times.
//! A feeder thread per worker ships its tasks in batches; results come back through the
//! worker's result ring, a [`crate::ring::Ring`] in shared memory (one writer, the worker; one
//! reader, the collector), so the parent wakes once for many ([`doorbell`]). The collector
//! checks a ring before each read: a damaged ring is its worker's death, never a hang.
//!
//! Tasks are plain functions like [`Process`](crate::Process) targets; their arguments and
//! results are serde values encoded as bytes, so queue handles (which carry file descriptors)
//! cannot be task arguments: pass them to a `Process`, or use a [`Manager`](crate::Manager)
//! queue, as in Python.
//!
//! With the `redis` feature, a pool can instead run its tasks on workers on any host, through
//! Redis Streams (`redis/`): `backend` is the seam, the API above it is the same.
//!
//! Layers: `mod.rs` (the API) → `builder` → `backend` → `collector`, `redis` → `launch`,
//! `results`, `worker` → `doorbell`, `schedule`, [`crate::ring`].

mod backend;
mod builder;
mod collector;
mod doorbell;
mod interrupt;
mod launch;
#[cfg(feature = "redis")]
mod redis;
mod results;
mod schedule;
mod wait;
mod worker;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Wire;
use crate::error::PoolError;
use crate::start::Target;

pub use builder::PoolBuilder;
#[cfg(all(feature = "redis", feature = "test-fault"))]
#[doc(hidden)]
pub use redis::__scribble_redis_task;
#[cfg(feature = "redis")]
pub use redis::{PoolWorkers, RedisOptions, build_id, serve_pool};
pub use results::{AsyncResult, IMap, IMapUnordered};
pub use wait::{AsCompleted, ReturnWhen, Waited, as_completed, wait};
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub use worker::scribble_result_ring;

use backend::Backend;
use builder::Config;
use collector::{Completer, Describe};
use results::{Canceller, MapMode, MapShared, ResultSlot};
use schedule::TaskId;
use worker::{run_chunk, run_one, task_offset};

/// Python's keyword arguments of the `map` family, in one value: `chunksize`, and (for
/// [`Pool::imap_with`]) whether results come in completion order.
///
/// ```
/// use process_ipc::{MapOptions, Pool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let squares = pool.map_with(square, 0..100u64, MapOptions::new().chunksize(8)).unwrap();
/// assert_eq!(squares[99], 99 * 99);
/// let mut any_order: Vec<u64> = pool
///     .imap_with(square, 0..10u64, MapOptions::new().chunksize(2).unordered())
///     .unwrap()
///     .map(Result::unwrap)
///     .collect();
/// any_order.sort_unstable();
/// assert_eq!(any_order, vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    chunksize: Option<usize>,
    unordered: bool,
}

impl MapOptions {
    /// Python's defaults: automatic chunk size for `map` (1 for `imap`), input order.
    pub fn new() -> Self {
        Self::default()
    }

    /// `chunksize`: items sent to a worker as one task; 0 makes the call
    /// [`PoolError::ZeroChunksize`] (as the ThreadPool's, and Python's `ValueError`).
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// Results in completion order (`imap_unordered`); `map` keeps input order regardless.
    pub fn unordered(mut self) -> Self {
        self.unordered = true;
        self
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
/// assert_eq!(pool.size(), 2);
/// assert_eq!(pool.map(square, 0..5u64).unwrap(), vec![0, 1, 4, 9, 16]);
/// let pending = pool.apply_async(square, (7,)).unwrap();
/// assert_eq!(pending.get().unwrap(), 49);
/// ```
///
/// A worker killed mid-task fails only the task it was running (with its pid and the signal);
/// it is replaced and every other task completes. Dropping the pool terminates and reaps its
/// workers.
pub struct Pool {
    shared: Backend,
    collector: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

/// A submitted map: its shared result state, its item count and its tasks.
type Submitted<R> = (Arc<MapShared<R>>, usize, Vec<TaskId>);

/// The `chunksize` given, if any; 0 is [`PoolError::ZeroChunksize`].
fn checked_chunksize(chunksize: Option<usize>) -> Result<Option<usize>, PoolError> {
    match chunksize {
        Some(0) => Err(PoolError::ZeroChunksize),
        other => Ok(other),
    }
}

/// Python's default `map` chunk size: `ceil(len / (4 * processes))`.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes).max(1)
}

fn serde_error(e: postcard::Error) -> PoolError {
    PoolError::Serde(e.to_string())
}

/// Encodes task data; a failure keeps the `Serialize` impl's own message.
fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PoolError> {
    postcard::to_stdvec(value)
        .map_err(|e| PoolError::Serde(crate::wire::serialize_message(value, e)))
}

impl Pool {
    /// `Pool(n)`: starts `n` worker processes; `n == 0` is [`PoolError::NoWorkers`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// A builder with Python's options: initializer, max tasks per child; and a per-task timeout
    /// and retries for a task whose worker dies.
    /// It starts with as many processes as the machine has CPUs.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    fn start(config: Config) -> Result<Pool, PoolError> {
        let (shared, collector) = collector::start(config)?;
        interrupt::register(&shared);
        Ok(Pool {
            shared: Backend::Local(shared),
            collector: Mutex::new(Some(collector)),
        })
    }

    /// A pool on Redis (see [`PoolBuilder::redis`]).
    #[cfg(feature = "redis")]
    fn start_redis(url: &str, options: RedisOptions, config: &Config) -> Result<Pool, PoolError> {
        let (shared, reader) = redis::start(url, options, config.processes, config.retries)?;
        Ok(Pool {
            shared: Backend::Redis(shared),
            collector: Mutex::new(Some(reader)),
        })
    }

    /// The number of worker processes the pool keeps (Python's `processes`).
    pub fn size(&self) -> usize {
        self.shared.size()
    }

    /// The pids of the current workers (they change as workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// How a result withdraws its tasks: through the pool, while the pool exists.
    fn canceller(&self, ids: Vec<TaskId>) -> Canceller {
        self.shared.canceller(ids)
    }

    /// `Pool.apply(f, args)`: runs `f(args...)` in a worker and waits for the value.
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: Target<Args>,
        Args: Wire,
        F::Output: Wire,
    {
        self.apply_async(f, args)?.get()
    }

    /// `Pool.apply_async(f, args)`: queues `f(args...)` and returns at once. Python's
    /// `callback` and `error_callback` are [`AsyncResult::add_done_callback`].
    pub fn apply_async<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Wire,
        F::Output: Wire,
    {
        let _ = f;
        let bytes = encode(&args)?;
        let slot = ResultSlot::<F::Output>::new();
        let filled = Arc::clone(&slot);
        let complete: Completer = Box::new(move |result| {
            filled.set(result.and_then(|b| postcard::from_bytes(&b).map_err(serde_error)));
        });
        let call = task_offset(run_one::<F, Args>);
        let what: Describe = Box::new(|| format!("apply_async({})", std::any::type_name::<F>()));
        let ids = self.shared.submit(vec![(call, bytes, what, complete)])?;
        Ok(AsyncResult::new(slot, Some(self.canceller(ids))))
    }

    /// Splits `items` into chunks and submits one task per chunk; returns the map's shared
    /// state and its length.
    fn submit_map<F, Args, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        mode: MapMode<F::Output>,
    ) -> Result<Submitted<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = Args>,
    {
        let _ = f;
        let items: Vec<Args> = items.into_iter().collect();
        let len = items.len();
        let chunk = chunksize
            .unwrap_or_else(|| auto_chunksize(len, self.size()))
            .max(1);
        let chunks = len.div_ceil(chunk);
        let shared = MapShared::new(chunks, chunk, mode);
        if chunks == 0 {
            return Ok((shared, 0, Vec::new()));
        }
        let call = task_offset(run_chunk::<F, Args>);
        let mut tasks = Vec::with_capacity(chunks);
        for (i, part) in items.chunks(chunk).enumerate() {
            let start = i * chunk;
            let n = part.len();
            let bytes = encode(part)?;
            let target = Arc::clone(&shared);
            let complete: Completer = Box::new(move |result| {
                let values = result.and_then(|b| postcard::from_bytes(&b).map_err(serde_error));
                target.complete_chunk(i, n, values);
            });
            let what: Describe = Box::new(move || {
                format!(
                    "items {start}..{} of a map of {}",
                    start + n,
                    std::any::type_name::<F>()
                )
            });
            tasks.push((call, bytes, what, complete));
        }
        let ids = self.shared.submit(tasks)?;
        Ok((shared, len, ids))
    }

    fn collect_async<F, Args, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Target<Args>,
        Args: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = Args>,
    {
        let slot = ResultSlot::new();
        let (_, _, ids) =
            self.submit_map(f, items, chunksize, MapMode::Collect(Arc::clone(&slot)))?;
        Ok(AsyncResult::new(slot, Some(self.canceller(ids))))
    }

    /// `Pool.map(f, items)`: `f(item)` for every item, in order, with Python's automatic chunk
    /// size. The first failed item's error is returned (a lost chunk fails with
    /// [`PoolError::WorkerDied`] naming its items); use [`imap`](Self::imap) for per-item errors.
    pub fn map<F, A, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)?.get()
    }

    /// `Pool.map(f, items, chunksize=...)`: [`map`](Self::map) with [`MapOptions`].
    pub fn map_with<F, A, I>(
        &self,
        f: F,
        items: I,
        options: MapOptions,
    ) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = A>,
    {
        let wrapped = items.into_iter().map(|a| (a,));
        let chunksize = checked_chunksize(options.chunksize)?;
        self.collect_async(f, wrapped, chunksize)?.get()
    }

    /// `Pool.map_async`: like [`map`](Self::map), returning at once.
    pub fn map_async<F, A, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Target<(A,)>,
        A: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = A>,
    {
        self.collect_async(f, items.into_iter().map(|a| (a,)), None)
    }

    /// `Pool.starmap(f, tuples)`: `f(a, b, ...)` for every argument tuple, in order.
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<Args>,
        Args: Wire,
        F::Output: Wire,
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
        Args: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = Args>,
    {
        self.collect_async(f, items, None)
    }

    /// `Pool.imap(f, items)`: ordered results as they become ready (chunk size 1, as Python).
    pub fn imap<F, A, I>(&self, f: F, items: I) -> Result<IMap<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, MapOptions::new())
    }

    /// `Pool.imap_unordered(f, items)`: every result once, in completion order.
    pub fn imap_unordered<F, A, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<IMapUnordered<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, MapOptions::new().unordered())
    }

    /// `Pool.imap(f, items, chunksize=...)` and `imap_unordered`: [`imap`](Self::imap) with
    /// [`MapOptions`] (chunk size 1 unless given).
    pub fn imap_with<F, A, I>(
        &self,
        f: F,
        items: I,
        options: MapOptions,
    ) -> Result<IMap<F::Output>, PoolError>
    where
        F: Target<(A,)>,
        A: Wire,
        F::Output: Wire,
        I: IntoIterator<Item = A>,
    {
        let wrapped = items.into_iter().map(|a| (a,));
        let chunksize = Some(checked_chunksize(options.chunksize)?.unwrap_or(1));
        if options.unordered {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (_, len, _) = self.submit_map(f, wrapped, chunksize, MapMode::Unordered(tx))?;
            Ok(IMap::unordered(rx, len))
        } else {
            let (shared, len, _) = self.submit_map(f, wrapped, chunksize, MapMode::Ordered)?;
            Ok(IMap::ordered(shared, len))
        }
    }

    /// `Pool.close()`: no new tasks; queued ones still run. Then [`join`](Self::join).
    pub fn close(&self) {
        self.shared.close();
    }

    /// `Pool.join()`: after `close()`, waits for every task and for the workers to exit.
    /// [`PoolError::StillOpen`] if the pool was neither closed nor terminated.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`PoolError::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_until(Instant::now().checked_add(timeout).map(|at| (at, timeout)))
    }

    fn join_until(&self, deadline: Option<(Instant, Duration)>) -> Result<(), PoolError> {
        self.shared.join_until(deadline)?;
        let collector = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(collector) = collector {
            let _ = collector.join();
        }
        Ok(())
    }

    /// `Pool.terminate()`: kills the workers at once; unfinished tasks fail with
    /// [`PoolError::Terminated`]. Returns once every worker is reaped.
    pub fn terminate(&self) {
        self.shared.terminate();
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
