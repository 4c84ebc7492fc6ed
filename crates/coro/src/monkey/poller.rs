//! Readiness waits for the patched socket calls: one epoll set, one poller, coroutines parked per fd.
//!
//! A fd joins a private epoll set the first time a coroutine waits on it and
//! stays there, edge-triggered, until it is closed: a wait costs no
//! `epoll_ctl` (one more when a writer first waits on a fd readers used). An edge that comes while no coroutine waits in
//! that direction is kept as a flag; a waiter that finds the flag takes it
//! and retries its call instead of parking, so an edge between a call's
//! `EAGAIN` and its wait is never lost. The poller wakes every waiter of a
//! ready fd; the woken coroutine retries its call. A deadline (the socket's
//! `SO_RCVTIMEO`/`SO_SNDTIMEO`, a `poll` timeout) goes to coro's timer like
//! every other timed wait.
//!
//! What is known of a fd (in the set, non-blocking or not, its timeouts) is
//! kept with the fd's *generation*: the hooks on `close`, `dup2`/`dup3`,
//! `fcntl(F_SETFL)`, `ioctl(FIONBIO)`, `setsockopt` and a successful
//! `accept` bump it (`invalidate`), and a wait that finds an older generation
//! asks the kernel again (re-adding the fd to the set). A fd at or above
//! `TABLE` has no generation; every wait on it asks the kernel.
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::node::{Node, Parker, TIMED_OUT, WAITING};
use crate::wait;

/// Wait for the fd to be readable.
pub(crate) const READ: u32 = libc::EPOLLIN as u32;
/// Wait for the fd to be writable.
pub(crate) const WRITE: u32 = libc::EPOLLOUT as u32;
const HANG_UP: u32 = (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;
/// What a fd is registered for when a reader waits: readable, hang-ups, edge-triggered.
const READ_EVENTS: u32 = READ | libc::EPOLLRDHUP as u32 | libc::EPOLLET as u32;
/// What is added when a writer waits (rare: only with a full send buffer). A reader's
/// fd does not take the edges of every ACK that frees send room until then.
const WRITE_EVENTS: u32 = WRITE | libc::EPOLLET as u32;

/// Fds below this have a generation (256 KiB of zeroed statics, touched only where used).
const TABLE: usize = 1 << 16;

/// Per fd: bumped whenever the fd may name another file, or the file another mode.
static GENERATION: [AtomicU32; TABLE] = [const { AtomicU32::new(0) }; TABLE];

/// Marks what is known of `fd` stale (it was closed, replaced, or its mode or timeouts
/// changed). Lock-free and allocation-free: safe in a forked child and in any hook.
pub(crate) fn invalidate(fd: RawFd) {
    if let Some(g) = usize::try_from(fd).ok().and_then(|i| GENERATION.get(i)) {
        g.fetch_add(1, Ordering::AcqRel);
    }
}

fn generation(fd: RawFd) -> Option<u32> {
    usize::try_from(fd)
        .ok()
        .and_then(|i| GENERATION.get(i))
        .map(|g| g.load(Ordering::Acquire))
}

/// What the hooks need to know of a socket before they wait on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The user made it non-blocking: a call that would block says `EAGAIN`.
    pub(crate) nonblocking: bool,
    /// `SO_RCVTIMEO`, `None` when unset.
    pub(crate) receive_timeout: Option<Duration>,
    /// `SO_SNDTIMEO`, `None` when unset.
    pub(crate) send_timeout: Option<Duration>,
}

#[derive(Default)]
struct FdState {
    readers: Vec<Arc<Node>>,
    writers: Vec<Arc<Node>>,
    /// The generation `registered` and `facts` hold for (`None`: nothing known).
    known: Option<u32>,
    /// The events it is in the epoll set for (0: not in it).
    registered: u32,
    /// An edge for reading (writing) came that no waiter took.
    read_edge: bool,
    write_edge: bool,
    facts: Option<Facts>,
}

impl FdState {
    /// Forgets what an older generation knew.
    fn refresh(&mut self, fd: RawFd) {
        let now = generation(fd);
        if now.is_none() || self.known != now {
            self.known = now;
            self.registered = 0;
            self.facts = None;
            // A fresh registration reports what is ready now.
            self.read_edge = false;
            self.write_edge = false;
        }
    }
}

struct Poller {
    epoll: RawFd,
    fds: Mutex<HashMap<RawFd, FdState>>,
}

static POLLER: OnceLock<Option<&'static Poller>> = OnceLock::new();

