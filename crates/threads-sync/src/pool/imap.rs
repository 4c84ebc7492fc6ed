//! The pool's `imap` family (`imap`, `imap_unordered`, `imap_with`): one task per chunk of
//! items, results handed out as they come, in order or not.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::error::{PoolError, panic_message};
use crate::imap::IMap;
use crate::map_options::{MapOptions, checked_chunksize};
use crate::results::{AsyncResult, Chunk};

use super::ThreadPool;

impl ThreadPool {
    /// One task per `chunksize` items, each item's panic caught on its own.
    fn submit_chunks<T, R, F>(
        &self,
        f: Arc<F>,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<VecDeque<AsyncResult<Chunk<R>>>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let mut pending = VecDeque::new();
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<T> = items.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                return Ok(pending);
            }
            let f = Arc::clone(&f);
            pending.push_back(self.submit(move || run_chunk(&*f, chunk))?);
        }
    }

    /// Submits `f(item)` for every item and returns an iterator over the results in input
    /// order, each as soon as it (and those before it) are done (Python: `imap`).
    pub fn imap<T, R, F, I>(&self, f: F, items: I) -> Result<IMap<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.imap_with(f, items, MapOptions::new())
    }

    /// Like [`imap`](ThreadPool::imap), yielding results in completion order (Python: `imap_unordered`).
    pub fn imap_unordered<T, R, F, I>(&self, f: F, items: I) -> Result<IMap<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.imap_with(f, items, MapOptions::new().unordered())
    }

    /// [`imap`](ThreadPool::imap) with Python's keyword arguments in `options` (`chunksize`,
    /// and `unordered` for `imap_unordered`).
    pub fn imap_with<T, R, F, I>(
        &self,
        f: F,
        items: I,
        options: MapOptions,
    ) -> Result<IMap<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let chunksize = checked_chunksize(options)?.unwrap_or(1);
        let items: Vec<T> = items.into_iter().collect();
        let total = items.len();
        let chunks = self.submit_chunks(Arc::new(f), items, chunksize)?;
        Ok(if options.unordered {
            IMap::unordered(chunks.into(), total)
        } else {
            IMap::ordered(chunks, total)
        })
    }
}

/// Calls `f` on each item, each item's panic caught on its own.
fn run_chunk<T, R>(f: &(impl Fn(T) -> R + ?Sized), chunk: Vec<T>) -> Chunk<R> {
    chunk
        .into_iter()
        .map(|x| catch_unwind(AssertUnwindSafe(|| f(x))).map_err(|p| panic_message(&*p)))
        .collect()
}
