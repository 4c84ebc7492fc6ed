//! The generator, written once and stamped out for each backend flavour (`local`, `threadsafe`) by a macro.
//!
//! Everything genawaiter-specific stays in here: the public types wrap genawaiter's `Gen` and
//! `Co` without naming them, so another backend could take their place.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where a generator is in its life, like Python's `inspect.getgeneratorstate()`.
///
/// Python's fourth state, `GEN_RUNNING`, cannot be observed here: a running generator is
/// borrowed mutably by the call that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GenState {
    /// Made but not started: the body has not run yet (`GEN_CREATED`).
    Created,
    /// Paused at a `yield`, waiting for `next()` or `send()` (`GEN_SUSPENDED`).
    Suspended,
    /// Returned, closed, dropped its body after a panic: it yields nothing more (`GEN_CLOSED`).
    Closed,
}

/// What a paused body is resumed with: Python resumes with `None` on `next()`.
///
/// `Option<S>` would say the same, but its one-byte tag sits next to the yielded value in
/// genawaiter's hand-over slot, and that layout made every step about 1.4 to 1.5 times slower (with
/// both `rc` and `sync`, measured on the sum benchmark); a word-sized tag costs nothing.
#[repr(u64)]
pub(crate) enum Resume<S> {
    /// Resumed by `next()`.
    Next,
    /// Resumed by `send(value)`.
    Sent(S),
    /// Resumed by `throw(error)`; the error waits in the generator's [`ThrowSlot`]. Only a
    /// yield that catches is ever resumed this way.
    Thrown,
}

impl<S> Resume<S> {
    #[inline]
    pub(crate) fn sent(self) -> Option<S> {
        match self {
            Self::Next | Self::Thrown => None,
            Self::Sent(value) => Some(value),
        }
    }
}

/// An error thrown into a generator with `Generator::throw` (Python's `gen.throw(exc)`).
///
/// Any error converts into it: `g.throw("bad input")`, `g.throw(io_error)`.
pub type Thrown = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a generator and its body share for `throw`: whether the body is paused at a yield
/// that catches, and the error on its way in.
///
/// Plain yields never touch it, so `throw` costs nothing per step of a generator that does
/// not use it.
#[derive(Default)]
pub(crate) struct ThrowSlot {
    catching: std::sync::atomic::AtomicBool,
    error: std::sync::Mutex<Option<Thrown>>,
}

