//! The blocking monitor: logs a coroutine that keeps its worker from switching too long.
//!
//! Like gevent's monitor thread. While it runs, one heartbeat coroutine per
//! worker wakes every `threshold / 4` and stamps the time; a plain thread
//! checks the stamps. A stamp older than the threshold means the worker has
//! not switched for that long (a blocking call, a long CPU loop), and the
//! monitor logs a `warn!` (target `coro::monitor`) naming the coroutine that
//! `coro` last saw start or resume on that worker.
//!
//! Names come from `coro`'s own switch points (spawn, `sleep`, `yield_now`,
//! waits on `Queue`, `Event`, `AsyncResult`, `Pool`, greenlets). A coroutine
//! that resumed through a raw `may` call is reported under the name of the
//! last one `coro` saw there. With several workers may lets an idle worker
//! steal the heartbeat of a blocked one, so detection is reliable on one
//! worker (the default) and best effort on more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{CoroError, Result};
use crate::running::{ENABLED, WorkerSlot, this_worker_slot};
use crate::runtime;

/// Default threshold: gevent's `max_blocking_time` is 0.1 s.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(100);

struct Heartbeat {
    /// Nanoseconds since the monitor's epoch at the last beat.
    last_beat: AtomicU64,
    worker: Mutex<Option<Arc<WorkerSlot>>>,
}

/// A running blocking monitor; stop it with [`Monitor::stop`] or by dropping it.
pub struct Monitor {
    stop: Option<mpsc::Sender<()>>,
    stopping: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    heartbeats: Vec<crate::greenlet::Greenlet<()>>,
    reports: Arc<AtomicU64>,
    threshold: Duration,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("threshold", &self.threshold)
            .field("reports", &self.reports())
            .finish()
    }
}

/// Starts the blocking monitor with the default threshold (100 ms).
///
/// # Errors
/// [`CoroError::MonitorRunning`] if one is already running.
pub fn start_monitor() -> Result<Monitor> {
    start_monitor_with(DEFAULT_THRESHOLD)
}

/// Starts the blocking monitor with a threshold of your choice (at least 1 ms).
///
/// # Errors
/// [`CoroError::MonitorRunning`] if one is already running,
/// [`CoroError::InvalidArgument`] for a threshold under 1 ms.
pub fn start_monitor_with(threshold: Duration) -> Result<Monitor> {
    if threshold < Duration::from_millis(1) {
        return Err(CoroError::InvalidArgument(format!(
            "monitor threshold {threshold:?} is under 1 ms"
        )));
    }
    if ENABLED.swap(true, Ordering::AcqRel) {
        return Err(CoroError::MonitorRunning);
    }
    runtime::ensure_init();
    let interval = (threshold / 4).max(Duration::from_micros(500));
    let epoch = Instant::now();
    let stopping = Arc::new(AtomicBool::new(false));
    let workers = runtime::runtime_config().workers();
    let mut beats = Vec::with_capacity(workers);
    let mut heartbeats = Vec::with_capacity(workers);
    for id in 0..workers {
        let beat = Arc::new(Heartbeat {
            last_beat: AtomicU64::new(0),
            worker: Mutex::new(None),
        });
        beats.push(beat.clone());
        let stop_beat = stopping.clone();
        let spawned = crate::greenlet::Builder::new()
            .name(format!("coro-monitor-heartbeat-{id}"))
            .worker(id)
            .spawn(move || {
                while !stop_beat.load(Ordering::Acquire) {
                    *beat.worker.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(this_worker_slot());
                    beat.last_beat.store(elapsed_ns(epoch), Ordering::Release);
                    crate::sleep::sleep(interval);
                }
            });
        match spawned {
            Ok(g) => heartbeats.push(g),
            Err(e) => {
                stopping.store(true, Ordering::Release);
                ENABLED.store(false, Ordering::Release);
                return Err(e);
            }
        }
    }
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let reports = Arc::new(AtomicU64::new(0));
    let reports2 = reports.clone();
    let thread = thread::Builder::new()
        .name("coro-monitor".into())
        .spawn(move || watch(&beats, epoch, threshold, interval, &stop_rx, &reports2))
        .map_err(|e| {
            stopping.store(true, Ordering::Release);
            ENABLED.store(false, Ordering::Release);
            CoroError::Spawn(format!("monitor thread: {e}"))
        })?;
    Ok(Monitor {
        stop: Some(stop_tx),
        stopping,
        thread: Some(thread),
        heartbeats,
        reports,
        threshold,
    })
}

fn elapsed_ns(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn watch(
    beats: &[Arc<Heartbeat>],
    epoch: Instant,
    threshold: Duration,
    interval: Duration,
    stop: &mpsc::Receiver<()>,
    reports: &AtomicU64,
) {
    // The beat value already reported, per heartbeat, so one stall logs once.
    let mut reported = vec![u64::MAX; beats.len()];
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = elapsed_ns(epoch);
        for (i, beat) in beats.iter().enumerate() {
            let last = beat.last_beat.load(Ordering::Acquire);
            if last == 0 || reported[i] == last {
                continue;
            }
            let stalled = Duration::from_nanos(now.saturating_sub(last));
            if stalled <= threshold {
                continue;
            }
            reported[i] = last;
            reports.fetch_add(1, Ordering::Relaxed);
            let name = beat
                .worker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .and_then(|slot| {
                    slot.current
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                        .map(|co| co.name().unwrap_or("<unnamed may coroutine>").to_string())
                })
                .unwrap_or_else(|| "<unknown>".to_string());
            log::warn!(
                target: "coro::monitor",
                "coroutine '{name}' has kept its worker from switching for {} ms \
                 (threshold {} ms): a blocking call or a long CPU loop inside a coroutine",
                stalled.as_millis(),
                threshold.as_millis()
            );
        }
    }
}

impl Monitor {
    /// How many stalls this monitor has reported so far.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// The threshold it reports above.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Stops the monitor and its heartbeats and waits for them (bounded by `timeout`).
    ///
    /// Returns `false` if the heartbeats did not finish in time (their worker is blocked).
    pub fn stop_timeout(mut self, timeout: Duration) -> bool {
        self.shutdown(timeout)
    }

    /// Stops the monitor, waiting up to one second for its heartbeats.
    pub fn stop(self) -> bool {
        self.stop_timeout(Duration::from_secs(1))
    }

    fn shutdown(&mut self, timeout: Duration) -> bool {
        self.stopping.store(true, Ordering::Release);
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let heartbeats = std::mem::take(&mut self.heartbeats);
        let done = crate::timeout::joinall(&heartbeats, Some(timeout)).is_ok();
        ENABLED.store(false, Ordering::Release);
        done
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.shutdown(Duration::from_secs(1));
        }
    }
}
