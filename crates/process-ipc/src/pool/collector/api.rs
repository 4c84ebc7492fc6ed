//! What the Pool API asks of the shared state: submit, cancel, close, join, terminate.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::PoolError;

use super::super::schedule::TaskId;
use super::{Completer, Describe, PoolShared, PoolState, TICK, Task, dispatch, run_completer};

impl PoolShared {
    pub(in crate::pool) fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current workers' pids, sorted.
    pub(in crate::pool) fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.lock().workers.values().map(|w| w.pid).collect();
        pids.sort_unstable();
        pids
    }

    /// Queues tasks (all or none) and hands them to idle workers.
    pub(in crate::pool) fn submit(
        &self,
        tasks: Vec<(isize, Vec<u8>, Describe, Completer)>,
    ) -> Result<Vec<TaskId>, PoolError> {
        let mut st = self.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        if st.closed || st.terminated {
            return Err(PoolError::Closed);
        }
        let mut ids = Vec::with_capacity(tasks.len());
        for (call, args, what, complete) in tasks {
            let id = st.next_id;
            st.next_id += 1;
            ids.push(id);
            let task = Task {
                call,
                args: Arc::new(args),
                what,
                complete,
                deaths: 0,
            };
            st.tasks.insert(id, task);
            st.schedule().submit(id);
        }
        dispatch(&mut st, 0);
        Ok(ids)
    }

    /// Withdraws tasks no worker holds yet (all or none), failing them with
    /// [`PoolError::Cancelled`]. True if they were withdrawn.
    pub(in crate::pool) fn cancel(&self, ids: &[TaskId]) -> bool {
        let tasks: Vec<Task> = {
            let mut st = self.lock();
            if !st.schedule().cancel(ids) {
                return false;
            }
            ids.iter().filter_map(|id| st.tasks.remove(id)).collect()
        };
        for task in tasks {
            run_completer(task.complete, Err(PoolError::Cancelled));
        }
        self.changed.notify_all();
        true
    }

    /// No new tasks from now on.
    pub(in crate::pool) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits for every task, then for every worker to exit (their task channels close once
    /// no task is left); `deadline` bounds the wait.
    pub(in crate::pool) fn join_until(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<(), PoolError> {
        let mut st = self.lock();
        if !st.closed && !st.terminated {
            return Err(PoolError::StillOpen);
        }
        loop {
            if st.tasks.is_empty() {
                st.schedule().stop_feeding();
                for w in st.workers.values_mut() {
                    w.feeder = None;
                }
            }
            if st.workers.is_empty() {
                return match crate::interrupt::interrupted() {
                    Some(signal) => Err(PoolError::Interrupted { signal }),
                    None => Ok(()),
                };
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some((at, timeout)) => {
                    let now = Instant::now();
                    if now >= at {
                        return Err(PoolError::Timeout { timeout });
                    }
                    self.changed
                        .wait_timeout(st, (at - now).min(TICK))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Kills every worker and fails every unfinished task with [`PoolError::Terminated`].
    pub(in crate::pool) fn terminate(&self) {
        self.terminate_with(PoolError::Terminated);
    }

    /// Kills every worker and fails every unfinished task with `err`.
    pub(in crate::pool) fn terminate_with(&self, err: PoolError) {
        let tasks: Vec<Task> = {
            let mut st = self.lock();
            st.terminated = true;
            st.closed = true;
            st.schedule().clear();
            for w in st.workers.values_mut() {
                w.feeder = None;
                if let Some(h) = w.handle.as_mut() {
                    let _ = h.kill();
                }
            }
            st.tasks.drain().map(|(_, t)| t).collect()
        };
        for task in tasks {
            run_completer(task.complete, Err(err.clone()));
        }
        self.changed.notify_all();
    }
}
