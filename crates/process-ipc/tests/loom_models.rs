//! Model checks (loom) of the three protocols under process-ipc's shared memory: the ring's
//! head/tail/record protocol (src/ring, with its lock-free claim of small items), its wake-up
//! protocol (a sleeper count beside a futex word, `Wake` in src/ring/mod.rs) and the process
//! Lock's release (a plain store and a sleeper count made safe by `membarrier`,
//! src/shared/futex.rs).
//!
//! Each model is a small copy of the real steps, with the orderings that make it right as
//! parameters. Each runs twice: as the crate does it (loom must find no failure in any
//! interleaving) and with its key ordering weakened (loom must find the failure: a data race on
//! the ring's bytes, or a sleeper never woken, which loom reports as a deadlock), so that a
//! pass shows the model can fail.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p process-ipc --test loom_models --release`
//! (with its own `CARGO_TARGET_DIR`, so that the cfg does not rebuild everything else).
//! `LOOM_MAX_PREEMPTIONS` bounds the preemptions loom explores per interleaving (when unset,
//! each model has its own bound, chosen so that the file runs in about a minute on a
//! loaded two-CPU machine: 2 for the ring, 3 for the claim, 6 for the wake-up, 3 for the lock).
//!
//! What is modelled and what is not:
//! - Locks that serialize the writers (the write lock) and the readers (the read lock) are
//!   loom mutexes in model 1: that the robust lock itself excludes is model 3's job.
//! - A futex is a loom mutex (the kernel's hash-bucket lock) and condvar: `futex_wait` runs
//!   a full barrier (the kernel's `smp_mb` before it reads the word), then sleeps only if the
//!   word still holds what the caller saw; `futex_wake(n)` hands out `n` wake-ups. Sleeps have
//!   no timeout here: the crate's sleeps end after a slice (50 ms) and look again, which would
//!   turn a lost wake-up into a stall of one slice; without them it is a deadlock loom finds.
//! - loom treats a `SeqCst` load or store as `AcqRel` (its README says so) and would report
//!   false failures of the store-then-load (Dekker) pattern that the crate's `SeqCst` accesses
//!   make safe; a `SeqCst` fence, which loom does model, stands for that order where the
//!   crate relies on it.
//! - `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` in a waiter is a full barrier on its own CPU
//!   and on every CPU running a thread of the program: as if each such thread ran a fence at
//!   the instruction it was at. The releaser's `compiler_fence` between its store and its load
//!   is where that fence matters (a fence before the store or after the load orders them at
//!   least as strongly), so the model puts a `SeqCst` fence on the waiter side and there.
//! - A writer's wait for room (the same `Wake` protocol on the other word) and the pieces of a
//!   big item (FIRST/MORE/LAST, read under one hold of the read lock) are not modelled.
//! - Model 1b, the claim (a small item that is not the last of its record taken without the
//!   read lock, by a compare-exchange on the read position; src/ring/read.rs), reads the
//!   ring's words as `Relaxed` atomics, not loom cells: a claim reads a record optimistically
//!   and discards what it read when its compare-exchange fails, a race loom's cells would
//!   report. It checks values instead, and fails when a lock holder does not mark the
//!   position busy (an item read twice) or when `tail` is published relaxed (an item read
//!   stale). loom never lets a load take a value from a later store (no load buffering), so
//!   the claim's `Release` (its copy read before any lock holder can free the record) is not
//!   shown failing here; x86 never reorders so either, and the `Release` keeps the compiler
//!   from it.

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

/// Runs `f` under loom, exploring up to `preemptions` preemptions per interleaving unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_threads = 5;
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// Runs test `child` of this binary in a child process and asserts that loom failed it with
/// `expected` in its message. loom's report of a deadlock aborts the process it runs in (it
/// panics again while unwinding), so a model expected to deadlock cannot be a `should_panic`
/// test of this process.
fn loom_finds(child: &str, expected: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("could not run the test binary again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains(expected),
        "loom did not find the failure ({expected:?}) in {child}: {}\n{text}",
        out.status
    );
}

// ---- a futex ----

/// A futex word and the kernel's queue for it.
struct Futex {
    word: AtomicU32,
    /// Sleepers queued, and wake-ups handed out and not yet taken.
    queue: Mutex<(u32, u32)>,
    cv: Condvar,
}

