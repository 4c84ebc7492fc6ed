//! Greenlets: `spawn`, `spawn_later`, `joinall`, `sleep`, `kill`, `with_timeout`, `Timeout`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use may::coroutine::{Coroutine, JoinHandle};
use may::sync::SyncFlag;

use crate::error::{CoroError, Result};
use crate::wait::Signal;
use crate::{monitor, runtime};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by a greenlet's handle and its running coroutine.
struct Shared {
    id: u64,
    name: Option<String>,
    /// Set when the body has returned or unwound; then `done` fires.
    finished: AtomicBool,
    /// Untimed waits, and timed waits from plain threads (exact there).
    done: SyncFlag,
    /// Timed waits inside coroutines (see `wait.rs`), notified only if any.
    /// Created on the first such wait: most greenlets never need it.
    timed: OnceLock<Arc<Signal<()>>>,
    timed_waiters: AtomicUsize,
    killed: AtomicBool,
}

impl Shared {
    fn finish(&self) {
        // SeqCst pairs with `wait`: either this load sees the waiter's
        // increment, or the waiter's load sees `finished`.
        self.finished.store(true, Ordering::SeqCst);
        self.done.fire();
        if self.timed_waiters.load(Ordering::SeqCst) > 0 {
            if let Some(timed) = self.timed.get() {
                timed.wake_locked();
            }
        }
    }

    /// Waits for the end, at most `timeout` (`None`: no limit); whether it ended.
    fn wait(self: &Arc<Self>, timeout: Option<Duration>) -> bool {
        if self.finished.load(Ordering::Acquire) {
            return true;
        }
        let ended = match timeout {
            None => {
                self.done.wait();
                true
            }
            Some(t) if t.is_zero() => false,
            Some(t) if !may::coroutine::is_coroutine() => self.done.wait_timeout(t),
            Some(t) => {
                let timed = self.timed.get_or_init(|| Arc::new(Signal::new(())));
                self.timed_waiters.fetch_add(1, Ordering::SeqCst);
                let (_, ended) = timed.wait_until(
                    Some(t),
                    |()| self.finished.load(Ordering::SeqCst),
                    || timed.waker(),
                );
                self.timed_waiters.fetch_sub(1, Ordering::SeqCst);
                ended
            }
        };
        monitor::resumed();
        ended
    }

    fn name(&self) -> Cow<'_, str> {
        match &self.name {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("Greenlet-{}", self.id)),
        }
    }
}

may::coroutine_local!(static FINISH: std::cell::RefCell<Option<Finish>> = std::cell::RefCell::new(None));

/// Payload of the unwinding that stops a greenlet killed before it started.
struct KilledBeforeStart;

/// Runs when the coroutine body ends (returns, panics, or is killed), or when
/// the spawn fails and the closure is dropped unrun.
struct Finish {
    shared: Arc<Shared>,
    on_finish: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        runtime::LIVE.fetch_sub(1, Ordering::Relaxed);
        // Done first, so that whoever the slot release wakes (Pool::join) sees it ready.
        self.shared.finish();
        if let Some(f) = self.on_finish.take() {
            f();
        }
    }
}

/// A handle to a coroutine: wait for it, take its value, or kill it.
///
/// gevent's `Greenlet`. Dropping the handle detaches the coroutine; it keeps running.
pub struct Greenlet<T> {
    shared: Arc<Shared>,
    co: Coroutine,
    handle: Option<JoinHandle<T>>,
}

