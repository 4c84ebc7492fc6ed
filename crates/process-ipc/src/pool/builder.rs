//! [`PoolBuilder`]: Python's `Pool(processes, initializer, initargs, maxtasksperchild)`, plus a
//! per-task timeout and a number of retries for a task whose worker dies.

use std::sync::Arc;
use std::time::Duration;

use crate::Wire;
use crate::error::PoolError;
use crate::start::{StartMethod, Target};

use super::Pool;
use super::worker::{run_one, task_offset};

/// What every worker of a pool is started with, and how the pool treats them.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) processes: usize,
    pub(super) max_tasks: Option<usize>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) retries: usize,
    pub(super) init: Option<(isize, Arc<Vec<u8>>)>,
    /// How each worker starts; `None`: [`get_start_method`](crate::get_start_method).
    pub(super) method: Option<StartMethod>,
}

/// Configures a [`Pool`]: `Pool(processes, initializer, initargs, maxtasksperchild)` plus a
/// per-task timeout and [`retries`](Self::retries) for tasks whose worker dies.
///
/// ```
/// use process_ipc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::builder().processes(2).max_tasks_per_child(10).build().unwrap();
/// assert_eq!(pool.size(), 2);
/// assert_eq!(pool.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes: usize,
    max_tasks: Option<usize>,
    task_timeout: Option<Duration>,
    retries: usize,
    init: Option<(isize, Arc<Vec<u8>>)>,
    init_error: Option<PoolError>,
    method: Option<StartMethod>,
    #[cfg(feature = "redis")]
    redis: Option<(String, super::RedisOptions)>,
}

impl PoolBuilder {
    /// A builder with as many processes as the machine has CPUs.
    pub(super) fn new() -> Self {
        Self {
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_tasks: None,
            task_timeout: None,
            retries: 0,
            init: None,
            init_error: None,
            method: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

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
        Args: Wire,
    {
        let _ = f;
        match postcard::to_stdvec(&args) {
            Ok(bytes) => {
                let call = task_offset(run_one::<F, Args>);
                self.init = Some((call, Arc::new(bytes)));
            }
            Err(e) => {
                let message = crate::wire::serialize_message(&args, e);
                self.init_error = Some(PoolError::Serde(message));
            }
        }
        self
    }

    /// `maxtasksperchild`: a worker is replaced after running `k` tasks (chunks count as one).
    /// It leaves between two tasks, never with one in hand.
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

    /// How many times a task whose worker died while running it is run again; 0, the
    /// default, never runs a task twice.
    ///
    /// A worker that ends while running a task (killed, crashed, or the task called
    /// `exit`/`_exit` with any code, 0 included) loses that task. With `retries(n)` the task runs
    /// again, ahead of every pending task, on a fresh worker: one that has run no task yet,
    /// normally the dead one's replacement, never one that has run others (whatever killed the
    /// first run may have been left behind in it); only if no replacement can be started does
    /// it take any worker. It runs up to `n` more times; when its worker dies on its `n + 1`th
    /// run too, it fails with [`PoolError::WorkerDied`], whose `cause` says how many runs it
    /// had. Once lost, it can no longer be cancelled. A task's own panic is not a death (the worker survives it) and is never
    /// retried, nor is a task killed by [`task_timeout`](Self::task_timeout) (it fails with
    /// [`PoolError::TaskTimeout`]). For a `map`, a chunk is the task that runs again, whole:
    /// only tasks that can run twice safely should be retried.
    ///
    /// ```
    /// use process_ipc::Pool;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::builder().processes(2).retries(2).build().unwrap();
    /// assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
    /// ```
    pub fn retries(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// The pool under a context's start method (`multiprocessing.get_context(m).Pool`): how
    /// every worker, replacements included, starts; without it, the process default
    /// ([`get_start_method`](crate::get_start_method), which `PROCESS_IPC_START_METHOD` sets).
    ///
    /// ```
    /// use process_ipc::{Pool, StartMethod};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .start_method(StartMethod::Spawn)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// A pool whose workers run on any host through the Redis at `url` (feature `redis`):
    /// `redis://host:port`, `redis://:password@host:port/db` or `redis+unix:///path/r.sock`.
    /// Workers are this same executable running [`serve_pool`](crate::serve_pool) anywhere;
    /// `processes` becomes the number of workers planned for (`map`'s chunk size follows it).
    /// See [`RedisOptions`](crate::RedisOptions) and the `redis` module's rules for dead
    /// workers, Redis going away and builds.
    ///
    /// ```no_run
    /// use process_ipc::Pool;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// # fn main() -> Result<(), process_ipc::PoolError> {
    /// // Workers: `process_ipc::serve_pool("redis://10.0.0.5:6379", 8)` on each host.
    /// let pool = Pool::builder().redis("redis://10.0.0.5:6379").processes(16).build()?;
    /// assert_eq!(pool.map(square, 0..4u64)?, vec![0, 1, 4, 9]);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        let options = self.redis.take().map(|(_, o)| o).unwrap_or_default();
        self.redis = Some((url.into(), options));
        self
    }

    /// [`redis`](Self::redis) with [`RedisOptions`](crate::RedisOptions): namespace, I/O
    /// timeout, heartbeat scan period, frame limit.
    #[cfg(feature = "redis")]
    pub fn redis_options(mut self, options: super::RedisOptions) -> Self {
        let url = self.redis.take().map(|(u, _)| u).unwrap_or_default();
        self.redis = Some((url, options));
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`PoolError::NoWorkers`] for 0 processes; [`PoolError::Serde`] if the initializer's
    /// arguments do not encode; [`PoolError::Spawn`] if a worker cannot be started.
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
            retries: self.retries,
            init: self.init,
            method: self.method,
        };
        #[cfg(feature = "redis")]
        if let Some((url, options)) = self.redis {
            super::redis::unsupported(
                config.init.is_some(),
                config.max_tasks.is_some(),
                config.task_timeout.is_some(),
            )?;
            return Pool::start_redis(&url, options, &config);
        }
        Pool::start(config)
    }
}
