//! The `trace` feature's hooks (see the `timeline` crate): a span over each thread's target,
//! waits on locks, queues and events longer than [`WAIT_THRESHOLD`] as complete events, and
//! the deadlock refusals. Compiled only with the feature; each call site is one line.

use std::time::Duration;

/// Waits shorter than this are not recorded.
pub(crate) const WAIT_THRESHOLD: Duration = Duration::from_micros(100);

/// Entered on a new thread for the life of its target: its bar on the thread's track.
pub(crate) fn thread_span(name: &str, ident: u64, daemon: bool) -> tracing::span::EnteredSpan {
    timeline::auto();
    tracing::trace_span!(target: "threads_sync", "thread", name, ident, daemon).entered()
}

/// A wait that may block: recorded when dropped, if it lasted [`WAIT_THRESHOLD`] or more.
pub(crate) struct Wait<F: FnOnce() -> String> {
    kind: &'static str,
    name: Option<F>,
    start_ns: u64,
}

impl<F: FnOnce() -> String> Wait<F> {
    /// Starts timing a wait of `kind` ("lock", "queue get", ...) on the object `name` names.
    pub(crate) fn new(kind: &'static str, name: F) -> Self {
        Wait {
            kind,
            name: Some(name),
            start_ns: timeline::now_ns(),
        }
    }
}

impl<F: FnOnce() -> String> Drop for Wait<F> {
    fn drop(&mut self) {
        let waited = timeline::now_ns().saturating_sub(self.start_ns);
        if waited < WAIT_THRESHOLD.as_nanos() as u64 {
            return;
        }
        timeline::auto();
        let name = self.name.take().map(|f| f()).unwrap_or_default();
        let dur_us = waited as f64 / 1000.0;
        let kind = self.kind;
        tracing::trace!(target: "threads_sync", dur_us, object = %name, "{kind} wait");
    }
}

/// A lock call refused because waiting would have closed a cycle.
pub(crate) fn deadlock_refused(report: &crate::error::Deadlock) {
    timeline::auto();
    tracing::trace!(target: "threads_sync", report = %report, "deadlock refused");
}

/// Entered by a ThreadPool worker around each task it runs: the task's bar.
pub(crate) fn task_span() -> tracing::span::EnteredSpan {
    tracing::trace_span!(target: "threads_sync", "task").entered()
}
