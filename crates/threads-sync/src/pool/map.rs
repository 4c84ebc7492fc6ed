//! The pool's `map` family (`map`, `map_with`, `map_async`, `starmap`, `starmap_async`): the
//! output written in place by the workers (and the caller), over an indexed input (the
//! `indexed` module) or any other exact-size iterator (the `split` module).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::PoolError;
use crate::indexed::{self, Indexed, Source, WithSource};
use crate::map_options::{MapOptions, checked_chunksize};
use crate::output::{MapWork, Participant};
use crate::results::AsyncResult;
use crate::split::Split;
use crate::thread::Target;

use super::{CALLER_HELPS, Message, ThreadPool};

impl ThreadPool {
    /// Applies `f` to every item, on the workers, and returns the results in input order;
    /// the first panicking item makes it an `Err` (Python: `map`).
    ///
    /// The workers take contiguous runs of the input and write each value in place into the
    /// output. A `Vec` or an integer range (`a..b`, `a..=b`) is reached by index, with no
    /// lock (see the `indexed` module); another iterator of exact `size_hint` is taken in
    /// runs under one lock (the `split` module); any other input is collected first.
    pub fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        self.map_with(f, items, MapOptions::new())
    }

    /// [`map`](ThreadPool::map) with Python's keyword arguments in `options` (`chunksize`:
    /// the workers then take runs of exactly that many items).
    pub fn map_with<T, R, F, I>(
        &self,
        f: F,
        items: I,
        options: MapOptions,
    ) -> Result<Vec<R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let chunksize = checked_chunksize(options)?;
        let f = Arc::new(f);
        self.split_map(items, chunksize, CALLER_HELPS, move || {
            let f = Arc::clone(&f);
            move |item| f(item)
        })?
        .get()
    }

    /// Like [`map`](ThreadPool::map), returning at once with one [`AsyncResult`] for the whole
    /// list (Python: `map_async`); cancelling it before a worker starts on it stops it.
    ///
    /// ```
    /// let pool = threads_sync::ThreadPool::new(2)?;
    /// let squares = pool.map_async(|x: u64| x * x, 0..5)?;
    /// assert_eq!(squares.get()?, [0, 1, 4, 9, 16]);
    /// # Ok::<(), threads_sync::PoolError>(())
    /// ```
    pub fn map_async<T, R, F, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.split_map(items, None, false, move || {
            let f = Arc::clone(&f);
            move |item| f(item)
        })
    }

    /// Like [`starmap`](ThreadPool::starmap), returning at once with one [`AsyncResult`]
    /// for the whole list (Python: `starmap_async`).
    pub fn starmap_async<Args, F, I>(
        &self,
        target: F,
        items: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Target<Args> + Clone,
        Args: Send + 'static,
        I: IntoIterator<Item = Args>,
        I::IntoIter: Send + 'static,
    {
        let target = parking_lot::Mutex::new(target);
        self.split_map(items, None, false, move || {
            let target = target.lock().clone();
            move |args| target.clone().call(args)
        })
    }

    /// Calls `target(args...)` for every argument tuple, on the workers, and returns the
    /// values in input order (Python: `starmap(f, [(a, b), ...])`).
    pub fn starmap<Args, F, I>(&self, target: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Target<Args> + Clone,
        Args: Send + 'static,
        I: IntoIterator<Item = Args>,
        I::IntoIter: Send + 'static,
    {
        let target = parking_lot::Mutex::new(target);
        self.split_map(items, None, CALLER_HELPS, move || {
            let target = target.lock().clone();
            move |args| target.clone().call(args)
        })?
        .get()
    }

    /// One task mapping `items` on the workers (and, with `caller`, on this thread before it
    /// returns): each participant's function comes from `make`.
    fn split_map<T, R, I, G>(
        &self,
        items: I,
        chunksize: Option<usize>,
        caller: bool,
        make: impl Fn() -> G,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
        G: FnMut(T) -> R + Send + 'static,
    {
        let task = self.next_task()?;
        let iter = items.into_iter();
        match iter.size_hint() {
            (lower, Some(upper)) if lower == upper && lower > 0 => {
                let start = StartIndexed {
                    pool: self,
                    chunksize,
                    caller,
                    task,
                    make: &make,
                    _types: PhantomData,
                };
                match indexed::with_source(iter, lower, start) {
                    Ok(result) => Ok(result),
                    Err((iter, _)) => {
                        Ok(self.start_split(iter, lower, chunksize, caller, task, make))
                    }
                }
            }
            _ => {
                let items: Vec<T> = iter.collect();
                if items.is_empty() {
                    return Ok(AsyncResult::settled(task, Vec::new()));
                }
                let len = items.len();
                let start = StartIndexed {
                    pool: self,
                    chunksize,
                    caller,
                    task,
                    make: &make,
                    _types: PhantomData,
                };
                match indexed::with_source(items.into_iter(), len, start) {
                    Ok(result) => Ok(result),
                    Err((iter, _)) => {
                        Ok(self.start_split(iter, len, chunksize, caller, task, make))
                    }
                }
            }
        }
    }

    /// How many workers join a map of `len` items (no more than it has runs), and how many
    /// participants that makes with the calling thread.
    fn participants(&self, len: usize, chunksize: Option<usize>, caller: bool) -> (usize, usize) {
        let runs = len.div_ceil(chunksize.unwrap_or(1));
        let workers = self.threads.min(runs);
        (workers, workers + usize::from(caller))
    }

    fn start_split<J, R, G>(
        &self,
        iter: J,
        len: usize,
        chunksize: Option<usize>,
        caller: bool,
        task: u64,
        make: impl Fn() -> G,
    ) -> AsyncResult<Vec<R>>
    where
        J: Iterator + Send + 'static,
        J::Item: Send + 'static,
        R: Send + 'static,
        G: FnMut(J::Item) -> R + Send + 'static,
    {
        let (workers, helpers) = self.participants(len, chunksize, caller);
        let (split, result) = Split::new(iter, len, chunksize, helpers, helpers, task);
        self.start_parts(&split, workers, caller, make);
        result
    }

    /// Queues `workers` participants of `work` (each with a function from `make`), and with
    /// `caller` runs one on this thread.
    fn start_parts<W, G>(&self, work: &Arc<W>, workers: usize, caller: bool, make: impl Fn() -> G)
    where
        W: MapWork,
        G: FnMut(W::Item) -> W::Value + Send + 'static,
    {
        for _ in 0..workers {
            let (part, f) = (Participant::new(work), make());
            // A refused send drops the job: the participant leaves unrun.
            let _ = self.tx.send(Message::Run(Box::new(move || part.run(f))));
        }
        if caller {
            Participant::new(work).run(make());
        }
    }
}

/// Starts a map on an indexed input (see [`indexed::with_source`]).
struct StartIndexed<'a, M, G, R> {
    pool: &'a ThreadPool,
    chunksize: Option<usize>,
    caller: bool,
    task: u64,
    make: &'a M,
    _types: PhantomData<fn() -> (G, R)>,
}

impl<T, M, G, R> WithSource<T> for StartIndexed<'_, M, G, R>
where
    T: Send + 'static,
    M: Fn() -> G,
    G: FnMut(T) -> R + Send + 'static,
    R: Send + 'static,
{
    type Out = AsyncResult<Vec<R>>;

    fn with<S: Source<Item = T>>(self, source: S, len: usize) -> AsyncResult<Vec<R>> {
        let (workers, helpers) = self.pool.participants(len, self.chunksize, self.caller);
        let (work, result) = Indexed::new(source, len, self.chunksize, helpers, helpers, self.task);
        self.pool
            .start_parts(&work, workers, self.caller, self.make);
        result
    }
}
