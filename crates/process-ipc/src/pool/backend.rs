//! Where a [`Pool`](super::Pool)'s tasks run: local worker processes (the collector's
//! [`PoolShared`]), or, with the `redis` feature, workers on any host through Redis. The pool's
//! API submits encoded tasks with a completion callback and asks only what this enum answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::PoolError;

use super::collector::{Completer, Describe, PoolShared};
use super::results::Canceller;
use super::schedule::TaskId;

/// A pool's workers and books.
pub(super) enum Backend {
    /// Worker processes of this one.
    Local(Arc<PoolShared>),
    /// Workers anywhere, through Redis.
    #[cfg(feature = "redis")]
    Redis(Arc<super::redis::RedisShared>),
}

impl Backend {
    /// The number of workers (planned, for Redis), which `map`'s chunk size follows.
    pub(super) fn size(&self) -> usize {
        match self {
            Backend::Local(s) => s.config.processes,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.size(),
        }
    }

    pub(super) fn pids(&self) -> Vec<u32> {
        match self {
            Backend::Local(s) => s.pids(),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.pids(),
        }
    }

    pub(super) fn submit(
        &self,
        tasks: Vec<(isize, Vec<u8>, Describe, Completer)>,
    ) -> Result<Vec<TaskId>, PoolError> {
        match self {
            Backend::Local(s) => s.submit(tasks),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.submit(tasks),
        }
    }

    /// How a result withdraws its tasks: through the pool, while the pool exists.
    pub(super) fn canceller(&self, ids: Vec<TaskId>) -> Canceller {
        match self {
            Backend::Local(s) => {
                let shared = Arc::downgrade(s);
                Box::new(move || shared.upgrade().is_some_and(|s| s.cancel(&ids)))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => {
                let shared = Arc::downgrade(r);
                Box::new(move || shared.upgrade().is_some_and(|s| s.cancel(&ids)))
            }
        }
    }

    pub(super) fn close(&self) {
        match self {
            Backend::Local(s) => s.close(),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.close(),
        }
    }

    pub(super) fn join_until(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<(), PoolError> {
        match self {
            Backend::Local(s) => s.join_until(deadline),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.join_until(deadline),
        }
    }

    pub(super) fn terminate(&self) {
        match self {
            Backend::Local(s) => s.terminate(),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.terminate(),
        }
    }
}
