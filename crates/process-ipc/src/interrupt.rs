//! Ctrl-C (SIGINT) and SIGTERM in a program with child processes and pools.
//!
//! Layer: above `daemon` (the registry of started children), below `handle` and `pool`, which
//! read the [`interrupted`] flag where they classify a death. The pool registers its shutdown
//! here as a hook (`on_shutdown`) when its first pool starts.
//!
//! ## What happens without this module
//!
//! Rust installs no handler for SIGINT or SIGTERM, so either one ends the program at once by
//! the signal's default action: no destructor runs, no `Pool` is terminated, no `join` returns.
//! The children do not outlive it: each holds the read end of its parent's *lifeline* pipe,
//! and a watcher in the child ends it as soon as that pipe closes, which the kernel does when
//! the parent dies (fork-server children die through `PR_SET_PDEATHSIG`). Ctrl-C in a
//! terminal also signals every process of the foreground group, children included, so they
//! usually die from the SIGINT itself. The dead children are then reaped by init (or by the
//! nearest subreaper). Nothing reports anything: a pending result simply never arrives.
//!
//! ## Python's behaviour, one line away
//!
//! Python raises `KeyboardInterrupt` in the main thread; leaving a `with Pool(...)` block then
//! terminates the workers. [`shutdown_on_interrupt`] gives the same ending: on SIGINT or
//! SIGTERM every pool's workers are killed and reaped, every unfinished pool task fails with
//! [`PoolError::Interrupted`](crate::PoolError::Interrupted) (so a blocked `get` returns it, and
//! a blocked `Pool::join` too), every child started with [`Process`](crate::Process) gets
//! SIGTERM (then SIGKILL after a grace of two seconds) and a `join` on it returns
//! [`ProcessError::Interrupted`](crate::ProcessError::Interrupted); then the signal's default
//! action ends the program, so its exit status still says "killed by SIGINT", as a Python
//! program's does (since 3.8). [`shutdown_on_interrupt_then`] runs your code instead of that
//! last step, and the program goes on (its threads see the `Interrupted` errors and can end
//! `main` normally).
//!
//! ```no_run
//! use process_ipc::{Pool, PoolError};
//!
//! fn nap(secs: u64) -> u64 {
//!     std::thread::sleep(std::time::Duration::from_secs(secs));
//!     secs
//! }
//!
//! process_ipc::shutdown_on_interrupt().unwrap();
//! let pool = Pool::new(2).unwrap();
//! let slow = pool.apply_async(nap, (3600,)).unwrap();
//! // Ctrl-C now: the workers are killed and reaped, the callback below sees
//! // `Err(PoolError::Interrupted { signal: 2 })`, then the program dies of SIGINT.
//! slow.add_done_callback(|r| {
//!     if let Err(PoolError::Interrupted { .. }) = r {
//!         eprintln!("interrupted");
//!     }
//! });
//! slow.get().unwrap();
//! ```
//!
//! How: the handler is async-signal-safe: it stores the signal number in an atomic and writes
//! one byte to a pipe (a second signal during the cleanup ends the program at once by the
//! default action, as a second Ctrl-C should). A thread started by the install reads the
//! pipe and does the work. Children re-execute this binary or are forked from the fork server,
//! so they never inherit the handler: Ctrl-C ends them by the default action, as before.
//! Queues, pipes and a `Manager` are not touched: a thread blocked in `Queue::get` stays
//! blocked until its peer dies; give such waits a timeout, or check [`interrupted`].

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// The layers below, named only here.
use crate::start::exit_rule::followed;
use crate::sys::{
    handle_signal, has_exited, pidfd_signal, raise_default, read_self_pipe, reap_pidfd, self_pipe,
    write_byte_from_handler,
};

/// How long the children get between SIGTERM and SIGKILL, and a pool's workers to be reaped.
const GRACE: Duration = Duration::from_secs(2);

/// The signal that started the shutdown; 0 before one arrives.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The write end of the self-pipe; -1 until installed.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The pid that installed the handler: a forked copy that has not exec'd yet must not wake
/// this process's watcher (it shares the pipe).
static OWNER: AtomicU32 = AtomicU32::new(0);
/// What to do after the cleanup; set once, by the first install.
static AFTER: OnceLock<Mutex<Option<Ending>>> = OnceLock::new();

/// How the program ends after the cleanup.
enum Ending {
    /// The signal's default action ([`shutdown_on_interrupt`]).
    Default,
    /// The program's own code ([`shutdown_on_interrupt_then`]).
    Then(Box<dyn FnOnce(i32) + Send + 'static>),
}

/// What runs first in a shutdown, before the children are signalled: the pool's hook, which
/// terminates every pool, given the signal and a deadline.
type Hook = fn(i32, Instant);
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Registers `hook` to run at the start of a shutdown (the caller registers it once).
pub(crate) fn on_shutdown(hook: Hook) {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(hook);
}

/// The signals this module handles.
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Python-like Ctrl-C for this program: on SIGINT or SIGTERM, terminate and reap every pool's
/// workers and every child this process started, fail what waits on them with `Interrupted`,
/// then end the program by the signal's default action (see the [module docs](self)).
///
/// Call it once, early in `main`; a later call does nothing more (the first choice of
/// [`shutdown_on_interrupt_then`] or this one stays). The error is the OS refusing the pipe,
/// the thread or the handler.
pub fn shutdown_on_interrupt() -> io::Result<()> {
    install(Ending::Default)
}

/// Like [`shutdown_on_interrupt`], but after the cleanup it calls `after` with the signal
/// number (on the module's own thread) instead of ending the program: the program asked to
/// handle the signal. By then every pool is terminated and every child has ended, so blocked
/// `get`/`join` calls return `Interrupted` and `main` can wind down and return (joining its
/// children reaps them). A second signal still ends the program at once.
pub fn shutdown_on_interrupt_then<F>(after: F) -> io::Result<()>
where
    F: FnOnce(i32) + Send + 'static,
{
    install(Ending::Then(Box::new(after)))
}

/// The signal (SIGINT = 2, SIGTERM = 15) that started a shutdown, once one has (installed by
/// [`shutdown_on_interrupt`]), so a long loop can stop early; `None` before.
pub fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::Acquire) {
        0 => None,
        signal => Some(signal),
    }
}

