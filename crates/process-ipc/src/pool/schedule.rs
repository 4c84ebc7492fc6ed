//! The Pool's decisions as plain data: the pending queue, which worker holds which task, fair
//! shares, what becomes of a dead worker's tasks, `max_tasks_per_child` and per-task timeouts.
//!
//! Nothing here starts a process, a thread or a channel: the collector tells the schedule what
//! happened (a task was submitted, finished, a worker exited) and the schedule answers what to
//! do (hand these tasks to that worker; this task was lost; requeue those). So every guarantee
//! of the Pool is a unit test below that runs in microseconds.
//!
//! A worker runs the tasks it holds in the order it was given them, so the oldest task it holds
//! is the one it is running. When it dies, that task is the one lost; the rest never started
//! and go back to the front of the queue, in order, for the other workers or its replacement.
//! A lost task the pool retries (`retries`) waits apart, for a fresh worker: one that has been
//! handed nothing yet (the dead one's replacement), ahead of any other task.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A task's number in its pool.
pub(super) type TaskId = u64;
/// A worker's key (its result channel's key in the collector's receiver set).
pub(super) type WorkerKey = u64;

/// Tasks a worker may hold at once (one running, the rest waiting in its channel).
pub(super) const PREFETCH: usize = 32;
/// As results come back, a worker gets more once it holds this many or fewer, so tasks go out
/// in batches instead of one message per task.
pub(super) const REFILL_AT: usize = PREFETCH / 2;

/// What one worker holds.
#[derive(Debug)]
struct Held {
    /// Tasks handed to it, oldest (running) first.
    tasks: VecDeque<TaskId>,
    /// Tasks ever handed to it (for `max_tasks_per_child`).
    assigned: usize,
    /// When its oldest task started to be the oldest (for the per-task timeout).
    front_since: Option<Instant>,
    /// False once its channel is known closed, or it is asked to finish.
    accepting: bool,
    /// It ran over the per-task timeout and is being killed.
    timed_out: bool,
}

/// What the death of a worker cost.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Lost {
    /// The task it was running, which fails (none if it held none: it left between tasks).
    pub(super) task: Option<TaskId>,
    /// Whether it was killed for running over the per-task timeout.
    pub(super) timed_out: bool,
}

/// Who holds which task; see the module docs.
#[derive(Debug)]
pub(super) struct Schedule {
    max_tasks: Option<usize>,
    pending: VecDeque<TaskId>,
    /// Lost tasks to run again, each on a fresh worker, in the order they were lost.
    retried: VecDeque<TaskId>,
    workers: BTreeMap<WorkerKey, Held>,
}

impl Schedule {
    /// An empty schedule; `max_tasks` is `max_tasks_per_child`.
    pub(super) fn new(max_tasks: Option<usize>) -> Self {
        Self {
            max_tasks,
            pending: VecDeque::new(),
            retried: VecDeque::new(),
            workers: BTreeMap::new(),
        }
    }

    /// A new worker, holding nothing.
    pub(super) fn add_worker(&mut self, key: WorkerKey) {
        self.workers.insert(
            key,
            Held {
                tasks: VecDeque::new(),
                assigned: 0,
                front_since: None,
                accepting: true,
                timed_out: false,
            },
        );
    }

