//! Spawning: `Builder`, `spawn`, `spawn_later`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{
    Ending, FINISH, Finish, Greenlet, GreenletExit, GreenletRef, NEXT_ID, OnFinish, RETURNED,
    RUNNING, Shared,
};
use crate::error::Result;
use crate::runtime;
use crate::wait::Signal;

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
    /// [`CoroError::StackExhausted`](crate::CoroError::StackExhausted) when the kernel refuses the stack (see the
    /// crate docs on `vm.max_map_count`), [`CoroError::InvalidStackSize`](crate::CoroError::InvalidStackSize).
    pub fn spawn<F, T>(self, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with(None, None, None, f)
    }

    pub(crate) fn spawn_with<F, T>(
        self,
        delay: Option<Duration>,
        on_finish: Option<OnFinish>,
        on_start: Option<&mut dyn FnMut(&GreenletRef)>,
        f: F,
    ) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The panic hook (in the runtime, below) asks us whether a greenlet was killed.
        runtime::KILLED_CHECK.get_or_init(|| super::current_killed);
        let words = self.stack_size.map(runtime::stack_words).transpose()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let named = self.name.is_some();
        let name = OnceLock::new();
        if let Some(n) = self.name {
            let _ = name.set(n);
        }
        let shared = Arc::new(Shared {
            id,
            name,
            finished: AtomicBool::new(false),
            outcome: AtomicU8::new(RUNNING),
            ending: Signal::new(Ending::default()),
            killed: AtomicBool::new(false),
            failure: OnceLock::new(),
            co: Mutex::new(None),
        });
        let mut builder = may::coroutine::Builder::new();
        if named || crate::running::enabled() {
            builder = builder.name(shared.name().to_string());
        }
        if let Some(words) = words {
            builder = builder.stack_size(words);
        }
        if let Some(worker) = self.worker {
            builder = builder.id(worker);
        }
        if let Some(on_start) = on_start {
            // Before it can end: whoever tracks it (a Pool) knows it first.
            on_start(&GreenletRef {
                shared: shared.clone(),
            });
        }
        #[cfg(feature = "trace")]
        crate::trace::spawned(id, shared.name());
        runtime::LIVE.fetch_add(1, Ordering::Relaxed);
        let finish = Finish {
            shared: shared.clone(),
            on_finish,
        };
        let handle = runtime::spawn_on_may(builder, move || {
            let shared: *const Shared = Arc::as_ptr(&finish.shared);
            // Parked in may's coroutine-local storage, the guard drops when may
            // disposes of the coroutine, however it ended: returned, panicked,
            // killed, or abandoned after a stack overflow (which never unwinds).
            FINISH.with(|slot| *slot.borrow_mut() = Some(finish));
            // SAFETY: the `Arc` just parked in the slot keeps `Shared` alive
            // until may disposes of this coroutine, which is after this
            // closure has returned or unwound; nothing takes it out of the
            // slot before (`getcurrent` only clones it). Borrowing it spares
            // an atomic increment and decrement on a line the spawner shares.
            let shared = unsafe { &*shared };
            if shared.killed.load(Ordering::Acquire) {
                std::panic::resume_unwind(Box::new(GreenletExit));
            }
            crate::running::resumed();
            #[cfg(feature = "trace")]
            let _run = crate::trace::Run::start(id);
            if let Some(delay) = delay {
                crate::sleep::sleep(delay);
            }
            // The panic's message is kept for `exception()`, then it goes on
            // unwinding (resume_unwind: the hook has seen it already).
            let value = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(value) => value,
                Err(payload) => {
                    shared.note_failure(payload.as_ref());
                    std::panic::resume_unwind(payload)
                }
            };
            shared.outcome.store(RETURNED, Ordering::Release);
            value
        })?;
        *shared.co.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.coroutine().clone());
        Ok(Greenlet {
            shared,
            handle: Some(handle),
        })
    }
}

/// Spawns `f` as a new coroutine (gevent's `spawn`).
///
/// The closure runs on the runtime's worker(s) and should follow may's rules
/// (see the crate docs): no blocking calls, no long loops without a switch,
/// and it must fit in its stack (an overflow is an `Err`, not corruption).
/// Holding a thread-local across a yield is fine on the default single
/// worker; with more workers it is what the `unsafe` of
/// [`Config::with_workers`](crate::Config::with_workers) promised not to do.
///
/// If the program configures may itself (`may::config().set_workers(n)`)
/// instead of through [`crate::configure`], coro cannot see that promise;
/// configure the runtime through coro.
///
/// # Errors
/// [`CoroError::StackExhausted`](crate::CoroError::StackExhausted) when the kernel refuses the stack memory.
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
    Builder::new().spawn_with(Some(delay), None, None, f)
}
