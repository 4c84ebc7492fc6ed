//! [`Queue`]: Python's `queue.Queue` for threads, on `crossbeam-channel`; [`SimpleQueue`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};

use crate::error::{Empty, Full, GetError, MaxsizeError, PutError, ShutDown, TaskDoneError};

/// What `shutdown` sets, and how it wakes every waiter at once: each blocked call also
/// waits on `wake`, whose only sender is dropped by `shutdown`, so the channel's
/// disconnection wakes them all (and any later wait returns at once).
#[derive(Debug)]
struct Gate {
    shut_down: AtomicBool,
    immediate: AtomicBool,
    wake_tx: parking_lot::Mutex<Option<Sender<()>>>,
    wake: Receiver<()>,
}

impl Default for Gate {
    fn default() -> Self {
        let (tx, wake) = crossbeam_channel::bounded(0);
        Gate {
            shut_down: AtomicBool::new(false),
            immediate: AtomicBool::new(false),
            wake_tx: parking_lot::Mutex::new(Some(tx)),
            wake,
        }
    }
}

impl Gate {
    fn is_shut(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    fn shut(&self, immediate: bool) {
        if immediate {
            self.immediate.store(true, Ordering::SeqCst);
        }
        self.shut_down.store(true, Ordering::SeqCst);
        drop(self.wake_tx.lock().take());
    }
}

/// Waits until `deadline` (`None`: forever) for an item on `rx` or the gate's shutdown;
/// `Err(true)` on shutdown with nothing left, `Err(false)` when the time ran out.
fn recv_until<T>(rx: &Receiver<T>, gate: &Gate, deadline: Option<Instant>) -> Result<T, bool> {
    #[cfg(feature = "trace")]
    let _wait = crate::trace::Wait::new("queue get", String::new);
    loop {
        match rx.try_recv() {
            Ok(item) => return Ok(item),
            Err(TryRecvError::Disconnected) => return Err(true),
            Err(TryRecvError::Empty) => {}
        }
        if gate.is_shut() {
            return Err(true);
        }
        let mut select = Select::new();
        select.recv(rx);
        select.recv(&gate.wake);
        // Either an item is there or the gate closed: the loop's next look says which.
        match deadline {
            None => {
                select.ready();
            }
            Some(deadline) => {
                if select.ready_deadline(deadline).is_err() {
                    // A last look: an item that came at the deadline is taken.
                    return rx.try_recv().map_err(|_| gate.is_shut());
                }
            }
        }
    }
}

/// Waits until `deadline` (`None`: forever) to send `item` on `tx` or for the gate's
/// shutdown, handing the item back with why it was not sent (`true`: shut down).
fn send_until<T>(
    tx: &Sender<T>,
    gate: &Gate,
    mut item: T,
    deadline: Option<Instant>,
) -> Result<(), (T, bool)> {
    #[cfg(feature = "trace")]
    let _wait = crate::trace::Wait::new("queue put", String::new);
    loop {
        if gate.is_shut() {
            return Err((item, true));
        }
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(back)) => return Err((back, true)),
            Err(TrySendError::Full(back)) => item = back,
        }
        let mut select = Select::new();
        select.send(tx);
        select.recv(&gate.wake);
        // Either there is room or the gate closed: the loop's next look says which.
        match deadline {
            None => {
                select.ready();
            }
            Some(deadline) => {
                if select.ready_deadline(deadline).is_err() {
                    return match tx.try_send(item) {
                        Ok(()) => Ok(()),
                        Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                            Err((back, gate.is_shut()))
                        }
                    };
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Tasks {
    unfinished: parking_lot::Mutex<usize>,
    all_done: parking_lot::Condvar,
}

/// Python's `queue.Queue`: a FIFO shared by threads, optionally bounded, with `task_done`/`join`.
///
/// Cloning gives another handle to the same queue (share it with threads that way or in an `Arc`).
///
/// ```python
/// q = queue.Queue(maxsize=1)
/// q.put(1); q.put_nowait(2)  # raises queue.Full
/// ```
/// ```
/// use threads_sync::Queue;
/// let q = Queue::bounded(1)?;
/// q.put(1)?;
/// let full = q.put_nowait(2).unwrap_err();
/// assert!(full.is_full());
/// assert_eq!(full.into_inner(), 2); // the item comes back
/// assert_eq!(q.get()?, 1);
/// q.task_done().unwrap();
/// q.join(); // every item put was marked done
/// assert!(Queue::<u8>::bounded(0).is_err()); // Python's maxsize=0 is `Queue::new()`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Queue<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    /// 0: unbounded.
    maxsize: usize,
    tasks: Arc<Tasks>,
    gate: Arc<Gate>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
            maxsize: self.maxsize,
            tasks: Arc::clone(&self.tasks),
            gate: Arc::clone(&self.gate),
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<T> Queue<T> {
    /// An unbounded queue (Python: `queue.Queue()`).
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Queue {
            tx,
            rx,
            maxsize: 0,
            tasks: Arc::default(),
            gate: Arc::default(),
        }
    }

    /// A queue holding at most `maxsize` items (Python: `queue.Queue(maxsize)`); 0 is
    /// [`MaxsizeError`] (Python's `maxsize=0` means unbounded: that is [`Queue::new`]).
    pub fn bounded(maxsize: usize) -> Result<Self, MaxsizeError> {
        if maxsize == 0 {
            return Err(MaxsizeError { maxsize });
        }
        let (tx, rx) = crossbeam_channel::bounded(maxsize);
        Ok(Queue {
            tx,
            rx,
            maxsize,
            tasks: Arc::default(),
            gate: Arc::default(),
        })
    }

    /// The bound given at creation; `None` when unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        (self.maxsize > 0).then_some(self.maxsize)
    }

    /// Items in the queue now.
    pub fn qsize(&self) -> usize {
        self.rx.len()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Whether the queue is full now (never, when unbounded).
    pub fn full(&self) -> bool {
        self.maxsize > 0 && self.rx.len() >= self.maxsize
    }

    fn add_task(&self) {
        *self.tasks.unfinished.lock() += 1;
    }

    fn undo_task(&self) {
        let mut unfinished = self.tasks.unfinished.lock();
        *unfinished -= 1;
        if *unfinished == 0 {
            self.tasks.all_done.notify_all();
        }
    }

    /// Puts `item` until `deadline` (`None`: forever); the item comes back, with why.
    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        self.add_task();
        match send_until(&self.tx, &self.gate, item, deadline) {
            Ok(()) => {
                // A put that passed the gate as an immediate shutdown came: its drain may
                // have run before this item arrived, so drain again (the item counts as put,
                // then dropped by the shutdown).
                if self.gate.immediate.load(Ordering::SeqCst) {
                    self.drain();
                }
                Ok(())
            }
            Err((item, shut)) => {
                self.undo_task();
                Err(if shut {
                    PutError::ShutDown(ShutDown { item })
                } else {
                    PutError::Full(Full {
                        item,
                        maxsize: self.maxsize,
                    })
                })
            }
        }
    }

    /// Puts `item`, waiting while the queue is full; [`ShutDown`] hands it back once the
    /// queue is shut down (also to a put that was waiting).
    pub fn put(&self, item: T) -> Result<(), ShutDown<T>> {
        match self.put_until(item, None) {
            Ok(()) => Ok(()),
            Err(PutError::ShutDown(shut)) => Err(shut),
            Err(PutError::Full(_)) => unreachable!("an untimed put waits until there is room"),
        }
    }

    /// Puts `item`, waiting at most `timeout` for room; [`PutError`] hands it back.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Instant::now().checked_add(timeout))
    }

