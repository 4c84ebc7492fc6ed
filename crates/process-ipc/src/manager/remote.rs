//! The half of [`ManagedQueue`]'s calls made from a process other than the manager's: each a
//! call of the manager's one protocol (`object_wire`) on a connection of this process's pool,
//! or, for an unbounded queue's puts, a batch sent by this process's feed (`client`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_bytes::ByteBuf;

use super::REPLY_GRACE;
use super::client::{ITEM_LIMIT, ProcessFeed, QueueWait, existing_feed, feed_for};
use super::error::{ManagerError, PutError};
use super::object_wire::{Answer, Op};
use super::queue::ManagedQueue;
use super::server::Counts;
use crate::Wire;
use crate::error::QueueError;

impl<T: Wire> ManagedQueue<T> {
    /// This process's feed into the queue, if some handle here started it.
    pub(super) fn process_feed(&self) -> Option<&Arc<ProcessFeed>> {
        if let Some(feed) = self.feed.get() {
            return Some(feed);
        }
        // Another handle of this process may have put: a flush or a get must wait for it too.
        let feed = existing_feed(&self.obj)?;
        Some(self.feed.get_or_init(|| feed))
    }

    /// An unbounded put from a process other than the manager's: into this process's feed.
    /// Refused here once this process knows the queue was shut down (see
    /// [`ManagedQueue::shutdown`]).
    pub(super) fn put_remote(&self, item: T) -> Result<(), PutError<T>> {
        let feed = match self.feed.get() {
            Some(feed) => feed,
            None => match feed_for(&self.obj) {
                Ok(feed) => self.feed.get_or_init(|| feed),
                Err(e) => return Err(PutError::new(e, Some(item))),
            },
        };
        if feed.acks.shut.load(Ordering::Relaxed) {
            return Err(PutError::new(self.shut_down_error(), Some(item)));
        }
        self.put_any.store(true, Ordering::Relaxed);
        match feed.feed.push_buffered(&item, ITEM_LIMIT) {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = match e {
                    _ if feed.acks.shut.load(Ordering::SeqCst) => self.shut_down_error(),
                    QueueError::Serde(why) => self.serialization(why),
                    QueueError::Io(why) => self.gone(why),
                    other => self.serialization(other.to_string()),
                };
                Err(PutError::new(error, Some(item)))
            }
        }
    }

    /// Remembers, for this process's puts, that the manager said the queue was shut down.
    pub(super) fn heard_shut_down(&self) {
        if let Some(feed) = self.process_feed() {
            feed.acks.shut.store(true, Ordering::SeqCst);
        }
    }

    /// Python's `shutdown` from a process other than the manager's: this process's puts reach
    /// the manager first (they were put before it), then one call.
    pub(super) fn shutdown_remote(&self, immediate: bool) -> Result<(), ManagerError> {
        self.sync_puts(QueueWait::Forever);
        let answer = self
            .obj
            .call(Op::QueueShutdown(immediate), Some(REPLY_GRACE))?;
        self.obj.done(answer)?;
        self.heard_shut_down();
        Ok(())
    }

    /// Lets this process's puts reach the manager before a call that must see them; false if
    /// `deadline` came first.
    /// (A batch that failed is left for the next put or flush to report.)
    fn sync_puts(&self, wait: QueueWait) -> bool {
        match self.process_feed() {
            Some(feed) => !matches!(feed.settle(wait.deadline()), Ok(false)),
            None => true,
        }
    }

    pub(super) fn counts_remote(&self) -> Result<Counts, ManagerError> {
        self.sync_puts(QueueWait::Forever);
        match self.obj.call(Op::QueueCounts, Some(REPLY_GRACE))? {
            Answer::Counts {
                items,
                getters,
                putters,
            } => {
                let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
                Ok(Counts {
                    items: size(items),
                    getters: size(getters),
                    putters: size(putters),
                })
            }
            other => Err(self.obj.unexpected(&other)),
        }
    }

    /// A get: one call, which waits in the manager (in the thread serving this connection) at
    /// most as long as `wait`. The client reads the answer until the deadline and a short
    /// grace, so a manager that is stopped cannot hold the call past it.
    pub(super) fn get_remote(&self, wait: QueueWait) -> Result<T, ManagerError> {
        if !self.sync_puts(wait) {
            return Err(self.timeout(wait.timeout()));
        }
        match self
            .obj
            .call(Op::QueueGet(wait.on_wire()), wait.answer_within())
        {
            Ok(Answer::One(Some(bytes))) => self.decode(&bytes),
            Ok(Answer::One(None)) => Err(self.missed(wait)),
            Ok(other) => Err(self.obj.unexpected(&other)),
            // No answer by the deadline (and its grace): the manager is stuck; the
            // connection is dropped, and the get reports its timeout.
            Err(ManagerError::NoReply { .. }) if matches!(wait, QueueWait::Until(..)) => {
                Err(self.timeout(wait.timeout()))
            }
            Err(e @ ManagerError::ShutDown { .. }) => {
                self.heard_shut_down();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// A put into a bounded queue from another process: one call, answered once the item is
    /// in (or refused when no room came in time). The item stays here until the answer, so a
    /// refusal hands it back.
    pub(super) fn put_bounded_remote(
        &self,
        item: T,
        bytes: ByteBuf,
        wait: QueueWait,
    ) -> Result<(), PutError<T>> {
        match self
            .obj
            .call(Op::QueuePut(bytes, wait.on_wire()), wait.answer_within())
        {
            Ok(Answer::Bool(true)) => Ok(()),
            Ok(Answer::Bool(false)) => Err(PutError::new(self.full_error(), Some(item))),
            Ok(other) => Err(PutError::new(self.obj.unexpected(&other), Some(item))),
            // Refused: the queue was shut down, and the item is not in it.
            Err(e @ ManagerError::ShutDown { .. }) => {
                self.heard_shut_down();
                Err(PutError::new(e, Some(item)))
            }
            // Gone before the manager read it, or stuck: whether it got in is unknown, so the
            // item is not handed back (it may be in the queue).
            Err(e) => Err(PutError::new(e, None)),
        }
    }
}
