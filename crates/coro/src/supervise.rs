//! Waiting on many things and stopping many greenlets: `wait`, `iwait`, `killall`, `Group`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{AsyncResult, Event};
use crate::greenlet::{Greenlet, GreenletRef, LinkOn, spawn};
use crate::timer;
use crate::wait::Signal;

/// Something [`wait`] and [`iwait`] can watch: greenlets, events and async results.
///
/// Sealed: implemented by [`Greenlet`], [`GreenletRef`], [`Event`] and [`AsyncResult`].
pub trait Waitable: sealed::Sealed {
    /// Whether it is ready now (a greenlet ended, an event is set, a result delivered).
    fn is_ready(&self) -> bool;
    #[doc(hidden)]
    /// Runs `f` once when it becomes ready (at once if it is).
    fn on_ready(&self, f: Box<dyn FnOnce() + Send>);
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for crate::greenlet::Greenlet<T> {}
    impl Sealed for crate::greenlet::GreenletRef {}
    impl Sealed for crate::event::Event {}
    impl<T> Sealed for crate::event::AsyncResult<T> {}
}

impl<T> Waitable for Greenlet<T> {
    fn is_ready(&self) -> bool {
        self.ready()
    }
    fn on_ready(&self, f: Box<dyn FnOnce() + Send>) {
        self.as_ref().on_ready(f);
    }
}

impl Waitable for GreenletRef {
    fn is_ready(&self) -> bool {
        self.ready()
    }
    fn on_ready(&self, f: Box<dyn FnOnce() + Send>) {
        self.shared().link(LinkOn::Any, Box::new(move |_| f()));
    }
}

impl Waitable for Event {
    fn is_ready(&self) -> bool {
        self.is_set()
    }
    fn on_ready(&self, f: Box<dyn FnOnce() + Send>) {
        self.rawlink(f);
    }
}

impl<T> Waitable for AsyncResult<T> {
    fn is_ready(&self) -> bool {
        self.is_delivered()
    }
    fn on_ready(&self, f: Box<dyn FnOnce() + Send>) {
        self.rawlink(f);
    }
}

/// Indices of watched objects in the order they became ready.
type ReadyOrder = Arc<Signal<VecDeque<usize>>>;

fn watch(objects: &[&dyn Waitable]) -> ReadyOrder {
    let order: ReadyOrder = Arc::new(Signal::new(VecDeque::new()));
    for (i, object) in objects.iter().enumerate() {
        let order = order.clone();
        object.on_ready(Box::new(move || {
            let mut ready = order.lock();
            ready.push_back(i);
            ready.notify_all();
        }));
    }
    order
}

/// Waits until `count` of `objects` are ready (all of them if `None`, or if
/// `count` is larger), or until `timeout`; returns the indices of the ready
/// ones in the order they became ready (gevent's `gevent.wait`).
///
/// A callback stays registered on an object that was not ready in time until
/// it becomes ready (it then does nothing).
///
/// ```
/// use std::time::Duration;
/// let slow = coro::spawn(|| coro::sleep(Duration::from_secs(60)))?;
/// let fast = coro::spawn(|| ())?;
/// let ev = coro::Event::new();
/// ev.set();
/// let ready = coro::wait(&[&slow, &fast, &ev], Some(Duration::from_secs(5)), Some(2));
/// assert_eq!(ready.len(), 2);
/// assert!(ready.contains(&1) && ready.contains(&2));
/// slow.kill();
/// # Ok::<(), coro::CoroError>(())
/// ```
pub fn wait(
    objects: &[&dyn Waitable],
    timeout: Option<Duration>,
    count: Option<usize>,
) -> Vec<usize> {
    let want = count.unwrap_or(objects.len()).min(objects.len());
    if want == 0 {
        return Vec::new();
    }
    let order = watch(objects);
    let deadline = timeout.map(timer::deadline_after);
    let (ready, _) = order.wait_deadline(deadline, |r| r.len() >= want);
    ready.iter().copied().take(want.max(1)).collect()
}

/// Yields the indices of `objects` as each becomes ready (gevent's `gevent.iwait`),
/// ending when all have, or when `timeout` (counted from this call) passes.
///
/// ```
/// use std::time::Duration;
/// let gs: Vec<_> = (0..3u64)
///     .map(|i| coro::spawn(move || coro::sleep(Duration::from_millis(10 * (3 - i)))))
///     .collect::<Result<_, _>>()?;
/// let refs: Vec<&dyn coro::Waitable> = gs.iter().map(|g| g as &dyn coro::Waitable).collect();
/// let mut order: Vec<usize> = coro::iwait(&refs, Some(Duration::from_secs(5))).collect();
/// order.sort();
/// assert_eq!(order, [0, 1, 2]);
/// # Ok::<(), coro::CoroError>(())
/// ```
pub fn iwait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Iwait {
    Iwait {
        order: watch(objects),
        left: objects.len(),
        deadline: timeout.map(timer::deadline_after),
    }
}