    /// Puts `item` only if there is room now (Python: `put_nowait`).
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now()))
    }

    /// Takes the oldest item, waiting while the queue is empty; [`ShutDown`] once the queue
    /// is shut down and empty (also to a get that was waiting).
    pub fn get(&self) -> Result<T, ShutDown> {
        recv_until(&self.rx, &self.gate, None).map_err(|_| ShutDown::default())
    }

    /// Takes the oldest item, waiting at most `timeout`; [`GetError::Empty`] if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        recv_until(&self.rx, &self.gate, Instant::now().checked_add(timeout)).map_err(get_error)
    }

    /// Takes the oldest item only if there is one now (Python: `get_nowait`).
    pub fn get_nowait(&self) -> Result<T, GetError> {
        recv_until(&self.rx, &self.gate, Some(Instant::now())).map_err(get_error)
    }

    /// Shuts the queue down (Python 3.13: `shutdown(immediate)`): from now on `put` fails
    /// with [`ShutDown`] (handing the item back) and `get` takes what is left, then fails with
    /// [`ShutDown`]. With `immediate`, what is left is dropped and counted done, so `join`
    /// returns. Every blocked `get` and `put` wakes.
    ///
    /// ```
    /// use threads_sync::{Queue, ShutDown};
    /// let q = Queue::new();
    /// q.put(1)?;
    /// q.put(2)?;
    /// q.shutdown(false);
    /// assert_eq!(q.put(3).unwrap_err().into_inner(), 3);
    /// assert_eq!(q.get()?, 1); // what is left can still be taken
    /// q.shutdown(true); // drops the rest and counts it done
    /// assert_eq!(q.get(), Err(ShutDown::default()));
    /// q.task_done()?;
    /// q.join();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        self.gate.shut(immediate);
        if immediate {
            self.drain();
        }
    }

    /// Whether [`shutdown`](Queue::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.gate.is_shut()
    }

    /// Drops every item in the queue, counting each done.
    fn drain(&self) {
        let mut dropped = 0;
        while self.rx.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            let mut unfinished = self.tasks.unfinished.lock();
            *unfinished = unfinished.saturating_sub(dropped);
            if *unfinished == 0 {
                self.tasks.all_done.notify_all();
            }
        }
    }

    /// Marks one item taken by `get` as processed; [`TaskDoneError::TooManyCalls`] if every
    /// item put is already marked.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut unfinished = self.tasks.unfinished.lock();
        if *unfinished == 0 {
            return Err(TaskDoneError::TooManyCalls);
        }
        *unfinished -= 1;
        if *unfinished == 0 {
            self.tasks.all_done.notify_all();
        }
        Ok(())
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        *self.tasks.unfinished.lock()
    }

    /// Waits until every item put has been marked done with [`task_done`](Queue::task_done).
    pub fn join(&self) {
        let mut unfinished = self.tasks.unfinished.lock();
        while *unfinished > 0 {
            self.tasks.all_done.wait(&mut unfinished);
        }
    }

    /// Like [`join`](Queue::join) for at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), TaskDoneError> {
        let deadline = crate::deadline_after(timeout);
        let mut unfinished = self.tasks.unfinished.lock();
        while *unfinished > 0 {
            if self
                .tasks
                .all_done
                .wait_until(&mut unfinished, deadline)
                .timed_out()
                && *unfinished > 0
            {
                return Err(TaskDoneError::Timeout {
                    unfinished: *unfinished,
                    timeout,
                });
            }
        }
        Ok(())
    }
}