impl ThrowSlot {
    pub(crate) fn catching(&self) -> bool {
        self.catching.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_catching(&self, catching: bool) {
        self.catching
            .store(catching, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn put(&self, error: Thrown) {
        *self
            .error
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(error);
    }

    pub(crate) fn take(&self) -> Thrown {
        self.error
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
            .unwrap_or_else(|| Thrown::from("an error was thrown into the generator"))
    }
}

/// The future of `Yielder::yield_`: genawaiter's, with [`Resume`] turned into an `Option`.
///
/// A plain `async` block around genawaiter's future does the same at about 10 more
/// instructions per step; this adds none.
pub(crate) struct SentValue<F>(pub(crate) F);

impl<S, F> Future for SentValue<F>
where
    F: Future<Output = Resume<S>> + Unpin,
{
    type Output = Option<S>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S>> {
        Pin::new(&mut self.0).poll(cx).map(Resume::sent)
    }
}

/// Stamps out `Yielder`, `Generator` and `BoxedBody` over one genawaiter flavour.
///
/// `$backend` is the genawaiter module (`rc` or `sync`); the tokens after `boxed:` are the
/// extra bounds of the boxed body (`+ Send` for the thread-safe flavour).
macro_rules! generator_flavour {
    (backend: $backend:ident, name: $name:literal, boxed: $($boxed_bound:tt)*) => {
        use std::fmt;
        use std::future::Future;
        use std::iter::FusedIterator;
        use std::pin::Pin;
        use std::sync::Arc;

        use genawaiter::GeneratorState as RawStep;

        use crate::generator::{Resume, ThrowSlot};
        use crate::{GenState, SendError, Thrown};

        /// genawaiter's generator, resumed with [`Resume`].
        type RawGen<Y, S, F> = genawaiter::$backend::Gen<Y, Resume<S>, F>;

        #[doc = concat!("The body of a boxed generator: what [`Generator::boxed`] stores, and \
            the default `F` of [`Generator`], so that a `", $name, "` generator has a type you \
            can write (`Generator<Y, S, R>`).")]
        pub type BoxedBody<R> = Pin<Box<dyn Future<Output = R> $($boxed_bound)*>>;

        /// The handle a generator's body yields through, the Rust spelling of `yield`.
        ///
        /// The body receives it as its argument; `co.yield_(value).await` pauses the body and
        /// hands `value` to whoever called `next()` or `send()`. The `.await` evaluates to
        /// what the generator is resumed with: `None` after `next()`, `Some(v)` after
        /// `send(v)`, exactly like Python's `x = yield value`.
        ///
        /// The body must await nothing but this handle's methods: a generator is driven by
        /// `next()`, not by an async runtime (genawaiter panics if another future is pending).
        pub struct Yielder<Y, S = ()> {
            co: genawaiter::$backend::Co<Y, Resume<S>>,
            thrown: Arc<ThrowSlot>,
        }

        impl<Y, S> Yielder<Y, S> {
            /// Pauses the body and hands `value` out (Python's `yield value`).
            ///
            /// Evaluates to `None` when resumed by `next()` and to `Some(v)` when resumed by
            /// `send(v)`. Await it at once: two yields without an await between them are a bug.
            #[inline]
            pub fn yield_(&self, value: Y) -> impl Future<Output = Option<S>> + '_ {
                crate::generator::SentValue(self.co.yield_(value))
            }

            /// Like [`yield_`](Yielder::yield_), and an error thrown in with
            /// [`Generator::throw`] arrives here as `Err` (Python's `try: x = yield value`
            /// `except E as e:`).
            ///
            /// The body may handle the error and go on yielding, or return. At a plain
            /// `yield_` a thrown error is not caught: the body is dropped (its cleanup runs)
            /// and the error goes back to the caller of `throw`, as an uncaught exception
            /// leaves a Python generator.
            #[doc = concat!("```\nuse iter_gen::", $name, "::{Generator, Yielder};\n")]
            ///
            /// let mut g = Generator::new(|co: Yielder<String>| async move {
            ///     let mut errors = 0;
            ///     for i in 0..3 {
            ///         if let Err(e) = co.yield_catching(format!("item {i}")).await {
            ///             errors += 1;
            ///             co.yield_(format!("caught: {e}")).await;
            ///         }
            ///     }
            ///     errors
            /// });
            /// assert_eq!(g.next().as_deref(), Some("item 0"));
            /// assert_eq!(g.throw("bad input").unwrap().as_deref(), Some("caught: bad input"));
            /// assert_eq!(g.by_ref().collect::<Vec<_>>(), ["item 1", "item 2"]);
            /// assert_eq!(g.return_value(), Some(&1));
            /// ```
            pub async fn yield_catching(&self, value: Y) -> Result<Option<S>, Thrown> {
                self.thrown.set_catching(true);
                let resumed = self.co.yield_(value).await;
                self.thrown.set_catching(false);
                match resumed {
                    Resume::Next => Ok(None),
                    Resume::Sent(value) => Ok(Some(value)),
                    Resume::Thrown => Err(self.thrown.take()),
                }
            }

            /// Delegates to `inner` until it finishes, then evaluates to its return value
            /// (Python's `result = yield from inner`).
            ///
            /// Each item `inner` yields is yielded from here; each value sent here is sent on
            /// to `inner`, and each `next()` becomes `inner.next()`. An `inner` that is already
            /// suspended is resumed where it stands. Evaluates to `None` only if `inner` had
            /// been closed, or its return value taken, before it was handed over.
            pub async fn yield_from<R, F>(&self, mut inner: Generator<Y, S, R, F>) -> Option<R>
            where
                F: Future<Output = R>,
            {
                // Python's `yield from` also starts with `next()`, so `inner` never sees a
                // send before its first yield.
                // A throw is forwarded to `inner` when `inner` is paused at a yield that
                // catches it; otherwise it ends both, like an exception that nothing catches.
                let mut resume_with = Resume::Next;
                loop {
                    let item = match resume_with {
                        Resume::Thrown => match inner.throw(self.thrown.take()) {
                            Ok(item) => item,
                            Err(_) => None,
                        },
                        other => inner.resume(other),
                    };
                    let Some(item) = item else { break };
                    let catching = inner.thrown.catching();
                    self.thrown.set_catching(catching);
                    resume_with = self.co.yield_(item).await;
                    if catching {
                        self.thrown.set_catching(false);
                    }
                }
                inner.take_return_value()
            }
        }

        impl<Y> Yielder<Y, ()> {
            /// Yields every item of `items` in order (Python's `yield from iterable` on a
            /// plain iterable).
            ///
            /// Only for generators that take no values: a plain iterator could not take a sent
            /// value on, and it must not be lost. A generator that takes values delegates with
            /// [`Yielder::yield_from`], or loops over `yield_` and decides what a value means.
            #[doc = concat!("```\nuse iter_gen::", $name, "::Generator;\n")]
            ///
            /// let g = Generator::new(|co| async move { co.yield_all(1..=3).await });
            /// assert_eq!(g.collect::<Vec<_>>(), [1, 2, 3]);
            /// ```
            ///
            #[doc = concat!("```compile_fail,E0599\nuse iter_gen::", $name, "::{Generator, Yielder};\n")]
            ///
            /// // error: `yield_all` exists only for `Yielder<Y, ()>`
            /// let g = Generator::receiving(|co: Yielder<i32, i32>| async move {
            ///     co.yield_all(1..=3).await
            /// });
            /// ```
            pub async fn yield_all<I: IntoIterator<Item = Y>>(&self, items: I) {
                for item in items {
                    self.yield_(item).await;
                }
            }
        }

        impl<Y, S> fmt::Debug for Yielder<Y, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Yielder { .. }")
            }
        }

        /// Where the body stands between calls.
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Phase {
            Created,
            Suspended,
            /// Set while the body runs; still set on the next call only if the body panicked.
            Running,
            Closed,
        }

        #[doc = concat!("A Python generator: a body that pauses at each `yield`, takes values \
            through `send`, keeps its return value, and is walked once (the `", $name,
            "` flavour).")]
        ///
        /// The type parameters follow Python's `typing.Generator[Y, S, R]`: `Y` is what it
        /// yields, `S` what `send` takes (`()` for a plain generator), `R` what it returns.
        /// `F` is the body's type; leave it at its default ([`BoxedBody`], made by
        /// [`Generator::boxed`]) to get a type you can name, or let it be inferred (from
        /// [`Generator::new`] or [`Generator::receiving`]) to skip a box and a virtual call
        /// per item.
        ///
        /// It is an [`Iterator`]: `next()` runs the body to its next `yield`. Once the body
        /// returns (or [`close`](Generator::close) is called), `next()` returns `None` for
        /// ever and the return value can be read with
        /// [`return_value`](Generator::return_value). A second walk (through `&mut`) yields
        /// nothing, as in Python; a walk by value moves the generator, so a second one does
        /// not compile.
        ///
        /// Dropping it, or calling [`close`](Generator::close), drops the suspended body at
        /// once: its local variables are dropped, which is where a body's cleanup runs
        /// (Python's `finally:` on `GeneratorExit`).
        ///
        /// # Panics
        /// `next()` and `send()` run the body, so a panic in the body reaches their caller,
        /// like an exception raised in a Python generator; the generator is then closed
        /// (later calls return `None`, not a second panic). A body that awaits anything but
        /// its [`Yielder`] panics the same way (genawaiter's rule: no async runtime drives it).
        pub struct Generator<Y, S = (), R = (), F = BoxedBody<R>>
        where
            F: Future<Output = R>,
        {
            /// `None` once the body returned or was closed: never polled after completion.
            body: Option<RawGen<Y, S, F>>,
            phase: Phase,
            returned: Option<R>,
            thrown: Arc<ThrowSlot>,
        }

        impl<Y, R, F> Generator<Y, (), R, F>
        where
            F: Future<Output = R>,
        {
            /// Makes a generator that yields `Y` and returns `R`; nothing runs until the first
            /// `next()` (Python: calling a generator function).
            ///
            /// `body` receives the [`Yielder`] and returns the body as an `async` block.
            #[doc = concat!("```\nuse iter_gen::", $name, "::Generator;\n")]
            ///
            /// let mut countdown = Generator::new(|co| async move {
            ///     for i in (1..=3).rev() {
            ///         co.yield_(i).await;
            ///     }
            ///     "liftoff"
            /// });
            /// assert_eq!(countdown.by_ref().collect::<Vec<_>>(), [3, 2, 1]);
            /// assert_eq!(countdown.return_value(), Some(&"liftoff"));
            /// ```
            pub fn new(body: impl FnOnce(Yielder<Y, ()>) -> F) -> Self {
                Self::receiving(body)
            }
        }

        impl<Y, S, R, F> Generator<Y, S, R, F>
        where
            F: Future<Output = R>,
        {
            /// Makes a generator that can also be sent values of type `S`
            /// (Python: a generator that uses `x = yield y`).
            ///
            /// Name `S` in the body's argument, e.g. `|co: Yielder<f64, f64>|`.
            #[doc = concat!("```\nuse iter_gen::", $name, "::{Generator, Yielder};\n")]
            ///
            /// let mut total = Generator::receiving(|co: Yielder<i32, i32>| async move {
            ///     let mut sum = 0;
            ///     while let Some(x) = co.yield_(sum).await {
            ///         sum += x;
            ///     }
            ///     sum
            /// });
            /// assert_eq!(total.next(), Some(0)); // run to the first yield
            /// assert_eq!(total.send(5), Ok(Some(5)));
            /// assert_eq!(total.send(2), Ok(Some(7)));
            /// assert_eq!(total.next(), None); // `next()` resumes with None: the loop ends
            /// assert_eq!(total.return_value(), Some(&7));
            /// ```
            pub fn receiving(body: impl FnOnce(Yielder<Y, S>) -> F) -> Self {
                let thrown = Arc::new(ThrowSlot::default());
                let slot = Arc::clone(&thrown);
                Self {
                    body: Some(RawGen::new(|co| body(Yielder { co, thrown: slot }))),
                    phase: Phase::Created,
                    returned: None,
                    thrown,
                }
            }

            /// Sends `value` into the paused body and runs it to its next `yield`
            /// (Python's `gen.send(value)`).
            ///
            /// The paused `co.yield_(..).await` evaluates to `Some(value)`. Returns
            /// `Ok(Some(item))` with the next item, or `Ok(None)` if the body returned instead
            /// (its return value is then in [`return_value`](Generator::return_value)).
            ///
            /// # Errors
            /// The value comes back inside the error, never lost:
            /// [`SendError::NotStarted`] before the first `next()` (nothing is waiting for a
            /// value yet; Python raises `TypeError`), [`SendError::Finished`] once the
            /// generator has returned, been closed, or panicked.
            pub fn send(&mut self, value: S) -> Result<Option<Y>, SendError<S>> {
                match self.phase {
                    Phase::Created => Err(SendError::NotStarted(value)),
                    Phase::Suspended => Ok(self.resume(Resume::Sent(value))),
                    Phase::Running | Phase::Closed => {
                        self.close();
                        Err(SendError::Finished(value))
                    }
                }
            }

            /// Python's `gen.send(value)` with Python's `None` spelled `None`: `Some(v)` is
            /// [`send(v)`](Generator::send), and `None` resumes the body as `next()` does,
            /// so it also *starts* a fresh generator (Python: `gen.send(None)` runs it to its
            /// first `yield`). Only `None` may be sent first, as in Python.
            ///
            /// The paused `co.yield_(..).await` evaluates to exactly `value`.
            ///
            /// # Errors
            /// The value comes back inside the error: [`SendError::NotStarted`] for `Some(v)`
            /// before the generator started (Python's `TypeError`), [`SendError::Finished`]
            /// once it has returned, been closed or panicked (Python's `StopIteration`).
            ///
            #[doc = concat!("```\nuse iter_gen::", $name, "::{Generator, Yielder};\n")]
            ///
            /// let mut echo = Generator::receiving(|co: Yielder<String, i32>| async move {
            ///     let mut got = co.yield_("started".to_string()).await;
            ///     while let Some(x) = got {
            ///         got = co.yield_(format!("got {x}")).await;
            ///     }
            /// });
            /// // A value cannot be sent first; it comes back.
            /// assert_eq!(echo.send_optional(Some(1)).unwrap_err().into_inner(), Some(1));
            /// // None can: it starts the generator, as next() would.
            /// assert_eq!(echo.send_optional(None), Ok(Some("started".to_string())));
            /// assert_eq!(echo.send_optional(Some(2)), Ok(Some("got 2".to_string())));
            /// assert_eq!(echo.send_optional(None), Ok(None)); // the loop ends, so does the body
            /// assert!(echo.send_optional(None).is_err());
            /// ```
            pub fn send_optional(
                &mut self,
                value: Option<S>,
            ) -> Result<Option<Y>, SendError<Option<S>>> {
                match (self.phase, value) {
                    (Phase::Created | Phase::Suspended, None) => Ok(self.resume(Resume::Next)),
                    (Phase::Created, Some(value)) => Err(SendError::NotStarted(Some(value))),
                    (Phase::Suspended, Some(value)) => Ok(self.resume(Resume::Sent(value))),
                    (Phase::Running | Phase::Closed, value) => {
                        self.close();
                        Err(SendError::Finished(value))
                    }
                }
            }

            /// Throws `error` into the body at the `yield` where it is paused (Python's
            /// `gen.throw(exc)`).
            ///
            /// If the body is paused at [`Yielder::yield_catching`], that call evaluates to
            /// `Err(error)` and the body runs on: `throw` returns `Ok(Some(item))` with the
            /// next item, or `Ok(None)` if the body returned (its value is then in
            /// [`return_value`](Generator::return_value)).
            ///
            /// # Errors
            /// As in Python, the error comes straight back and the generator is closed (its
            /// cleanup runs) when nothing catches it: the body is paused at a plain
            /// `yield_`, has not started (Python raises at once), or has already finished.
            ///
            #[doc = concat!("```\nuse iter_gen::", $name, "::Generator;\n")]
            ///
            /// let mut g = Generator::new(|co| async move {
            ///     co.yield_(1).await; // a plain yield does not catch
            ///     co.yield_(2).await;
            /// });
            /// assert_eq!(g.next(), Some(1));
            /// let err = g.throw("stop").unwrap_err();
            /// assert_eq!(err.to_string(), "stop");
            /// assert_eq!(g.next(), None); // closed, like a generator an exception left
            /// ```
            pub fn throw(&mut self, error: impl Into<Thrown>) -> Result<Option<Y>, Thrown> {
                let error = error.into();
                if self.phase == Phase::Suspended && self.thrown.catching() {
                    self.thrown.put(error);
                    Ok(self.resume(Resume::Thrown))
                } else {
                    self.close();
                    Err(error)
                }
            }

            /// Drops the body now, running its cleanup (Python's `gen.close()`).
            ///
            /// The body's live locals are dropped where it is paused, so drop guards in it run,
            /// once. Afterwards `next()` returns `None`. Closing a finished or closed
            /// generator does nothing; a return value already produced is kept.
            pub fn close(&mut self) {
                self.body = None;
                self.phase = Phase::Closed;
            }

            /// Where the generator is in its life (Python's `inspect.getgeneratorstate`).
            pub fn state(&self) -> GenState {
                match self.phase {
                    Phase::Created => GenState::Created,
                    Phase::Suspended => GenState::Suspended,
                    Phase::Running | Phase::Closed => GenState::Closed,
                }
            }

            /// The body's return value, once it has returned (Python's `StopIteration.value`).
            ///
            /// `None` while it runs, and for ever if it was closed before returning.
            pub fn return_value(&self) -> Option<&R> {
                self.returned.as_ref()
            }

            /// Takes the return value out, leaving `None`.
            pub fn take_return_value(&mut self) -> Option<R> {
                self.returned.take()
            }

            /// Consumes the generator, giving its return value if the body has returned.
            ///
            /// The body is dropped (cleanup runs) if it has not finished.
            pub fn into_return_value(self) -> Option<R> {
                self.returned
            }

            /// Runs the body once: to its next `yield` (`Some`) or to its end (`None`).
            #[inline]
            fn resume(&mut self, resume_with: Resume<S>) -> Option<Y> {
                match self.phase {
                    Phase::Created | Phase::Suspended => {}
                    Phase::Closed => return None,
                    Phase::Running => {
                        // The last run panicked out of the body: polling it again would panic
                        // again, so the generator is closed instead, like a Python generator
                        // that raised.
                        self.close();
                        return None;
                    }
                }
                let body = self.body.as_mut()?;
                self.phase = Phase::Running;
                match body.resume_with(resume_with) {
                    RawStep::Yielded(item) => {
                        self.phase = Phase::Suspended;
                        Some(item)
                    }
                    RawStep::Complete(value) => {
                        self.returned = Some(value);
                        self.close();
                        None
                    }
                }
            }
        }

        impl<Y, S, R> Generator<Y, S, R, BoxedBody<R>> {
            /// Makes a generator whose body is boxed, so that its type can be written without
            /// naming the body: `Generator<Y>`, `Generator<Y, S, R>`.
            ///
            /// Costs one more allocation and a virtual call per step; see the crate's
            /// benchmarks.
            #[doc = concat!("```\nuse iter_gen::", $name, "::Generator;\n")]
            ///
            /// fn evens(limit: u32) -> Generator<u32> {
            ///     Generator::boxed(move |co| async move {
            ///         for i in (0..limit).step_by(2) {
            ///             co.yield_(i).await;
            ///         }
            ///     })
            /// }
            /// assert_eq!(evens(7).collect::<Vec<_>>(), [0, 2, 4, 6]);
            /// ```
            pub fn boxed<F>(body: impl FnOnce(Yielder<Y, S>) -> F) -> Self
            where
                F: Future<Output = R> + 'static $($boxed_bound)*,
            {
                Self::receiving(|co| -> BoxedBody<R> { Box::pin(body(co)) })
            }
        }

        impl<Y, S, R, F> Iterator for Generator<Y, S, R, F>
        where
            F: Future<Output = R>,
        {
            type Item = Y;

            /// Runs the body to its next `yield` (Python's `next(gen)`); `None` once it has
            /// returned or been closed, for ever.
            #[inline]
            fn next(&mut self) -> Option<Y> {
                self.resume(Resume::Next)
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                match self.phase {
                    Phase::Closed => (0, Some(0)),
                    _ => (0, None),
                }
            }
        }

        impl<Y, S, R, F> FusedIterator for Generator<Y, S, R, F> where F: Future<Output = R> {}

        impl<Y, S, R, F> fmt::Debug for Generator<Y, S, R, F>
        where
            F: Future<Output = R>,
        {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Generator")
                    .field("state", &self.state())
                    .field("returned", &self.returned.is_some())
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use generator_flavour;
