//! Runtime configuration (workers, stack size, pinning) and the one place that spawns on may.
//!
//! may reads its configuration once, when its scheduler first starts. `coro`
//! applies its own (safe) defaults right before its first spawn, so
//! [`configure`] must run before that; afterwards it returns
//! [`CoroError::AlreadyStarted`].

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::error::{CoroError, Result};

mod maps;

/// may's default stack: 0x1000 machine words (32 KiB on 64-bit targets).
pub const DEFAULT_STACK_SIZE: usize = 0x1000 * std::mem::size_of::<usize>();
/// The smallest stack [`Config::stack_size`] accepts (one page).
pub const MIN_STACK_SIZE: usize = 4096;
/// The largest stack [`Config::stack_size`] accepts (1 GiB).
pub const MAX_STACK_SIZE: usize = 1 << 30;
/// How many finished coroutine stacks the runtime keeps for reuse by default
/// ([`Config::with_stack_pool`]).
pub const DEFAULT_STACK_POOL: usize = 16_384;
/// Stacks may maps ahead of time when its scheduler starts (its own default pool size);
/// the rest of the pool fills with stacks of finished coroutines.
const PREMAPPED_STACKS: usize = 1000;

/// How the coroutine runtime runs: how many worker threads, how big each stack is.
///
/// The default is **one worker**, like gevent's one hub per thread: coroutines
/// then never move between threads, so their interleaving is deterministic and
/// a thread-local read before a yield is still the same after it. More workers
/// run coroutines in parallel, but may then moves a coroutine to whichever
/// worker is free, which breaks thread-locals held across a yield; that is why
/// [`Config::with_workers`] is `unsafe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    workers: usize,
    stack_size: usize,
    pin_workers: bool,
    stack_pool: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 1,
            stack_size: DEFAULT_STACK_SIZE,
            pin_workers: true,
            stack_pool: DEFAULT_STACK_POOL,
        }
    }
}

impl Config {
    /// The default: one worker, a 32 KiB stack, workers pinned to cores (may's
    /// default), and up to [`DEFAULT_STACK_POOL`] finished stacks kept for reuse.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of worker threads (at least 1).
    ///
    /// # Safety
    /// With more than one worker, may moves a coroutine to whichever worker is
    /// free at any switch point (a sleep, a wait, a yield, socket I/O). Safe
    /// Rust assumes that a thread-local seen before a call is the same one
    /// after it; across such a switch it is not. A reference or guard into a
    /// thread-local (`thread_local!`, `std::thread::current()`, a
    /// `RefCell` borrow, a lock guard that must be released on the thread that
    /// took it, or the same inside a library you call) held across a switch
    /// is then a data race with the coroutine that runs next on the old
    /// worker. By calling this with `workers > 1` you promise that no code
    /// running inside a coroutine holds such a thing across a switch point.
    /// One worker (the default) has no such condition.
    ///
    /// ```
    /// // SAFETY: the coroutines of this program keep no thread-local across a switch.
    /// let cfg = unsafe { coro::Config::new().with_workers(2) };
    /// assert_eq!(cfg.workers(), 2);
    /// ```
    pub unsafe fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Sets the default stack size of a coroutine, in bytes (rounded up to whole words).
    ///
    /// Coroutines with the default size are recycled through may's pool of
    /// ready stacks; other sizes are mapped afresh at each spawn.
    pub fn with_stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Sets how many stacks of finished coroutines are kept for the next spawns
    /// (default [`DEFAULT_STACK_POOL`]; 0 is taken as 1, may cannot turn its pool off).
    ///
    /// Mapping a fresh stack and unmapping it at the end (two memory maps, a
    /// guard page, page faults on first touch) is most of what a spawn costs
    /// in the kernel; a pooled stack is taken back ready to run. may keeps
    /// 1000 by default, so a burst of more live coroutines than that unmaps
    /// the surplus when they end and maps it again at the next burst; a
    /// bigger pool spares that.
    ///
    /// The price is memory: each pooled stack keeps its memory maps and the
    /// pages its coroutines touched (about 8 KiB after one that only slept,
    /// measured by the `coro_rss` bench; more after deeper ones) until
    /// a spawn reuses it, so after a burst of N coroutines up to
    /// `min(N, stack_pool)` stacks stay mapped: at the default, about 128 MiB
    /// after a burst of 16 384 or more, which that burst held at its peak
    /// anyway. Lower it for a program that must give memory back after rare
    /// bursts; raise it for one whose bursts are bigger. They never lower the number of
    /// live coroutines possible: a spawn takes a pooled stack before it maps a
    /// new one. Only stacks of the runtime's default size are pooled (a
    /// [`Builder::stack_size`](crate::Builder::stack_size) of another size is
    /// mapped and unmapped each time). The first 1000 are mapped when the
    /// runtime starts, as may does; the rest only as coroutines end.
    ///
    /// ```
    /// let cfg = coro::Config::new().with_stack_pool(100);
    /// assert_eq!(cfg.stack_pool(), 100);
    /// ```
    pub fn with_stack_pool(mut self, stacks: usize) -> Self {
        self.stack_pool = stacks;
        self
    }

