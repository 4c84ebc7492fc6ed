//! A worker's exit as the collector handles it: what the death cost (its running task retried
//! or failed, naming the cause), its ring kept for the replacement, and the replacements
//! started; and the workers killed for running over the task timeout.

use std::time::Instant;

use ipc_channel::ipc::IpcReceiverSet;

use crate::error::{PoolError, signal_name};
use crate::process::ProcessHandle;

use super::super::launch::start_worker;
use super::super::schedule::REFILL_AT;
use super::super::schedule::WorkerKey;
use super::{FEEDER_GRACE, PoolShared, Task, dispatch, run_completer};

/// `(cause, signal)` from Python's exit code convention (`-signal` for a signal). Code 0 is
/// named like any other: a worker that exits while running a task has lost it.
fn describe_exit(code: Option<i32>) -> (String, Option<i32>) {
    match code {
        Some(c) if c < 0 => (
            format!("killed by signal {} ({})", -c, signal_name(-c)),
            Some(-c),
        ),
        Some(c) => (format!("exited with code {c}"), None),
        None => ("ended with an unknown status".into(), None),
    }
}

pub(super) fn on_exit(shared: &PoolShared, set: &mut IpcReceiverSet, key: WorkerKey) {
    let Some(mut worker) = shared.lock().workers.remove(&key) else {
        return;
    };
    // The watcher saw it exit: this reaps it at once.
    let code = worker.handle.as_mut().and_then(ProcessHandle::exitcode);
    drop(worker.handle.take());
    let (how, signal) = describe_exit(code);
    let interrupted = crate::interrupt::interrupt_behind(signal);
    #[cfg(feature = "trace")]
    crate::trace::worker_exit(worker.pid, code, &how);
    let cause = match &worker.broken {
        Some(why) => format!("its result ring is corrupt ({why}), so the pool ended it: it {how}"),
        None => how,
    };
    // With the process gone, the feeder's sends fail; it then says what it never sent.
    drop(worker.feeder.take());
    let undelivered = worker
        .feeder_done
        .recv_timeout(FEEDER_GRACE)
        .unwrap_or_default();
    let failed = {
        let mut st = shared.lock();
        let lost = st.schedule().exited(key, &undelivered);
        let retries = shared.config.retries;
        let mut rerun = false;
        if let Some(task) = lost.task.and_then(|id| st.tasks.get_mut(&id)) {
            task.deaths += 1;
            // A task killed for running over the timeout would only run over it again.
            rerun = !lost.timed_out && task.deaths <= retries && interrupted.is_none();
        }
        if rerun {
            if let Some(id) = lost.task {
                st.schedule().retry(id);
            }
            // It waits for a fresh worker (the replacement, started below); the tasks its
            // worker held behind it may go to any live worker with room now.
            dispatch(&mut st, REFILL_AT);
            None
        } else {
            lost.task.and_then(|id| st.tasks.remove(&id)).map(|task| {
                let err = match (lost.timed_out, shared.config.task_timeout) {
                    _ if interrupted.is_some() => PoolError::Interrupted {
                        signal: interrupted.unwrap_or_default(),
                    },
                    (true, Some(limit)) => PoolError::TaskTimeout {
                        pid: worker.pid,
                        limit,
                    },
                    _ => PoolError::WorkerDied {
                        pid: worker.pid,
                        cause: if retries > 0 {
                            format!(
                                "{cause} (its worker died on each of its {} runs)",
                                task.deaths
                            )
                        } else {
                            cause
                        },
                        signal,
                        what: (task.what)(),
                    },
                };
                (task, err)
            })
        }
    };
    if let Some((task, err)) = failed {
        run_completer(task.complete, Err(err));
    }
    // A ring read to its end, never found corrupt, serves the replacement.
    if worker.broken.is_none() && worker.ring.0.is_drained() == Ok(true) {
        let mut st = shared.lock();
        if st.spare_rings.len() < shared.config.processes {
            st.spare_rings.push(worker.ring);
        }
    }
    replace_workers(shared, set);
    shared.changed.notify_all();
}

/// Starts workers until the pool is back to its size, if it still needs them.
pub(super) fn replace_workers(shared: &PoolShared, set: &mut IpcReceiverSet) {
    loop {
        {
            let st = shared.lock();
            let wanted = !st.terminated
                && crate::interrupt::interrupted().is_none()
                && st.broken.is_none()
                && (!st.closed || !st.tasks.is_empty())
                && st.workers.len() < shared.config.processes;
            if !wanted {
                return;
            }
        }
        let control = shared
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let spare = shared.lock().spare_rings.pop();
        match start_worker(&shared.config, &control, set, &shared.doorbell, spare) {
            Ok((key, mut worker)) => {
                let mut st = shared.lock();
                if st.terminated {
                    if let Some(h) = worker.handle.as_mut() {
                        let _ = h.kill();
                    }
                    worker.feeder = None;
                }
                st.schedule().add_worker(key);
                st.workers.insert(key, worker);
                dispatch(&mut st, REFILL_AT);
            }
            Err(e) => {
                let tasks: Vec<Task> = {
                    let mut st = shared.lock();
                    if !st.workers.is_empty() {
                        // The others carry on (a worker is tried again on the next exit); a
                        // task waiting for a fresh worker to retry it takes any.
                        st.schedule().no_fresh_worker();
                        dispatch(&mut st, REFILL_AT);
                        return;
                    }
                    st.broken = Some(e.clone());
                    st.schedule().clear();
                    st.tasks.drain().map(|(_, t)| t).collect()
                };
                for task in tasks {
                    run_completer(task.complete, Err(e.clone()));
                }
                return;
            }
        }
    }
}

pub(super) fn check_timeouts(shared: &PoolShared) {
    let Some(limit) = shared.config.task_timeout else {
        return;
    };
    let mut st = shared.lock();
    for key in st.schedule().overdue(Instant::now(), limit) {
        if let Some(h) = st.workers.get_mut(&key).and_then(|w| w.handle.as_mut()) {
            let _ = h.kill();
        }
    }
}
