//! What a reader makes of the ring's bytes: pure functions over a byte slice (the ring's
//! records) and the header words the reader read, with no mapping and no shared state, so they
//! can be fuzzed and run under miri. Everything here is untrusted input: every word and length
//! is checked before it is used, every access is a checked slice, and every step either moves
//! the read position forward or stops.

use super::frame::read_len;

/// A record holding whole items, each its LEB128 length then its bytes.
pub(crate) const BATCH: u32 = 1;
/// The first record of an item too big for one: its total length (8 bytes), its first bytes.
pub(crate) const FIRST: u32 = 2;
/// A middle piece of a big item.
pub(crate) const MORE: u32 = 3;
/// The last piece of a big item.
pub(crate) const LAST: u32 = 4;
/// Filler up to the end of the ring (records never wrap).
pub(crate) const PAD: u32 = 5;
/// A record's header: payload length (u32 LE), kind (u32 LE).
pub(crate) const REC: usize = 8;

/// The name of a failed check, as errors report it.
pub(crate) type Check = &'static str;

/// Every check that breaks a ring for good (its number is what the ring's header records, so
/// every process reports the same one).
pub(crate) const BREAKING: [Check; 9] = [
    "the ring's size is not a power of two of at least 8 bytes",
    "head or tail is not on a record boundary",
    "tail is behind head",
    "tail is more than the ring's size ahead of head",
    "a record runs past the end of the ring",
    "a record runs past the tail",
    "a writer found the ring in a state no writer leaves it in",
    "more places are taken in a bounded queue than it has",
    "the shutdown word holds a value no queue writes",
];

/// The size in the ring of a record of `len` payload bytes.
#[inline]
pub(crate) fn rec_size(len: usize) -> u64 {
    (REC + len.next_multiple_of(8)) as u64
}

/// Where a reader is: the record at `head`, `sub` bytes into its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) head: u64,
    pub(crate) sub: u64,
}

/// What the record at the read position holds. Every variant but `Empty` comes with the
/// position past it (`next`): the caller moves there once it is done with the bytes (which
/// stay the writer's to overwrite only after that).
#[derive(Debug)]
pub(crate) enum Found<'a> {
    /// Nothing published past the position.
    Empty,
    /// One whole item of a batch record.
    Item { bytes: &'a [u8], next: Pos },
    /// The first piece of a big item, and the item's announced total length.
    First {
        total: u64,
        bytes: &'a [u8],
        next: Pos,
    },
    /// A later piece of a big item.
    Piece {
        bytes: &'a [u8],
        last: bool,
        next: Pos,
    },
    /// Padding: nothing to take.
    Pad { next: Pos },
    /// A record (or the item at the position) failed `check`, but where it ends is known:
    /// skipping to `next` drops only it.
    Bad { check: Check, next: Pos },
}

/// Checks the ring's size and the header words a reader or writer read: both positions on a
/// record boundary, tail not behind head and at most the ring's size ahead of it.
#[inline]
pub(crate) fn check_words(cap: u64, head: u64, tail: u64) -> Result<(), Check> {
    if cap < 8 || !cap.is_power_of_two() {
        return Err(BREAKING[0]);
    }
    if head % 8 != 0 || tail % 8 != 0 {
        return Err(BREAKING[1]);
    }
    if tail < head {
        return Err(BREAKING[2]);
    }
    if tail - head > cap {
        return Err(BREAKING[3]);
    }
    Ok(())
}

/// Reads 8 bytes at `at` once (a concurrent writer cannot make the value change between its
/// check and its use). `None` past the end.
#[inline]
fn word_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes: &[u8; 8] = data.get(at..at.checked_add(8)?)?.try_into().ok()?;
    // SAFETY: `bytes` is a live reference to 8 initialised bytes; a volatile read of them is a
    // plain read the compiler may not repeat.
    Some(u64::from_le_bytes(unsafe {
        std::ptr::read_volatile(bytes)
    }))
}

