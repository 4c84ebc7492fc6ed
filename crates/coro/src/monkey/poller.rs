//! Readiness waits for the patched socket calls: one epoll set, one poller, coroutines parked per fd.
//!
//! A coroutine whose socket call would block registers a [`Node`] for the fd
//! and the direction it needs, re-arms the fd in a private epoll set
//! (level-triggered, one-shot, so readiness that came before the
//! registration is reported at once and nothing is lost), and parks. The
//! poller wakes every waiter of a ready fd and re-arms the fd for the
//! waiters still left; the woken coroutine retries its call. A deadline (the
//! socket's `SO_RCVTIMEO`/`SO_SNDTIMEO`, a `poll` timeout) goes to coro's
//! timer like every other timed wait.
//!
//! The poller is a coroutine: the private epoll fd is itself registered in
//! may's event loop (an epoll set is pollable), so the poller drains it
//! without waiting and parks on may's loop while it is empty, and readiness
//! reaches the waiters on a worker without any cross-thread wake-up. (A
//! first design used a poller thread blocked in `epoll_wait`; its hand-off
//! cost the patched echo benchmark about 1.4x the shim types' time, against
//! about 1.2x now.) If may refuses the epoll fd, the thread is the fallback.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::node::{Node, Parker};
use crate::wait;

/// Wait for the fd to be readable.
pub(crate) const READ: u32 = libc::EPOLLIN as u32;
/// Wait for the fd to be writable.
pub(crate) const WRITE: u32 = libc::EPOLLOUT as u32;
const HANG_UP: u32 = (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;

#[derive(Default)]
struct FdWaiters {
    readers: Vec<Arc<Node>>,
    writers: Vec<Arc<Node>>,
}

impl FdWaiters {
    fn interest(&self) -> u32 {
        let mut events = 0;
        if !self.readers.is_empty() {
            events |= READ | libc::EPOLLRDHUP as u32;
        }
        if !self.writers.is_empty() {
            events |= WRITE;
        }
        events
    }
}

struct Poller {
    epoll: RawFd,
    waiters: Mutex<HashMap<RawFd, FdWaiters>>,
}

fn poller() -> Option<&'static Poller> {
    static POLLER: OnceLock<Option<&'static Poller>> = OnceLock::new();
    *POLLER.get_or_init(|| {
        // SAFETY: epoll_create1 takes no pointers.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return None;
        }
        let poller: &'static Poller = Box::leak(Box::new(Poller {
            epoll,
            waiters: Mutex::new(HashMap::new()),
        }));
        // Preferred: a coroutine that waits for the epoll set itself through
        // may's own event loop, so readiness reaches the waiters without any
        // cross-thread wake-up. A thread if that coroutine cannot start.
        let builder = may::coroutine::Builder::new().name("coro-poller".into());
        if crate::runtime::spawn_on_may(builder, move || poller.run_in_coroutine()).is_err() {
            std::thread::Builder::new()
                .name("coro-poller".into())
                .spawn(move || poller.run())
                .ok()?;
        }
        Some(poller)
    })
}

impl Poller {
    fn lock(&self) -> MutexGuard<'_, HashMap<RawFd, FdWaiters>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms `fd` for `events` (one-shot); false if the kernel refused (not pollable).
    fn arm(&self, fd: RawFd, events: u32) -> bool {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLONESHOT as u32,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid epoll_event; the epoll fd is ours and open.
        let modded = unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_MOD, fd, &mut ev) };
        if modded == 0 {
            return true;
        }
        // SAFETY: as above.
        unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) == 0 }
    }

    /// The poller as a coroutine: drains the epoll set without waiting, and
    /// parks on may's event loop (edge-triggered on the epoll fd) while it is empty.
    fn run_in_coroutine(&'static self) {
        let registered = may::io::CoIo::new(EpollFd(self.epoll));
        let Ok(io) = registered else {
            // may refused the epoll fd: the blocking loop, on a thread.
            let _ = std::thread::Builder::new()
                .name("coro-poller".into())
                .spawn(move || self.run());
            return;
        };
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let n = self.drain(&mut events, 0);
            if n < events.len() {
                // Empty now; the next event on the set is a fresh edge for may.
                may::io::WaitIo::wait_io(&io);
            }
        }
    }

    /// The poller as a thread: blocks in `epoll_wait`, hands wake-ups to the hub.
    fn run(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            self.drain(&mut events, -1);
        }
    }

    /// One `epoll_wait` (`timeout_ms` as epoll's), waking the waiters of every
    /// ready fd; how many events it got.
    fn drain(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        let mut woken = Vec::new();
        // SAFETY: `events` is a writable buffer of the length passed.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll,
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n <= 0 {
            return 0; // nothing, or EINTR
        }
        {
            let mut waiters = self.lock();
            for ev in &events[..n as usize] {
                let fd = ev.u64 as RawFd;
                let Some(w) = waiters.get_mut(&fd) else {
                    continue;
                };
                if ev.events & (READ | HANG_UP) != 0 {
                    woken.append(&mut w.readers);
                }
                if ev.events & (WRITE | HANG_UP) != 0 {
                    woken.append(&mut w.writers);
                }
                let left = w.interest();
                if left == 0 {
                    waiters.remove(&fd);
                } else {
                    self.arm(fd, left);
                }
            }
        }
        if may::coroutine::is_coroutine() {
            // On a worker already: wake each directly, no system call.
            woken.iter().for_each(|node| {
                node.notify();
            });
        } else {
            crate::timer::notify_batch(&mut woken);
        }
        n as usize
    }

    fn forget(&self, fd: RawFd, node: &Arc<Node>) {
        let mut waiters = self.lock();
        if let Some(w) = waiters.get_mut(&fd) {
            w.readers.retain(|n| !Arc::ptr_eq(n, node));
            w.writers.retain(|n| !Arc::ptr_eq(n, node));
            if w.interest() == 0 {
                waiters.remove(&fd);
            }
        }
    }
}

/// The poller's epoll fd, lent to may's event loop (never closed: it lives as long as the process).
struct EpollFd(RawFd);

impl std::os::fd::AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// How a readiness wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The fd reported the readiness (or an error/hang-up): retry the call.
    Yes,
    /// The deadline passed first.
    TimedOut,
    /// The fd cannot be waited on here (not pollable, or no poller): block plainly.
    Unsupported,
}

/// Parks the calling coroutine until any of `fds` (each with its `READ`/`WRITE`
/// interest) is ready, or until `deadline`. A kill unwinds from here.
pub(crate) fn wait_any(fds: &[(RawFd, u32)], deadline: Option<Instant>) -> Ready {
    let Some(poller) = poller() else {
        return Ready::Unsupported;
    };
    let node = Node::new(Parker::current());
    {
        let mut waiters = poller.lock();
        for &(fd, interest) in fds {
            let w = waiters.entry(fd).or_default();
            if interest & READ != 0 {
                w.readers.push(node.clone());
            }
            if interest & WRITE != 0 {
                w.writers.push(node.clone());
            }
            let events = w.interest();
            if !poller.arm(fd, events) {
                drop(waiters);
                fds.iter().for_each(|&(fd, _)| poller.forget(fd, &node));
                return Ready::Unsupported;
            }
        }
    }
    let forget_all = |_notified: bool| fds.iter().for_each(|&(fd, _)| poller.forget(fd, &node));
    let how = wait::park(&node, deadline, &forget_all);
    forget_all(false);
    if how == crate::node::TIMED_OUT {
        Ready::TimedOut
    } else {
        Ready::Yes
    }
}