    /// Pins each worker thread to one core (may's default) or lets the OS place them.
    pub fn with_pin_workers(mut self, pin: bool) -> Self {
        self.pin_workers = pin;
        self
    }

    /// The worker count.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The default stack size in bytes.
    pub fn stack_size(&self) -> usize {
        self.stack_size
    }

    /// Whether workers are pinned to cores.
    pub fn pin_workers(&self) -> bool {
        self.pin_workers
    }

    /// How many finished stacks are kept for reuse.
    pub fn stack_pool(&self) -> usize {
        self.stack_pool
    }

    fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(CoroError::InvalidArgument(
                "Config::workers must be at least 1".into(),
            ));
        }
        stack_words(self.stack_size).map(|_| ())
    }
}

/// Converts a stack size in bytes to may's unit (words), rejecting sizes out of range.
///
/// The word count is kept even: may treats an odd count as a request to
/// measure and print the stack's footprint when the coroutine ends.
pub(crate) fn stack_words(bytes: usize) -> Result<usize> {
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        return Err(CoroError::InvalidStackSize {
            bytes,
            min: MIN_STACK_SIZE,
            max: MAX_STACK_SIZE,
        });
    }
    let words = bytes.div_ceil(std::mem::size_of::<usize>());
    Ok(words + (words & 1))
}

static PENDING: Mutex<Option<Config>> = Mutex::new(None);
static STARTED: OnceLock<Config> = OnceLock::new();

/// Sets the runtime configuration; call it before the first spawn.
///
/// # Errors
/// [`CoroError::AlreadyStarted`] once a coroutine has been spawned through
/// `coro` (may reads its settings only when its scheduler starts), and
/// [`CoroError::InvalidArgument`] / [`CoroError::InvalidStackSize`] for bad values.
///
/// If your program also uses may directly, its scheduler may already be
/// running with may's own defaults; `coro` cannot detect that case.
pub fn configure(config: Config) -> Result<()> {
    config.validate()?;
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(started) = STARTED.get() {
        return Err(CoroError::AlreadyStarted {
            workers: started.workers,
        });
    }
    *pending = Some(config);
    Ok(())
}

/// The configuration in effect (if the runtime started) or the one it will start with.
pub fn runtime_config() -> Config {
    if let Some(c) = STARTED.get() {
        return *c;
    }
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default()
}

/// Whether the runtime has started (a coroutine was spawned through `coro`).
pub fn is_started() -> bool {
    STARTED.get().is_some()
}

