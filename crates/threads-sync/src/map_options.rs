//! [`MapOptions`]: the keyword arguments of the ThreadPool's `map_with` and `imap_with`.

use crate::error::PoolError;

/// Keyword arguments of [`ThreadPool::map_with`] and [`ThreadPool::imap_with`] (Python's
/// `chunksize=`, and `imap_unordered` as a flag).
///
/// ```
/// use threads_sync::{MapOptions, ThreadPool};
/// let pool = ThreadPool::new(2)?;
/// let squares = pool.map_with(|x: u64| x * x, 0..10, MapOptions::new().chunksize(3))?;
/// assert_eq!(squares[9], 81);
/// let mut any_order: Vec<u64> = pool
///     .imap_with(|x: u64| x + 1, 0..4, MapOptions::new().chunksize(2).unordered())?
///     .collect::<Result<_, _>>()?;
/// any_order.sort();
/// assert_eq!(any_order, [1, 2, 3, 4]);
/// # Ok::<(), threads_sync::PoolError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    chunksize: Option<usize>,
    pub(crate) unordered: bool,
}

impl MapOptions {
    /// Python's defaults: chunks of about a quarter of a worker's share for `map`, single
    /// items for `imap`; results in input order.
    pub const fn new() -> Self {
        MapOptions {
            chunksize: None,
            unordered: false,
        }
    }

    /// Items per task (Python: `chunksize=`); 0 is [`PoolError::ZeroChunksize`].
    pub const fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// For `imap_with`: yield results as they finish (Python: `imap_unordered`). `map_with`
    /// always returns input order.
    pub const fn unordered(mut self) -> Self {
        self.unordered = true;
        self
    }
}

/// The `chunksize` given, if any; 0 is [`PoolError::ZeroChunksize`].
pub(crate) fn checked_chunksize(options: MapOptions) -> Result<Option<usize>, PoolError> {
    match options.chunksize {
        Some(0) => Err(PoolError::ZeroChunksize),
        chunksize => Ok(chunksize),
    }
}
