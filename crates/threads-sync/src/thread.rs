//! [`Thread`] and [`ThreadHandle`]: Python's `threading.Thread(target=f, args=(a, b))`, started
//! into a handle whose type says it is running (no "not started" or "started twice" errors).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::error::{ThreadError, panic_message};
use crate::identity::ThreadInfo;
use crate::registry;

/// Something a [`Thread`] can run with an argument tuple: any `FnOnce` of 0 to 6 arguments
/// whose arguments form the tuple `Args` (`()` for none, `(a,)` for one).
///
/// You never implement this; it is what makes `Thread::new(add, (2, 3))` call `add(2, 3)`.
pub trait Target<Args>: Send + 'static {
    /// What the target returns, handed over by [`ThreadHandle::join`].
    type Output: Send + 'static;
    /// Calls the target with the unpacked arguments.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        impl<F, R, $($arg,)*> Target<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> R + Send + 'static,
            R: Send + 'static,
        {
            type Output = R;
            #[allow(non_snake_case)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> R {
                self($($arg),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);

static NEXT_THREAD_NUMBER: AtomicU64 = AtomicU64::new(1);

type Job<R> = Box<dyn FnOnce() -> R + Send + 'static>;

/// A thread to be started: a *target* with *args*, a name and a daemon flag, the way
/// Python's `threading.Thread(target=f, args=(a, b), name=.., daemon=..)` is built.
///
/// Nothing runs until [`start`](Thread::start), which consumes it and returns a
/// [`ThreadHandle`]: a thread cannot be started twice or joined before it starts, because
/// the types do not allow it.
///
/// ```python
/// t = threading.Thread(target=add, args=(2, 3), name="adder")
/// t.start(); t.join()
/// ```
/// ```
/// use threads_sync::Thread;
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// let t = Thread::new(add, (2, 3)).named("adder").start()?;
/// assert_eq!(t.name(), "adder");
/// assert_eq!(t.join()?, 5);
/// # Ok::<(), threads_sync::ThreadError>(())
/// ```
pub struct Thread<R> {
    name: String,
    daemon: bool,
    job: Job<R>,
}

impl<R: Send + 'static> Thread<R> {
    /// A thread (not started yet) that will call `target` with the tuple `args` unpacked.
    ///
    /// Its default name is Python's: `Thread-<n> (<target>)`, `Thread-<n>` for closures; it
    /// is a daemon if the calling thread is one (Python's default).
    pub fn new<Args, F>(target: F, args: Args) -> Self
    where
        F: Target<Args, Output = R>,
        Args: Send + 'static,
    {
        let number = NEXT_THREAD_NUMBER.fetch_add(1, Ordering::Relaxed);
        let full = std::any::type_name::<F>();
        let name = if full.contains('{') {
            format!("Thread-{number}")
        } else {
            let short = full.rsplit("::").next().unwrap_or(full);
            format!("Thread-{number} ({short})")
        };
        Thread {
            name,
            daemon: registry::current_is_daemon(),
            job: Box::new(move || target.call(args)),
        }
    }

    /// Sets the thread's name (Python: `name=`); it is also the OS thread's name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets whether the thread is a daemon (Python: `daemon=`): [`join_non_daemon`] waits
    /// for every thread that is not.
    ///
    /// [`join_non_daemon`]: crate::join_non_daemon
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the thread will be a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Starts running the target on a new OS thread; [`ThreadError::Spawn`] (with the OS
    /// error) if the system refuses one, e.g. for lack of memory or under `RLIMIT_NPROC`.
    pub fn start(self) -> Result<ThreadHandle<R>, ThreadError> {
        let Thread { name, daemon, job } = self;
        let name: Arc<str> = Arc::from(name);
        match registry::spawn(Arc::clone(&name), daemon, move || {
            catch_unwind(AssertUnwindSafe(job)).map_err(|p| panic_message(&*p))
        }) {
            Ok(spawned) => Ok(ThreadHandle {
                name,
                ident: spawned.ident,
                daemon,
                handle: Some(spawned.handle),
                finished: spawned.finished,
            }),
            Err(source) => Err(ThreadError::Spawn {
                thread: name.to_string(),
                source,
            }),
        }
    }
}

impl<R> fmt::Debug for Thread<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

/// A started [`Thread`]: join it for the target's value.
///
/// [`join`](ThreadHandle::join) hands back the target's return value, or
/// [`ThreadError::Panicked`] with the panic message. Dropping an unjoined handle detaches the
/// thread (it keeps running; [`join_non_daemon`](crate::join_non_daemon) still waits for it
/// unless it is a daemon).
pub struct ThreadHandle<R> {
    name: Arc<str>,
    ident: u64,
    daemon: bool,
    /// `None` once a `join_timeout` took the value.
    handle: Option<JoinHandle<Result<R, String>>>,
    /// Disconnected when the target has returned: what a timed join waits on. (A plain join
    /// waits on `handle` alone: one sleep, not a wait here and then another for the exit.)
    finished: Receiver<()>,
}

impl<R> ThreadHandle<R> {
    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thread's ident (see [`get_ident`]).
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// Whether the thread is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Whether the target has not finished yet.
    pub fn is_alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Waits for the target to finish and returns its value.
    pub fn join(mut self) -> Result<R, ThreadError> {
        self.take_value()
    }

    /// Like [`join`](ThreadHandle::join), giving up after `timeout` with
    /// [`ThreadError::Timeout`]; the thread keeps running and can be joined again. After a
    /// value was returned, a further join is [`ThreadError::AlreadyJoined`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ThreadError> {
        if self.handle.is_some() {
            // Only disconnection ends the wait: nothing is ever sent.
            if let Err(RecvTimeoutError::Timeout) = self.finished.recv_timeout(timeout) {
                return Err(ThreadError::Timeout {
                    thread: self.name.to_string(),
                    timeout,
                });
            }
        }
        self.take_value()
    }

    fn take_value(&mut self) -> Result<R, ThreadError> {
        let Some(handle) = self.handle.take() else {
            return Err(ThreadError::AlreadyJoined {
                thread: self.name.to_string(),
            });
        };
        match handle.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(ThreadError::Panicked {
                thread: self.name.to_string(),
                message,
            }),
            // The target's panic is caught inside the thread; this is a panic after it.
            Err(payload) => Err(ThreadError::Panicked {
                thread: self.name.to_string(),
                message: panic_message(&*payload),
            }),
        }
    }
}

impl<R> fmt::Debug for ThreadHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.handle {
            None => "joined",
            Some(h) if h.is_finished() => "finished",
            Some(_) => "started",
        };
        f.debug_struct("ThreadHandle")
            .field("name", &self.name)
            .field("ident", &self.ident)
            .field("daemon", &self.daemon)
            .field("state", &state)
            .finish()
    }
}

/// The calling thread (Python: `threading.current_thread()`).
///
/// ```
/// let me = threads_sync::current_thread();
/// assert_eq!(me.ident(), threads_sync::get_ident());
/// ```
pub fn current_thread() -> ThreadInfo {
    ThreadInfo {
        name: crate::identity::current_name(),
        ident: crate::identity::current_ident(),
        daemon: registry::current_is_daemon(),
    }
}

/// The calling thread's ident (Python: `threading.get_ident()`): a nonzero number unique among
/// this process's threads and never reused.
pub fn get_ident() -> u64 {
    crate::identity::current_ident()
}
