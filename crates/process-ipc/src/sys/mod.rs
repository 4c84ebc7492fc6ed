//! The OS layer: every libc call of the process machinery, each behind a safe wrapper, split
//! by topic: [`socket`] (sockets, credentials, descriptors), [`net`] (the manager's listeners
//! and connections), [`process`] (starting, waiting, pidfds), [`signal`] (signals, handlers and
//! exit hooks), [`image`] (code offsets in this executable), [`memory`] (memfds and shared
//! mappings), [`futex`] (futex words, barriers, the thread's id and robust list), [`file`]
//! (files by name, for named blocks), [`watcher`] (the process that unlinks a
//! `SharedMemoryManager`'s names). Waiting with a deadline is here.
//!
//! The bottom layer: it imports no other module of this crate.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub(crate) mod file;
pub(crate) mod futex;
pub(crate) mod image;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod watcher;

pub(crate) use image::*;
pub(crate) use net::*;
pub(crate) use process::*;
pub(crate) use signal::*;
pub(crate) use socket::*;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
/// Waits until `fd` is readable or `deadline` passes. `Ok(false)` on timeout.
pub(crate) fn wait_readable(fd: RawFd, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up, so a wait never ends early and spins.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Calls `look` until it finds something, for up to `time`, yielding the CPU between looks (the
/// peer we wait for may share it); `None` if nothing came in time, and then sleeping until it
/// comes is the caller's. Used wherever an answer usually comes within microseconds: taken
/// this way it costs no sleep and wake-up, which on this kind of VM cost more than the rest of
/// the exchange. The clock is read only if the first look finds nothing.
pub(crate) fn look_for<T>(time: Duration, mut look: impl FnMut() -> Option<T>) -> Option<T> {
    if let Some(found) = look() {
        return Some(found);
    }
    if time.is_zero() {
        return None;
    }
    let until = Instant::now() + time;
    loop {
        std::thread::yield_now();
        if let Some(found) = look() {
            return Some(found);
        }
        if Instant::now() >= until {
            return None;
        }
    }
}

/// Polls `fds` for readability (or hang-up) until `deadline` (`None`: no limit); the positions
/// of the ready ones, ascending, or an empty list once the deadline passed.
pub(crate) fn poll_ready(fds: &[RawFd], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let timeout_ms: libc::c_int = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Round up, so a wait never ends just short of its deadline.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `polls` is a valid array of `polls.len()` pollfds for the call's duration.
        let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            if n == 0 && deadline.is_some_and(|at| Instant::now() < at) {
                continue; // poll rounds to milliseconds; wait out the rest
            }
            return Ok(polls
                .iter()
                .enumerate()
                .filter(|(_, p)| p.revents != 0)
                .map(|(i, _)| i)
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
