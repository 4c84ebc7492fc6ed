//! [`Thread`]: Python's `threading.Thread(target=f, args=(a, b))`, plus [`current_thread`] and [`get_ident`].

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::error::{ThreadError, panic_message};
use crate::identity as deadlock;

/// Something a [`Thread`] can run with an argument tuple: any `FnOnce` of 0 to 6 arguments
/// whose arguments form the tuple `Args` (`()` for none, `(a,)` for one).
///
/// You never implement this; it is what makes `Thread::new(add, (2, 3))` call `add(2, 3)`.
pub trait Target<Args>: Send + 'static {
    /// What the target returns, handed over by [`Thread::join`].
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

enum State<R> {
    Ready(Job<R>),
    Running {
        /// Hands back the target's value, or its panic message.
        handle: JoinHandle<Result<R, String>>,
        /// Disconnected when the target has returned: what a timed join waits on. (A plain
        /// join waits on `handle` alone: one sleep, not a wait here and then another for
        /// the thread's exit.)
        finished: Receiver<()>,
    },
    Joined,
}

/// A thread that runs a *target* with *args*, the way Python's `threading.Thread` does.
///
/// Nothing runs until [`start`](Thread::start); [`join`](Thread::join) hands back the target's
/// return value, or [`ThreadError::Panicked`] with the panic message. Dropping a started,
/// unjoined `Thread` detaches it (it keeps running).
///
/// ```python
/// t = threading.Thread(target=add, args=(2, 3), name="adder")
/// t.start(); t.join()
/// ```
/// ```
/// use threads_sync::Thread;
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// let mut t = Thread::new(add, (2, 3)).named("adder");
/// t.start()?;
/// assert_eq!(t.join()?, 5);
/// assert_eq!(t.name(), "adder");
/// # Ok::<(), threads_sync::ThreadError>(())
/// ```
pub struct Thread<R> {
    name: String,
    ident: u64,
    state: State<R>,
}

impl<R: Send + 'static> Thread<R> {
    /// A thread (not started yet) that will call `target` with the tuple `args` unpacked.
    ///
    /// Its default name is Python's: `Thread-<n> (<target>)`, `Thread-<n>` for closures.
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
            ident: 0,
            state: State::Ready(Box::new(move || target.call(args))),
        }
    }

    /// Sets the thread's name (Python: `name=`); it is also the OS thread's name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thread's ident (see [`get_ident`]) once started.
    pub fn ident(&self) -> Option<u64> {
        (self.ident != 0).then_some(self.ident)
    }

    /// Starts running the target on a new OS thread. A second call is
    /// [`ThreadError::AlreadyStarted`].
    pub fn start(&mut self) -> Result<(), ThreadError> {
        let job = match std::mem::replace(&mut self.state, State::Joined) {
            State::Ready(job) => job,
            other => {
                self.state = other;
                return Err(ThreadError::AlreadyStarted {
                    thread: self.name.clone(),
                });
            }
        };
        let ident = deadlock::new_ident();
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                deadlock::adopt_ident(ident);
                let outcome = catch_unwind(AssertUnwindSafe(job)).map_err(|p| panic_message(&*p));
                // Nothing is ever sent: dropping the sender tells a timed join "finished".
                drop(finished_tx);
                outcome
            });
        match spawned {
            Ok(handle) => {
                self.ident = ident;
                self.state = State::Running { handle, finished };
                Ok(())
            }
            Err(source) => Err(ThreadError::Spawn {
                thread: self.name.clone(),
                source,
            }),
        }
    }

    /// Whether the thread has started and its target has not finished.
    pub fn is_alive(&self) -> bool {
        match &self.state {
            State::Running { handle, .. } => !handle.is_finished(),
            _ => false,
        }
    }

    /// Waits for the target to finish and returns its value.
    pub fn join(&mut self) -> Result<R, ThreadError> {
        self.join_inner(None)
    }

    /// Like [`join`](Thread::join), giving up after `timeout` with [`ThreadError::Timeout`];
    /// the thread keeps running and can be joined again.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ThreadError> {
        self.join_inner(Some(timeout))
    }

    fn join_inner(&mut self, timeout: Option<Duration>) -> Result<R, ThreadError> {
        match &self.state {
            State::Ready(_) => {
                return Err(ThreadError::NotStarted {
                    thread: self.name.clone(),
                });
            }
            State::Joined => {
                return Err(ThreadError::AlreadyJoined {
                    thread: self.name.clone(),
                });
            }
            State::Running { finished, .. } => {
                if let Some(timeout) = timeout {
                    // Only disconnection ends the wait: nothing is ever sent.
                    if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(timeout) {
                        return Err(ThreadError::Timeout {
                            thread: self.name.clone(),
                            timeout,
                        });
                    }
                }
            }
        }
        let State::Running { handle, .. } = std::mem::replace(&mut self.state, State::Joined)
        else {
            unreachable!("checked above: the thread is running");
        };
        // After a timed wait the target has returned: this join does not block long.
        match handle.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(ThreadError::Panicked {
                thread: self.name.clone(),
                message,
            }),
            // The target's panic is caught inside the thread; this is a panic after it.
            Err(payload) => Err(ThreadError::Panicked {
                thread: self.name.clone(),
                message: panic_message(&*payload),
            }),
        }
    }
}

impl<R> fmt::Debug for Thread<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready(_) => "initial",
            State::Running { handle, .. } if handle.is_finished() => "finished",
            State::Running { .. } => "started",
            State::Joined => "joined",
        };
        f.debug_struct("Thread")
            .field("name", &self.name)
            .field("ident", &self.ident)
            .field("state", &state)
            .finish()
    }
}

/// The calling thread, as Python's `threading.current_thread()` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentThread {
    name: String,
    ident: u64,
}

impl CurrentThread {
    /// The thread's name: the std name (`"main"` for the main thread), the [`Thread`]'s name,
    /// or `Thread-<ident>` for an unnamed thread.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thread's ident (see [`get_ident`]).
    pub fn ident(&self) -> u64 {
        self.ident
    }
}

/// The calling thread's name and ident (Python: `threading.current_thread()`).
///
/// ```
/// let me = threads_sync::current_thread();
/// assert_eq!(me.ident(), threads_sync::get_ident());
/// ```
pub fn current_thread() -> CurrentThread {
    CurrentThread {
        name: deadlock::current_name().to_string(),
        ident: deadlock::current_ident(),
    }
}

/// The calling thread's ident (Python: `threading.get_ident()`): a nonzero number unique among
/// this process's threads and never reused.
pub fn get_ident() -> u64 {
    deadlock::current_ident()
}
