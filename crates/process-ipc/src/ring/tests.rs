//! Scribbling on a real ring's mapping: every bad word or record is a clear error (the ring
//! broken, or one record skipped), never a crash, a panic, a hang or a duplicate.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::parse::{BATCH, BREAKING, FIRST};
use super::{Next, Ring, RingError, WaitLimit};

const CAP: usize = 64 << 10;

fn ring() -> Ring {
    Ring::create(CAP, 0, 1 << 20).unwrap()
}

/// Writes `items` in one batch record (the feeder's framing).
fn put(ring: &Ring, items: &[&[u8]]) {
    let mut framed = Vec::new();
    for item in items {
        assert!(item.len() < 128);
        framed.push(item.len() as u8);
        framed.extend_from_slice(item);
    }
    ring.write_framed(&framed, items.len()).unwrap();
}

fn get(ring: &Ring) -> Result<Next<Vec<u8>>, RingError> {
    ring.next(
        WaitLimit::Until(Instant::now() + Duration::from_millis(20)),
        |b| b.to_vec(),
    )
}

fn item(got: Result<Next<Vec<u8>>, RingError>) -> Vec<u8> {
    match got {
        Ok(Next::One(v)) => v,
        Ok(_) => panic!("no item"),
        Err(e) => panic!("{e}"),
    }
}

fn broken(got: Result<Next<Vec<u8>>, RingError>) -> &'static str {
    match got {
        Err(RingError::Broken { check, .. }) => check,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("not broken"),
    }
}

fn damaged(got: Result<Next<Vec<u8>>, RingError>) -> &'static str {
    match got {
        Ok(Next::Damaged(check)) => check,
        _ => panic!("not a damaged record"),
    }
}

fn empty(got: Result<Next<Vec<u8>>, RingError>) -> bool {
    matches!(got, Ok(Next::Timeout | Next::Empty | Next::Disconnected))
}

/// Writes a record header at byte `off` of the records.
fn scribble_record(ring: &Ring, off: usize, len: u32, kind: u32) {
    let mut head = len.to_le_bytes().to_vec();
    head.extend_from_slice(&kind.to_le_bytes());
    // SAFETY: `off + 8 <= cap` in every caller; a test's own ring.
    unsafe { std::ptr::copy_nonoverlapping(head.as_ptr(), ring.data().add(off), 8) };
}

#[test]
fn a_record_long_enough_to_pass_the_cap_but_not_the_end_breaks_the_ring_cleanly() {
    let r = ring();
    let h = r.hdr();
    let at = (CAP - 16) as u64;
    h.read.head.store(at, Ordering::SeqCst);
    h.write.tail.store(at + 16, Ordering::SeqCst);
    // A quarter of the ring: within the old cap on lengths, far past the end.
    scribble_record(&r, CAP - 16, (CAP / 4) as u32, BATCH);
    assert_eq!(broken(get(&r)), BREAKING[4]);
    // Every later call, on this handle and on one attached afterwards, fails at once.
    assert_eq!(broken(get(&r)), BREAKING[4]);
    let other = Ring::attach(r.parts()).unwrap();
    assert_eq!(broken(get(&other)), BREAKING[4]);
    assert!(matches!(
        other.write_framed(&[1, 7], 1),
        Err(RingError::Broken { .. })
    ));
}

#[test]
fn tail_behind_head_breaks_the_ring_instead_of_delivering_again() {
    let r = ring();
    put(&r, &[b"a", b"b", b"c"]);
    let h = r.hdr();
    let tail = h.write.tail.load(Ordering::SeqCst);
    h.read.head.store(tail + 8, Ordering::SeqCst);
    assert_eq!(broken(get(&r)), BREAKING[2]);
    assert_eq!(broken(get(&r)), BREAKING[2]);
}