/// Python's `queue.SimpleQueue`: an unbounded FIFO without `task_done`/`join`, for the
/// cases that need nothing more.
///
/// ```
/// let q = threads_sync::SimpleQueue::new();
/// q.put("a")?;
/// q.put("b")?;
/// assert_eq!((q.get()?, q.get_nowait()), ("a", Ok("b")));
/// assert!(q.get_nowait().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SimpleQueue<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    gate: Arc<Gate>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
            gate: Arc::clone(&self.gate),
        }
    }
}

impl<T> Default for SimpleQueue<T> {
    fn default() -> Self {
        SimpleQueue::new()
    }
}

impl<T> SimpleQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        SimpleQueue {
            tx,
            rx,
            gate: Arc::default(),
        }
    }

    /// Puts `item` (never blocks: the queue is unbounded); [`ShutDown`] hands it back once
    /// the queue is shut down.
    pub fn put(&self, item: T) -> Result<(), ShutDown<T>> {
        match send_until(&self.tx, &self.gate, item, None) {
            Ok(()) => {
                if self.gate.immediate.load(Ordering::SeqCst) {
                    while self.rx.try_recv().is_ok() {}
                }
                Ok(())
            }
            Err((item, _)) => Err(ShutDown { item }),
        }
    }

    /// Same as [`put`](SimpleQueue::put) (Python has both names).
    pub fn put_nowait(&self, item: T) -> Result<(), ShutDown<T>> {
        self.put(item)
    }

    /// Takes the oldest item, waiting while the queue is empty; [`ShutDown`] once it is shut
    /// down and empty.
    pub fn get(&self) -> Result<T, ShutDown> {
        recv_until(&self.rx, &self.gate, None).map_err(|_| ShutDown::default())
    }

    /// Takes the oldest item, waiting at most `timeout`; [`GetError::Empty`] if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        recv_until(&self.rx, &self.gate, Instant::now().checked_add(timeout)).map_err(get_error)
    }

    /// Takes the oldest item only if there is one now.
    pub fn get_nowait(&self) -> Result<T, GetError> {
        recv_until(&self.rx, &self.gate, Some(Instant::now())).map_err(get_error)
    }

    /// Shuts the queue down as [`Queue::shutdown`] does (Python's `SimpleQueue` has no
    /// `shutdown`; this one has, so that every queue here can be ended the same way).
    pub fn shutdown(&self, immediate: bool) {
        self.gate.shut(immediate);
        if immediate {
            while self.rx.try_recv().is_ok() {}
        }
    }

    /// Whether [`shutdown`](SimpleQueue::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.gate.is_shut()
    }

    /// Items in the queue now.
    pub fn qsize(&self) -> usize {
        self.rx.len()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.rx.is_empty()
    }
}

fn get_error(shut: bool) -> GetError {
    if shut {
        GetError::ShutDown(ShutDown::default())
    } else {
        GetError::Empty(Empty)
    }
}