impl Futex {
    fn new(value: u32) -> Self {
        Futex {
            word: AtomicU32::new(value),
            queue: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    /// `FUTEX_WAIT`: sleeps until woken if the word still holds `seen`.
    fn wait(&self, seen: u32) {
        let mut q = self.queue.lock().unwrap();
        fence(SeqCst);
        if self.word.load(Relaxed) != seen {
            return;
        }
        q.0 += 1;
        while q.1 == 0 {
            q = self.cv.wait(q).unwrap();
        }
        q.0 -= 1;
        q.1 -= 1;
    }

    /// `FUTEX_WAKE`: wakes up to `n` of the sleepers queued now.
    fn wake(&self, n: u32) {
        let mut q = self.queue.lock().unwrap();
        let sleeping = q.0 - q.1;
        q.1 += n.min(sleeping);
        self.cv.notify_all();
    }
}

// ---- 1. the ring: head, tail and records ----

/// Words in the model ring: room for two records of two words (header, payload).
const CAP: u64 = 4;
/// A record's header word: its kind (a batch of one item) and payload length in words.
const RECORD: u64 = (1 << 32) | 1;

/// The orderings of the ring's protocol (src/ring/write.rs `append` and `fits`,
/// src/ring/read.rs `next` and `advance`).
#[derive(Clone, Copy)]
struct RingOrders {
    /// The writer publishing `tail` after it wrote a record (the crate: `SeqCst`).
    publish_tail: Ordering,
    /// The reader reading `tail` before it reads a record (`Acquire`).
    load_tail: Ordering,
    /// The reader publishing `head` once it is done with a record's bytes (`SeqCst`).
    publish_head: Ordering,
    /// The writer reading `head` before it writes over freed bytes (`SeqCst`).
    load_head: Ordering,
}

const RING: RingOrders = RingOrders {
    publish_tail: SeqCst,
    load_tail: Acquire,
    publish_head: SeqCst,
    load_head: SeqCst,
};

struct Ring {
    o: RingOrders,
    wlock: Mutex<()>,
    rlock: Mutex<()>,
    tail: AtomicU64,
    head: AtomicU64,
    buf: [UnsafeCell<u64>; CAP as usize],
}

impl Ring {
    fn new(o: RingOrders) -> Self {
        Ring {
            o,
            wlock: Mutex::new(()),
            rlock: Mutex::new(()),
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            buf: std::array::from_fn(|_| UnsafeCell::new(0)),
        }
    }

    fn word(&self, pos: u64) -> &UnsafeCell<u64> {
        &self.buf[(pos % CAP) as usize]
    }

    /// Puts `v` if a record fits (the crate's writer would sleep for room: model 2's
    /// protocol); whether it did.
    fn put(&self, v: u64) -> bool {
        let _w = self.wlock.lock().unwrap();
        let tail = self.tail.load(Relaxed);
        let head = self.head.load(self.o.load_head);
        assert!(
            head <= tail && tail - head <= CAP,
            "head {head} tail {tail}"
        );
        if CAP - (tail - head) < 2 {
            return false;
        }
        // SAFETY: loom's cell checks this write against every other access: a write to bytes
        // a reader still reads (or a read of bytes not yet published) fails the model.
        self.word(tail + 1).with_mut(|p| unsafe { *p = v });
        // SAFETY: as above.
        self.word(tail).with_mut(|p| unsafe { *p = RECORD });
        self.tail.store(tail + 2, self.o.publish_tail);
        true
    }

    /// Takes the record at the head, if one is published: its position and payload.
    fn take(&self) -> Option<(u64, u64)> {
        let _r = self.rlock.lock().unwrap();
        let head = self.head.load(Relaxed);
        if head >= self.tail.load(self.o.load_tail) {
            return None;
        }
        // SAFETY: loom checks that this read happens after the write it reads.
        let kind = self.word(head).with(|p| unsafe { *p });
        assert_eq!(kind, RECORD, "a record read before it was written");
        // SAFETY: as above.
        let v = self.word(head + 1).with(|p| unsafe { *p });
        self.head.store(head + 2, self.o.publish_head);
        Some((head, v))
    }
}

/// Two writers put two items each; two readers look twice each; what is left is drained at
/// the end. Every item put is read exactly once, in its writer's order.
fn ring_model(o: RingOrders) {
    check(2, move || {
        let ring = Arc::new(Ring::new(o));
        let writers: Vec<_> = (1..=2u64)
            .map(|w| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    (1..=2u64)
                        .map(|i| w * 10 + i)
                        .filter(|&v| ring.put(v))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || (0..2).filter_map(|_| ring.take()).collect::<Vec<_>>())
            })
            .collect();
        let mut put: Vec<u64> = writers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let mut got: Vec<(u64, u64)> = readers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        while let Some(item) = ring.take() {
            got.push(item);
        }
        // The order of reading is the order of positions in the ring.
        got.sort_unstable();
        let got: Vec<u64> = got.into_iter().map(|(_, v)| v).collect();
        for w in 1..=2 {
            let mine: Vec<u64> = got.iter().copied().filter(|v| v / 10 == w).collect();
            assert!(mine.is_sorted(), "writer {w}'s items out of order: {got:?}");
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        put.sort_unstable();
        assert_eq!(sorted, put, "items put and items read differ");
    });
}

#[test]
fn ring_every_item_is_read_once_in_order() {
    ring_model(RING);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn ring_fails_when_tail_is_published_relaxed() {
    // The reader may then see the new tail but not the record's bytes.
    ring_model(RingOrders {
        publish_tail: Relaxed,
        ..RING
    });
}

#[test]
#[should_panic(expected = "Causality violation")]
fn ring_fails_when_head_is_published_relaxed() {
    // The writer may then write over bytes a reader is still reading.
    ring_model(RingOrders {
        publish_head: Relaxed,
        ..RING
    });
}

// ---- 1b. the claim: a reader takes an item without the read lock (loom_models/claim.rs) ----

#[path = "loom_models/claim.rs"]
mod claim;

// ---- 2. the wake-up protocol ----

/// The orderings of `Wake` (src/ring/mod.rs) and of its users in src/ring/read.rs.
#[derive(Clone, Copy)]
struct WakeOrders {
    /// Publishing the condition (`tail`; the crate: `SeqCst`).
    publish: Ordering,
    /// The waker reading the sleeper count (`wake`: `SeqCst`).
    count: Ordering,
    /// A sleeper counting itself (`prepare`: `SeqCst`).
    register: Ordering,
    /// A sleeper reading the condition again after counting itself (`SeqCst`).
    recheck: Ordering,
    /// The store-to-load order the crate's `SeqCst` accesses give (a fence in loom).
    store_load: bool,
}

const WAKE: WakeOrders = WakeOrders {
    publish: SeqCst,
    count: SeqCst,
    register: SeqCst,
    recheck: SeqCst,
    store_load: true,
};

struct Wake {
    o: WakeOrders,
    futex: Futex,
    sleepers: AtomicU32,
    /// The condition: `tail` of the ring.
    tail: AtomicU64,
}

impl Wake {
    /// The writer: publishes item `n`, then wakes the sleepers if there are any.
    fn publish(&self, n: u64) {
        self.tail.store(n, self.o.publish);
        if self.o.store_load {
            fence(SeqCst);
        }
        if self.sleepers.load(self.o.count) > 0 {
            self.futex.word.fetch_add(1, SeqCst);
            self.futex.wake(u32::MAX);
        }
    }

    /// The reader: waits until item `n` is published.
    fn wait_for(&self, n: u64) {
        loop {
            if self.tail.load(Acquire) >= n {
                return;
            }
            // prepare
            self.sleepers.fetch_add(1, self.o.register);
            if self.o.store_load {
                fence(SeqCst);
            }
            let seen = self.futex.word.load(SeqCst);
            if self.tail.load(self.o.recheck) >= n {
                self.sleepers.fetch_sub(1, SeqCst); // cancel
                return;
            }
            self.futex.wait(seen);
            self.sleepers.fetch_sub(1, SeqCst);
        }
    }
}

/// A writer publishes two items; a reader waits for each. A lost wake-up leaves the reader
/// asleep for ever: loom reports a deadlock.
fn wake_model(o: WakeOrders) {
    check(6, move || {
        let wake = Arc::new(Wake {
            o,
            futex: Futex::new(0),
            sleepers: AtomicU32::new(0),
            tail: AtomicU64::new(0),
        });
        let reader = {
            let wake = Arc::clone(&wake);
            thread::spawn(move || {
                wake.wait_for(1);
                wake.wait_for(2);
            })
        };
        wake.publish(1);
        wake.publish(2);
        reader.join().unwrap();
        assert_eq!(wake.sleepers.load(Relaxed), 0);
    });
}

#[test]
fn wake_no_sleeper_misses_its_wake_up() {
    wake_model(WAKE);
}

#[test]
fn wake_loses_a_wake_up_with_release_acquire_only() {
    loom_finds("wake_model_with_release_acquire_only", "deadlock");
}

#[test]
#[ignore = "fails by design: run in a child process by wake_loses_a_wake_up_with_release_acquire_only"]
fn wake_model_with_release_acquire_only() {
    // Each side's store may then pass its load: the writer sees no sleeper while the
    // sleeper sees no item.
    wake_model(WakeOrders {
        publish: Release,
        count: Acquire,
        register: AcqRel,
        recheck: Acquire,
        store_load: false,
    });
}

// ---- 3. the process Lock's release ----

const WAITERS: u32 = 0x8000_0000;
const TID_MASK: u32 = 0x3fff_ffff;

/// The orderings of `RobustWord` (src/shared/futex.rs) on its `membarrier` path.
#[derive(Clone, Copy)]
struct LockOrders {
    /// Taking the word (`Acquire`).
    acquire: Ordering,
    /// The release's plain store of 0 (`Release`).
    release: Ordering,
    /// Whether a waiter runs `membarrier` before it sleeps.
    membarrier: bool,
}

const LOCK: LockOrders = LockOrders {
    acquire: Acquire,
    release: Release,
    membarrier: true,
};

struct RobustLock {
    o: LockOrders,
    futex: Futex,
    sleepers: AtomicU32,
    /// What the lock guards: a count only its holder changes.
    guarded: UnsafeCell<u32>,
}

impl RobustLock {
    fn lock(&self, me: u32) {
        let word = &self.futex.word;
        if word
            .compare_exchange(0, me, self.o.acquire, Relaxed)
            .is_ok()
        {
            return;
        }
        // lock_slow after its spins, and lock_sleeping.
        self.sleepers.fetch_add(1, SeqCst);
        let mut others = 0;
        let mut seen = word.load(Relaxed);
        loop {
            if seen & TID_MASK == 0 {
                match word.compare_exchange(
                    seen,
                    me | (seen & WAITERS) | others,
                    self.o.acquire,
                    Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => {
                        seen = now;
                        continue;
                    }
                }
            }
            if seen & WAITERS == 0 {
                if let Err(now) = word.compare_exchange(seen, seen | WAITERS, Relaxed, Relaxed) {
                    seen = now;
                    continue;
                }
            }
            if self.o.membarrier {
                fence(SeqCst);
            }
            self.futex.wait(seen | WAITERS);
            others = WAITERS;
            seen = word.load(Relaxed);
        }
        self.sleepers.fetch_sub(1, SeqCst);
    }

    fn unlock(&self) {
        // The crate stores 0. In C11 a store after the holder's own take comes after every
        // change a waiter made to the word meanwhile (each such change is a read-modify-write
        // of the value the holder wrote), but loom orders a store only after what the storing
        // thread has seen, so a plain store here lets a waiter read its own older `WAITERS`
        // mark after it saw the release: a deadlock C11 forbids. A swap, which loom places
        // after the latest value, has the same order as the crate's store in C11 (a `Release`
        // swap does not keep the load below from passing it either: that is membarrier's job).
        self.futex.word.swap(0, self.o.release);
        // The crate's compiler fence: where a waiter's membarrier orders this CPU.
        if self.o.membarrier {
            fence(SeqCst);
        }
        if self.sleepers.load(Relaxed) != 0 {
            self.futex.wake(1);
        }
    }
}

/// Three threads take the lock and bump what it guards, twice each (the main thread once more
/// at the end), so that two may sleep at once and a release wakes only one of them. Two holders at once are a data race on the guarded count; a lost wake-up
/// leaves a waiter asleep for ever (a deadlock).
fn lock_model(o: LockOrders) {
    check(3, move || {
        let lock = Arc::new(RobustLock {
            o,
            futex: Futex::new(0),
            sleepers: AtomicU32::new(0),
            guarded: UnsafeCell::new(0),
        });
        let threads: Vec<_> = (1..=3u32)
            .map(|me| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || {
                    for _ in 0..2 {
                        lock.lock(me);
                        // SAFETY: loom checks that no other access is concurrent.
                        lock.guarded.with_mut(|p| unsafe { *p += 1 });
                        lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        lock.lock(3);
        // SAFETY: as above.
        let n = lock.guarded.with(|p| unsafe { *p });
        lock.unlock();
        assert_eq!(n, 6);
    });
}

#[test]
fn lock_excludes_and_wakes_every_waiter() {
    lock_model(LOCK);
}

#[test]
fn lock_loses_a_wake_up_without_membarrier() {
    loom_finds("lock_model_without_membarrier", "deadlock");
}

#[test]
#[ignore = "fails by design: run in a child process by lock_loses_a_wake_up_without_membarrier"]
fn lock_model_without_membarrier() {
    // The release's load of the sleeper count may then pass its store of 0: it sees no
    // sleeper, while the waiter's futex wait still sees the word held.
    lock_model(LockOrders {
        membarrier: false,
        ..LOCK
    });
}

#[test]
#[should_panic(expected = "Causality violation")]
fn lock_lets_two_in_with_a_relaxed_release() {
    // The next holder's view of the guarded data may then miss the last holder's writes.
    lock_model(LockOrders {
        release: Relaxed,
        ..LOCK
    });
}
