//! Greenlets: `spawn`, `spawn_later`, `Builder`, `Greenlet` (get, kill, links), `getcurrent`.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use may::coroutine::{Coroutine as MayCoroutine, JoinHandle};

use crate::error::{CoroError, Result};
use crate::wait::Signal;
use crate::{runtime, timer};

mod builder;
pub use builder::{Builder, spawn, spawn_later};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How a greenlet ended, as its links see it.
const RUNNING: u8 = 0;
const RETURNED: u8 = 1;
const FAILED: u8 = 2;
/// Killed: gevent counts a plain kill (its `GreenletExit`) as a successful end.
const KILLED: u8 = 3;

/// A callback run once when a greenlet ends.
pub(crate) type LinkFn = Box<dyn FnOnce(&GreenletRef) + Send>;

/// Which ends a link wants to hear about.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkOn {
    Any,
    Value,
    Exception,
}

/// What waits for a greenlet's end: its links (callbacks), and the waiters of `done`.
#[derive(Default)]
struct Ending {
    finished: bool,
    next_link: u64,
    links: Vec<(u64, LinkOn, LinkFn)>,
}

/// State shared by a greenlet's handles and its running coroutine.
pub(crate) struct Shared {
    id: u64,
    name: OnceLock<String>,
    /// Set when the body has returned or unwound; `ending` then wakes the waiters.
    finished: AtomicBool,
    /// RUNNING, then RETURNED or FAILED.
    outcome: AtomicU8,
    /// One list of waiters: those of the end.
    ending: Signal<Ending, 1>,
    killed: AtomicBool,
    /// The panic message of a greenlet that failed (not one killed).
    failure: OnceLock<String>,
    /// may's handle, to cancel it; set right after the spawn (a lock, cheaper
    /// to set than a `OnceLock`, and taken only by a kill).
    co: Mutex<Option<MayCoroutine>>,
}

impl Shared {
    fn finish(self: &Arc<Self>) {
        if self.outcome.load(Ordering::Acquire) == RUNNING {
            // Ended without returning: a kill's unwinding (or a panic, or a
            // stack overflow, after a kill: the kill's consequence), else a failure.
            let end = if self.killed.load(Ordering::Acquire) {
                KILLED
            } else {
                FAILED
            };
            self.outcome.store(end, Ordering::Release);
        }
        let links = {
            let mut ending = self.ending.lock();
            ending.finished = true;
            self.finished.store(true, Ordering::Release);
            ending.notify_all();
            std::mem::take(&mut ending.links)
        };
        if !links.is_empty() {
            self.run_links(links);
        }
    }

    fn run_links(self: &Arc<Self>, links: Vec<(u64, LinkOn, LinkFn)>) {
        if links.is_empty() {
            return;
        }
        let me = GreenletRef {
            shared: self.clone(),
        };
        // gevent: a kill is a successful end (the value is `GreenletExit`).
        let succeeded = self.outcome.load(Ordering::Acquire) != FAILED;
        for (_, on, f) in links {
            let wanted = match on {
                LinkOn::Any => true,
                LinkOn::Value => succeeded,
                LinkOn::Exception => !succeeded,
            };
            if wanted {
                // A panicking callback must not stop the others (nor unwind
                // out of the finishing coroutine's storage); it is logged.
                let run = std::panic::AssertUnwindSafe(|| f(&me));
                if let Err(p) = std::panic::catch_unwind(run) {
                    log::error!(
                        "a link callback of greenlet '{}' panicked: {}",
                        self.name(),
                        runtime::panic_message(p.as_ref())
                    );
                }
            }
        }
    }

    /// Adds a callback run at the end (at once if it already ended); its id, for `unlink`.
    pub(crate) fn link(self: &Arc<Self>, on: LinkOn, f: LinkFn) -> u64 {
        let mut ending = self.ending.lock();
        let id = ending.next_link;
        ending.next_link += 1;
        if ending.finished {
            drop(ending);
            self.run_links(vec![(id, on, f)]);
        } else {
            ending.links.push((id, on, f));
        }
        id
    }

    fn unlink(&self, id: u64) -> bool {
        let mut ending = self.ending.lock();
        let before = ending.links.len();
        ending.links.retain(|(i, _, _)| *i != id);
        ending.links.len() != before
    }