/// Applies the configuration to may once, before its scheduler starts.
#[inline]
pub(crate) fn ensure_init() {
    if STARTED.get().is_none() {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    STARTED.get_or_init(|| {
        let cfg = pending.unwrap_or_default();
        let words = stack_words(cfg.stack_size).unwrap_or(DEFAULT_STACK_SIZE / 8);
        let pool = cfg.stack_pool.max(1);
        may::config()
            .set_workers(cfg.workers)
            .set_stack_size(words)
            .set_pool_capacity(pool.min(PREMAPPED_STACKS));
        may::config().set_worker_pin(cfg.pin_workers);
        install_panic_hook();
        if pool > PREMAPPED_STACKS {
            start_scheduler();
            // may maps the pool's first stacks when its scheduler starts, but
            // reads the capacity again at each return to the pool: raised
            // now, the pool grows only with stacks of finished coroutines.
            may::config().set_pool_capacity(pool);
        }
        cfg
    });
}

/// Starts may's scheduler (it starts at its first spawn) with a coroutine that does nothing.
fn start_scheduler() {
    // SAFETY: the closure touches no thread-local and needs no stack.
    // Its handle is dropped: the coroutine runs on its own, and the
    // scheduler exists once spawn has returned.
    let _ = unsafe { may::coroutine::Builder::new().spawn(|| ()) };
}

thread_local! {
    // Set only around may's spawn call, which never yields, so the value is
    // read and reset on the same thread that set it.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the process's panic hook so that the panics `coro` turns into
/// values print nothing: may's cancel unwinding (a killed greenlet), any
/// panic inside a greenlet already killed, and a stack allocation failure
/// while spawning. Every other panic reaches the previous hook unchanged.
/// (coro's own kill unwinding, `GreenletExit`, uses `resume_unwind`, which
/// calls no hook.)
fn install_panic_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let cancel = matches!(
            info.payload().downcast_ref::<generator::Error>(),
            Some(generator::Error::Cancel)
        );
        let quiet = QUIET.try_with(Cell::get).unwrap_or(false);
        // A panic in a greenlet already killed is the kill's consequence (a
        // patched call returned ECANCELED, then an `unwrap`): the greenlet ends
        // killed, as with gevent's GreenletExit, and nothing is printed.
        let killed = KILLED_CHECK.get().is_some_and(|check| check());
        if !(cancel || quiet || killed) {
            previous(info);
        }
    }));
}

/// Whether the panicking code runs in a greenlet already killed: the
/// greenlet layer (above this one) hands its check in at its first spawn.
pub(crate) static KILLED_CHECK: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Coroutines spawned through `coro` that have not finished yet.
pub(crate) static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many coroutines spawned through `coro` are alive (spawned and not yet finished).
pub fn live_coroutines() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Spawns on may, turning may's failures (including its panic when the kernel
/// refuses a stack) into `Err`.
pub(crate) fn spawn_on_may<F, T>(
    builder: may::coroutine::Builder,
    f: F,
) -> Result<may::coroutine::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    ensure_init();
    maps::check_budget()?;
    QUIET.with(|q| q.set(true));
    let spawned = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: may marks spawn unsafe for two reasons, both documented on
        // `coro::spawn` as the caller's contract, as may's own `go!` does:
        // thread-locals must not be held across a yield (a coroutine may
        // resume on another worker), and the closure must fit in its stack
        // (may's guard page turns an overflow into SIGSEGV, not corruption).
        // The closure is 'static and Send, so it owns everything it touches.
        unsafe { builder.spawn(f) }
    }));
    QUIET.with(|q| q.set(false));
    match spawned {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(e)) => Err(CoroError::Spawn(e.to_string())),
        Err(payload) => Err(stack_exhausted(&panic_message(payload.as_ref()))),
    }
}

fn stack_exhausted(panic: &str) -> CoroError {
    let cause = os_error_text(panic).unwrap_or_else(|| panic.to_string());
    CoroError::StackExhausted {
        cause,
        live: live_coroutines(),
        maps: maps::count().unwrap_or(0),
        max_map_count: maps::max_map_count(),
    }
}

/// Rewrites generator's panic text, `failed to alloc sys stack: IoError(Os { code: 12,
/// kind: OutOfMemory, message: "Cannot allocate memory" })`, as `io::Error` displays it.
fn os_error_text(panic: &str) -> Option<String> {
    let code: i32 = panic
        .split_once("code: ")?
        .1
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(std::io::Error::from_raw_os_error(code).to_string())
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_words_rounds_to_even_words() {
        assert_eq!(stack_words(32 * 1024).unwrap(), 4096);
        assert_eq!(stack_words(4096 + 8).unwrap(), 514);
        assert!(matches!(
            stack_words(100),
            Err(CoroError::InvalidStackSize { bytes: 100, .. })
        ));
    }

    #[test]
    fn generator_panic_text_becomes_an_os_error() {
        let text = "failed to alloc sys stack: IoError(Os { code: 12, kind: OutOfMemory, \
                    message: \"Cannot allocate memory\" })";
        assert_eq!(
            os_error_text(text).unwrap(),
            "Cannot allocate memory (os error 12)"
        );
        assert_eq!(os_error_text("something else"), None);
    }

    #[test]
    fn zero_workers_is_rejected() {
        // SAFETY: only validated, never run.
        let err = unsafe { Config::new().with_workers(0) }
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("at least 1"));
    }
}