/// Whether a child's death by `death` (its signal, if a signal ended it) belongs to an
/// interrupt of this process: [`interrupted`], or, for a death by SIGINT or SIGTERM with the
/// handler installed, the interrupt about to be seen. The same Ctrl-C reaches the children and
/// this process together, and a child's death can be seen a moment before this process's
/// handler has stored the signal (it may be preempted right after the kernel picked it), so
/// this waits for the watcher, up to [`SEEN_WITHIN`]. Any other death answers at once.
pub(crate) fn interrupt_behind(death: Option<i32>) -> Option<i32> {
    if let Some(signal) = interrupted() {
        return Some(signal);
    }
    if PIPE_WRITE.load(Ordering::Acquire) < 0 || !death.is_some_and(|s| SIGNALS.contains(&s)) {
        return None;
    }
    let deadline = Instant::now() + SEEN_WITHIN;
    let mut woken = WOKEN.0.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(signal) = interrupted() {
            return Some(signal);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        woken = WOKEN
            .1
            .wait_timeout(woken, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// How long [`interrupt_behind`] waits for this process's own handler to record a signal that
/// killed a child by SIGINT/SIGTERM.
const SEEN_WITHIN: Duration = Duration::from_secs(1);

/// Notified by the watcher once it has seen the handler's byte.
static WOKEN: (Mutex<()>, std::sync::Condvar) = (Mutex::new(()), std::sync::Condvar::new());

fn install(after: Ending) -> io::Result<()> {
    let slot = AFTER.get_or_init(|| Mutex::new(None));
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if PIPE_WRITE.load(Ordering::Acquire) >= 0 {
        return Ok(());
    }
    let (read, write) = self_pipe()?;
    std::thread::Builder::new()
        .name("process-ipc-interrupt".into())
        .spawn(move || watch(read))?;
    *slot = Some(after);
    OWNER.store(std::process::id(), Ordering::Release);
    // The write end lives as long as the program: the handler may use it at any time.
    PIPE_WRITE.store(
        std::os::fd::IntoRawFd::into_raw_fd(write),
        Ordering::Release,
    );
    for signal in SIGNALS {
        handle_signal(signal, on_signal)?;
    }
    Ok(())
}

/// The handler: async-signal-safe calls only (getpid, sigaction, raise, write; `errno` kept).
extern "C" fn on_signal(signal: libc::c_int) {
    let own = std::process::id() == OWNER.load(Ordering::Acquire);
    let first = SIGNAL
        .compare_exchange(0, signal, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if !own || !first {
        // A forked copy before its exec, or a second signal: the default action, now.
        raise_default(signal);
        return;
    }
    write_byte_from_handler(PIPE_WRITE.load(Ordering::Acquire), signal as u8);
}

/// The watcher thread: waits for the handler's byte, cleans up, then ends as asked.
fn watch(read: OwnedFd) {
    loop {
        if read_self_pipe(&read).is_some() && interrupted().is_some() {
            let _woken = WOKEN.0.lock().unwrap_or_else(|p| p.into_inner());
            WOKEN.1.notify_all();
            break;
        }
    }
    let signal = interrupted().unwrap_or(libc::SIGINT);
    let ending = AFTER
        .get()
        .and_then(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).take());
    match ending {
        Some(Ending::Then(after)) => {
            shut_down(signal, false);
            after(signal);
        }
        // The default action, so the exit status says what ended the program.
        _ => {
            shut_down(signal, true);
            raise_default(signal);
        }
    }
}

/// Pools first (so their tasks fail with `Interrupted`, not with a dead worker), then every
/// child still running: SIGTERM, a grace, SIGKILL. Children started meanwhile are caught by
/// the next round.
/// `reap`: the program dies next, so no handle will ever reap its child (and init may not).
fn shut_down(signal: i32, reap: bool) {
    let hooks = HOOKS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for hook in hooks {
        hook(signal, Instant::now() + GRACE);
    }
    for _round in 0..4 {
        let children = followed();
        let running: Vec<_> = children
            .iter()
            .filter(|(_, fd)| !has_exited(fd, Some(Instant::now())))
            .collect();
        if running.is_empty() {
            break;
        }
        for (_, fd) in &running {
            let _ = pidfd_signal(fd, libc::SIGTERM);
        }
        let deadline = Instant::now() + GRACE;
        for (pid, fd) in &running {
            if !has_exited(fd, Some(deadline)) {
                log::warn!("process-ipc: child {pid} outlived SIGTERM after {signal}; killing it");
                let _ = pidfd_signal(fd, libc::SIGKILL);
                has_exited(fd, Some(Instant::now() + GRACE));
            }
        }
    }
    // The fork server is kept for the next start, which will not come: end and reap it too,
    // or it stays a zombie of init once this program ends.
    crate::start::fork_server::stop_server(Instant::now() + GRACE);
    if reap {
        for (_, fd) in followed() {
            reap_pidfd(&fd);
        }
    }
}
