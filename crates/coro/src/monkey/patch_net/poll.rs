//! Waiting for many descriptors: `poll` and `select`.

use super::*;

/// What `poll` events a pollfd waits for, as the poller's interest.
fn interest_of(events: libc::c_short) -> u32 {
    let mut interest = 0;
    if events & (libc::POLLIN | libc::POLLPRI) != 0 {
        interest |= READ;
    }
    if events & libc::POLLOUT != 0 {
        interest |= WRITE;
    }
    if interest == 0 { READ } else { interest }
}

/// Cooperative poll over `fds`: look, then park until one is ready or the deadline.
fn poll_loop(fds: &mut [pollfd], deadline: Option<Instant>, real: PollFn) -> c_int {
    guarded(-1, || {
        loop {
            // SAFETY: the caller's pollfd array, looked at without waiting.
            let r = unsafe { real(fds.as_mut_ptr(), fds.len() as nfds_t, 0) };
            if r != 0 {
                return r;
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return 0;
            }
            let watch: Vec<(RawFd, u32)> = fds
                .iter()
                .filter(|p| p.fd >= 0)
                .map(|p| (p.fd, interest_of(p.events)))
                .collect();
            match poller::wait_any(&watch, deadline) {
                Ready::Yes => {}
                Ready::TimedOut => return 0,
                Ready::Unsupported => {
                    let ms = deadline.map_or(-1, |at| {
                        let left = at.saturating_duration_since(Instant::now());
                        c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX)
                    });
                    // SAFETY: the caller's pollfd array, as poll itself would use it.
                    return unsafe { real(fds.as_mut_ptr(), fds.len() as nfds_t, ms) };
                }
            }
        }
    })
}

/// The hook for `poll(2)`.
///
/// # Safety
/// `poll`'s contract: `fds` valid for `nfds` entries.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    let Some(real) = real_poll() else {
        return missing();
    };
    if !active() || timeout == 0 || fds.is_null() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fds, nfds, timeout) };
    }
    // SAFETY: poll's contract: `fds` holds `nfds` entries.
    let slice = unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) };
    let deadline =
        (timeout > 0).then(|| crate::timer::deadline_after(Duration::from_millis(timeout as u64)));
    poll_loop(slice, deadline, real)
}

/// The hook for `select(2)`, as a cooperative `poll` over the same descriptors.
///
/// # Safety
/// `select`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let Some(real) = real_select() else {
        return missing();
    };
    // SAFETY: a non-null timeout is readable by select's contract.
    let tv = unsafe { timeout.as_ref() }.copied();
    let zero = tv.is_some_and(|t| t.tv_sec == 0 && t.tv_usec == 0);
    let Some(real_poll) = real_poll() else {
        return missing();
    };
    if !active() || zero || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        // SAFETY: forwarded unchanged.
        return unsafe { real(nfds, readfds, writefds, exceptfds, timeout) };
    }
    let is_set = |set: *mut libc::fd_set, fd: c_int| {
        // SAFETY: a non-null set is a valid fd_set by select's contract; fd < FD_SETSIZE.
        !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
    };
    let mut fds: Vec<pollfd> = (0..nfds)
        .filter_map(|fd| {
            let mut events = 0;
            if is_set(readfds, fd) {
                events |= libc::POLLIN;
            }
            if is_set(writefds, fd) {
                events |= libc::POLLOUT;
            }
            if is_set(exceptfds, fd) {
                events |= libc::POLLPRI;
            }
            (events != 0).then_some(pollfd {
                fd,
                events,
                revents: 0,
            })
        })
        .collect();
    let deadline = tv.map(|t| {
        crate::timer::deadline_after(Duration::new(
            t.tv_sec.max(0) as u64,
            (t.tv_usec.max(0) as u32).saturating_mul(1000),
        ))
    });
    let r = poll_loop(&mut fds, deadline, real_poll);
    if r < 0 {
        return r;
    }
    for set in [readfds, writefds, exceptfds] {
        if !set.is_null() {
            // SAFETY: a valid fd_set by select's contract.
            unsafe { libc::FD_ZERO(set) };
        }
    }
    let mut count = 0;
    for p in &fds {
        let mark = |set: *mut libc::fd_set, wanted: bool| {
            if wanted && !set.is_null() {
                // SAFETY: a valid fd_set; fd < nfds <= FD_SETSIZE.
                unsafe { libc::FD_SET(p.fd, set) };
                1
            } else {
                0
            }
        };
        let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        count += mark(
            readfds,
            p.events & libc::POLLIN != 0 && p.revents & (libc::POLLIN | bad) != 0,
        );
        count += mark(
            writefds,
            p.events & libc::POLLOUT != 0 && p.revents & (libc::POLLOUT | bad) != 0,
        );
        count += mark(
            exceptfds,
            p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0,
        );
    }
    if r == 0 && !timeout.is_null() {
        // SAFETY: a non-null timeout is writable; Linux leaves the time not slept there.
        unsafe {
            *timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            }
        };
    }
    count
}
