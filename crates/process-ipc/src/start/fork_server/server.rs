//! The fork server's process and the children it forks: the server's loop (a Process target,
//! started with Spawn, that runs before `main` and stays single-threaded: its bootstrap starts no
//! lifeline thread, and when the parent dies its request channel closes), and a forked child's
//! half: its name and faults, the jump to the entry the parent named, the arguments, the end.

use std::io::Write;

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ForkRequest, TaggedReply};
use crate::start::START_TIMEOUT;
use crate::start::child::{self, Target};
use crate::sys;
use crate::wire::{ChildMsg, ParentMsg, nonce_matches};

/// An entry of a forked child: its request (minus what the server keeps), returns its exit code.
pub(crate) type ForkedEntry = fn(ForkedChild) -> i32;

/// What a forked child gets from its request.
pub(crate) struct ForkedChild {
    /// The nonce its arguments must carry.
    pub(crate) nonce: [u8; 16],
    /// Where its arguments arrive.
    pub(crate) args: IpcReceiver<()>,
}

/// The fork server: forks a child per request until the parent's request channel closes.
pub(crate) fn server_main(
    requests: IpcReceiver<ForkRequest>,
    replies: IpcSender<TaggedReply>,
) -> u8 {
    let regs = sys::thread_regs();
    // Made once here rather than in every child that flushes it (see `end_forked`).
    let _ = std::io::stdout();
    // The parent's pid: with CLONE_PARENT it is every child's parent too.
    let parent = sys::ppid();
    // The server's bootstrap named it after the parent; the children it forks keep that name.
    loop {
        // Disconnected: the parent retired this server, or it is gone.
        let Ok(request) = requests.recv() else {
            return 0;
        };
        match sys::clone_parent(&regs) {
            Ok(0) => {
                // The child: it dies with the parent (its parent thread is the parent's
                // starter thread, which lives as long as the parent process).
                if !sys::die_with_parent(parent) {
                    // Leave at once: the parent is gone.
                    sys::exit_now(1);
                }
                // It must not reach the server's channels.
                drop(requests);
                drop(replies);
                let code = run_forked(request);
                end_forked(code)
            }
            Ok(pid) => {
                if replies.send((request.nonce, Ok(pid))).is_err() {
                    return 0;
                }
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                if replies.send((request.nonce, Err(errno))).is_err() {
                    return 0;
                }
            }
        }
    }
}

/// How a forked child ends, as Python's forked children do (`os._exit`): the exit rule has
/// run (at the end of its target, see `exit_rule`), Rust's standard output is flushed (its
/// standard error has no buffer), and the process exits at once. The `atexit(3)` handlers,
/// thread-local destructors, C stream flushes and the dynamic loader's teardown that
/// `std::process::exit` runs belong to the program the server was started from, not to this
/// child; skipping them halves the time from the child's report to its exit. A handler the
/// target registers itself runs only if the target calls `std::process::exit`, or if the
/// target left threads running: then the child ends with `std::process::exit`, so that a
/// handler that waits for them (`threads_sync::join_non_daemon_at_exit`, which the target may
/// have registered) still does, as Python's child waits for its non-daemon threads.
fn end_forked(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    if !sys::single_threaded() {
        std::process::exit(code);
    }
    // Nothing more of the process runs, which is what this child wants.
    sys::exit_now(code)
}

/// In a freshly forked child: the name, the faults, then the entry.
fn run_forked(request: ForkRequest) -> i32 {
    // While the copy has one thread (see `spawn::child_bootstrap`).
    sys::futex::register_for_barriers();
    crate::current::set_identity(&request.identity, true);
    // Without a name of its own the child keeps the server's, which is the parent's.
    if let Some(name) = &request.name {
        sys::set_process_name(name);
    }
    match request.fault.as_deref() {
        Some("exit-before-connect") => return 7,
        Some("silent") => loop {
            std::thread::park();
        },
        _ => {}
    }
    let address = sys::address_at(request.offset as isize);
    // SAFETY: the offset came from the parent on a channel only it and this server ever held
    // (the server got its end in its own authenticated start), and this process is a copy of
    // the server, whose executable was checked to be the parent's: `address` is the forked
    // entry the parent took the offset of, a `ForkedEntry` in this very binary.
    let entry: ForkedEntry = unsafe { std::mem::transmute::<usize, ForkedEntry>(address) };
    entry(ForkedChild {
        nonce: request.nonce,
        args: request.args,
    })
}

/// The entry of a child forked by the fork server: take the arguments (with the nonce of the
/// request), confirm, run, report.
pub(super) fn forked_entry<F, Args>(forked: ForkedChild) -> i32
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let rx: IpcReceiver<ParentMsg<Args, F::Output>> = forked.args.to_opaque().to();
    let msg = match rx.try_recv_timeout(START_TIMEOUT) {
        Ok(msg) => msg,
        Err(e) => {
            eprintln!(
                "process-ipc child {}: could not receive the arguments: {e:?}",
                std::process::id()
            );
            return 3;
        }
    };
    drop(rx);
    if !nonce_matches(&msg.nonce, &forked.nonce) {
        eprintln!(
            "process-ipc child {}: arguments without the request's nonce; refused",
            std::process::id()
        );
        return 3;
    }
    if msg.results.send(ChildMsg::Started).is_err() {
        return 3;
    }
    child::run_target::<F, Args>(msg)
}

#[cfg(all(test, feature = "trace"))]
mod tests {
    #[test]
    fn the_trace_hook_knows_the_fork_server_by_its_name() {
        assert_eq!(
            std::any::type_name_of_val(&super::server_main),
            crate::trace::FORK_SERVER_TARGET
        );
    }
}
