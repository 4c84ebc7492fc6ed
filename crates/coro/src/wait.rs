//! The one way coro waits: a state behind a lock, a list of parked waiters, and coro's timer.
//!
//! A waiter parks (a coroutine on its own may park, a thread on a may
//! `Blocker`) behind a [`Node`] whose state moves
//! exactly once from `WAITING` to `NOTIFIED` (a notifier won) or `TIMED_OUT`
//! (the timer, or the thread's own clock, won); whoever wins the move unparks.
//! So a notification never goes to a waiter that already timed out, and
//! `notify_one` passes over such a waiter to the next one. A waiter killed
//! while parked (may's cancel unwinds from the park) retires its node on the
//! way out and hands a notification it had already received to the next
//! waiter, so none is lost.
//!
//! Inside a coroutine a timed wait is an untimed park plus one entry in
//! [`crate::timer`]; in a thread the thread park's own timeout is exact.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::node::{GONE, NOTIFIED, Node, Parker, TIMED_OUT, WAITING};
use crate::timer;

/// Parks until `node` is notified or `deadline` passes; how it ended (`NOTIFIED` or `TIMED_OUT`).
///
/// If the coroutine is killed meanwhile, the unwinding leaves through here;
/// `on_leave` runs then with whether a notification had arrived.
pub(crate) fn park(node: &Arc<Node>, deadline: Option<Instant>, on_leave: &dyn Fn(bool)) -> u8 {
    struct Leave<'a> {
        node: &'a Node,
        /// Whether an entry waits in coro's timer.
        armed: bool,
        on_leave: &'a dyn Fn(bool),
        done: bool,
    }
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            // Unwinding (killed): retire the node first, so that the timer
            // never takes it for a waiter still waiting.
            let killed =
                (!self.done).then(|| !self.node.moved_to(GONE) && self.node.state() == NOTIFIED);
            if self.armed && self.node.state() != TIMED_OUT {
                timer::ended_early();
            }
            if let Some(notified) = killed {
                // Pass on a notification it had received.
                (self.on_leave)(notified);
            }
        }
    }
    let in_coroutine = matches!(node.parker, Parker::Coroutine(_));
    #[cfg(feature = "trace")]
    let _parked = crate::trace::Parked::new(in_coroutine);
    let mut leave = Leave {
        node,
        armed: false,
        on_leave,
        done: false,
    };
    match deadline {
        Some(at) if in_coroutine => {
            timer::insert(at, node.clone());
            leave.armed = true;
            while node.state() == WAITING {
                node.parker.park(None);
            }
        }
        Some(at) => loop {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Either we time it out, or a notifier got there first.
                node.moved_to(TIMED_OUT);
                break;
            }
            node.parker.park(Some(left));
            if node.state() != WAITING {
                break;
            }
        },
        None => {
            while node.state() == WAITING {
                node.parker.park(None);
            }
        }
    }
    leave.done = true;
    node.state()
}

/// Sleeps until `deadline` on coro's timer (inside a coroutine) or the thread's clock.
pub(crate) fn sleep_until(deadline: Instant) {
    let node = Node::new(Parker::current());
    park(&node, Some(deadline), &|_| {});
}

/// The parked waiters of one [`Signal`].
#[derive(Default)]
struct Waiters {
    queue: VecDeque<Arc<Node>>,
}

impl Waiters {
    fn push(&mut self, node: Arc<Node>) {
        // Drop waiters that already left from the front, and now and then from
        // everywhere, so timed-out waits leave no garbage behind.
        while self.queue.front().is_some_and(|n| n.state() != WAITING) {
            self.queue.pop_front();
        }
        if self.queue.len() >= 64 && self.queue.len().is_power_of_two() {
            self.queue.retain(|n| n.state() == WAITING);
        }
        self.queue.push_back(node);
    }

    fn notify_one(&mut self) {
        while let Some(node) = self.queue.pop_front() {
            if node.notify() {
                return;
            }
        }
    }

    fn notify_all(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        for node in self.queue.drain(..) {
            node.notify();
        }
    }
}

/// How many separate lists of waiters a [`Signal`] keeps by default (a queue's getters and
/// putters); a signal with one kind of waiter (a greenlet's end) keeps one.
const LISTS: usize = 2;

struct Inner<S, const L: usize> {
    value: S,
    waiters: [Waiters; L],
}