    /// Waits for the end, until `deadline` (`None`: no limit); whether it ended.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        if self.finished.load(Ordering::Acquire) {
            return true;
        }
        self.ending.wait_deadline(deadline, |e| e.finished).1
    }

    fn ready(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn successful(&self) -> Option<bool> {
        match self.outcome.load(Ordering::Acquire) {
            RUNNING => None,
            o => self.ready().then_some(o != FAILED),
        }
    }

    /// Its failure as an error, `None` unless it ended by a panic or a stack overflow.
    fn exception(&self) -> Option<CoroError> {
        if !self.ready() || self.outcome.load(Ordering::Acquire) != FAILED {
            return None;
        }
        let name = self.name().to_string();
        Some(match self.failure.get() {
            Some(message) => CoroError::Panicked {
                name,
                message: message.clone(),
            },
            // may abandons an overflowed coroutine without unwinding it.
            None => CoroError::StackOverflow { name },
        })
    }

    /// Keeps the message of a panic that unwinds the body (not a kill's).
    pub(crate) fn note_failure(&self, payload: &(dyn std::any::Any + Send)) {
        if !self.killed.load(Ordering::Acquire) {
            let _ = self.failure.set(runtime::panic_message(payload));
        }
    }

    /// Whether it ended by a kill (gevent's value is then a `GreenletExit`).
    fn was_killed(&self) -> bool {
        self.ready() && self.outcome.load(Ordering::Acquire) == KILLED
    }

    fn name(&self) -> &str {
        self.name.get_or_init(|| format!("Greenlet-{}", self.id))
    }

    fn kill_nowait(&self) {
        if self.ready() {
            return;
        }
        self.killed.store(true, Ordering::Release);
        if let Some(co) = self.co.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // SAFETY: may marks cancel unsafe because the target unwinds and drops
            // what it holds. Every coroutine spawned by coro owns its data ('static
            // closure), so this is the same unwinding a panic would do, and the
            // outcome is caught by may and surfaced as `CoroError::Killed`.
            unsafe { co.cancel() };
        }
    }
}

/// An untyped handle to a greenlet: its name, whether it ended and how, kill and join.
///
/// What [`getcurrent`] returns and what link callbacks receive; a
/// [`Greenlet`] gives one with [`Greenlet::as_ref`] too. It cannot take the
/// value (only the typed [`Greenlet`] can).
#[derive(Clone)]
pub struct GreenletRef {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GreenletRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenletRef")
            .field("name", &self.name())
            .field("ready", &self.ready())
            .finish()
    }
}

impl PartialEq for GreenletRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for GreenletRef {}

impl GreenletRef {
    /// The greenlet's name.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// True once it has finished (returned, panicked or been killed).
    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    /// `None` while it runs; then whether it returned a value or was killed
    /// (gevent's `successful()`; see [`Greenlet::successful`]).
    pub fn successful(&self) -> Option<bool> {
        self.shared.successful()
    }

    /// Whether it ended by a kill (see [`Greenlet::killed`]).
    pub fn killed(&self) -> bool {
        self.shared.was_killed()
    }

    /// Its failure, `None` unless it panicked (see [`Greenlet::exception`]).
    pub fn exception(&self) -> Option<CoroError> {
        self.shared.exception()
    }

    /// A number that tells this greenlet apart from every other of the process.
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// Runs `f` with its id when it ends, however it ends (at once if it has).
    pub(crate) fn on_end(&self, f: OnFinish) {
        self.shared
            .link(LinkOn::Any, Box::new(move |me: &GreenletRef| f(me.id())));
    }

    /// Waits until it finishes.
    pub fn join(&self) {
        self.shared.wait(None);
    }

