//! A robust lock on one futex word, taken and released without a call into libc.
//!
//! The word holds the holder's thread id (the kernel's robust-futex convention), and while it
//! is held the lock is linked into the holding thread's robust list: the list libc registers
//! for every thread with `set_robust_list`, which the kernel walks when the thread exits. For
//! every entry whose word still names the exiting thread, the kernel sets `FUTEX_OWNER_DIED`,
//! clears the thread id and wakes a waiter; the next locker sees the bit and reports the dead
//! holder. That is what a robust pthread mutex gets from the kernel too; doing the same few
//! steps inline, without the mutex type dispatch and bookkeeping of
//! `pthread_mutex_lock`/`unlock`, halves the cost of an uncontended acquire and release.
//!
//! The list is shared with libc's own robust mutexes, so an entry is laid out as theirs are
//! (glibc, 64-bit): a `{prev, next}` pair whose `next` field is the kernel's list entry, with
//! the word at the list's `futex_offset` before it (checked at run time against the offset
//! the thread's list was registered with), linked and unlinked exactly as libc does, with the
//! list's `list_op_pending` naming the entry while a change is under way, so a death in the
//! middle of one is still handled by the kernel.
//!
//! An uncontended release is a plain store, not a locked swap: the releaser stores 0, then reads a
//! count of sleepers kept beside the word, and wakes one only if it is not zero. That read may pass
//! the store in the releasing CPU's store buffer, so a waiter, after counting itself and before it
//! sleeps, runs `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`: a full barrier on every CPU running
//! a thread of a process that registered for it (a child registers as it starts, while it has one
//! thread, and each thread asks again, at no cost once registered, when it first locks: registering
//! a process that runs several threads waits for an RCU grace period). After that barrier either
//! the waiter's futex wait sees the free word and returns at once, or the releaser's read of the
//! count comes after it and sees the waiter. The barrier costs the waiter an interrupt of the other
//! CPUs (tens of microseconds on a VM), so waiters first spin a little and sleep only if the holder
//! is slow; the releaser pays one atomic fewer on every release. A process that cannot register (no
//! `membarrier`, or a seccomp filter) releases with the swap, and a waiter whose barrier fails
//! sleeps in short slices instead. A waiter killed while asleep stays in the count: the lock still
//! works, but from then on each release also makes a (useless) wake-up call.

use std::cell::Cell as StdCell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, compiler_fence};
use std::time::{Duration, Instant};

use super::error::SharedError;
use super::futex::{futex_wait, futex_wake, global_barrier, register_for_barriers};
use crate::sys;

/// Set in the word by a waiter: the release must wake one.
const WAITERS: u32 = 0x8000_0000;
/// Set by the kernel when the holder died holding the word.
const OWNER_DIED: u32 = 0x4000_0000;
/// The holder's thread id.
const TID_MASK: u32 = 0x3fff_ffff;
/// How many times a waiter looks at a held word, pausing between looks, before it sleeps.
const SPINS: u32 = 100;
/// How long a waiter sleeps at most between looks when its process cannot run `membarrier`.
const SLICE: Duration = Duration::from_millis(1);

/// The word and its robust-list entry, in shared memory. The offsets between them are the
/// ones libc's robust mutexes use (`__lock` at 0, `__list.__prev` at 24, `__list.__next` at
/// 32), so that the kernel finds this word from this entry as it finds theirs.
#[repr(C)]
pub(crate) struct RobustWord {
    word: AtomicU32,
    /// Threads asleep on the word or on their way to sleep (see the module's doc).
    sleepers: AtomicU32,
    _gap: [u32; 4],
    prev: AtomicUsize,
    next: AtomicUsize,
}

/// Where the kernel finds the word from an entry: the entry is the address of `next`.
const FUTEX_OFFSET: isize = -(std::mem::offset_of!(RobustWord, next) as isize);
const _: () = assert!(std::mem::offset_of!(RobustWord, word) == 0);
const _: () = assert!(
    std::mem::offset_of!(RobustWord, next) - std::mem::offset_of!(RobustWord, prev)
        == std::mem::size_of::<usize>()
);

/// The kernel's `struct robust_list_head`.
#[repr(C)]
struct RobustListHead {
    /// The first entry (or the head itself when empty).
    list: AtomicUsize,
    futex_offset: isize,
    list_op_pending: AtomicUsize,
}

