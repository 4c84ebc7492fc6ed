//! A parked waiter: who to wake (a coroutine or a thread) and how its wait ended.
//!
//! The bottom of coro's waiting: [`crate::timer`] and [`crate::wait`] both hold [`Node`]s,
//! and a node's state moves exactly once from `WAITING`, so whoever wins the move unparks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use may::sync::Blocker;

pub(crate) const WAITING: u8 = 0;
pub(crate) const NOTIFIED: u8 = 1;
pub(crate) const TIMED_OUT: u8 = 2;
/// The waiter left (killed) before anyone woke it.
pub(crate) const GONE: u8 = 3;

/// Who to wake: a coroutine (its own may park, no allocation) or a thread (a `Blocker`).
#[derive(Clone)]
pub(crate) enum Parker {
    Coroutine(may::coroutine::Coroutine),
    Thread(Arc<Blocker>),
}

impl Parker {
    /// The caller's parker.
    pub(crate) fn current() -> Parker {
        if may::coroutine::is_coroutine() {
            Parker::Coroutine(may::coroutine::current())
        } else {
            Parker::Thread(Blocker::current())
        }
    }

    pub(crate) fn unpark(&self) {
        match self {
            Parker::Coroutine(co) => co.unpark(),
            Parker::Thread(b) => b.unpark(),
        }
    }

    /// Parks until unparked (or spuriously: every caller re-checks its node).
    /// Inside a coroutine a kill unwinds from here.
    pub(crate) fn park(&self, timeout: Option<Duration>) {
        match self {
            Parker::Coroutine(_) => may::coroutine::park(),
            Parker::Thread(b) => {
                let _ = b.park(timeout);
            }
        }
    }
}

/// One parked waiter.
pub(crate) struct Node {
    pub(crate) parker: Parker,
    state: AtomicU8,
}

impl Node {
    pub(crate) fn new(parker: Parker) -> Arc<Node> {
        Arc::new(Node {
            parker,
            state: AtomicU8::new(WAITING),
        })
    }

    pub(crate) fn moved_to(&self, to: u8) -> bool {
        self.state
            .compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Wakes the waiter unless it already timed out or left; whether it woke it.
    pub(crate) fn notify(&self) -> bool {
        let won = self.moved_to(NOTIFIED);
        if won {
            self.parker.unpark();
        }
        won
    }

    /// The timer's side: wakes the waiter as timed out, unless it was notified first.
    pub(crate) fn time_out(&self) {
        if self.moved_to(TIMED_OUT) {
            self.parker.unpark();
        }
    }
}
