//! What every child runs once it has its arguments, whichever start method made it: the target
//! (the `Target` trait, and `conjure`, which makes its zero-sized value again in the child),
//! the hooks registered to run before the report (a queue's feeders flush there), the report on
//! the result channel, and the exit rule. Also the entry offsets both methods jump by, and the
//! panic recorder that gives a panic's location.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ipc_channel::ipc::IpcSender;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::exit_rule;
use crate::sys;
use crate::wire::{self, ChildMsg, ParentMsg};

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

// ---------------------------------------------------------------------------------------------
// Hooks a child runs after its target and before it reports (upper layers register them:
// the queue's feeders flush there, so nothing a target put is lost).

static BEFORE_REPORT: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Whether [`BEFORE_REPORT`] ever got a hook: a child without any only reads this (taking the
/// lock would write, and cost a freshly forked child a copy of the page).
static ANY_BEFORE_REPORT: AtomicBool = AtomicBool::new(false);

/// Registers `hook` to run in a child after its target returns and before it reports. Once per
/// distinct function.
pub(crate) fn before_report(hook: fn()) {
    let mut hooks = BEFORE_REPORT.lock().unwrap_or_else(|p| p.into_inner());
    if !hooks.iter().any(|&h| std::ptr::fn_addr_eq(h, hook)) {
        hooks.push(hook);
    }
    ANY_BEFORE_REPORT.store(true, Ordering::Release);
}

/// Runs every hook registered with [`before_report`].
pub(crate) fn run_before_report() {
    if !ANY_BEFORE_REPORT.load(Ordering::Acquire) {
        return;
    }
    let hooks = BEFORE_REPORT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for hook in hooks {
        hook();
    }
}

/// Where the child's one-shot socket directory goes when `TMPDIR` does not say: `/dev/shm`,
/// a memory file system, when this uid may write there. ipc-channel makes the directory in the
/// Re-executing `/proc/self/exe` names the process `exe` in `ps` and `top`; take the parent's
/// name instead, as a forked Python child keeps its parent's.
pub(crate) fn name_after_parent(parent: i32) {
    if let Ok(name) = std::fs::read_to_string(format!("/proc/{parent}/comm")) {
        sys::set_process_name(name.trim_end());
    }
}

/// The last panic seen in this child: (message, location).
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

pub(crate) fn install_panic_recorder() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = sys::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "<unknown>".into());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some((message, location));
        }
        previous(info);
    }));
}

/// Takes the recorded (message, location) of the last panic, if the hook saw one.
pub(crate) fn take_last_panic() -> Option<(String, String)> {
    LAST_PANIC.lock().ok().and_then(|mut p| p.take())
}

/// Runs the target on the arguments and reports; returns the exit code.
pub(crate) fn run_target<F, Args>(msg: ParentMsg<Args, F::Output>) -> i32
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let ParentMsg { args, results, .. } = msg;
    let target: F = conjure();
    #[cfg(feature = "trace")]
    let _traced = crate::trace::child_start::<F>();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || target.call(args)));
    run_before_report();
    let code = report(outcome, results);
    // Python's child runs its exit function here: daemons terminated, the others joined. The
    // parent's `join` has the report but waits for this process to exit, so for them too.
    exit_rule::at_child_end();
    code
}

/// Sends the target's outcome on the result channel; returns the exit code.
fn report<R: Serialize + DeserializeOwned>(
    outcome: std::thread::Result<R>,
    results: IpcSender<ChildMsg<R>>,
) -> i32 {
    match outcome {
        Ok(value) => {
            let sent = wire::encoding(|| results.send(ChildMsg::Returned(value)));
            match sent {
                Ok(()) => 0,
                Err((e, reason)) => {
                    let _ = results.send(ChildMsg::Failed(format!(
                        "could not send the return value: {}",
                        reason.unwrap_or_else(|| e.to_string())
                    )));
                    2
                }
            }
        }
        Err(payload) => {
            let (message, location) = take_last_panic()
                .unwrap_or_else(|| (sys::panic_message(&*payload), "<unknown>".into()));
            let _ = results.send(ChildMsg::Panicked { message, location });
            1
        }
    }
}