#[test]
fn a_head_far_ahead_or_a_tail_far_ahead_breaks_the_ring_at_once() {
    let r = ring();
    put(&r, &[b"a"]);
    r.hdr().read.head.fetch_add(1 << 40, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(broken(get(&r)), BREAKING[2]);
    assert!(started.elapsed() < Duration::from_secs(5));

    let r = ring();
    put(&r, &[b"a"]);
    r.hdr()
        .write
        .tail
        .fetch_add(CAP as u64 + 8, Ordering::SeqCst);
    assert_eq!(broken(get(&r)), BREAKING[3]);
    // A writer finds it too.
    assert!(matches!(
        r.write_framed(&[1, 7], 1),
        Err(RingError::Broken { .. })
    ));
}

#[test]
fn a_read_position_past_its_record_skips_that_record_only() {
    let r = ring();
    put(&r, &[b"a", b"b"]);
    put(&r, &[b"c"]);
    let h = r.hdr();
    let head = h.read.head.load(Ordering::SeqCst);
    h.pos.at.store(head + 8 + 1000, Ordering::SeqCst);
    assert!(damaged(get(&r)).contains("past the end of its record"));
    assert_eq!(item(get(&r)), b"c");
    assert!(empty(get(&r)));
}

#[test]
fn a_record_of_unknown_kind_is_skipped_and_the_next_item_comes() {
    let r = ring();
    put(&r, &[b"a"]);
    put(&r, &[b"b"]);
    scribble_record(&r, 0, 2, 77);
    assert!(damaged(get(&r)).contains("unknown kind"));
    assert_eq!(item(get(&r)), b"b");
}

#[test]
fn a_big_items_bad_total_loses_that_item_only() {
    let r = ring();
    // Over a quarter of the ring: FIRST then LAST.
    let big = vec![5u8; CAP / 4 + 100];
    let mut framed = vec![0u8; 5];
    super::frame::write_padded_len(&mut framed, 0, big.len());
    framed.extend_from_slice(&big);
    r.write_framed(&framed, 1).unwrap();
    put(&r, &[b"z"]);
    // Announce fewer bytes than the first piece holds.
    // SAFETY: the first record's payload starts at byte 8 of the records; 8 bytes of it.
    unsafe { std::ptr::copy_nonoverlapping(10u64.to_le_bytes().as_ptr(), r.data().add(8), 8) };
    assert!(damaged(get(&r)).contains("first piece is longer"));
    // Its last piece has no start: skipped; the next item comes.
    assert_eq!(item(get(&r)), b"z");

    // Announce a few bytes more than the first piece: the last piece adds up past it.
    let r = ring();
    r.write_framed(&framed, 1).unwrap();
    put(&r, &[b"z"]);
    let first = (CAP / 4 - 8) as u64;
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping((first + 10).to_le_bytes().as_ptr(), r.data().add(8), 8)
    };
    assert!(damaged(get(&r)).contains("add up past"));
    assert_eq!(item(get(&r)), b"z");
    let _ = FIRST;
}

#[test]
fn an_item_length_running_past_its_record_skips_the_record() {
    let r = ring();
    put(&r, &[b"abc"]);
    put(&r, &[b"d"]);
    // The item's length byte (first payload byte) says 100.
    // SAFETY: byte 8 of the records is the first record's first payload byte.
    unsafe { *r.data().add(8) = 100 };
    assert!(damaged(get(&r)).contains("runs past the end of its batch record"));
    assert_eq!(item(get(&r)), b"d");
}

#[test]
fn a_bounded_queue_with_more_places_taken_than_it_has_is_broken() {
    let r = Ring::create(CAP, 2, 1 << 20).unwrap();
    r.hdr().counts.reserved.store(50, Ordering::SeqCst);
    assert!(matches!(
        r.reserve(WaitLimit::No),
        Err(RingError::Broken { .. })
    ));
    assert!(matches!(get(&r), Err(RingError::Broken { .. })));
}