/// What the record at `pos` holds (see [`Found`]), for a ring whose records are `data` (its
/// length is the ring's size), published up to `tail`, with items of at most `limit` bytes.
/// An error is a check that leaves the reader no known place to go on from: the ring is
/// broken.
#[inline]
pub(crate) fn look(data: &[u8], pos: Pos, tail: u64, limit: u64) -> Result<Found<'_>, Check> {
    let cap = data.len() as u64;
    check_words(cap, pos.head, tail)?;
    if pos.head == tail {
        return Ok(Found::Empty);
    }
    let off = (pos.head & (cap - 1)) as usize;
    let head = word_at(data, off).ok_or(BREAKING[4])?;
    let (len, kind) = ((head & 0xffff_ffff) as usize, (head >> 32) as u32);
    let size = rec_size(len);
    if off as u64 + size > cap {
        return Err(BREAKING[4]);
    }
    if pos.head.checked_add(size).is_none_or(|end| end > tail) {
        return Err(BREAKING[5]);
    }
    let payload = data.get(off + REC..off + REC + len).ok_or(BREAKING[4])?;
    let past = Pos {
        head: pos.head + size,
        sub: 0,
    };
    let bad = |check| Ok(Found::Bad { check, next: past });
    if kind != BATCH && pos.sub != 0 {
        return bad("the read position is inside a record that is not a batch");
    }
    match kind {
        BATCH => {
            let Some(sub) = usize::try_from(pos.sub).ok().filter(|&s| s < len) else {
                return bad("the read position is past the end of its record");
            };
            let rest = &payload[sub..];
            let Some((n, hd)) = read_len(rest) else {
                return bad("an item's length in a batch record is unreadable");
            };
            let Some(bytes) = hd.checked_add(n).and_then(|end| rest.get(hd..end)) else {
                return bad("an item runs past the end of its batch record");
            };
            let end = (sub + hd + n) as u64;
            let next = if end >= len as u64 {
                past
            } else {
                Pos {
                    head: pos.head,
                    sub: end,
                }
            };
            if n as u64 > limit {
                return Ok(Found::Bad {
                    check: "an item is over the queue's item limit",
                    next,
                });
            }
            Ok(Found::Item { bytes, next })
        }
        FIRST => {
            let Some(total) = word_at(payload, 0) else {
                return bad("a big item's first record is too short for its total length");
            };
            let first = &payload[8..];
            if total > limit {
                return bad("a big item's announced total is over the queue's item limit");
            }
            if (first.len() as u64) > total {
                return bad("a big item's first piece is longer than its announced total");
            }
            Ok(Found::First {
                total,
                bytes: first,
                next: past,
            })
        }
        MORE | LAST => Ok(Found::Piece {
            bytes: payload,
            last: kind == LAST,
            next: past,
        }),
        PAD => Ok(Found::Pad { next: past }),
        _ => bad("a record of unknown kind"),
    }
}

/// [`look`]'s common case in fewer steps, for the reader's hot path: a whole item of a batch
/// record at `pos`, with its bytes and the position past it, exactly when `look` gives
/// `Found::Item` (the same checks, on the same words read once; the fuzz below holds the two
/// to each other). `None` for anything else: the caller then asks `look`.
#[inline(always)]
pub(crate) fn look_item(data: &[u8], pos: Pos, tail: u64, limit: u64) -> Option<(&[u8], Pos)> {
    let cap = data.len() as u64;
    // `check_words`, and not empty.
    if cap < 8
        || !cap.is_power_of_two()
        || (pos.head | tail) % 8 != 0
        || tail <= pos.head
        || tail - pos.head > cap
    {
        return None;
    }
    let off = (pos.head & (cap - 1)) as usize;
    let word = word_at(data, off)?;
    let (len, kind) = ((word & 0xffff_ffff) as usize, (word >> 32) as u32);
    let size = rec_size(len);
    // The record inside the ring and before the tail; a batch; the position inside it.
    if kind != BATCH
        || off as u64 + size > cap
        || pos.head.checked_add(size).is_none_or(|end| end > tail)
        || pos.sub >= len as u64
    {
        return None;
    }
    let sub = pos.sub as usize;
    let rest = data.get(off + REC + sub..off + REC + len)?;
    let (n, hd) = read_len(rest)?;
    let bytes = rest.get(hd..hd.checked_add(n)?)?;
    if n as u64 > limit {
        return None;
    }
    let end = (sub + hd + n) as u64;
    let next = if end >= len as u64 {
        Pos {
            head: pos.head + size,
            sub: 0,
        }
    } else {
        Pos {
            head: pos.head,
            sub: end,
        }
    };
    Some((bytes, next))
}

