//! # timeline
//!
//! One timeline of a program's threads, child processes and coroutines: a
//! [`tracing_subscriber` layer](Layer) that writes the Chrome trace-event format, which
//! [Perfetto](https://ui.perfetto.dev) and `chrome://tracing` open, with every process's events
//! merged into one file on one clock.
//!
//! ```rust,standalone_crate
//! fn main() -> std::io::Result<()> {
//!     let path = std::env::temp_dir().join(format!("timeline-doc-{}.json", std::process::id()));
//!     let trace = timeline::to_file(&path)?; // children inherit MULTITASK_TRACE=<path>
//!     tracing::info_span!("work", items = 3).in_scope(|| {
//!         tracing::info!(done = 3, "checkpoint");
//!     });
//!     trace.finish()?; // or let it drop, or exit: the parts are merged into `path`
//!     let text = std::fs::read_to_string(&path)?;
//!     assert!(text.starts_with("{\"traceEvents\":["));
//!     assert!(text.contains("\"ph\":\"B\"") && text.contains("checkpoint"));
//!     # std::fs::remove_file(&path)?;
//!     Ok(())
//! }
//! ```
//!
//! ## The file
//!
//! `{"traceEvents":[...]}`, each event an object with `ph`, `ts` (microseconds on
//! `CLOCK_MONOTONIC`, which every process of the machine shares, so the events of a parent and
//! its children line up), `pid` and `tid`:
//!
//! | tracing | trace event |
//! | --- | --- |
//! | a span entered, exited | `B`, `E` on the thread's track (`tid` = the kernel's thread id) |
//! | an event | `i` (an instant on the thread's track), named by its message |
//! | an event with a `dur_us` field | `X`: a complete event that started `dur_us` ago and ended now |
//! | a span or event with a `coro` field (a coroutine's id), or inside a span with one | on that coroutine's own track, `tid` = [`coro_track`]`(id)`, named `coroutine <id>` |
//! | a process's, a thread's first event | `M` `process_name` / `thread_name` |
//!
//! Fields go to `args`; a span's name and target become the event's `name` and `cat`.
//!
//! ## Processes
//!
//! Each process buffers its events per thread and appends them to its part file,
//! `<path>.parts/<pid>.json`, when a buffer holds 64 KiB or its oldest event is a millisecond
//! old (so a process killed loses at most its last millisecond), when the thread ends and when
//! the process exits (`atexit`). The process that opened the trace — [`to_file`], or the
//! first to claim it through [`from_env`] — merges every part into `path` when its
//! [`TraceGuard`] drops or, without one, when it exits; it waits up to half a second for
//! processes that still have a part open. A child learns the path from the environment
//! variable [`ENV`] (`MULTITASK_TRACE`), which [`to_file`] sets, and installs the layer itself
//! ([`child_from_env`]; process-ipc's children do it before their target runs, with its
//! `trace` feature).
//!
//! ## Unchanged programs
//!
//! With the `trace` feature of threads-sync, process-ipc or coro on, their first instrumented
//! call in a process (a thread's start, a process's start, a pool's creation, a coroutine's
//! spawn, ...) calls [`auto`], which once per process reads `MULTITASK_TRACE` and, when it is
//! set and no global `tracing` subscriber is set yet, does what [`from_env`] does. So
//! `MULTITASK_TRACE=run.json ./program` traces a program that never names this crate. A
//! program that sets its own global subscriber first keeps it; adding [`Layer`] to it, and
//! calling [`from_env`] or [`to_file`], writes the same file.
//!
//! Recording costs one clock read and a formatted line in a thread-local buffer per event
//! (`benches/timeline_event.rs`); with no trace open, the layer returns at its first check.

mod check;
mod json;
mod layer;
mod merge;
mod sink;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tracing_subscriber::layer::SubscriberExt;

pub use layer::{CORO_TRACK_BASE, Layer, coro_track};
pub use sink::now_ns;
/// The `tracing` this crate records: the instrumented crates emit through it.
pub use tracing;

