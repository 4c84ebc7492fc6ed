//! Waiting with time: `joinall` (and `joinall_with`'s options), `with_timeout`, `Timeout`.

use std::time::{Duration, Instant};

use crate::error::{CoroError, Result};
use crate::greenlet::{Greenlet, spawn};
use crate::supervise::Waitable;
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

/// gevent's keyword arguments of `joinall`, for [`joinall_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinAllOptions {
    timeout: Option<Duration>,
    raise_error: bool,
}

impl JoinAllOptions {
    /// No timeout, errors not raised: [`joinall`]`(greenlets, None)`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits at most `timeout` (gevent's `timeout=`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Returns the first failure at once (gevent's `raise_error=True`).
    pub fn raise_error(mut self, on: bool) -> Self {
        self.raise_error = on;
        self
    }
}

/// [`joinall`] with gevent's options: `raise_error` returns the first
/// greenlet to fail, as soon as it fails.
///
/// "First" is in the order the greenlets end, not the order given (gevent's
/// `test_joinall_exception_order`), and one that failed before the call
/// counts as ending first, in the order given. As in gevent, the others are
/// left as they are: nothing kills or joins them, and their outcomes stay in
/// them for their own `get`. A kill is not a failure (gevent's
/// `GreenletExit`), so a killed greenlet is waited for like one that returned.
///
/// ```
/// use std::time::Duration;
/// use coro::{CoroError, JoinAllOptions};
/// let slow = coro::spawn(|| coro::sleep(Duration::from_secs(60)))?;
/// let bad = coro::spawn(|| panic!("bad"))?;
/// let first = coro::joinall_with(
///     [&slow, &bad],
///     JoinAllOptions::new().raise_error(true).timeout(Duration::from_secs(5)),
/// );
/// assert!(matches!(first, Err(CoroError::Panicked { message, .. }) if message == "bad"));
/// assert!(!slow.ready()); // left running
/// slow.kill();
/// # Ok::<(), coro::CoroError>(())
/// ```
///
/// # Errors
/// With `raise_error`, the first failure ([`CoroError::Panicked`],
/// [`CoroError::StackOverflow`]); [`CoroError::JoinAllTimeout`] as [`joinall`].
pub fn joinall_with<'a, T: 'a>(
    greenlets: impl IntoIterator<Item = &'a Greenlet<T>>,
    options: JoinAllOptions,
) -> Result<()> {
    if !options.raise_error {
        return joinall(greenlets, options.timeout);
    }
    let greenlets: Vec<&Greenlet<T>> = greenlets.into_iter().collect();
    let watched: Vec<&dyn Waitable> = greenlets.iter().map(|g| *g as &dyn Waitable).collect();
    let mut ended = 0;
    for i in crate::supervise::iwait(&watched, options.timeout) {
        ended += 1;
        if let Some(failure) = greenlets[i].exception() {
            crate::running::resumed();
            return Err(failure);
        }
    }
    crate::running::resumed();
    if ended == greenlets.len() {
        return Ok(());
    }
    Err(CoroError::JoinAllTimeout {
        finished: (0..greenlets.len())
            .filter(|&i| greenlets[i].ready())
            .collect(),
        total: greenlets.len(),
        timeout: options.timeout.unwrap_or_default(),
    })
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