impl<T> std::fmt::Debug for Greenlet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greenlet")
            .field("name", &self.name())
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> Greenlet<T> {
    /// The greenlet's name: the one given to [`Builder::name`], else `Greenlet-N`.
    pub fn name(&self) -> Cow<'_, str> {
        self.shared.name()
    }

    /// True once the coroutine has finished (returned, panicked or been killed).
    pub fn ready(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Waits until the coroutine finishes; never fails (gevent's `join()`).
    ///
    /// Inside a coroutine this yields; in a thread it blocks the thread.
    pub fn join(&self) {
        self.shared.wait(None);
    }

    /// Waits at most `timeout`; returns whether the coroutine finished.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait(Some(timeout))
    }

    /// Waits for the coroutine and takes its value (gevent's `get()`).
    ///
    /// # Errors
    /// [`CoroError::Panicked`] with the panic message, [`CoroError::Killed`],
    /// or [`CoroError::ValueTaken`] if an earlier `get` took the value.
    pub fn get(&mut self) -> Result<T> {
        // may's own join waits until the value is stored (our `done` fires a
        // moment earlier, from inside the body's frame): one wake-up, not two.
        let r = self.take();
        monitor::resumed();
        r
    }

    /// Like [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    /// As `get`, plus [`CoroError::Timeout`] if it is still running; the
    /// greenlet is untouched then and you may wait again.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if !self.join_timeout(timeout) {
            return Err(CoroError::Timeout {
                what: format!("get of coroutine '{}'", self.name()),
                timeout,
            });
        }
        self.take()
    }

    /// The outcome if the coroutine has finished, `None` while it runs (gevent's `value`).
    ///
    /// Takes the value: a second call after `Some` returns `Some(Err(ValueTaken))`.
    pub fn value(&mut self) -> Option<Result<T>> {
        if self.ready() {
            Some(self.take())
        } else {
            None
        }
    }

    /// Consumes the handle, waits, and returns the value (`std::thread::JoinHandle::join` style).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn into_value(mut self) -> Result<T> {
        self.get()
    }

    fn take(&mut self) -> Result<T> {
        let name = || self.shared.name().into_owned();
        let handle = self
            .handle
            .take()
            .ok_or_else(|| CoroError::ValueTaken { name: name() })?;
        handle.join().map_err(|payload| {
            let killed = payload.is::<KilledBeforeStart>()
                || matches!(
                    payload.downcast_ref::<generator::Error>(),
                    Some(generator::Error::Cancel)
                );
            if killed {
                CoroError::Killed { name: name() }
            } else if matches!(
                payload.downcast_ref::<generator::Error>(),
                Some(generator::Error::StackErr)
            ) {
                CoroError::StackOverflow { name: name() }
            } else {
                CoroError::Panicked {
                    name: name(),
                    message: runtime::panic_message(payload.as_ref()),
                }
            }
        })
    }

    /// Asks the coroutine to stop, without waiting.
    ///
    /// It unwinds (running its destructors, like a panic) at its next switch
    /// point; a greenlet that has not started yet never runs its body. A
    /// coroutine stuck in a loop that never yields cannot be killed.
    pub fn kill_nowait(&self) {
        if self.ready() {
            return;
        }
        self.shared.killed.store(true, Ordering::Release);
        // SAFETY: may marks cancel unsafe because the target unwinds and drops
        // what it holds. Every coroutine spawned by coro owns its data ('static
        // closure), so this is the same unwinding a panic would do, and the
        // outcome is caught by may and surfaced as `CoroError::Killed`.
        unsafe { self.co.cancel() };
    }

    /// Kills the coroutine and waits until it has stopped (gevent's `kill()`).
    pub fn kill(&self) {
        self.kill_nowait();
        self.join();
    }

    /// Kills the coroutine and waits at most `timeout`; returns whether it stopped.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.kill_nowait();
        self.join_timeout(timeout)
    }
}

/// Configures a greenlet before spawning it: its name and stack size.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    worker: Option<usize>,
}

impl Builder {
    /// A builder with the runtime's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the greenlet (shown in errors and by the blocking monitor).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets this greenlet's stack size in bytes (see [`crate::Config::stack_size`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Queues the greenlet first on worker `id` (`0..workers`); may may still move it.
    pub fn worker(mut self, id: usize) -> Self {
        self.worker = Some(id);
        self
    }

    /// Spawns the greenlet.
    ///
    /// # Errors
    /// [`CoroError::StackExhausted`] when the kernel refuses the stack (see the
    /// crate docs on `vm.max_map_count`), [`CoroError::InvalidStackSize`].
    pub fn spawn<F, T>(self, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with(None, None, f)
    }