/// The environment variable that names the trace file: set by [`to_file`] for the children,
/// read by [`from_env`], [`child_from_env`] and [`auto`].
pub const ENV: &str = "MULTITASK_TRACE";

/// What this process does at the end of the trace.
enum Role {
    /// Merges the parts into `out`.
    Owner { out: PathBuf },
    /// Writes its part only.
    Child,
}

/// This process's role, with the pid it was taken by (a forked process has its own).
static ROLE: Mutex<Option<(u32, Role, PathBuf)>> = Mutex::new(None);

static AUTO_CHECKED: AtomicBool = AtomicBool::new(false);

/// Merges the trace when dropped: see [`to_file`].
#[must_use = "the trace is merged when the guard drops: bind it to a variable that lives to \
              the end of main"]
#[derive(Debug)]
pub struct TraceGuard {
    _private: (),
}

impl TraceGuard {
    /// Ends the trace now: writes out this process's buffers, waits (up to half a second) for
    /// the other processes still writing, and merges every part into the file. Returns its
    /// path.
    pub fn finish(self) -> io::Result<PathBuf> {
        let out = finish_process()?;
        std::mem::forget(self);
        out.ok_or_else(|| io::Error::other("the trace was already finished"))
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Err(e) = finish_process() {
            eprintln!("timeline: could not merge the trace: {e}");
        }
    }
}

/// Traces this process and its children into `path` (Chrome trace-event JSON): installs
/// [`Layer`] as the global `tracing` subscriber (unless one is set: then add the layer to it
/// yourself), sets [`ENV`] for the children, and returns the guard whose drop merges every
/// process's part into `path` (as does this process's exit, if the guard never drops).
///
/// Call it at the start of `main`, before the program starts threads: setting an environment
/// variable is only sound while no other thread reads the environment, so with other threads
/// running this is an error unless `MULTITASK_TRACE` already names `path`.
pub fn to_file(path: impl AsRef<Path>) -> io::Result<TraceGuard> {
    let path = std::path::absolute(path.as_ref())?;
    if std::env::var_os(ENV).as_deref() != Some(path.as_os_str()) {
        if !single_threaded() {
            return Err(io::Error::other(format!(
                "timeline::to_file must run before the program starts threads (it sets {ENV} \
                 for the children); set {ENV}={} in the environment instead",
                path.display()
            )));
        }
        // SAFETY: this process has one thread (checked just above), so nothing reads the
        // environment while it changes.
        unsafe { std::env::set_var(ENV, &path) };
    }
    let parts = merge::parts_dir(&path);
    let _ = fs::remove_dir_all(&parts);
    if !claim(&parts)? {
        return Err(io::Error::other(format!(
            "{} is being traced by another running process",
            path.display()
        )));
    }
    open(Role::Owner { out: path }, parts, &process_name());
    Ok(TraceGuard { _private: () })
}

/// For a program that does not call [`to_file`]: when [`ENV`] names a file, traces this
/// process into it. The first process to claim the trace (its parts directory holds no running
/// owner) merges the parts at exit; any other writes its part only. Returns whether this
/// process now records. Idempotent.
pub fn from_env() -> bool {
    let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) else {
        return false;
    };
    if recording_here() {
        return true;
    }
    let Ok(path) = std::path::absolute(PathBuf::from(path)) else {
        return false;
    };
    let parts = merge::parts_dir(&path);
    let role = match claim(&parts) {
        Ok(true) => Role::Owner { out: path },
        Ok(false) => Role::Child,
        Err(_) => return false,
    };
    open(role, parts, &process_name());
    true
}

/// For a process started as a child of a traced one: when [`ENV`] names a file, writes this
/// process's part of it, naming the process `name` on the timeline. Returns whether this
/// process now records. Idempotent within a process; a process forked from a recording one
/// starts its own part and drops what it inherited.
pub fn child_from_env(name: &str) -> bool {
    let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) else {
        return false;
    };
    if recording_here() {
        return true;
    }
    let Ok(path) = std::path::absolute(PathBuf::from(path)) else {
        return false;
    };
    let parts = merge::parts_dir(&path);
    if fs::create_dir_all(&parts).is_err() {
        return false;
    }
    open(Role::Child, parts, name);
    true
}