#[test]
fn a_claim_moves_only_the_read_position_and_the_last_item_frees_the_record() {
    let r = ring();
    put(&r, &[b"a", b"b", b"c"]);
    let h = r.hdr();
    let head = h.read.head.load(Ordering::SeqCst);
    // The first two are claimed: the record stays, `at` moves past each.
    assert_eq!(item(get(&r)), b"a");
    assert_eq!(h.read.head.load(Ordering::SeqCst), head);
    assert_eq!(h.pos.at.load(Ordering::SeqCst), head + 8 + 2);
    assert_eq!(item(get(&r)), b"b");
    assert_eq!(h.read.head.load(Ordering::SeqCst), head);
    // The last goes the locked way, which frees the record and leaves BUSY clear.
    assert_eq!(item(get(&r)), b"c");
    let freed = h.read.head.load(Ordering::SeqCst);
    assert_eq!(freed, head + 16);
    assert_eq!(h.pos.at.load(Ordering::SeqCst), freed);
    assert_eq!(h.pos.got_items.load(Ordering::SeqCst), 3);
    assert!(empty(get(&r)));
}

#[test]
fn a_busy_mark_left_by_a_dead_lock_holder_is_cleared_by_the_next() {
    let r = ring();
    put(&r, &[b"a", b"b", b"c"]);
    let h = r.hdr();
    let at = h.pos.at.load(Ordering::SeqCst);
    // As a reader killed while holding the read lock leaves it.
    h.pos.at.store(at | super::BUSY, Ordering::SeqCst);
    assert_eq!(item(get(&r)), b"a");
    assert_eq!(h.pos.at.load(Ordering::SeqCst) & super::BUSY, 0);
    assert_eq!(item(get(&r)), b"b");
    assert_eq!(item(get(&r)), b"c");
    assert!(empty(get(&r)));
}

#[test]
fn threads_claiming_at_once_take_every_item_exactly_once() {
    let r = ring();
    const N: usize = 3000;
    let all: Vec<Vec<u8>> = (0..N).map(|i| (i as u32).to_le_bytes().to_vec()).collect();
    for chunk in all.chunks(100) {
        let refs: Vec<&[u8]> = chunk.iter().map(|v| v.as_slice()).collect();
        put(&r, &refs);
    }
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match r.next(WaitLimit::No, |b| b.to_vec()) {
                        Ok(Next::One(v)) => got.push(v),
                        Ok(Next::Empty | Next::Timeout | Next::Disconnected) => return got,
                        Ok(_) => panic!("a damaged or lost item"),
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let mut got: Vec<Vec<u8>> = readers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // A reader stops at its first `Empty`, which a held read lock gives too: the rest here.
    while let Ok(Next::One(v)) = get(&r) {
        got.push(v);
    }
    got.sort_unstable_by_key(|v| u32::from_le_bytes(v[..4].try_into().unwrap()));
    assert_eq!(got, all);
}

#[test]
fn qsize_counts_claims_in_the_head_record_and_a_scribbled_one_is_a_wrong_count_never_a_panic() {
    let r = ring();
    put(&r, &[b"a", b"b", b"c", b"d"]);
    let h = r.hdr();
    // As four puts count them.
    h.accepted.count.store(4, Ordering::SeqCst);
    assert_eq!(r.queued(), 4);
    assert_eq!(item(get(&r)), b"a");
    assert_eq!(item(get(&r)), b"b");
    // Two claimed from the middle of the record, no record freed yet.
    assert_eq!(h.pos.got_items.load(Ordering::SeqCst), 0);
    assert_eq!(r.queued(), 2);
    // A taken item's length scribbled past the record: the walk stops there.
    // SAFETY: byte 10 of the records is the second item's length byte, inside the ring.
    unsafe { *r.data().add(10) = 100 };
    assert!(r.queued() <= 4);
    // The record's length and the read position scribbled too: still an answer.
    scribble_record(&r, 0, u32::MAX, BATCH);
    h.pos.at.store(u64::MAX >> 1, Ordering::SeqCst);
    assert!(r.queued() <= 4);
    h.read.head.store(u64::MAX - 7, Ordering::SeqCst);
    assert!(r.queued() <= 4);
}
