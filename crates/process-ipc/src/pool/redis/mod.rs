//! A Pool whose workers run on any host, through Redis Streams (feature `redis`).
//!
//! The same [`Pool`](crate::Pool) type and API as the local pool, with a second backend:
//! [`PoolBuilder::redis`](crate::PoolBuilder::redis) builds a pool whose tasks go to the stream
//! `mt:<namespace>:tasks`, read through the consumer group `workers` by worker processes that
//! any host started with [`serve_pool`] (or [`PoolWorkers`]) from the same executable.
//! A second backend behind `Pool` (rather than a `RedisPool` type) keeps every method, the
//! [`AsyncResult`](crate::AsyncResult), `wait`/`as_completed` and the map iterators one code
//! path: the pool's API only submits encoded tasks with a completion callback, and either
//! backend takes them.
//!
//! - **Tasks** name their function as local ones do, by its offset in the executable; a task
//!   carries the submitter's build identity ([`build_id`], the sha256 of the executable) and a
//!   worker of another build refuses it: it fails with [`PoolError::BuildMismatch`] naming both.
//! - **Results** come back on the pool's own stream `mt:<namespace>:results:<pool id>`.
//! - **Dead workers**: each worker renews `mt:<namespace>:hb:<host/pid/nonce>` (a key with an
//!   expiry of [`RedisOptions::heartbeat_timeout`], 3 s by default) from a thread of its own.
//!   The pool looks at the group's pending entries for its tasks: a task held by a worker
//!   whose heartbeat is gone fails with [`PoolError::WorkerDied`] naming the worker's host and
//!   pid (with the signal, when the worker's own host saw it die), or, with
//!   [`PoolBuilder::retries`](crate::PoolBuilder::retries), runs again up to that many times
//!   (at least once; never by default).
//! - **Redis away**: every call fails within [`RedisOptions::io_timeout`] with
//!   [`PoolError::Broker`] (the first call after Redis came back may still fail so, on the
//!   connection that broke). The tasks in flight fail with it too once Redis stayed out of
//!   reach for that timeout, or when it comes back as a new run (its `run_id` changed: a
//!   restart, which without persistence forgot them); a Redis that answers again as the same
//!   run loses nothing. Workers and pools reconnect on their own, so work resumes when Redis
//!   returns.
//! - **Untrusted data**: every id read from Redis is checked, frames are bounded
//!   ([`RedisOptions::max_frame_bytes`]) and a frame that does not decode fails only its task.
//!   (The `redis` client reads each reply whole before that check: the limit bounds what is
//!   decoded and sent, and Redis's own `proto-max-bulk-len` what one entry can hold.)
//!   Without [`RedisOptions::authkey`], anyone who can write to the tasks stream can run any
//!   task function of the executable with arguments of their choosing (as anyone who can write
//!   to a Celery broker can): keep Redis private to the cluster (a password in the URL, a
//!   private network), or give pools and workers an authkey, which signs every frame.
//!
//! Not supported on Redis (building fails with [`PoolError::Broker`] naming the option): an
//! initializer, `max_tasks_per_child` and `task_timeout`. `terminate` cannot kill workers on
//! other hosts: it fails the pool's unfinished tasks and withdraws those not yet taken.
//!
//! Layers: `client` (the pool side) and `serve` (the worker side) → `conn` → `frame`.

mod client;
mod conn;
mod frame;
mod serve;

use std::time::Duration;

use crate::error::PoolError;

pub(super) use client::{RedisShared, start};
pub use frame::build_id;
pub use serve::{PoolWorkers, serve_pool};

/// Options shared by a Redis pool and its workers: the key namespace, the heartbeat timeout,
/// the I/O timeout and the frame limit.
///
/// ```
/// use std::time::Duration;
/// use process_ipc::RedisOptions;
///
/// let options = RedisOptions::new()
///     .namespace("batch")
///     .heartbeat_timeout(Duration::from_secs(2));
/// assert_eq!(options.heartbeat(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    namespace: String,
    heartbeat_timeout: Duration,
    io_timeout: Duration,
    max_frame_bytes: usize,
    authkey: Option<AuthKey>,
    build: Option<String>,
}

/// A key frames are signed with; never printed.
#[derive(Clone)]
pub(super) struct AuthKey(pub(super) Vec<u8>);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisOptions {
    /// Namespace `pool`, heartbeat timeout 3 s, I/O timeout 5 s, frames up to 64 MiB.
    pub fn new() -> Self {
        RedisOptions {
            namespace: "pool".into(),
            heartbeat_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(5),
            max_frame_bytes: 64 << 20,
            authkey: None,
            build: None,
        }
    }

    /// Keys start with `mt:<namespace>:`; pools and workers meet in one namespace. Characters
    /// other than `[0-9A-Za-z_-]` are replaced by `_`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self
    }

    /// A worker whose heartbeat is older than this is dead (workers renew it three times per
    /// period). The workers' setting is the one that counts; a pool scans for dead workers
    /// every quarter of its own. At least 30 ms.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout.max(Duration::from_millis(30));
        self
    }

    /// The heartbeat timeout set.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// Longest wait for Redis to connect or answer one command before the call fails with
    /// [`PoolError::Broker`].
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// The largest task or result frame sent or accepted.
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self
    }

    /// Signs every task and result frame with HMAC-SHA256 under `key`: a worker given a key
    /// runs only tasks signed with it (the others fail, alone, naming the authkey), and a pool
    /// given one accepts only results signed with it. Without it, anyone who can write to the
    /// tasks stream can run the executable's task functions; with it, only holders of the key.
    /// Give pools and workers the same key.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(AuthKey(key.as_ref().to_vec()));
        self
    }

    /// Test hook: workers started with this claim another build identity.
    #[cfg(feature = "test-fault")]
    #[doc(hidden)]
    pub fn __build_id(mut self, build: &str) -> Self {
        self.build = Some(build.to_string());
        self
    }
}

/// Checks that a Redis pool's builder asks for nothing it cannot do.
pub(super) fn unsupported(
    init: bool,
    max_tasks: bool,
    task_timeout: bool,
) -> Result<(), PoolError> {
    let option = if init {
        "an initializer"
    } else if max_tasks {
        "max_tasks_per_child"
    } else if task_timeout {
        "task_timeout"
    } else {
        return Ok(());
    };
    Err(PoolError::Broker(format!(
        "{option} is not supported on a Redis pool"
    )))
}

#[cfg(feature = "test-fault")]
static SCRIBBLE_NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Test hook: the `n`th task submitted to any Redis pool from now on (1 = the next) goes out
/// with a body that does not decode.
#[cfg(feature = "test-fault")]
#[doc(hidden)]
pub fn __scribble_redis_task(n: usize) {
    SCRIBBLE_NEXT.store(n, std::sync::atomic::Ordering::SeqCst);
}

#[cfg(feature = "test-fault")]
fn scribbled(body: Vec<u8>) -> Vec<u8> {
    use std::sync::atomic::Ordering;
    let hit = SCRIBBLE_NEXT
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok_and(|n| n == 1);
    if hit { vec![0xff; 12] } else { body }
}
