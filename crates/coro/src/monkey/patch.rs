//! `patch_all()`: symbol-level hooks on `nanosleep` / `clock_nanosleep` (Linux, glibc).
//!
//! This module defines `nanosleep` and `clock_nanosleep` in the final
//! binary. The linker resolves the standard library's calls (Rust's
//! `std::thread::sleep` calls one of them) to these definitions instead of
//! glibc's. Until [`patch_all`] runs, and always outside a coroutine, each
//! hook forwards to glibc's own function, found with `dlsym(RTLD_NEXT, ..)`;
//! only a patched call made inside a coroutine becomes a cooperative sleep.
//!
//! Limits: only code linked into this binary is affected (a C library that
//! sleeps inside glibc itself, e.g. `usleep`, is not). A greenlet killed
//! while inside a patched sleep makes the call fail with `ECANCELED`
//! (unwinding out of an `extern "C"` function is not allowed); std's
//! `thread::sleep` panics on any error but `EINTR`, and that panic unwinds
//! the killed greenlet silently, so `std::thread::sleep` ends it as gevent's
//! patched `time.sleep` does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libc::{c_int, clockid_t, timespec};

use crate::error::Result;

use super::flag::PATCHED;

/// Makes unchanged `std::thread::sleep` and `std::net` code (any `nanosleep`,
/// `clock_nanosleep` and socket call linked into this binary: see the table in
/// [`crate::monkey`]) yield inside a coroutine, like gevent's
/// `monkey.patch_all()`. Calls outside coroutines are unchanged.
///
/// # Errors
/// [`crate::CoroError::PatchUnavailable`] on a platform other than Linux with glibc.
pub fn patch_all() -> Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Name the hooks here so the object that defines them is always linked
        // in with this function, and resolve the real functions up front.
        std::hint::black_box((
            hooks::nanosleep as *const (),
            hooks::clock_nanosleep as *const (),
        ));
        hooks::resolve_real();
        super::patch_net::resolve_real();
        crate::runtime::ensure_init();
        PATCHED.store(true, Ordering::Release);
        Ok(())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        Err(crate::error::CoroError::PatchUnavailable(
            "the symbol-level patch needs Linux with glibc".into(),
        ))
    }
}

/// Whether `listen(2)` under the patch raises a smaller backlog to the
/// system's largest (on by default; `false` keeps the caller's number).
///
/// std's `TcpListener::bind` listens with a backlog of 128. A coroutine
/// server is made to take thousands of connections at once, and a full
/// backlog makes the kernel drop SYNs, which clients retry only after a
/// second: 500 clients against a gevent-style server ported to `std::net`
/// took 3x gevent's time for that alone. So while patched, a `listen` asked
/// for less than [`crate::monkey::net::max_listen_backlog`] (from any thread:
/// listeners are usually bound in `main`, before the handlers are spawned) gets
/// that instead. Call `raise_listen_backlog(false)` to keep the number asked for.
///
/// ```
/// coro::monkey::raise_listen_backlog(false); // std's 128 stays 128
/// coro::monkey::raise_listen_backlog(true); // the default again
/// ```
pub fn raise_listen_backlog(on: bool) {
    super::flag::RAISE_BACKLOG.store(on, Ordering::Relaxed);
}

/// Turns the patch off again: every call goes straight to glibc.
pub fn unpatch_all() {
    PATCHED.store(false, Ordering::Release);
}

pub(crate) fn is_patched() -> bool {
    super::flag::is_patched()
}

/// The duration of a valid relative `timespec`, `None` if it is invalid (glibc reports EINVAL).
fn to_duration(ts: &timespec) -> Option<Duration> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos))
}

/// How a hooked sleep went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slept {
    /// Not ours to do (unpatched, outside a coroutine, a bad request): forward to glibc.
    Forward,
    /// Slept cooperatively for the whole duration.
    Done,
    /// The greenlet was killed during the sleep.
    Killed,
}