    /// Waits at most `timeout`; whether it finished.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait(Some(timer::deadline_after(timeout)))
    }

    /// Asks it to stop at its next switch point, without waiting; a no-op once it ended.
    pub fn kill_nowait(&self) {
        self.shared.kill_nowait();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// The greenlet running this code, `None` outside one spawned through `coro`
/// (gevent's `getcurrent()`).
///
/// ```
/// let g = coro::Builder::new().name("me").spawn(|| {
///     coro::getcurrent().map(|me| me.name().to_string())
/// })?;
/// assert_eq!(g.into_value()?.as_deref(), Some("me"));
/// assert!(coro::getcurrent().is_none()); // main is not a greenlet
/// # Ok::<(), coro::CoroError>(())
/// ```
pub fn getcurrent() -> Option<GreenletRef> {
    if !may::coroutine::is_coroutine() {
        return None;
    }
    FINISH.with(|slot| {
        slot.borrow().as_ref().map(|f| GreenletRef {
            shared: f.shared.clone(),
        })
    })
}

may::coroutine_local!(static FINISH: std::cell::RefCell<Option<Finish>> = std::cell::RefCell::new(None));

/// Payload of the unwinding that stops a killed greenlet where coro itself
/// stops it (before it started, or in a shim call that saw the kill): coro's
/// `GreenletExit`. Private, and raised with `resume_unwind`, so no panic hook
/// ever sees it and nothing is printed.
struct GreenletExit;

/// Unwinds the calling greenlet silently if it has been killed; returns otherwise.
///
/// Shim calls call it when their wait ended early, so that a kill reaches
/// user code as an unwinding (its `Drop`s run), never as an error value.
pub(crate) fn exit_if_killed() {
    if current_killed() {
        std::panic::resume_unwind(Box::new(GreenletExit));
    }
}

/// Whether the calling code runs in a greenlet that has been killed.
pub(crate) fn current_killed() -> bool {
    if !may::coroutine::is_coroutine() {
        return false;
    }
    FINISH.with(|slot| {
        slot.try_borrow()
            .ok()
            .and_then(|f| f.as_ref().map(|f| f.shared.killed.load(Ordering::Acquire)))
            .unwrap_or(false)
    })
}

/// Runs when the coroutine body ends (returns, panics, or is killed), or when
/// the spawn fails and the closure is dropped unrun.
struct Finish {
    shared: Arc<Shared>,
    on_finish: Option<OnFinish>,
}

/// What a [`Pool`](crate::Pool) runs when one of its greenlets ends: given the greenlet's id.
pub(crate) type OnFinish = Box<dyn FnOnce(u64) + Send>;

impl Drop for Finish {
    fn drop(&mut self) {
        runtime::LIVE.fetch_sub(1, Ordering::Relaxed);
        // Done first, so that whoever the slot release wakes (Pool::join) sees it ready.
        Shared::finish(&self.shared);
        if let Some(f) = self.on_finish.take() {
            f(self.shared.id);
        }
    }
}

/// A handle to a coroutine: wait for it, take its value, or kill it.
///
/// gevent's `Greenlet`. Dropping the handle detaches the coroutine; it keeps running.
///
/// Its shape departs from the naming table's running unit (`join(self)`,
/// `join_timeout(&mut self, ..)`) on purpose: in gevent many wait for one
/// greenlet at once (`joinall`, `wait`, a `Group`, another greenlet's
/// `join`), so `join` and `join_timeout` borrow (`&self`) and never take the
/// value; `get(&mut self)` takes it once, as gevent's `get()` reads it, and
/// [`into_value`](Self::into_value) is the consuming `join` of the table.
pub struct Greenlet<T> {
    shared: Arc<Shared>,
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
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// True once the coroutine has finished (returned, panicked or been killed).
    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    /// True until the coroutine has finished (Python's `is_alive()`; gevent's `not dead`).
    pub fn is_alive(&self) -> bool {
        !self.shared.ready()
    }

    /// `None` while it runs; then whether it ended well: it returned a value,
    /// or it was killed (gevent's `successful()`, which is true after a plain
    /// `kill()`, whose value is a `GreenletExit`). `Some(false)` only for a
    /// panic or a stack overflow. Unchanged after `get`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let g = coro::spawn(|| coro::sleep(Duration::from_secs(60)))?;
    /// g.kill();
    /// assert_eq!(g.successful(), Some(true)); // as gevent's
    /// assert!(g.killed());
    /// # Ok::<(), coro::CoroError>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        self.shared.successful()
    }

    /// Whether it ended by a kill ([`kill`](Self::kill), [`crate::killall`],
    /// [`crate::with_timeout`]); false while it runs, and if it returned or panicked.
    pub fn killed(&self) -> bool {
        self.shared.was_killed()
    }

    /// Its failure without taking anything (gevent's `exception`): `None`
    /// while it runs, when it returned, and when it was killed (gevent's
    /// `exception` is `None` after a plain kill too); else
    /// [`CoroError::Panicked`] with the message, or [`CoroError::StackOverflow`].
    ///
    /// ```
    /// let g = coro::spawn(|| -> u8 { panic!("no") })?;
    /// g.join();
    /// assert!(matches!(g.exception(), Some(coro::CoroError::Panicked { message, .. }) if message == "no"));
    /// # Ok::<(), coro::CoroError>(())
    /// ```
    pub fn exception(&self) -> Option<CoroError> {
        self.shared.exception()
    }

    /// An untyped handle to the same greenlet (to keep in a [`crate::Group`], or to compare).
    pub fn as_ref(&self) -> GreenletRef {
        GreenletRef {
            shared: self.shared.clone(),
        }
    }

    /// Waits until the coroutine finishes; never fails (gevent's `join()`).
    ///
    /// Inside a coroutine this yields; in a thread it blocks the thread.
    pub fn join(&self) {
        self.shared.wait(None);
        crate::running::resumed();
    }

    /// Waits at most `timeout`; returns whether the coroutine finished.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait(Some(timer::deadline_after(timeout)))
    }

    /// Waits until `deadline`; whether it finished.
    pub(crate) fn join_until(&self, deadline: Instant) -> bool {
        self.shared.wait(Some(deadline))
    }

    /// Runs `f` when the greenlet ends, however it ends (gevent's `link`);
    /// at once, in the caller, if it already ended. Returns an id for [`unlink`](Self::unlink).
    ///
    /// The callback runs on the coroutine that ends (or the caller), so it
    /// must be short and must not block; it receives the greenlet's
    /// [`GreenletRef`]. A panic in it is logged and does not stop the others.
    ///
    /// ```
    /// use std::time::Duration;
    /// let done = coro::Queue::new();
    /// let g = coro::spawn(|| 1)?;
    /// let tx = done.clone();
    /// g.link(move |me| tx.put(me.successful()).unwrap());
    /// assert_eq!(done.get_timeout(Duration::from_secs(5)), Ok(Some(true)));
    /// # Ok::<(), coro::CoroError>(())
    /// ```
    pub fn link(&self, f: impl FnOnce(&GreenletRef) + Send + 'static) -> u64 {
        self.shared.link(LinkOn::Any, Box::new(f))
    }

    /// Like [`link`](Self::link), only if it ends well: returns a value or is
    /// killed (gevent's `link_value`; gevent hands such a callback the
    /// `GreenletExit` of a kill as the value).
    pub fn link_value(&self, f: impl FnOnce(&GreenletRef) + Send + 'static) -> u64 {
        self.shared.link(LinkOn::Value, Box::new(f))
    }

    /// Like [`link`](Self::link), only if it fails: panics or overflows its
    /// stack (gevent's `link_exception`). A plain kill is not a failure, as in
    /// gevent, so it does not run these.
    pub fn link_exception(&self, f: impl FnOnce(&GreenletRef) + Send + 'static) -> u64 {
        self.shared.link(LinkOn::Exception, Box::new(f))
    }

    /// Removes a callback added by `link*` before it ran; whether it was still there.
    pub fn unlink(&self, id: u64) -> bool {
        self.shared.unlink(id)
    }

    /// Waits for the coroutine and takes its value (gevent's `get()`).
    ///
    /// A killed greenlet: gevent's `get()` returns the `GreenletExit`
    /// instance as the value (the kill is a successful end). A `T` cannot
    /// hold that, so here it is `Err(CoroError::Killed { name })`, a variant of
    /// its own, never [`CoroError::Panicked`]; [`successful`](Self::successful)
    /// still says `Some(true)`, as gevent's does, and [`CoroError::is_killed`]
    /// tells the two ends apart in one call.
    ///
    /// # Errors
    /// [`CoroError::Panicked`] with the panic message, [`CoroError::Killed`],
    /// or [`CoroError::ValueTaken`] if an earlier `get` took the value.
    pub fn get(&mut self) -> Result<T> {
        // may's own join waits until the value is stored (our `done` fires a
        // moment earlier, from inside the body's frame): one wake-up, not two.
        let r = self.take();
        crate::running::resumed();
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
        let name = || self.shared.name().to_string();
        let handle = self
            .handle
            .take()
            .ok_or_else(|| CoroError::ValueTaken { name: name() })?;
        handle.join().map_err(|payload| {
            // Killed, even if what failed last was the kill's consequence (a
            // patched call that returned ECANCELED, then an unwrap).
            let killed = self.shared.killed.load(Ordering::Acquire)
                || payload.is::<GreenletExit>()
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

    /// Asks the coroutine to stop, without waiting; a no-op once it ended.
    ///
    /// It unwinds (running its destructors, like a panic) at its next switch
    /// point; a greenlet that has not started yet never runs its body. A
    /// coroutine stuck in a loop that never yields cannot be killed.
    pub fn kill_nowait(&self) {
        self.shared.kill_nowait();
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