fn poller() -> Option<&'static Poller> {
    *POLLER.get_or_init(|| {
        // SAFETY: epoll_create1 takes no pointers.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return None;
        }
        let poller: &'static Poller = Box::leak(Box::new(Poller {
            epoll,
            fds: Mutex::new(HashMap::new()),
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
    fn lock(&self) -> MutexGuard<'_, HashMap<RawFd, FdState>> {
        self.fds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `fd` in the set for `interest` (`READ`/`WRITE`) unless it is there for it in
    /// this generation; false if the kernel refused (not pollable).
    fn register(&self, fd: RawFd, state: &mut FdState, interest: u32) -> bool {
        state.refresh(fd);
        let mut want = state.registered;
        if interest & READ != 0 {
            want |= READ_EVENTS;
        }
        if interest & WRITE != 0 {
            want |= WRITE_EVENTS;
        }
        if want == state.registered {
            return true;
        }
        let mut ev = libc::epoll_event {
            events: want,
            u64: fd as u64,
        };
        let op = if state.registered == 0 {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        // SAFETY: `ev` is a valid epoll_event; the epoll fd is ours and open.
        let mut done = unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut ev) };
        let error = (done != 0).then(|| std::io::Error::last_os_error().raw_os_error());
        if error == Some(Some(libc::EEXIST)) {
            // Still there from before the generation changed (a dup kept the file
            // open): set it to what it must be now, which also reports what is ready.
            // SAFETY: as above.
            done = unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_MOD, fd, &mut ev) };
        } else if error == Some(Some(libc::ENOENT)) {
            // Gone from the set behind the hooks' back (closed by a path they do not
            // see): add it again.
            // SAFETY: as above.
            done = unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        }
        // Without a generation (a fd beyond the table) nothing is kept.
        state.registered = if done == 0 && state.known.is_some() {
            want
        } else {
            0
        };
        done == 0
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
            let mut fds = self.lock();
            for ev in &events[..n as usize] {
                let fd = ev.u64 as RawFd;
                let Some(state) = fds.get_mut(&fd) else {
                    continue;
                };
                if ev.events & (READ | HANG_UP) != 0 {
                    hand_edge(&mut state.readers, &mut state.read_edge, &mut woken);
                }
                if ev.events & (WRITE | HANG_UP) != 0 {
                    hand_edge(&mut state.writers, &mut state.write_edge, &mut woken);
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
        let mut fds = self.lock();
        if let Some(state) = fds.get_mut(&fd) {
            state.readers.retain(|n| !Arc::ptr_eq(n, node));
            state.writers.retain(|n| !Arc::ptr_eq(n, node));
        }
    }
}

/// An edge goes to the waiters still waiting in `list`; with none, it is kept in `edge`
/// for the next waiter (one that timed out or was killed must not swallow it).
fn hand_edge(list: &mut Vec<Arc<Node>>, edge: &mut bool, woken: &mut Vec<Arc<Node>>) {
    list.retain(|n| n.state() == WAITING);
    if list.is_empty() {
        *edge = true;
    } else {
        woken.append(list);
    }
}

/// The poller's epoll fd, lent to may's event loop (never closed: it lives as long as the process).
struct EpollFd(RawFd);

impl std::os::fd::AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// What is known of socket `fd`, asking the kernel (`ask`) only when the fd's
/// generation changed since it last did.
pub(crate) fn facts(fd: RawFd, ask: impl FnOnce() -> Facts) -> Facts {
    let Some(poller) = poller() else {
        return ask();
    };
    let mut fds = poller.lock();
    let state = fds.entry(fd).or_default();
    state.refresh(fd);
    if let Some(known) = state.facts {
        return known;
    }
    let asked = ask();
    if state.known.is_some() {
        state.facts = Some(asked);
    }
    asked
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
/// interest) is ready, or until `deadline`; returns at once if an edge came since
/// the caller last tried (its call must be retried). A kill unwinds from here.
pub(crate) fn wait_any(fds: &[(RawFd, u32)], deadline: Option<Instant>) -> Ready {
    let Some(poller) = poller() else {
        return Ready::Unsupported;
    };
    let node = Node::new(Parker::current());
    {
        let mut table = poller.lock();
        let mut edge = false;
        let mut unsupported = false;
        for &(fd, interest) in fds {
            let state = table.entry(fd).or_default();
            if !poller.register(fd, state, interest) {
                unsupported = true;
                break;
            }
            if interest & READ != 0 {
                edge |= std::mem::take(&mut state.read_edge);
                state.readers.push(node.clone());
            }
            if interest & WRITE != 0 {
                edge |= std::mem::take(&mut state.write_edge);
                state.writers.push(node.clone());
            }
        }
        if edge || unsupported {
            for &(fd, _) in fds {
                if let Some(state) = table.get_mut(&fd) {
                    state.readers.retain(|n| !Arc::ptr_eq(n, &node));
                    state.writers.retain(|n| !Arc::ptr_eq(n, &node));
                }
            }
            return if unsupported {
                Ready::Unsupported
            } else {
                Ready::Yes
            };
        }
    }
    let forget_all = |_notified: bool| fds.iter().for_each(|&(fd, _)| poller.forget(fd, &node));
    let how = wait::park(&node, deadline, &forget_all);
    // The poller took this node off the list that woke it; it may sit in others.
    forget_all(false);
    if how == TIMED_OUT {
        Ready::TimedOut
    } else {
        Ready::Yes
    }
}