/// A state behind a lock, with `L` lists of waiters for it to change.
#[derive(Default)]
pub(crate) struct Signal<S, const L: usize = LISTS> {
    inner: Mutex<Inner<S, L>>,
}

impl<S: Default, const L: usize> Default for Inner<S, L> {
    fn default() -> Self {
        Inner::new(S::default())
    }
}

impl<S, const L: usize> Inner<S, L> {
    fn new(value: S) -> Self {
        Inner {
            value,
            waiters: std::array::from_fn(|_| Waiters::default()),
        }
    }
}

/// The locked state of a [`Signal`]; notify through it, then drop it.
pub(crate) struct Guard<'a, S, const L: usize = LISTS>(MutexGuard<'a, Inner<S, L>>);

impl<S, const L: usize> Deref for Guard<'_, S, L> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0.value
    }
}

impl<S, const L: usize> DerefMut for Guard<'_, S, L> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.0.value
    }
}

impl<S, const L: usize> Guard<'_, S, L> {
    /// Wakes the longest waiting waiter of list `list`.
    pub(crate) fn notify_one_on(&mut self, list: usize) {
        self.0.waiters[list].notify_one();
    }

    /// How many waiters of list `list` are parked and not yet notified or timed out.
    pub(crate) fn waiting_on(&self, list: usize) -> usize {
        self.0.waiters[list]
            .queue
            .iter()
            .filter(|n| n.state() == WAITING)
            .count()
    }

    /// Wakes every waiter (of every list).
    pub(crate) fn notify_all(&mut self) {
        self.0.waiters.iter_mut().for_each(Waiters::notify_all);
    }
}

impl<S, const L: usize> Signal<S, L> {
    pub(crate) fn new(value: S) -> Self {
        Signal {
            inner: Mutex::new(Inner::new(value)),
        }
    }

    /// Locks the state. No code panics while holding the lock, and a killed
    /// waiter unwinds outside it, so poison is never a torn state.
    pub(crate) fn lock(&self) -> Guard<'_, S, L> {
        Guard(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until `ready(state)` or until `timeout` passes (`None`: no timeout).
    /// Returns the locked state and whether it became ready.
    ///
    /// A waiter woken by `notify_one` that finds the state not ready (another
    /// took it first) waits again; one that gives up (timeout) after being
    /// notified leaves the state to the next.
    pub(crate) fn wait_until(
        &self,
        timeout: Option<Duration>,
        ready: impl Fn(&S) -> bool,
    ) -> (Guard<'_, S, L>, bool) {
        let guard = self.lock();
        if ready(&guard) {
            return (guard, true);
        }
        self.wait_slow(0, guard, timeout.map(timer::deadline_after), &ready)
    }

    /// Like [`wait_until`](Self::wait_until) with a deadline (`None`: no limit).
    pub(crate) fn wait_deadline(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&S) -> bool,
    ) -> (Guard<'_, S, L>, bool) {
        self.wait_locked(0, self.lock(), deadline, ready)
    }

    /// Waits with the lock already held, in list `list`, until `deadline` (`None`: no limit).
    /// Whoever makes `ready` true must `notify_one_on(list)` (or `notify_all`).
    pub(crate) fn wait_locked<'a>(
        &'a self,
        list: usize,
        guard: Guard<'a, S, L>,
        deadline: Option<Instant>,
        ready: impl Fn(&S) -> bool,
    ) -> (Guard<'a, S, L>, bool) {
        if ready(&guard) {
            return (guard, true);
        }
        self.wait_slow(list, guard, deadline, &ready)
    }

    #[inline(never)]
    fn wait_slow<'a>(
        &'a self,
        list: usize,
        mut guard: Guard<'a, S, L>,
        deadline: Option<Instant>,
        ready: &dyn Fn(&S) -> bool,
    ) -> (Guard<'a, S, L>, bool) {
        let parker = Parker::current();
        let pass_on = |notified: bool| {
            if notified {
                self.lock().notify_one_on(list);
            }
        };
        let outcome = loop {
            if deadline.is_some_and(|at| Instant::now() >= at) {
                break false;
            }
            let node = Node::new(parker.clone());
            guard.0.waiters[list].push(node.clone());
            drop(guard);
            let how = park(&node, deadline, &pass_on);
            guard = self.lock();
            if ready(&guard) {
                break true;
            }
            if how == TIMED_OUT {
                break false;
            }
        };
        crate::running::resumed();
        (guard, outcome)
    }
}
