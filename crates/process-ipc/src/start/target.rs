//! What a child runs: the `Target` trait for plain-function targets, and `conjure`, which makes
//! a target's (zero-sized) value again in the process that runs it.

/// A function that can run in a child process with the argument tuple `Args`.
///
/// Implemented for plain `fn` items and non-capturing closures of up to six arguments, whose
/// arguments and return value are serde types. The child is the same executable, so the
/// function is found again there; anything captured would not be, and a capturing closure is
/// rejected at compile time (the "zero-sized" assertion). Pass the function item itself
/// (`square`), not a `fn` pointer variable.
///
/// A mismatch is reported at your call: arguments that do not match the function's
/// parameters, or a closure that captures a value that is not `Copy`/`Send`, fail with the
/// message below. A closure that captures only `Copy` values (or a `fn` pointer) passes the
/// trait but not the zero-size check, which Rust can only report where the check is
/// evaluated: inside this crate, with a note naming your closure's file and line.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a process target with the arguments `{Args}`",
    label = "not a process target for these arguments",
    note = "a process target is a named `fn` item (or a closure that captures nothing) whose \
            parameters match the argument tuple, e.g. `Process::new(square, (7,))` for \
            `fn square(x: u64) -> u64`; the child runs the same binary, so captured values \
            would not come along"
)]
pub trait Target<Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the unpacked tuple.
    fn call(&self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a,)*> Target<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call(&self, ($($a,)*): ($($a,)*)) -> Ret {
                self($($a),*)
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

/// Produces the value of a zero-sized function type in a process that never received it.
pub(crate) fn conjure<F: Copy + 'static>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target must be a named fn item or a closure that captures nothing (this \
             one captures something, or is a fn pointer): the child process runs the same \
             code, but nothing captured comes along"
        )
    };
    // SAFETY: F is zero-sized and Copy: a fn item or a closure capturing nothing with a size
    // (only those implement the Fn traits on stable Rust), so it has no bytes to initialize and
    // no invariant a fresh value could break; reading a zero-sized value through an aligned
    // dangling pointer is valid.
    unsafe { std::ptr::NonNull::<F>::dangling().read() }
}
