//! [`IMap`]: the results of [`ThreadPool::imap`](crate::ThreadPool::imap) and
//! [`imap_unordered`](crate::ThreadPool::imap_unordered), over the chunks' [`AsyncResult`]s
//! (in order, or as [`as_completed`] hands them over).

use std::collections::VecDeque;
use std::fmt;

use crate::error::PoolError;
use crate::futures::{AsCompleted, as_completed};
use crate::results::{AsyncResult, Chunk};

enum Source<R> {
    Ordered(VecDeque<AsyncResult<Chunk<R>>>),
    Unordered(AsCompleted<Chunk<R>>),
}

/// Results of [`ThreadPool::imap`](crate::ThreadPool::imap) (in input order) and
/// [`imap_unordered`](crate::ThreadPool::imap_unordered) (as they finish). An item whose
/// call panicked is an `Err` in its place; the others are unaffected.
pub struct IMap<R> {
    source: Source<R>,
    /// Values of the chunk being handed out, with its task number.
    current: VecDeque<Result<R, String>>,
    current_task: u64,
    left: usize,
}

impl<R> IMap<R> {
    pub(crate) fn ordered(chunks: VecDeque<AsyncResult<Chunk<R>>>, items: usize) -> Self {
        IMap {
            source: Source::Ordered(chunks),
            current: VecDeque::new(),
            current_task: 0,
            left: items,
        }
    }

    pub(crate) fn unordered(chunks: Vec<AsyncResult<Chunk<R>>>, items: usize) -> Self {
        IMap {
            source: Source::Unordered(as_completed(chunks, None)),
            current: VecDeque::new(),
            current_task: 0,
            left: items,
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(value) = self.current.pop_front() {
                self.left = self.left.saturating_sub(1);
                return Some(value.map_err(|message| PoolError::TaskPanicked {
                    task: self.current_task,
                    message,
                }));
            }
            let chunk = match &mut self.source {
                Source::Ordered(pending) => pending.pop_front()?,
                Source::Unordered(done) => match done.next()? {
                    Ok(chunk) => chunk,
                    Err(err) => return Some(Err(err)),
                },
            };
            self.current_task = chunk.task;
            match chunk.get() {
                Ok(values) => self.current = values.into(),
                // The chunk as a whole failed (cancelled by `terminate`): one error per
                // chunk; its size is not known here.
                Err(err) => return Some(Err(err)),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl<R> fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}
