//! [`PoolBuilder`]: Python's `Pool(processes, initializer, initargs, maxtasksperchild)`, plus a
//! per-task timeout.

use std::sync::Arc;
use std::time::Duration;

use crate::Wire;
use crate::error::PoolError;
use crate::start::Target;

use super::Pool;
use super::worker::{run_one, task_offset};

/// What every worker of a pool is started with, and how the pool treats them.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) processes: usize,
    pub(super) max_tasks: Option<usize>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) init: Option<(isize, Arc<Vec<u8>>)>,
}

/// Configures a [`Pool`]: `Pool(processes, initializer, initargs, maxtasksperchild)` plus a
/// per-task timeout.
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
    init: Option<(isize, Arc<Vec<u8>>)>,
    init_error: Option<PoolError>,
}

impl PoolBuilder {
    /// A builder with as many processes as the machine has CPUs.
    pub(super) fn new() -> Self {
        Self {
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_tasks: None,
            task_timeout: None,
            init: None,
            init_error: None,
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
        Pool::start(Config {
            processes: self.processes,
            max_tasks: self.max_tasks,
            task_timeout: self.task_timeout,
            init: self.init,
        })
    }
}
