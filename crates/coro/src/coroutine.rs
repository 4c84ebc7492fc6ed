//! `Coroutine::new(f, args)`: a greenlet from a function and an argument tuple, like `Thread::new`.

use crate::error::Result;
use crate::greenlet::{Builder, Greenlet};

/// Something a [`Coroutine`] can run with an argument tuple: any `FnOnce` of 0 to 6
/// arguments whose arguments form the tuple `Args` (`()` for none, `(a,)` for one).
///
/// You never implement this; it is what makes `Coroutine::new(add, (2, 3))` call `add(2, 3)`.
pub trait Target<Args>: Send + 'static {
    /// What the target returns, handed over by [`Greenlet::get`].
    type Output: Send + 'static;
    /// Calls the target with the unpacked arguments.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        impl<F, R, $($arg,)*> Target<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> R + Send + 'static,
            R: Send + 'static,
        {
            type Output = R;
            #[allow(non_snake_case)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> R {
                self($($arg),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);

/// A greenlet to start: a target and its arguments (gevent's `Greenlet(run, *args)`,
/// Python's `Thread(target=f, args=(a, b))`).
///
/// ```
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
/// let g = coro::Coroutine::new(add, (2, 3)).named("adder").start()?;
/// assert_eq!(g.name(), "adder");
/// assert_eq!(g.into_value()?, 5);
/// # Ok::<(), coro::CoroError>(())
/// ```
#[must_use = "a Coroutine does nothing until .start()"]
pub struct Coroutine<F, A> {
    target: F,
    args: A,
    builder: Builder,
}

impl<F, A> std::fmt::Debug for Coroutine<F, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coroutine")
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

impl<F, A> Coroutine<F, A>
where
    F: Target<A>,
    A: Send + 'static,
{
    /// `target` to be called with `args` (a tuple) once started.
    pub fn new(target: F, args: A) -> Self {
        Coroutine {
            target,
            args,
            builder: Builder::new(),
        }
    }

    /// Names it (shown in errors, by `getcurrent` and by the blocking monitor).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.builder = self.builder.name(name);
        self
    }

    /// Sets its stack size in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.builder = self.builder.stack_size(bytes);
        self
    }

    /// Starts it; the handle waits for it and takes its value.
    ///
    /// # Errors
    /// As [`crate::spawn`].
    pub fn start(self) -> Result<Greenlet<F::Output>> {
        let Coroutine {
            target,
            args,
            builder,
        } = self;
        builder.spawn(move || target.call(args))
    }
}