/// Sleeps cooperatively if patched and inside a coroutine.
fn cooperative(duration: impl FnOnce() -> Option<Duration>) -> Slept {
    if !PATCHED.load(Ordering::Relaxed) || !may::coroutine::is_coroutine() {
        return Slept::Forward;
    }
    let Some(d) = duration() else {
        return Slept::Forward;
    };
    // A kill unwinds from may's sleep; it must not cross the extern "C"
    // boundary, so it becomes an error return (ECANCELED) instead. std's
    // `thread::sleep` retries only EINTR and treats any other error as a
    // bug (it panics), and that panic, in a greenlet already killed, is
    // silent (the panic hook) and unwinds the greenlet from Rust code: a
    // `loop { sleep() }` ends instead of spinning.
    match std::panic::catch_unwind(|| crate::sleep::sleep(d)) {
        Ok(()) => Slept::Done,
        Err(_) => Slept::Killed,
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod hooks {
    use super::*;

    type NanosleepFn = unsafe extern "C" fn(*const timespec, *mut timespec) -> c_int;
    type ClockNanosleepFn =
        unsafe extern "C" fn(clockid_t, c_int, *const timespec, *mut timespec) -> c_int;

    static REAL_NANOSLEEP: AtomicUsize = AtomicUsize::new(0);
    static REAL_CLOCK_NANOSLEEP: AtomicUsize = AtomicUsize::new(0);

    fn lookup(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
        let cached = cache.load(Ordering::Acquire);
        if cached != 0 {
            return cached;
        }
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only reads;
        // the result is the next definition after this binary (glibc's) or null.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        cache.store(found, Ordering::Release);
        found
    }

    pub(super) fn resolve_real() {
        lookup(&REAL_NANOSLEEP, c"nanosleep");
        lookup(&REAL_CLOCK_NANOSLEEP, c"clock_nanosleep");
    }

    /// glibc's `nanosleep`, or the raw system call if dlsym found nothing.
    ///
    /// # Safety
    /// The pointers must be valid as for `nanosleep(2)`.
    unsafe fn real_nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
        match lookup(&REAL_NANOSLEEP, c"nanosleep") {
            // SAFETY: the caller passes nanosleep's arguments through unchanged.
            0 => unsafe { libc::syscall(libc::SYS_nanosleep, req, rem) as c_int },
            f => {
                // SAFETY: `f` is glibc's nanosleep, whose signature this is.
                let f: NanosleepFn = unsafe { std::mem::transmute::<usize, NanosleepFn>(f) };
                // SAFETY: arguments forwarded unchanged from our caller.
                unsafe { f(req, rem) }
            }
        }
    }

    /// glibc's `clock_nanosleep`, or the raw system call if dlsym found nothing.
    ///
    /// # Safety
    /// The pointers must be valid as for `clock_nanosleep(2)`.
    unsafe fn real_clock_nanosleep(
        clock: clockid_t,
        flags: c_int,
        req: *const timespec,
        rem: *mut timespec,
    ) -> c_int {
        match lookup(&REAL_CLOCK_NANOSLEEP, c"clock_nanosleep") {
            0 => {
                // SAFETY: arguments forwarded unchanged from our caller.
                let r = unsafe { libc::syscall(libc::SYS_clock_nanosleep, clock, flags, req, rem) };
                // clock_nanosleep returns the error number instead of setting errno.
                if r == 0 {
                    0
                } else {
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EINVAL)
                }
            }
            f => {
                // SAFETY: `f` is glibc's clock_nanosleep, whose signature this is.
                let f: ClockNanosleepFn =
                    unsafe { std::mem::transmute::<usize, ClockNanosleepFn>(f) };
                // SAFETY: arguments forwarded unchanged from our caller.
                unsafe { f(clock, flags, req, rem) }
            }
        }
    }

    /// The hook for `nanosleep(2)`.
    ///
    /// # Safety
    /// Called by C code with `nanosleep`'s contract: `req` readable, `rem` null or writable.
    #[unsafe(no_mangle)]
    pub(super) unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
        // SAFETY: `req` is checked for null; C callers pass a valid timespec.
        let slept = cooperative(|| unsafe { req.as_ref() }.and_then(to_duration));
        if slept == Slept::Killed {
            // SAFETY: glibc's thread-local errno slot is always valid to write.
            unsafe { *libc::__errno_location() = libc::ECANCELED };
            return -1;
        }
        if slept == Slept::Done {
            if !rem.is_null() {
                // SAFETY: a non-null `rem` is writable by nanosleep's contract.
                unsafe {
                    rem.write(timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    })
                };
            }
            return 0;
        }
        // SAFETY: forwarded unchanged.
        unsafe { real_nanosleep(req, rem) }
    }

    /// The hook for `clock_nanosleep(2)`; handles relative and `TIMER_ABSTIME` requests.
    ///
    /// # Safety
    /// Called by C code with `clock_nanosleep`'s contract.
    #[unsafe(no_mangle)]
    pub(super) unsafe extern "C" fn clock_nanosleep(
        clock: clockid_t,
        flags: c_int,
        req: *const timespec,
        rem: *mut timespec,
    ) -> c_int {
        let slept = cooperative(|| {
            // SAFETY: `req` is checked for null; C callers pass a valid timespec.
            let ts = unsafe { req.as_ref() }?;
            if flags & libc::TIMER_ABSTIME == 0 {
                return to_duration(ts);
            }
            let target = to_duration(ts)?;
            let mut now = timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable timespec.
            if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
                return None;
            }
            Some(target.saturating_sub(to_duration(&now)?))
        });
        match slept {
            // clock_nanosleep returns the error number instead of setting errno.
            Slept::Killed => return libc::ECANCELED,
            Slept::Done => return 0,
            Slept::Forward => {}
        }
        // SAFETY: forwarded unchanged.
        unsafe { real_clock_nanosleep(clock, flags, req, rem) }
    }
}
