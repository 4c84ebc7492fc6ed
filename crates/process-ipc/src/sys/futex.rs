//! Futexes and what a robust lock needs of its thread: sleeping on a shared word and waking
//! its sleepers, `membarrier`'s process-wide barrier, the thread's kernel id, its robust-futex
//! list and the address of libc's thread id word. The waits and wakes are thin inline wrappers:
//! one system call each, nothing allocated.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `word` still holds `seen`, for at most `timeout` (`None`: no limit); `false`
/// only when the time ran out (a wake-up, a changed word or a signal are `true`).
#[inline]
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, timeout: Option<Duration>) -> bool {
    let timeout = timeout.map(|left| libc::timespec {
        tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    });
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT on a 4-byte-aligned word of a MAP_SHARED block (hence no PRIVATE
    // flag), with a relative timeout that lives through the call (or none).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            timeout_ptr,
        )
    };
    !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` sleepers on `word`.
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE on a word of a MAP_SHARED block; it only wakes sleepers on that word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// `membarrier(2)` commands (`linux/membarrier.h`; the libc crate does not name them).
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// Registers this process for `membarrier`'s global expedited barrier (idempotent; a process
/// keeps it across `fork` and loses it at `exec`). `false` if the kernel refuses.
pub(crate) fn register_for_barriers() -> bool {
    // SAFETY: membarrier with a command and no flags touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
            0,
            0,
        ) == 0
    }
}

/// A full memory barrier on every CPU that runs a thread of a registered process; `false` if
/// the kernel refuses it.
#[inline]
pub(crate) fn global_barrier() -> bool {
    // SAFETY: as in `register_for_barriers`.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0 }
}

/// The calling thread's kernel id.
#[inline]
pub(crate) fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// The calling thread's robust-futex list as the kernel has it registered: the head's address
/// and the length it was registered with; `None` if the kernel will not say.
pub(crate) fn robust_list() -> Option<(usize, usize)> {
    let mut head: usize = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: get_robust_list of the calling thread (pid 0) writes one pointer and one length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut usize,
            &mut len as *mut libc::size_t,
        )
    };
    (rc == 0).then_some((head, len))
}

/// Registers `head` (of `len` bytes) as the calling thread's robust-futex list.
///
/// # Safety
/// `head` must be a robust list head that lives as long as the thread (libc's own, in a copy
/// of the process made by a fork-like clone).
///
/// Always inlined: a copy made by `process::clone_parent` calls it first thing, and a call to
/// code on another page costs the new child a page fault of its own (see `die_with_parent`).
#[inline(always)]
pub(crate) unsafe fn set_robust_list(head: usize, len: usize) {
    // SAFETY: per the caller.
    unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) };
}

/// The address of libc's word holding the calling thread's id (`PR_GET_TID_ADDRESS`, which
/// needs the kernel's checkpoint/restore support); `None` where the kernel does not tell.
pub(crate) fn tid_address() -> Option<usize> {
    let mut address: usize = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer-sized value to a valid address.
    let rc = unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut address as *mut usize) };
    (rc == 0).then_some(address)
}