/// How many items of the batch record at `head` start before `upto` bytes into its payload
/// (`u64::MAX`: the whole record); `None` if the record there is not a batch. It counts what
/// readers took from a record for `qsize` without a count of their own per item. A record that
/// does not parse counts the items before the fault: the answer is a count, never an access
/// out of bounds.
pub(crate) fn batch_items(data: &[u8], head: u64, upto: u64) -> Option<u64> {
    let cap = data.len() as u64;
    if cap < 8 || !cap.is_power_of_two() || head % 8 != 0 {
        return None;
    }
    let off = (head & (cap - 1)) as usize;
    let word = word_at(data, off)?;
    let (len, kind) = ((word & 0xffff_ffff) as usize, (word >> 32) as u32);
    if kind != BATCH {
        return None;
    }
    let payload = data.get(off + REC..)?;
    let payload = payload.get(..len.min(payload.len()))?;
    let end = usize::try_from(upto)
        .unwrap_or(usize::MAX)
        .min(payload.len());
    let (mut sub, mut items) = (0usize, 0u64);
    while sub < end {
        let Some((n, hd)) = read_len(&payload[sub..]) else {
            break;
        };
        match sub.checked_add(hd).and_then(|s| s.checked_add(n)) {
            Some(next) if next <= payload.len() => sub = next,
            _ => break,
        }
        items += 1;
    }
    Some(items)
}