    pub(crate) fn spawn_with<F, T>(
        self,
        delay: Option<Duration>,
        on_finish: Option<Box<dyn FnOnce() + Send>>,
        f: F,
    ) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let words = self.stack_size.map(runtime::stack_words).transpose()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            id,
            name: self.name,
            finished: AtomicBool::new(false),
            done: SyncFlag::new(),
            timed: OnceLock::new(),
            timed_waiters: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
        });
        let mut builder = may::coroutine::Builder::new();
        if shared.name.is_some() || monitor::enabled() {
            builder = builder.name(shared.name().into_owned());
        }
        if let Some(words) = words {
            builder = builder.stack_size(words);
        }
        if let Some(worker) = self.worker {
            builder = builder.id(worker);
        }
        runtime::LIVE.fetch_add(1, Ordering::Relaxed);
        let finish = Finish {
            shared: shared.clone(),
            on_finish,
        };
        let handle = runtime::spawn_on_may(builder, move || {
            let killed = finish.shared.killed.load(Ordering::Acquire);
            // Parked in may's coroutine-local storage, the guard drops when may
            // disposes of the coroutine, however it ended: returned, panicked,
            // killed, or abandoned after a stack overflow (which never unwinds).
            FINISH.with(|slot| *slot.borrow_mut() = Some(finish));
            if killed {
                std::panic::resume_unwind(Box::new(KilledBeforeStart));
            }
            monitor::resumed();
            if let Some(delay) = delay {
                sleep(delay);
            }
            f()
        })?;
        Ok(Greenlet {
            shared,
            co: handle.coroutine().clone(),
            handle: Some(handle),
        })
    }
}

/// Spawns `f` as a new coroutine (gevent's `spawn`).
///
/// The closure runs on the runtime's worker(s) and must follow may's rules
/// (see the crate docs): no blocking calls, no thread-locals held across a
/// yield, no long loops without a switch, and it must fit in its stack.
///
/// # Errors
/// [`CoroError::StackExhausted`] when the kernel refuses the stack memory.
pub fn spawn<F, T>(f: F) -> Result<Greenlet<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f)
}

/// Spawns `f` to start after `delay` (gevent's `spawn_later`); killing it before then cancels it.
///
/// # Errors
/// As [`spawn`].
pub fn spawn_later<F, T>(delay: Duration, f: F) -> Result<Greenlet<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn_with(Some(delay), None, f)
}

/// Waits for every greenlet, or until `timeout` (gevent's `joinall`).
///
/// # Errors
/// [`CoroError::JoinAllTimeout`] saying how many finished.
pub fn joinall<'a, T: 'a>(
    greenlets: impl IntoIterator<Item = &'a Greenlet<T>>,
    timeout: Option<Duration>,
) -> Result<()> {
    let greenlets: Vec<&Greenlet<T>> = greenlets.into_iter().collect();
    let Some(timeout) = timeout else {
        greenlets.iter().for_each(|g| g.join());
        return Ok(());
    };
    let deadline = Instant::now() + timeout;
    for g in &greenlets {
        let left = deadline.saturating_duration_since(Instant::now());
        if !g.join_timeout(left) {
            return Err(CoroError::JoinAllTimeout {
                finished: greenlets.iter().filter(|g| g.ready()).count(),
                total: greenlets.len(),
                timeout,
            });
        }
    }
    Ok(())
}

/// Sleeps cooperatively (gevent's `sleep`); `Duration::ZERO` just yields.
///
/// Inside a coroutine other coroutines run meanwhile; in a plain thread it is
/// `std::thread::sleep`.
pub fn sleep(duration: Duration) {
    if !may::coroutine::is_coroutine() {
        std::thread::sleep(duration);
        return;
    }
    if !duration.is_zero() {
        may::coroutine::sleep(duration);
    }
    // After a sleep this also leaves may's timer thread (see runtime::back_to_worker).
    may::coroutine::yield_now();
    monitor::resumed();
}

/// Lets the other ready coroutines run, then continues (gevent's `sleep(0)`).
///
/// Outside a coroutine it yields the thread.
#[inline]
pub fn yield_now() {
    // may's yield_now already falls back to `std::thread::yield_now` in a thread.
    may::coroutine::yield_now();
    monitor::resumed();
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
