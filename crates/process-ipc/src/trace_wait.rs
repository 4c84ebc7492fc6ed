//! The `trace` feature's timer of process-wide waits (see the `timeline` crate): a sleep on a
//! shared futex word — a process Lock, Event, Condition or Barrier, or a Queue's ring — that
//! lasts 100 µs or more is recorded as a complete event. A leaf module, so that `shared` may
//! use it; compiled only with the feature.

/// Waits shorter than this (ns) are not recorded.
const THRESHOLD_NS: u64 = 100_000;

/// Times one futex sleep; records it when dropped, if it was long.
pub(crate) struct WaitTimer {
    start_ns: u64,
}

impl WaitTimer {
    pub(crate) fn new() -> WaitTimer {
        WaitTimer {
            start_ns: timeline::now_ns(),
        }
    }
}

impl Drop for WaitTimer {
    fn drop(&mut self) {
        let waited = timeline::now_ns().saturating_sub(self.start_ns);
        if waited >= THRESHOLD_NS {
            timeline::auto();
            let dur_us = waited as f64 / 1000.0;
            tracing::trace!(target: "process_ipc", dur_us, "shared wait");
        }
    }
}