/// The lazy start the instrumented crates call before their events: the first call in a
/// process does [`from_env`] when no global subscriber is set; later calls cost one load.
#[inline]
pub fn auto() {
    if !AUTO_CHECKED.load(Ordering::Relaxed) {
        auto_slow();
    }
}

#[cold]
fn auto_slow() {
    AUTO_CHECKED.store(true, Ordering::Relaxed);
    if !tracing::dispatcher::has_been_set() {
        from_env();
    }
}

/// Writes out every thread's buffered events of this process now: for a process about to end
/// without running `atexit` handlers (`_exit`), or before a risky step.
pub fn flush() {
    sink::flush_all();
}

/// Whether this process is recording a trace.
pub fn is_recording() -> bool {
    recording_here()
}

fn recording_here() -> bool {
    let me = std::process::id();
    ROLE.lock().as_ref().is_some_and(|(pid, _, _)| *pid == me) && sink::pid() == me
}

/// Starts recording in this process.
fn open(role: Role, parts: PathBuf, name: &str) {
    let me = std::process::id();
    sink::configure(parts.clone(), me);
    *ROLE.lock() = Some((me, role, parts));
    if !tracing::dispatcher::has_been_set() {
        let subscriber = tracing_subscriber::registry().with(Layer::new());
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
    let now = sink::now_ns();
    sink::record(now, |out, pid, tid| {
        json::metadata(out, "process_name", pid, tid, &format!("{name} ({pid})"));
    });
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        extern "C" fn at_exit() {
            let _ = finish_process();
        }
        // SAFETY: `at_exit` is a plain `extern "C" fn()` that lives as long as the program.
        unsafe { libc::atexit(at_exit) };
    });
}

/// The end of this process's trace: flush, and for the owner, merge. `Some(path)` when this
/// process merged.
fn finish_process() -> io::Result<Option<PathBuf>> {
    let me = std::process::id();
    let role = {
        let mut role = ROLE.lock();
        match role.take() {
            Some((pid, r, parts)) if pid == me => Some((r, parts)),
            _ => None,
        }
    };
    let Some((role, parts)) = role else {
        return Ok(None);
    };
    sink::flush_all();
    match role {
        Role::Child => {
            sink::stop();
            Ok(None)
        }
        Role::Owner { out } => {
            sink::stop();
            merge::merge(&parts, &out, me)?;
            Ok(Some(out))
        }
    }
}

/// Claims the trace in `parts` for this process: true when no running process holds it.
fn claim(parts: &Path) -> io::Result<bool> {
    let me = std::process::id();
    fs::create_dir_all(parts)?;
    let owner = parts.join(merge::OWNER_FILE);
    let mine = parts.join(format!("owner.{me}"));
    fs::write(&mine, me.to_string())?;
    let mut claimed = false;
    for _ in 0..2 {
        // A hard link is made whole or not at all: nobody reads a half-written claim.
        match fs::hard_link(&mine, &owner) {
            Ok(()) => {
                claimed = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let holder = fs::read_to_string(&owner)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                match holder {
                    Some(pid) if pid == me => {
                        claimed = true;
                        break;
                    }
                    Some(pid) if merge::running(pid) => break,
                    // A claim left by a process that is gone: its parts are stale.
                    _ => {
                        remove_parts(parts);
                        let _ = fs::remove_file(&owner);
                    }
                }
            }
            Err(e) => {
                let _ = fs::remove_file(&mine);
                return Err(e);
            }
        }
    }
    let _ = fs::remove_file(&mine);
    Ok(claimed)
}

/// Removes the part files of an earlier run.
fn remove_parts(parts: &Path) {
    if let Ok(dir) = fs::read_dir(parts) {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".json") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The executable's file name: the process's name on the timeline.
fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "process".to_owned())
}

/// Whether this process runs one thread only.
fn single_threaded() -> bool {
    match fs::read_dir("/proc/self/task") {
        Ok(dir) => dir.count() == 1,
        Err(_) => false,
    }
}
