//! Model 1b of `loom_models.rs`: the claim, a reader taking a small item without the read lock
//! (src/ring/read.rs). See the notes at the top of `loom_models.rs`.

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::check;
use Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

/// Words of a record of the claim model: a header and two items.
const CLAIM_REC: u64 = 3;
/// The claim model's ring: one record.
const CLAIM_CAP: u64 = CLAIM_REC;
/// A header of the claim model (a batch of two items).
const BATCH2: u64 = (1 << 32) | 2;
/// The read position's bit a read-lock holder sets (src/ring/mod.rs `BUSY`).
const BUSY: u64 = 1 << 63;

/// The orderings and steps of the claim (src/ring/read.rs `claim`, `Busy`, `advance`).
#[derive(Clone, Copy)]
struct ClaimOrders {
    /// The writer publishing `tail` (the crate: `SeqCst`).
    publish_tail: Ordering,
    /// A lock holder sets BUSY in `at` before it moves the position (the crate: yes, `AcqRel`).
    mark_busy: bool,
}

const CLAIM: ClaimOrders = ClaimOrders {
    publish_tail: SeqCst,
    mark_busy: true,
};

/// The ring's bytes here are atomics read `Relaxed`: a claim reads a record optimistically
/// (a record freed meanwhile may be written over as it reads, and then its compare-exchange
/// fails), which loom's cells would report as a race although the crate discards what it
/// read. What the model checks is the values: every item read once, none read stale.
struct ClaimRing {
    o: ClaimOrders,
    wlock: Mutex<()>,
    rlock: Mutex<()>,
    tail: AtomicU64,
    head: AtomicU64,
    at: AtomicU64,
    buf: [AtomicU64; CLAIM_CAP as usize],
}

/// Where in the record at `head` the word `at` points: 0 or 1 (src/ring/read.rs `pos_of`).
fn claim_sub(head: u64, at: u64) -> u64 {
    let at = at & !BUSY;
    if at <= head { 0 } else { at - head - 1 }
}

impl ClaimRing {
    fn new(o: ClaimOrders) -> Self {
        ClaimRing {
            o,
            wlock: Mutex::new(()),
            rlock: Mutex::new(()),
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            at: AtomicU64::new(0),
            buf: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn word(&self, pos: u64) -> &AtomicU64 {
        &self.buf[(pos % CLAIM_CAP) as usize]
    }

    /// Puts a record of two items if it fits; whether it did.
    fn put(&self, a: u64, b: u64) -> bool {
        let _w = self.wlock.lock().unwrap();
        let tail = self.tail.load(Relaxed);
        let head = self.head.load(SeqCst);
        if CLAIM_CAP - (tail - head) < CLAIM_REC {
            return false;
        }
        self.word(tail + 1).store(a, Relaxed);
        self.word(tail + 2).store(b, Relaxed);
        self.word(tail).store(BATCH2, Relaxed);
        self.tail.store(tail + CLAIM_REC, self.o.publish_tail);
        true
    }

    /// The claim: the first item of the head record, without the lock (the last one of a
    /// record is never claimed). `None`: go the locked way.
    fn claim(&self) -> Option<(u64, u64, u64)> {
        let at = self.at.load(Acquire);
        if at & BUSY != 0 {
            return None;
        }
        let head = self.head.load(Acquire);
        if head >= self.tail.load(Acquire) || self.word(head).load(Relaxed) != BATCH2 {
            return None;
        }
        let sub = claim_sub(head, at);
        if sub != 0 {
            return None;
        }
        let v = self.word(head + 1).load(Relaxed);
        self.at
            .compare_exchange(at, head + 2, AcqRel, Relaxed)
            .ok()
            .map(|_| (head, sub, v))
    }

    /// The locked way: the item at the read position, freeing the record after its last.
    fn take_locked(&self) -> Option<(u64, u64, u64)> {
        let _r = self.rlock.lock().unwrap();
        if self.o.mark_busy {
            self.at.fetch_or(BUSY, AcqRel);
        }
        let head = self.head.load(Relaxed);
        let got = if head < self.tail.load(Acquire) {
            assert_eq!(
                self.word(head).load(Relaxed),
                BATCH2,
                "items put and items read differ: a record read unwritten"
            );
            let sub = claim_sub(head, self.at.load(Relaxed));
            let v = self.word(head + 1 + sub).load(Relaxed);
            if sub == 1 {
                self.head.store(head + CLAIM_REC, SeqCst);
                self.at.store((head + CLAIM_REC) | BUSY, Relaxed);
            } else {
                self.at.store((head + 2) | BUSY, Relaxed);
            }
            Some((head, sub, v))
        } else {
            None
        };
        self.at.fetch_and(!BUSY, Release);
        got
    }

    fn get(&self, may_claim: bool) -> Option<(u64, u64, u64)> {
        match may_claim.then(|| self.claim()).flatten() {
            Some(got) => Some(got),
            None => self.take_locked(),
        }
    }
}

/// A writer puts two records of two items (the second fits once the first is freed); one
/// reader claims when it can, another always locks; what is left is drained at the end. Every
/// item put is read exactly once, in order, and never stale.
fn claim_model(o: ClaimOrders) {
    check(3, move || {
        let ring = Arc::new(ClaimRing::new(o));
        let writer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut put = Vec::new();
                for (a, b) in [(11, 12), (13, 14)] {
                    if ring.put(a, b) {
                        put.extend([a, b]);
                    }
                }
                put
            })
        };
        let readers: Vec<_> = [true, false]
            .into_iter()
            .map(|may_claim| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    (0..2)
                        .filter_map(|_| ring.get(may_claim))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let put = writer.join().unwrap();
        let mut got: Vec<(u64, u64, u64)> = readers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        while let Some(item) = ring.get(true) {
            got.push(item);
        }
        got.sort_unstable();
        let got: Vec<u64> = got.into_iter().map(|(_, _, v)| v).collect();
        assert_eq!(got, put, "items put and items read differ (in order)");
    });
}

#[test]
fn claim_every_item_is_read_once_in_order() {
    claim_model(CLAIM);
}

#[test]
#[should_panic(expected = "items put and items read differ")]
fn claim_fails_when_a_lock_holder_does_not_mark_busy() {
    // A claim and a lock holder then both take the item at the same position.
    claim_model(ClaimOrders {
        mark_busy: false,
        ..CLAIM
    });
}

#[test]
#[should_panic(expected = "items put and items read differ")]
fn claim_fails_when_tail_is_published_relaxed() {
    // A claim may then see the new tail but read the items' old words.
    claim_model(ClaimOrders {
        publish_tail: Relaxed,
        ..CLAIM
    });
}
