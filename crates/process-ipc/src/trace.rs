//! The `trace` feature's hooks (see the `timeline` crate). A child installs the recorder from
//! `MULTITASK_TRACE` and spans its target ([`child_start`], one line in the child's entry); the
//! parent records what it observes of its children (start, exit, the signals it sends); a Pool
//! worker spans each task, and the pool records a worker's death. Compiled only with the
//! feature; each call site is one line.

use std::process::ExitStatus;

/// The span over a child's target; dropping it ends the span and writes out the child's
/// events (a forked child ends with `_exit`, which runs no `atexit` flush).
pub(crate) struct ChildSpan {
    span: Option<tracing::span::EnteredSpan>,
}

impl Drop for ChildSpan {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            drop(span);
            timeline::flush();
        }
    }
}

/// The fork server's target, by its type's name (named, not imported: the start code sits
/// above this module; `start::fork_server::server`'s tests check the two agree).
pub(crate) const FORK_SERVER_TARGET: &str = "process_ipc::start::fork_server::server::server_main";

/// In a child, before its target `F` runs: records this process when the parent traces.
/// The fork server is not traced: it forks the children from its own state, and must stay
/// single-threaded and quiet.
pub(crate) fn child_start<F>() -> ChildSpan {
    let target = std::any::type_name::<F>();
    if target == FORK_SERVER_TARGET {
        return ChildSpan { span: None };
    }
    let me = crate::current::current_process();
    if !timeline::child_from_env(me.name()) {
        return ChildSpan { span: None };
    }
    let span = tracing::trace_span!(
        target: "process_ipc",
        "process",
        name = me.name(),
        pid = std::process::id(),
        target
    );
    ChildSpan {
        span: Some(span.entered()),
    }
}

/// In the parent: child `pid` started.
pub(crate) fn started(pid: u32, name: &str) {
    timeline::auto();
    tracing::trace!(target: "process_ipc", pid, name, "process start");
}

/// In the parent: child `pid` was seen to end with `status`.
pub(crate) fn exited(pid: u32, status: &ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => tracing::trace!(target: "process_ipc", pid, code, "process exit"),
        (None, Some(signal)) => {
            tracing::trace!(target: "process_ipc", pid, signal, "process killed by signal")
        }
        (None, None) => tracing::trace!(target: "process_ipc", pid, "process exit"),
    }
}

/// In the parent: sending `signal` to child `pid`.
pub(crate) fn signalled(pid: u32, signal: i32) {
    tracing::trace!(target: "process_ipc", pid, signal, "process signal");
}

/// In a Pool worker: the span over task `id`'s run. Its start is written out at once (one
/// `write` per task while tracing), so a worker killed by its task leaves that task, and
/// everything before it, on the timeline.
pub(crate) fn task_span(id: u64) -> tracing::span::EnteredSpan {
    let span = tracing::trace_span!(target: "process_ipc", "task", id, worker = std::process::id())
        .entered();
    timeline::flush();
    span
}

/// In the pool: worker `pid` ended (`code`, Python's convention: `-signal` when killed). A
/// worker that leaves with 0 left as told (the pool closed, or its `max_tasks`); any other
/// end is a death, and the pool replaces the worker if it still needs one.
pub(crate) fn worker_exit(pid: u32, code: Option<i32>, cause: &str) {
    if code == Some(0) {
        tracing::trace!(target: "process_ipc", pid, cause, "worker exit");
    } else {
        tracing::trace!(target: "process_ipc", pid, cause, "worker died");
    }
}