/// What a thread needs to lock: its robust list, and where its thread id can be read.
#[derive(Clone, Copy)]
struct ThreadInfo {
    head: *const RobustListHead,
    /// libc's word holding this thread's id (which `fork` and `clone` keep right in a copy of
    /// the process, at the same address), or null: then `gettid` each time.
    tid_word: *const i32,
    /// Whether this process is registered for `membarrier`'s global expedited barrier, so
    /// that its releases may be plain stores.
    store_release: bool,
}

thread_local! {
    static THREAD: StdCell<Option<ThreadInfo>> = const { StdCell::new(None) };
}

#[inline]
fn thread_info() -> Result<ThreadInfo, SharedError> {
    match THREAD.with(StdCell::get) {
        Some(info) => Ok(info),
        None => first_thread_info(),
    }
}

/// Looks up (once per thread) what [`thread_info`] returns.
#[cold]
#[inline(never)]
fn first_thread_info() -> Result<ThreadInfo, SharedError> {
    let Some((head, len)) = sys::futex::robust_list() else {
        return Err(SharedError::os("get_robust_list"));
    };
    let unusable = |why: &str| SharedError::Os {
        op: "robust lock",
        source: std::io::Error::new(std::io::ErrorKind::Unsupported, why.to_string()),
    };
    if head == 0 || len != std::mem::size_of::<RobustListHead>() {
        return Err(unusable("this thread has no robust futex list registered"));
    }
    let head = head as *const RobustListHead;
    // SAFETY: the kernel gave this address as the thread's live robust list head; libc keeps
    // it for the thread's lifetime.
    let offset = unsafe { (*head).futex_offset };
    if offset != FUTEX_OFFSET {
        return Err(unusable(
            "the thread's robust futex list uses another entry layout",
        ));
    }
    let mut tid_word = sys::futex::tid_address().map_or(std::ptr::null(), |a| a as *const i32);
    let tid = sys::futex::gettid() as i32;
    // SAFETY: a non-null address from the kernel is libc's live thread id word.
    if !tid_word.is_null() && unsafe { tid_word.read_volatile() } != tid {
        tid_word = std::ptr::null();
    }
    let info = ThreadInfo {
        head,
        tid_word,
        store_release: register_for_barriers(),
    };
    THREAD.with(|t| t.set(Some(info)));
    Ok(info)
}

impl ThreadInfo {
    #[inline]
    fn tid(self) -> u32 {
        let tid = if self.tid_word.is_null() {
            sys::futex::gettid()
        } else {
            // SAFETY: libc's thread id word of this thread, alive as long as the thread.
            unsafe { self.tid_word.read_volatile() as u32 }
        };
        tid & TID_MASK
    }

    #[inline]
    fn head(self) -> &'static RobustListHead {
        // SAFETY: checked in `thread_info`; lives as long as this thread, the only user.
        unsafe { &*self.head }
    }
}

/// How a lock was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    Clean,
    /// From a holder that died holding it.
    OwnerDied,
}

impl RobustWord {
    #[inline]
    fn entry(&self) -> usize {
        &self.next as *const AtomicUsize as usize
    }

    /// Whether some thread holds the word.
    pub(crate) fn is_held(&self) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// The kernel thread id of the holder (0: free). A snapshot: it may change at once.
    pub(crate) fn holder_tid(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & TID_MASK
    }

    /// Whether the calling thread holds the word.
    pub(crate) fn held_by_me(&self) -> bool {
        match thread_info() {
            Ok(info) => self.word.load(Ordering::Relaxed) & TID_MASK == info.tid(),
            Err(_) => false,
        }
    }