/// Checks that a piece of `piece` bytes (the last one if `last`) fits a big item of `total`
/// bytes of which `got` came already.
pub(crate) fn check_piece(total: u64, got: u64, piece: usize, last: bool) -> Result<(), Check> {
    let now = got.saturating_add(piece as u64);
    if now > total {
        return Err("a big item's pieces add up past its announced total");
    }
    if last && now != total {
        return Err("a big item's last piece ends short of its announced total");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! The reader's checks against arbitrary ring bytes and header words (no mapping: these
    //! run under miri too). `RING_FUZZ_CASES` sets the fuzz's case count.

    use proptest::prelude::*;

    use super::*;

    /// What a reader that follows `look` to the end makes of a ring: items handed out, bad
    /// records skipped, and whether it stopped on a broken ring. Panics (failing the test) if
    /// a step does not move the position forward.
    pub(crate) fn drain(data: &[u8], mut pos: Pos, tail: u64, limit: u64) -> (usize, usize, bool) {
        let (mut items, mut bad) = (0, 0);
        // A big item being put together: (total, got).
        let mut stream: Option<(u64, u64)> = None;
        loop {
            let found = match look(data, pos, tail, limit) {
                Ok(found) => found,
                Err(_) => return (items, bad, true),
            };
            let next = match found {
                Found::Empty => return (items, bad, false),
                Found::Item { bytes, next } => {
                    assert!(bytes.len() as u64 <= limit);
                    stream = None;
                    items += 1;
                    next
                }
                Found::First { total, bytes, next } => {
                    stream = Some((total, bytes.len() as u64));
                    next
                }
                Found::Piece { bytes, last, next } => {
                    if let Some((total, got)) = stream {
                        match check_piece(total, got, bytes.len(), last) {
                            Ok(()) if last => {
                                items += 1;
                                stream = None;
                            }
                            Ok(()) => stream = Some((total, got + bytes.len() as u64)),
                            Err(_) => {
                                bad += 1;
                                stream = None;
                            }
                        }
                    }
                    next
                }
                Found::Pad { next } => next,
                Found::Bad { next, .. } => {
                    bad += 1;
                    next
                }
            };
            assert!(
                (next.head, next.sub) > (pos.head, pos.sub),
                "no progress at {pos:?}"
            );
            assert!(next.head <= tail, "moved past the tail");
            pos = next;
        }
    }

    fn record(kind: u32, payload: &[u8]) -> Vec<u8> {
        let mut r = (payload.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&kind.to_le_bytes());
        r.extend_from_slice(payload);
        r.resize(rec_size(payload.len()) as usize, 0);
        r
    }

    #[test]
    fn good_records_give_their_items() {
        let mut data = record(BATCH, &[1, 7, 2, 8, 9]);
        let mut first = 3u64.to_le_bytes().to_vec();
        first.push(1);
        data.extend(record(FIRST, &first));
        data.extend(record(LAST, &[2, 3]));
        data.resize(64, 0);
        let tail = (16 + 24 + 16) as u64;
        assert_eq!(
            drain(&data, Pos { head: 0, sub: 0 }, tail, 100),
            (3, 0, false)
        );
    }

    #[test]
    fn a_length_that_passes_the_cap_but_not_the_end_breaks_the_ring() {
        // One record at 48 of a 64-byte ring, claiming 40 bytes: past the end.
        let mut data = vec![0u8; 64];
        data[48..56].copy_from_slice(&record(BATCH, &[0; 40])[..8]);
        let pos = Pos { head: 48, sub: 0 };
        assert_eq!(look(&data, pos, 48 + 16, 100).unwrap_err(), BREAKING[4]);
    }

    #[test]
    fn bad_header_words_break_the_ring() {
        let data = vec![0u8; 64];
        let at = |head, sub, tail| look(&data, Pos { head, sub }, tail, 9).unwrap_err();
        assert_eq!(at(16, 0, 8), BREAKING[2]);
        assert_eq!(at(8, 0, 8 + 72), BREAKING[3]);
        assert_eq!(at(4, 0, 8), BREAKING[1]);
        assert_eq!(at(1 << 40, 0, 8), BREAKING[2]);
    }

    #[test]
    fn a_bad_record_whose_end_is_known_is_skipped() {
        let mut data = record(BATCH, &[1, 7]);
        data.extend(record(99, &[0; 3]));
        data.extend(record(BATCH, &[1, 8]));
        data.resize(64, 0);
        assert_eq!(drain(&data, Pos { head: 0, sub: 0 }, 48, 9), (2, 1, false));
        // A position past its record's end: that record is skipped.
        let found = look(&data, Pos { head: 0, sub: 5 }, 48, 9).unwrap();
        assert!(matches!(
            found,
            Found::Bad {
                next: Pos { head: 16, sub: 0 },
                ..
            }
        ));
        // Pieces adding up past the total.
        assert!(check_piece(4, 3, 2, false).is_err());
        assert!(check_piece(4, 1, 2, true).is_err());
        assert!(check_piece(4, 2, 2, true).is_ok());
    }

    /// A ring of `1 << log_cap` bytes: `bytes` (zero-padded or cut), with plausible record
    /// headers (`(kind, len)`) written over its start, so that walks get past the first record.
    fn ring_of(log_cap: u32, bytes: Vec<u8>, records: &[(u32, usize)]) -> Vec<u8> {
        let cap = 1usize << log_cap;
        let mut data = bytes;
        data.resize(cap, 0);
        let mut at = 0usize;
        for &(kind, len) in records {
            if at + 8 > cap {
                break;
            }
            data[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
            data[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
            at += rec_size(len) as usize;
        }
        data
    }

    /// Cases for the fuzz: `RING_FUZZ_CASES`, else a few thousand.
    fn cases() -> u32 {
        std::env::var("RING_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if cfg!(miri) { 20 } else { 2_000 })
    }

    fn words() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..256,
            any::<u64>(),
            (0u64..64).prop_map(|k| k * 8),
            (0u64..40).prop_map(|k| 1u64 << k),
        ]
    }

    /// Walks `data` from `pos` as a reader would, for up to 64 steps, checking that the hot
    /// path's `look_item` finds an item exactly where `look` does and nothing elsewhere.
    fn walk_agrees(data: &[u8], mut pos: Pos, tail: u64, limit: u64) -> Result<(), TestCaseError> {
        for _ in 0..64 {
            let fast = look_item(data, pos, tail, limit);
            let next = match look(data, pos, tail, limit) {
                Ok(Found::Item { bytes, next }) => {
                    prop_assert_eq!(fast, Some((bytes, next)));
                    next
                }
                Ok(Found::Empty) | Err(_) => {
                    prop_assert_eq!(fast, None);
                    break;
                }
                Ok(
                    Found::First { next, .. }
                    | Found::Piece { next, .. }
                    | Found::Pad { next }
                    | Found::Bad { next, .. },
                ) => {
                    prop_assert_eq!(fast, None);
                    next
                }
            };
            pos = next;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes as the ring and arbitrary header words: the reader hands out items
        /// or errors, never panics or reads out of bounds (slices only), and every step moves
        /// it forward until it stops.
        #[test]
        fn any_ring_bytes_and_words_are_read_safely(
            log_cap in 3u32..9,
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            records in proptest::collection::vec((0u32..7, 0usize..80), 0..8),
            head in words(),
            sub in words(),
            tail in words(),
            limit in words(),
        ) {
            let data = ring_of(log_cap, bytes, &records);
            let (items, _, _) = drain(&data, Pos { head, sub }, tail, limit);
            prop_assert!(items as u64 <= tail.saturating_sub(head));
            // `qsize`'s count of the items before a position, on the same bytes.
            let before = batch_items(&data, head, sub).unwrap_or(0);
            prop_assert!(before <= data.len() as u64);
        }

        /// On real batch records, the items before each position a reader reaches are the
        /// items it took from that record, and a whole record counts all of its own.
        #[test]
        fn batch_items_counts_what_a_reader_took(
            items in proptest::collection::vec(0usize..200, 1..12),
        ) {
            let mut payload = Vec::new();
            for &n in &items {
                // The length in LEB128, as the writer frames it.
                let mut v = n;
                while v >= 0x80 {
                    payload.push((v & 0x7f) as u8 | 0x80);
                    v >>= 7;
                }
                payload.push(v as u8);
                payload.extend(std::iter::repeat_n(9u8, n));
            }
            let mut data = record(BATCH, &payload);
            let tail = data.len() as u64;
            data.resize(data.len().next_power_of_two(), 0);
            let mut pos = Pos { head: 0, sub: 0 };
            for took in 0..items.len() as u64 {
                prop_assert_eq!(batch_items(&data, 0, pos.sub), Some(took));
                let Ok(Found::Item { next, .. }) = look(&data, pos, tail, 1 << 20) else {
                    return Err(TestCaseError::fail("an item was not found"));
                };
                pos = next;
            }
            prop_assert_eq!(batch_items(&data, 0, u64::MAX), Some(items.len() as u64));
        }

        /// The hot path's `look_item` gives an item exactly when `look` does, the same one.
        #[test]
        fn look_item_agrees_with_look(
            log_cap in 3u32..9,
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            records in proptest::collection::vec((0u32..7, 0usize..80), 0..8),
            head in words(),
            sub in words(),
            tail in words(),
            limit in words(),
        ) {
            let data = ring_of(log_cap, bytes, &records);
            // Walk as a reader would, comparing at every step.
            walk_agrees(&data, Pos { head, sub }, tail, limit)?;
        }

        /// The same on rings of real batch records (items of a few bytes, against a limit
        /// around their lengths), with a byte or two scribbled.
        #[test]
        fn look_item_agrees_with_look_on_batches(
            batches in proptest::collection::vec(
                proptest::collection::vec(0usize..6, 1..5), 1..6),
            scribbles in proptest::collection::vec((0usize..256, any::<u8>()), 0..3),
            limit in 0u64..7,
            cut in 0u64..4,
        ) {
            let mut data = Vec::new();
            for items in batches {
                let mut payload = Vec::new();
                for n in items {
                    payload.push(n as u8);
                    payload.extend(std::iter::repeat_n(9u8, n));
                }
                data.extend(record(BATCH, &payload));
            }
            let tail = (data.len() as u64).saturating_sub(cut * 8);
            data.resize(256, 0);
            for (at, b) in scribbles {
                data[at] = b;
            }
            walk_agrees(&data, Pos { head: 0, sub: 0 }, tail, limit)?;
        }

        /// The same with a ring size that is not a power of two: always a clean stop.
        #[test]
        fn a_ring_of_a_bad_size_is_refused(len in 0usize..100, head in words(), tail in words()) {
            let data = vec![0u8; len];
            if !(len >= 8 && len.is_power_of_two()) {
                prop_assert_eq!(look(&data, Pos { head, sub: 0 }, tail, 9).unwrap_err(), BREAKING[0]);
            }
        }
    }
}
