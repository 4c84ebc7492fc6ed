//! The `trace` feature's hooks (see the `timeline` crate): each greenlet gets its own track
//! (events carry `coro = id`), with a `spawn` instant, a `run` bar per resume (exited when it
//! parks, entered again when it resumes) and an `end` instant. Compiled only with the feature;
//! each call site is one line.

use std::cell::RefCell;

may::coroutine_local!(static RUN: RefCell<Option<tracing::Span>> = RefCell::new(None));

/// In the spawner: greenlet `id` named `name` was spawned.
pub(crate) fn spawned(id: u64, name: &str) {
    timeline::auto();
    tracing::trace!(target: "coro", coro = id, coro_name = name, "spawn");
}

/// Held by a greenlet's body for its life: the body's first `run` bar starts now, the last
/// ends, and the `end` instant is recorded, when it drops (returned, panicked or killed).
pub(crate) struct Run {
    id: u64,
}

impl Run {
    pub(crate) fn start(id: u64) -> Run {
        // A root span: a coroutine parked inside may (a call coro does not wrap) stays entered
        // on its worker, and spans made there later would chain under it without end.
        let span = tracing::trace_span!(target: "coro", parent: None, "run", coro = id);
        span.with_subscriber(|(sid, dispatch)| dispatch.enter(sid));
        RUN.with(|slot| *slot.borrow_mut() = Some(span));
        Run { id }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(span) = RUN.with(|slot| slot.borrow_mut().take()) {
            span.with_subscriber(|(sid, dispatch)| dispatch.exit(sid));
        }
        tracing::trace!(target: "coro", coro = self.id, "end");
    }
}

/// Held across a park (or a yield) of the current greenlet: ends its `run` bar now and starts
/// the next one when it drops, on whichever worker the greenlet resumed.
pub(crate) struct Parked {
    parked: bool,
}

impl Parked {
    pub(crate) fn new(in_coroutine: bool) -> Parked {
        let parked = in_coroutine
            && RUN.with(|slot| {
                slot.borrow()
                    .as_ref()
                    .and_then(|span| span.with_subscriber(|(sid, d)| d.exit(sid)))
                    .is_some()
            });
        Parked { parked }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if self.parked {
            RUN.with(|slot| {
                if let Some(span) = slot.borrow().as_ref() {
                    span.with_subscriber(|(sid, d)| d.enter(sid));
                }
            });
        }
    }
}