    /// How many workers the schedule knows.
    #[cfg(test)]
    fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Whether nothing is pending and no worker holds a task.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.retried.is_empty()
            && self.workers.values().all(|w| w.tasks.is_empty())
    }

    /// Queues a new task behind every other.
    pub(super) fn submit(&mut self, id: TaskId) {
        self.pending.push_back(id);
    }

    fn capacity(&self, held: &Held) -> usize {
        if !held.accepting || held.timed_out {
            return 0;
        }
        let room = PREFETCH.saturating_sub(held.tasks.len());
        // A worker that will retire after `m` tasks never gets an `m + 1`th: it leaves between
        // tasks, never with one in hand.
        self.max_tasks
            .map_or(room, |m| room.min(m.saturating_sub(held.assigned)))
    }

    /// Hands pending tasks to workers holding at most `refill_at` tasks, each batch at most its
    /// fair share of what is pending (pending / takers, rounded up), the emptiest worker
    /// first. Submitters pass 0 (only idle workers get work at once, so a burst of submissions
    /// does not become a burst of one-task messages); the collector passes [`REFILL_AT`] as
    /// results come back. A retried task goes first, alone, to a fresh worker (see
    /// [`retry`](Self::retry)). Returns the batches to send, in order.
    pub(super) fn dispatch(
        &mut self,
        refill_at: usize,
        now: Instant,
    ) -> Vec<(WorkerKey, Vec<TaskId>)> {
        let mut out = Vec::new();
        if !self.retried.is_empty() {
            let fresh: Vec<WorkerKey> = self
                .workers
                .iter()
                .filter(|(_, w)| w.assigned == 0 && self.capacity(w) > 0)
                .map(|(&k, _)| k)
                .collect();
            for key in fresh {
                let (Some(id), Some(held)) = (self.retried.pop_front(), self.workers.get_mut(&key))
                else {
                    break;
                };
                held.front_since = Some(now);
                held.tasks.push_back(id);
                held.assigned = 1;
                out.push((key, vec![id]));
            }
        }
        while !self.pending.is_empty() {
            let eligible: Vec<(WorkerKey, usize, usize)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.tasks.len() <= refill_at)
                .map(|(&k, w)| (k, w.tasks.len(), self.capacity(w)))
                .filter(|&(_, _, room)| room > 0)
                .collect();
            let Some(&(key, _, room)) = eligible.iter().min_by_key(|&&(_, held, _)| held) else {
                break;
            };
            let fair_share = self.pending.len().div_ceil(eligible.len());
            let take = room.min(fair_share).min(self.pending.len());
            let batch: Vec<TaskId> = self.pending.drain(..take).collect();
            let held = self
                .workers
                .get_mut(&key)
                .expect("an eligible worker exists");
            if held.tasks.is_empty() {
                held.front_since = Some(now);
            }
            held.tasks.extend(&batch);
            held.assigned += batch.len();
            out.push((key, batch));
        }
        out
    }

    /// Withdraws tasks that no worker holds yet: all of `ids` or, if any of them was handed
    /// to a worker (or is gone), none. True if they were withdrawn.
    pub(super) fn cancel(&mut self, ids: &[TaskId]) -> bool {
        if ids.is_empty() || !ids.iter().all(|id| self.pending.contains(id)) {
            return false;
        }
        self.pending.retain(|id| !ids.contains(id));
        true
    }

    /// The worker's channel refused `ids` (it is gone): they never reached it, so they go back
    /// to the front of the queue, in order, and the worker gets nothing more.
    pub(super) fn undelivered(&mut self, key: WorkerKey, ids: &[TaskId]) {
        if let Some(held) = self.workers.get_mut(&key) {
            held.accepting = false;
            held.tasks.retain(|id| !ids.contains(id));
            held.assigned = held.assigned.saturating_sub(ids.len());
        }
        for &id in ids.iter().rev() {
            self.pending.push_front(id);
        }
    }

    /// Worker `key` finished task `id`. False if it did not hold it (a late answer).
    pub(super) fn finished(&mut self, key: WorkerKey, id: TaskId, now: Instant) -> bool {
        let Some(held) = self.workers.get_mut(&key) else {
            return false;
        };
        let Some(position) = held.tasks.iter().position(|&t| t == id) else {
            return false;
        };
        held.tasks.remove(position);
        held.front_since = (!held.tasks.is_empty()).then_some(now);
        true
    }

    /// Whether worker `key` ran every task `max_tasks_per_child` allows and holds none: it
    /// leaves now, between tasks.
    pub(super) fn retiring(&self, key: WorkerKey) -> bool {
        self.workers
            .get(&key)
            .is_some_and(|w| w.tasks.is_empty() && self.max_tasks.is_some_and(|m| w.assigned >= m))
    }

    /// Worker `key` is gone. `undelivered` are the tasks its channel never carried to it. The
    /// oldest task it held (and received) was running: it is lost, whatever the exit code (a
    /// task that calls `exit(0)` must not run again in each replacement). Every other task it
    /// held goes back to the front of the queue. A worker that leaves between tasks
    /// (`max_tasks_per_child`) holds none and loses nothing.
    pub(super) fn exited(&mut self, key: WorkerKey, undelivered: &[TaskId]) -> Lost {
        let Some(held) = self.workers.remove(&key) else {
            return Lost {
                task: None,
                timed_out: false,
            };
        };
        let mut tasks = held.tasks;
        let lost = tasks
            .iter()
            .position(|id| !undelivered.contains(id))
            .and_then(|position| tasks.remove(position));
        for id in tasks.into_iter().rev() {
            self.pending.push_front(id);
        }
        Lost {
            task: lost,
            timed_out: held.timed_out,
        }
    }

    /// Task `id`, lost with its worker, is to run again (the pool's `retries`) on a fresh
    /// worker: one handed nothing yet, as the dead one's replacement is. It goes to the first
    /// such worker, ahead of every pending task; a worker that has run other tasks never gets
    /// it (whatever killed the first might have been left behind in it).
    pub(super) fn retry(&mut self, id: TaskId) {
        self.retried.push_back(id);
    }

    /// No fresh worker is coming (a replacement could not be started): the retried tasks
    /// go to the front of the queue, for any worker.
    pub(super) fn no_fresh_worker(&mut self) {
        while let Some(id) = self.retried.pop_back() {
            self.pending.push_front(id);
        }
    }

    /// Workers whose running task has run longer than `limit` by `now`; each is reported once
    /// (and gets nothing more), to be killed.
    pub(super) fn overdue(&mut self, now: Instant, limit: Duration) -> Vec<WorkerKey> {
        let mut out = Vec::new();
        for (&key, held) in &mut self.workers {
            let over = held
                .front_since
                .is_some_and(|t| now.saturating_duration_since(t) > limit);
            if over && !held.timed_out {
                held.timed_out = true;
                out.push(key);
            }
        }
        out
    }

    /// No worker gets anything more (the pool is closing and has no tasks left).
    pub(super) fn stop_feeding(&mut self) {
        for held in self.workers.values_mut() {
            held.accepting = false;
        }
    }

    /// Forgets every task, pending or held (terminate, or a pool that cannot run tasks).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.retried.clear();
        for held in self.workers.values_mut() {
            held.tasks.clear();
            held.front_since = None;
            held.accepting = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(workers: u64, max_tasks: Option<usize>) -> Schedule {
        let mut s = Schedule::new(max_tasks);
        for k in 0..workers {
            s.add_worker(k);
        }
        s
    }

    fn submit(s: &mut Schedule, ids: std::ops::Range<TaskId>) {
        ids.for_each(|id| s.submit(id));
    }

    fn held(s: &Schedule, key: WorkerKey) -> Vec<TaskId> {
        s.workers[&key].tasks.iter().copied().collect()
    }

    #[test]
    fn a_dead_worker_fails_only_the_task_it_was_running() {
        let mut s = pool(2, None);
        submit(&mut s, 0..6);
        let now = Instant::now();
        let batches = s.dispatch(0, now);
        assert_eq!(batches, vec![(0, vec![0, 1, 2]), (1, vec![3, 4, 5])]);
        assert!(s.finished(0, 0, now));
        let lost = s.exited(0, &[]);
        assert_eq!(lost.task, Some(1));
        assert!(!lost.timed_out);
        // Worker 1 is untouched; task 2 waits for whoever takes it.
        assert_eq!(held(&s, 1), vec![3, 4, 5]);
        assert_eq!(s.pending, vec![2]);
    }

    #[test]
    fn tasks_queued_behind_a_dead_worker_go_to_its_replacement_in_order() {
        let mut s = pool(1, None);
        submit(&mut s, 0..5);
        let now = Instant::now();
        s.dispatch(0, now);
        submit(&mut s, 5..7);
        assert_eq!(s.exited(0, &[]).task, Some(0));
        s.add_worker(7);
        let batches = s.dispatch(0, now);
        assert_eq!(batches, vec![(7, vec![1, 2, 3, 4, 5, 6])]);
    }

    #[test]
    fn a_task_that_never_reached_the_dead_worker_is_not_blamed() {
        let mut s = pool(1, None);
        submit(&mut s, 0..3);
        let now = Instant::now();
        s.dispatch(0, now);
        // The channel carried 0 and 1; 2 was refused.
        s.undelivered(0, &[2]);
        assert_eq!(s.pending, vec![2]);
        assert_eq!(s.exited(0, &[]).task, Some(0));
        assert_eq!(s.pending, vec![1, 2]);
        // A worker whose channel carried nothing at all loses nothing.
        let mut s = pool(1, None);
        submit(&mut s, 0..2);
        s.dispatch(0, now);
        assert_eq!(s.exited(0, &[0, 1]).task, None);
        assert_eq!(s.pending, vec![0, 1]);
    }

    #[test]
    fn an_exit_mid_task_loses_that_task_even_with_code_0() {
        // A task that calls `exit(0)` must fail once, not run again in every replacement.
        let mut s = pool(1, None);
        submit(&mut s, 0..3);
        s.dispatch(0, Instant::now());
        assert_eq!(s.exited(0, &[]).task, Some(0));
        assert_eq!(s.pending, vec![1, 2]);
    }

    #[test]
    fn a_retried_task_waits_for_a_fresh_worker_and_goes_first() {
        let mut s = pool(2, None);
        submit(&mut s, 0..4);
        let now = Instant::now();
        assert_eq!(s.dispatch(0, now), vec![(0, vec![0, 1]), (1, vec![2, 3])]);
        assert!(s.finished(1, 2, now) && s.finished(1, 3, now));
        assert_eq!(s.exited(0, &[]).task, Some(0));
        s.retry(0);
        // Worker 1 is idle, but has run tasks: it gets the pending task 1, never the retry.
        assert_eq!(s.dispatch(REFILL_AT, now), vec![(1, vec![1])]);
        assert!(s.dispatch(REFILL_AT, now).is_empty());
        // The replacement gets it, alone, before anything else.
        submit(&mut s, 4..6);
        s.add_worker(2);
        let batches = s.dispatch(REFILL_AT, now);
        assert_eq!(batches[0], (2, vec![0]));
        assert_eq!(held(&s, 2)[0], 0);
        assert!(!s.cancel(&[0]), "a retried task is no longer pending");
    }

    #[test]
    fn retried_tasks_go_to_any_worker_when_no_fresh_one_comes() {
        let mut s = pool(2, None);
        submit(&mut s, 0..2);
        let now = Instant::now();
        s.dispatch(0, now);
        assert_eq!(s.exited(0, &[]).task, Some(0));
        s.retry(0);
        assert!(s.finished(1, 1, now));
        assert!(s.dispatch(REFILL_AT, now).is_empty());
        s.no_fresh_worker();
        assert_eq!(s.dispatch(REFILL_AT, now), vec![(1, vec![0])]);
        assert!(!s.is_idle());
    }

    #[test]
    fn no_worker_gets_more_than_its_fair_share_of_a_burst() {
        let mut s = pool(2, None);
        submit(&mut s, 0..8);
        let batches = s.dispatch(0, Instant::now());
        assert_eq!(batches, vec![(0, vec![0, 1, 2, 3]), (1, vec![4, 5, 6, 7])]);
        // An odd burst on three workers: 7 = 3 + 2 + 2.
        let mut s = pool(3, None);
        submit(&mut s, 0..7);
        let sizes: Vec<usize> = s
            .dispatch(0, Instant::now())
            .iter()
            .map(|(_, b)| b.len())
            .collect();
        assert_eq!(sizes, vec![3, 2, 2]);
    }

    #[test]
    fn a_worker_holds_at_most_the_prefetch() {
        let mut s = pool(1, None);
        submit(&mut s, 0..100);
        let batches = s.dispatch(0, Instant::now());
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].1.len(), PREFETCH);
        assert_eq!(s.pending.len(), 100 - PREFETCH);
    }

    #[test]
    fn submitters_feed_only_idle_workers_and_results_refill_in_batches() {
        let mut s = pool(1, None);
        let now = Instant::now();
        submit(&mut s, 0..1);
        assert_eq!(s.dispatch(0, now).len(), 1);
        // A busy worker gets nothing from a submitter...
        submit(&mut s, 1..2);
        assert!(s.dispatch(0, now).is_empty());
        // ...but does from the collector, which refills at REFILL_AT.
        assert_eq!(s.dispatch(REFILL_AT, now), vec![(0, vec![1])]);
        // Not once it holds more than REFILL_AT.
        submit(&mut s, 2..40);
        s.dispatch(REFILL_AT, now);
        submit(&mut s, 40..41);
        assert!(s.dispatch(REFILL_AT, now).is_empty());
    }

    #[test]
    fn max_tasks_per_child_retires_a_worker_only_between_tasks() {
        let mut s = pool(2, Some(2));
        submit(&mut s, 0..5);
        let now = Instant::now();
        let batches = s.dispatch(0, now);
        // Each worker gets at most 2 tasks, ever.
        assert_eq!(batches, vec![(0, vec![0, 1]), (1, vec![2, 3])]);
        assert!(s.dispatch(REFILL_AT, now).is_empty());
        assert!(s.finished(0, 0, now));
        assert!(!s.retiring(0), "it still holds task 1");
        assert!(s.dispatch(REFILL_AT, now).is_empty());
        assert!(s.finished(0, 1, now));
        assert!(s.retiring(0));
        // It leaves by itself, holding nothing: no task is lost.
        assert_eq!(s.exited(0, &[]).task, None);
        s.add_worker(2);
        assert_eq!(s.dispatch(REFILL_AT, now), vec![(2, vec![4])]);
    }

    #[test]
    fn an_overdue_worker_is_reported_once_and_its_task_times_out() {
        let mut s = pool(2, None);
        submit(&mut s, 0..2);
        let start = Instant::now();
        s.dispatch(0, start);
        let limit = Duration::from_secs(1);
        assert!(s.overdue(start + limit / 2, limit).is_empty());
        assert!(s.finished(1, 1, start + limit / 2));
        assert_eq!(s.overdue(start + limit * 2, limit), vec![0]);
        assert!(s.overdue(start + limit * 3, limit).is_empty());
        // It gets nothing more while it is being killed.
        submit(&mut s, 2..3);
        assert_eq!(s.dispatch(0, start), vec![(1, vec![2])]);
        assert_eq!(
            s.exited(0, &[]),
            Lost {
                task: Some(0),
                timed_out: true
            }
        );
    }

    #[test]
    fn the_timeout_clock_restarts_with_each_task() {
        let mut s = pool(1, None);
        submit(&mut s, 0..2);
        let start = Instant::now();
        let limit = Duration::from_secs(1);
        s.dispatch(0, start);
        assert!(s.finished(0, 0, start + limit / 2 * 3));
        assert!(s.overdue(start + limit * 2, limit).is_empty());
        assert_eq!(s.overdue(start + limit * 3, limit), vec![0]);
    }

    #[test]
    fn only_tasks_no_worker_holds_can_be_cancelled() {
        let mut s = pool(1, None);
        submit(&mut s, 0..4);
        let now = Instant::now();
        assert_eq!(s.dispatch(0, now), vec![(0, vec![0, 1, 2, 3])]);
        submit(&mut s, 4..7);
        // Held by the worker (running or queued in its channel): too late.
        assert!(!s.cancel(&[1]));
        // Pending: withdrawn, and never dispatched.
        assert!(s.cancel(&[5]));
        assert!(!s.cancel(&[5]), "a task is cancelled once");
        // All or nothing.
        assert!(!s.cancel(&[4, 2]));
        assert_eq!(s.pending, vec![4, 6]);
        assert!(s.finished(0, 0, now));
        assert!(s.cancel(&[4, 6]));
        assert!(s.dispatch(REFILL_AT, now).is_empty());
    }

    #[test]
    fn a_late_answer_is_ignored() {
        let mut s = pool(1, None);
        assert!(!s.finished(0, 42, Instant::now()));
        assert!(!s.finished(9, 0, Instant::now()));
    }

    #[test]
    fn stop_feeding_and_clear_leave_nothing_to_send() {
        let mut s = pool(2, None);
        submit(&mut s, 0..4);
        s.stop_feeding();
        assert!(s.dispatch(0, Instant::now()).is_empty());
        assert!(!s.is_idle());
        s.clear();
        assert!(s.is_idle());
        assert_eq!(s.workers(), 2);
    }
}
