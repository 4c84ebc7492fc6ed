//! Waiting with time: `joinall`, `sleep`, `yield_now`, `with_timeout`, `Timeout`.

use std::time::{Duration, Instant};

use crate::error::{CoroError, Result};
use crate::greenlet::{Greenlet, spawn};
use crate::timer;

/// Waits for every greenlet, or until `timeout` (gevent's `joinall`).
///
/// # Errors
/// [`CoroError::JoinAllTimeout`] naming which finished (their indices in the order given).
pub fn joinall<'a, T: 'a>(
    greenlets: impl IntoIterator<Item = &'a Greenlet<T>>,
    timeout: Option<Duration>,
) -> Result<()> {
    let greenlets: Vec<&Greenlet<T>> = greenlets.into_iter().collect();
    let Some(timeout) = timeout else {
        greenlets.iter().for_each(|g| g.join());
        return Ok(());
    };
    let deadline = timer::deadline_after(timeout);
    for g in &greenlets {
        if !g.join_until(deadline) {
            return Err(CoroError::JoinAllTimeout {
                finished: (0..greenlets.len())
                    .filter(|&i| greenlets[i].ready())
                    .collect(),
                total: greenlets.len(),
                timeout,
            });
        }
    }
    crate::running::resumed();
    Ok(())
}

/// Runs `f` in a new coroutine and gives up after `timeout`, killing it
/// (gevent's `with_timeout`).
///
/// # Errors
/// [`CoroError::Timeout`] if `f` did not finish in time, or `f`'s panic as
/// [`CoroError::Panicked`].
pub fn with_timeout<F, T>(timeout: Duration, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let mut g = spawn(f)?;
    match g.get_timeout(timeout) {
        Err(CoroError::Timeout { .. }) => {
            g.kill_nowait();
            Err(CoroError::Timeout {
                what: format!("with_timeout of coroutine '{}'", g.name()),
                timeout,
            })
        }
        other => other,
    }
}

/// A time limit for a piece of work (gevent's `Timeout`).
///
/// `Timeout::new(d).run(f)` runs `f` as a coroutine and kills it when `d`
/// passes; [`remaining`](Self::remaining) lends the same deadline to the
/// `*_timeout` calls of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    duration: Duration,
    started: Instant,
}

impl Timeout {
    /// A timeout of `duration`, counted from now.
    pub fn new(duration: Duration) -> Self {
        Timeout {
            duration,
            started: Instant::now(),
        }
    }

    /// The full duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Time left before it expires (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.duration.saturating_sub(self.started.elapsed())
    }

    /// Whether it has expired.
    pub fn expired(&self) -> bool {
        self.started.elapsed() >= self.duration
    }

    /// Runs `f` in a coroutine with the time that is left; see [`with_timeout`].
    ///
    /// # Errors
    /// As [`with_timeout`].
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        with_timeout(self.remaining(), f)
    }
}