/// The iterator of [`iwait`].
pub struct Iwait {
    order: ReadyOrder,
    left: usize,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Iwait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iwait").field("left", &self.left).finish()
    }
}

impl Iterator for Iwait {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let (mut ready, _) = self.order.wait_deadline(self.deadline, |r| !r.is_empty());
        let next = ready.pop_front();
        if next.is_some() {
            self.left -= 1;
        } else {
            self.left = 0;
        }
        next
    }
}

/// Kills every greenlet and waits until they stopped, at most `timeout`
/// (gevent's `killall`); whether all stopped. Finished ones are left as they are.
pub fn killall<'a, T: 'a>(
    greenlets: impl IntoIterator<Item = &'a Greenlet<T>>,
    timeout: Option<Duration>,
) -> bool {
    let greenlets: Vec<&Greenlet<T>> = greenlets.into_iter().collect();
    greenlets.iter().for_each(|g| g.kill_nowait());
    let deadline = timeout.map(timer::deadline_after);
    greenlets.iter().all(|g| match deadline {
        None => {
            g.join();
            true
        }
        Some(at) => g.join_timeout(at.saturating_duration_since(Instant::now())),
    })
}

/// A set of greenlets to join or kill together (gevent's `pool.Group`).
///
/// ```
/// use std::time::Duration;
/// let group = coro::Group::new();
/// let gate = coro::Event::new();
/// let a = {
///     let gate = gate.clone();
///     group.spawn(move || gate.wait_timeout(Duration::from_secs(5)))?
/// };
/// let b = group.spawn(|| coro::sleep(Duration::from_secs(60)))?;
/// assert_eq!(group.len(), 2); // both still running
/// gate.set();
/// assert!(a.into_value()?);
/// assert!(group.kill_timeout(Duration::from_secs(5)));
/// assert!(b.ready());
/// assert!(group.join_timeout(Duration::from_secs(5)));
/// assert_eq!(group.map(|x: u32| x * 2, 0..4)?, [0, 2, 4, 6]);
/// # Ok::<(), coro::CoroError>(())
/// ```
#[derive(Clone, Default)]
pub struct Group {
    members: Arc<std::sync::Mutex<Vec<GreenletRef>>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("len", &self.len()).finish()
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<GreenletRef>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `f` into the group.
    ///
    /// # Errors
    /// As [`crate::spawn`].
    pub fn spawn<F, T>(&self, f: F) -> Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let g = spawn(f)?;
        self.add(g.as_ref());
        Ok(g)
    }

    /// Adds a greenlet spawned elsewhere.
    pub fn add(&self, greenlet: GreenletRef) {
        let mut members = self.members();
        members.retain(|g| !g.ready());
        members.push(greenlet);
    }

    /// Greenlets of the group still running (finished ones leave it).
    pub fn len(&self) -> usize {
        let mut members = self.members();
        members.retain(|g| !g.ready());
        members.len()
    }

    /// Whether no greenlet of the group is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every greenlet of the group has finished.
    pub fn join(&self) {
        let members = self.members().clone();
        members.iter().for_each(GreenletRef::join);
    }

    /// Like [`join`](Self::join), at most `timeout`; whether all finished.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let deadline = timer::deadline_after(timeout);
        let members = self.members().clone();
        members
            .iter()
            .all(|g| g.join_timeout(deadline.saturating_duration_since(Instant::now())))
    }

    /// Kills every greenlet of the group and waits until they stopped.
    pub fn kill(&self) {
        let members = self.members().clone();
        members.iter().for_each(GreenletRef::kill_nowait);
        members.iter().for_each(GreenletRef::join);
    }

    /// Like [`kill`](Self::kill), waiting at most `timeout`; whether all stopped.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        let members = self.members().clone();
        members.iter().for_each(GreenletRef::kill_nowait);
        let deadline = timer::deadline_after(timeout);
        members
            .iter()
            .all(|g| g.join_timeout(deadline.saturating_duration_since(Instant::now())))
    }

    /// Runs `f` on every item, each in a greenlet of the group; the values in order.
    ///
    /// # Errors
    /// The first failure (a panic is [`crate::CoroError::Panicked`]), or a spawn error.
    pub fn map<F, I, R>(&self, f: F, items: impl IntoIterator<Item = I>) -> Result<Vec<R>>
    where
        F: Fn(I) -> R + Clone + Send + 'static,
        I: Send + 'static,
        R: Send + 'static,
    {
        let gs = items
            .into_iter()
            .map(|item| {
                let f = f.clone();
                self.spawn(move || f(item))
            })
            .collect::<Result<Vec<_>>>()?;
        gs.into_iter().map(Greenlet::into_value).collect()
    }
}