    /// Takes the word, waiting at most until `deadline` (`None`: no limit).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Taken, SharedError> {
        let info = thread_info()?;
        let me = info.tid();
        let head = info.head();
        head.list_op_pending.store(self.entry(), Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.link(head);
            return Ok(Taken::Clean);
        }
        let taken = self.lock_slow(me, deadline);
        match taken {
            Ok(_) => self.link(head),
            Err(_) => {
                compiler_fence(Ordering::SeqCst);
                head.list_op_pending.store(0, Ordering::Relaxed);
            }
        }
        taken
    }

    /// The uncontended case of [`lock`](Self::lock) alone: takes a free word (never one a
    /// dead holder left, which needs `lock`'s report) and says whether it did, with no error
    /// to carry. A thread not set up for locking yet, or a held word, is `false`: the caller
    /// then calls `lock`.
    #[inline]
    pub(crate) fn lock_free(&self) -> bool {
        let Some(info) = THREAD.with(StdCell::get) else {
            return false;
        };
        let head = info.head();
        head.list_op_pending.store(self.entry(), Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if self
            .word
            .compare_exchange(0, info.tid(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.link(head);
            return true;
        }
        compiler_fence(Ordering::SeqCst);
        head.list_op_pending.store(0, Ordering::Relaxed);
        false
    }

    /// Takes the word if nobody holds it.
    pub(crate) fn try_lock(&self) -> Result<Option<Taken>, SharedError> {
        let info = thread_info()?;
        let me = info.tid();
        let head = info.head();
        head.list_op_pending.store(self.entry(), Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let mut seen = self.word.load(Ordering::Relaxed);
        let taken = loop {
            let (new, taken) = if seen & OWNER_DIED != 0 {
                (me | (seen & WAITERS), Taken::OwnerDied)
            } else if seen & TID_MASK == 0 {
                (me | (seen & WAITERS), Taken::Clean)
            } else {
                break None;
            };
            match self
                .word
                .compare_exchange(seen, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break Some(taken),
                Err(now) => seen = now,
            }
        };
        if taken.is_some() {
            self.link(head);
        } else {
            compiler_fence(Ordering::SeqCst);
            head.list_op_pending.store(0, Ordering::Relaxed);
        }
        Ok(taken)
    }

    /// The contended path: look at the word a while in case the holder is about to let go,
    /// then count this thread as a sleeper, mark the word as waited for (which the kernel needs
    /// to wake a sleeper when the holder dies) and sleep on it until it is free (or its holder
    /// died), then take it.
    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Instant>) -> Result<Taken, SharedError> {
        for _ in 0..SPINS {
            let seen = self.word.load(Ordering::Relaxed);
            if seen & OWNER_DIED == 0 && seen & TID_MASK != 0 {
                std::hint::spin_loop();
                continue;
            }
            let taken = if seen & OWNER_DIED != 0 {
                Taken::OwnerDied
            } else {
                Taken::Clean
            };
            if self
                .word
                .compare_exchange(
                    seen,
                    me | (seen & WAITERS),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Ok(taken);
            }
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let taken = self.lock_sleeping(me, deadline);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        taken
    }

    /// [`Self::lock_slow`] once this thread counts as a sleeper.
    fn lock_sleeping(&self, me: u32, deadline: Option<Instant>) -> Result<Taken, SharedError> {
        // Once this thread has slept, others may sleep too: keep the wake-up owed to them.
        let mut others = 0;
        let mut seen = self.word.load(Ordering::Relaxed);
        loop {
            if seen & OWNER_DIED != 0 || seen & TID_MASK == 0 {
                let taken = if seen & OWNER_DIED != 0 {
                    Taken::OwnerDied
                } else {
                    Taken::Clean
                };
                match self.word.compare_exchange(
                    seen,
                    me | (seen & WAITERS) | others,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(taken),
                    Err(now) => {
                        seen = now;
                        continue;
                    }
                }
            }
            if seen & WAITERS == 0 {
                if let Err(now) = self.word.compare_exchange(
                    seen,
                    seen | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    seen = now;
                    continue;
                }
            }
            // After this, a release that the futex wait below does not see reads the count
            // of sleepers after this thread joined it (the module's doc says why).
            let until = if global_barrier() {
                deadline
            } else {
                let slice = Instant::now() + SLICE;
                Some(deadline.map_or(slice, |d| d.min(slice)))
            };
            if !futex_wait(&self.word, seen | WAITERS, until)
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                let left = deadline.map_or(Duration::ZERO, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                return Err(SharedError::Timeout(left));
            }
            others = WAITERS;
            seen = self.word.load(Ordering::Relaxed);
        }
    }

    /// Puts the word (just taken, named in `list_op_pending`) on this thread's robust list, at
    /// the front as libc does, then clears `list_op_pending`.
    #[inline]
    fn link(&self, head: &RobustListHead) {
        let entry = self.entry();
        let head_addr = head as *const RobustListHead as usize;
        let first = head.list.load(Ordering::Relaxed);
        // SAFETY: every entry of the list (ours or libc's) and the head itself have a `prev`
        // word just before their `next` (libc keeps one before the head for this): the list
        // is this thread's, changed only by this thread.
        unsafe { prev_of(first).store(entry, Ordering::Relaxed) };
        self.next.store(first, Ordering::Relaxed);
        self.prev.store(head_addr, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        head.list.store(entry, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        head.list_op_pending.store(0, Ordering::Relaxed);
    }

    /// Releases the word (the caller holds it): off the robust list, then free, then a wake-up
    /// if anyone sleeps on it.
    #[inline]
    pub(crate) fn unlock(&self) {
        let Ok(info) = thread_info() else {
            // Never taken by this thread (it would have this).
            return;
        };
        let head = info.head();
        head.list_op_pending.store(self.entry(), Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let (prev, next) = (
            self.prev.load(Ordering::Relaxed),
            self.next.load(Ordering::Relaxed),
        );
        // SAFETY: `prev` and `next` are this entry's neighbours on this thread's list (set by
        // `link` or by libc's own list changes since), live while they are on it.
        unsafe {
            prev_of(next).store(prev, Ordering::Relaxed);
            next_at(prev).store(next, Ordering::Relaxed);
        }
        // The entry's own links are left as they are: nothing reads them off the list.
        if info.store_release {
            self.word.store(0, Ordering::Release);
            // The count is read after the store in program order; a waiter's barrier makes
            // it so for the CPU too (the module's doc).
            compiler_fence(Ordering::SeqCst);
            if self.sleepers.load(Ordering::Relaxed) != 0 {
                futex_wake(&self.word, 1);
            }
        } else if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            futex_wake(&self.word, 1);
        }
        compiler_fence(Ordering::SeqCst);
        head.list_op_pending.store(0, Ordering::Relaxed);
    }
}

/// The `prev` word of the list entry (or head) at `entry`.
///
/// # Safety
/// `entry` must be an entry of the calling thread's robust list, or its head.
unsafe fn prev_of(entry: usize) -> &'static AtomicUsize {
    // SAFETY: per the caller; the low bit marks priority-inheritance entries.
    unsafe { &*(((entry & !1) - std::mem::size_of::<usize>()) as *const AtomicUsize) }
}

/// The `next` word of the list entry (or head) at `entry`: the entry itself.
///
/// # Safety
/// As [`prev_of`].
unsafe fn next_at(entry: usize) -> &'static AtomicUsize {
    // SAFETY: per the caller.
    unsafe { &*((entry & !1) as *const AtomicUsize) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::futex::REFUSE_BARRIERS;
    use std::sync::{Arc, mpsc};

    fn new_word() -> RobustWord {
        RobustWord {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _gap: [0; 4],
            prev: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    #[test]
    fn threads_without_membarrier_share_a_word_with_one_that_has_it_and_lose_no_wake_up() {
        struct Contended {
            word: RobustWord,
            count: AtomicU32,
        }
        let shared = Arc::new(Contended {
            word: new_word(),
            count: AtomicU32::new(0),
        });
        const EACH: u32 = 2_000;
        let (done_tx, done) = mpsc::channel();
        let run = |shared: Arc<Contended>, done_tx: mpsc::Sender<()>| {
            move || {
                for i in 0..EACH {
                    shared.word.lock(None).unwrap();
                    // Not an atomic add: a lock that let two in would lose counts.
                    let n = shared.count.load(Ordering::Relaxed);
                    if i % 4 == 0 {
                        std::thread::yield_now();
                    }
                    shared.count.store(n + 1, Ordering::Relaxed);
                    shared.word.unlock();
                }
                done_tx.send(()).unwrap();
            }
        };
        // This thread looks its barrier up before the refusal: it releases with a store.
        let (ready_tx, ready) = mpsc::channel();
        let first = {
            let (shared, done_tx) = (Arc::clone(&shared), done_tx.clone());
            std::thread::spawn(move || {
                shared.word.lock(None).unwrap();
                shared.word.unlock();
                ready_tx.send(()).unwrap();
                run(shared, done_tx)()
            })
        };
        ready.recv_timeout(Duration::from_secs(20)).unwrap();
        REFUSE_BARRIERS.store(true, Ordering::Relaxed);
        // These release with the swap and sleep in slices.
        let others: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(run(Arc::clone(&shared), done_tx.clone())))
            .collect();
        for _ in 0..3 {
            done.recv_timeout(Duration::from_secs(20))
                .expect("a thread stayed asleep on the word");
        }
        REFUSE_BARRIERS.store(false, Ordering::Relaxed);
        first.join().unwrap();
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(shared.count.load(Ordering::Relaxed), 3 * EACH);
        assert!(!shared.word.is_held());
    }
}
