//! The errors of this crate: a `send` that the generator cannot take, with the value handed back.

use std::fmt;

/// Why [`Generator::send`](crate::Generator::send) refused a value.
///
/// The value is never lost: it comes back inside the error ([`SendError::into_inner`]).
///
/// ```
/// use iter_gen::{Generator, SendError, Yielder};
///
/// let mut echo = Generator::receiving(|co: Yielder<i32, i32>| async move {
///     let mut last = 0;
///     while let Some(x) = co.yield_(last).await {
///         last = x;
///     }
/// });
/// // Python: TypeError: can't send non-None value to a just-started generator
/// let err = echo.send(7).unwrap_err();
/// assert!(matches!(err, SendError::NotStarted(7)));
/// assert_eq!(err.into_inner(), 7);
/// ```
#[derive(thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SendError<S> {
    /// The generator has not run to its first `yield` yet, so nothing is waiting for the value.
    /// Call `next()` first. Python raises `TypeError` here.
    #[error(
        "can't send a value to a just-started generator: nothing is waiting for it yet; \
         call next() first to run it to its first yield (Python raises TypeError here)"
    )]
    NotStarted(S),
    /// The generator has returned, was closed, or panicked: it will never take a value again.
    /// Python raises `StopIteration` here.
    #[error(
        "can't send a value to a finished generator: it returned, was closed or panicked \
         (Python raises StopIteration here)"
    )]
    Finished(S),
}

impl<S> SendError<S> {
    /// The value that was not sent.
    pub fn into_inner(self) -> S {
        match self {
            Self::NotStarted(value) | Self::Finished(value) => value,
        }
    }
}

// By hand, so that `S` need not be `Debug` (the value is often not printable).
impl<S> fmt::Debug for SendError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotStarted(_) => f.write_str("NotStarted(..)"),
            Self::Finished(_) => f.write_str("Finished(..)"),
        }
    }
}
