//! Small additions for a ring with one writer and one reader that never sleeps on the ring
//! (a pool worker's result ring, read by the pool's collector, which waits on its channels):
//! a look at what is published without taking a lock or sleeping, with the positions and the
//! records' extents checked first; a put that never waits for room; and, with the
//! `test-fault` feature, ways to scribble on the ring as a process with a memory bug would.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Ring;
use super::frame::write_long_len;
use super::parse::{PAD, REC, rec_size};

/// The reader may check at most this many records ahead per look.
const LOOK_RECORDS: usize = 64;

#[cfg(any(test, feature = "test-fault"))]
/// How a test damages a ring (`Ring::scribble`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scribble {
    /// Moves the write position this many bytes ahead, as a stray write would.
    TailAhead(u64),
    /// Publishes one record whose length runs past the end of the ring.
    BadLength,
}

impl Ring {
    /// Reader side, without a lock or a sleep: how many published records (not counting
    /// padding) wait, at most [`LOOK_RECORDS`], after checking the positions and each of
    /// those records' extent against the ring's bounds. So many calls of `next` read only
    /// records checked here. An error names the check that failed: the ring cannot be trusted.
    pub(crate) fn checked_records(&self) -> Result<usize, String> {
        let (head, tail) = self.positions()?;
        let (mut pos, mut records) = (head, 0);
        while pos < tail && records < LOOK_RECORDS {
            let off = pos & (self.cap - 1);
            let (len, kind) = self.raw_rec_at(off);
            let need = rec_size(len);
            if off + need > self.cap || need > tail - pos {
                return Err(format!(
                    "the record at {pos} (kind {kind}, {len} bytes) runs past the ring's end or \
                     its write position"
                ));
            }
            if kind != PAD && len > self.frag() {
                return Err(format!(
                    "the record at {pos} holds {len} bytes, more than a record may"
                ));
            }
            records += usize::from(kind != PAD);
            pos += need;
        }
        Ok(records)
    }

    /// Whether nothing is published and not taken (the positions checked first).
    pub(crate) fn is_drained(&self) -> Result<bool, String> {
        self.positions().map(|(head, tail)| head == tail)
    }

    /// Either side, without a lock: the read and write positions, checked against each other
    /// and the ring's size (a writer checks them before it writes, so that a damaged ring is
    /// never written through).
    pub(crate) fn positions(&self) -> Result<(u64, u64), String> {
        let h = self.hdr();
        let head = h.read.head.load(Ordering::Acquire);
        let tail = h.write.tail.load(Ordering::Acquire);
        if tail < head {
            return Err(format!(
                "its write position {tail} is behind its read position {head}"
            ));
        }
        if tail - head > self.cap {
            return Err(format!(
                "its write position {tail} is more than the ring's {} bytes ahead of its read \
                 position {head}",
                self.cap
            ));
        }
        if head % REC as u64 != 0 || tail % REC as u64 != 0 {
            return Err(format!(
                "a position ({head} or {tail}) is not on a record boundary"
            ));
        }
        Ok((head, tail))
    }

    /// The header of the record at offset `off` (8-aligned, inside the ring), as written.
    fn raw_rec_at(&self, off: u64) -> (usize, u32) {
        let mut head = [0u8; REC];
        // SAFETY: `off` is 8-aligned and below `cap` (checked by the caller), so the 8 bytes
        // lie inside the ring's data area.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(off as usize), head.as_mut_ptr(), REC)
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        (len, kind)
    }

    /// The largest item one record carries (bigger ones are written in pieces).
    pub(crate) fn max_record_item(&self) -> usize {
        self.frag() - 5
    }

    /// Writer side, for a ring with one writer: appends `item` as one record if it fits now,
    /// wrapping at the end as needed; never waits for room. False if it does not fit.
    pub(crate) fn try_put(&self, item: &[u8]) -> bool {
        if item.len() > self.max_record_item() {
            return false;
        }
        let mut framed = Vec::with_capacity(item.len() + 5);
        framed.push(0);
        framed.extend_from_slice(item);
        if item.len() < 0x80 {
            framed[0] = item.len() as u8;
        } else {
            write_long_len(&mut framed, 0, item.len());
        }
        if framed.len() > self.frag() {
            return false;
        }
        let h = self.hdr();
        let tail = h.write.tail.load(Ordering::Relaxed);
        let head = h.read.head.load(Ordering::SeqCst);
        let Some(free) = self.cap.checked_sub(tail.wrapping_sub(head)) else {
            return false;
        };
        // The record, after a pad to the end of the ring if it would cross it.
        let off = tail & (self.cap - 1);
        let rec = rec_size(framed.len());
        let pad = if off + rec > self.cap {
            self.cap - off
        } else {
            0
        };
        if free < rec + pad {
            return false;
        }
        self.write_framed(&framed, 1).is_ok()
    }

    /// Makes the block unattachable by name once the other side has attached, so a ring made
    /// for one worker is not kept for the life of the process. Only while this is the only
    /// handle on the block in this process (true right after `create`).
    pub(crate) fn unlink(&mut self) {
        if let Some(mem) = Arc::get_mut(&mut self.mem) {
            mem.unlink();
        }
    }

    #[cfg(any(test, feature = "test-fault"))]
    /// Damages the ring as `how` says: a test's stand-in for a process with a memory bug.
    pub(crate) fn scribble_as(&self, how: Scribble) {
        let h = self.hdr();
        match how {
            Scribble::TailAhead(by) => {
                h.write.tail.fetch_add(by, Ordering::SeqCst);
            }
            Scribble::BadLength => {
                let _g = self.wlock.try_acquire();
                let tail = h.write.tail.load(Ordering::Relaxed);
                let off = tail & (self.cap - 1);
                let mut rec = [0u8; REC];
                rec[..4].copy_from_slice(&(self.cap as u32 * 2).to_le_bytes());
                rec[4..].copy_from_slice(&super::parse::BATCH.to_le_bytes());
                // SAFETY: `off` is 8-aligned and below `cap`: the 8 bytes are inside the ring.
                unsafe {
                    std::ptr::copy_nonoverlapping(rec.as_ptr(), self.data().add(off as usize), REC)
                };
                h.write.tail.store(tail + REC as u64, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Next, WaitLimit};

    fn ring() -> Ring {
        Ring::create(64 << 10, 0, 16 << 10).unwrap()
    }

    fn take_all(r: &Ring) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Next::One(item) = r.next(WaitLimit::No, |b| b.to_vec()).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn try_put_wraps_and_refuses_only_when_full() {
        let r = ring();
        let mut sent = 0u32;
        let mut got = 0u32;
        for round in 0..300u32 {
            for _ in 0..(1 + round % 9) {
                let item = vec![(sent % 251) as u8; 100 + (sent as usize * 37) % 3000];
                if r.try_put(&item) {
                    sent += 1;
                } else {
                    break;
                }
            }
            assert!(r.checked_records().is_ok());
            for item in take_all(&r) {
                assert_eq!(item.len(), 100 + (got as usize * 37) % 3000);
                assert!(item.iter().all(|&b| b == (got % 251) as u8));
                got += 1;
            }
        }
        assert_eq!(got, sent);
        assert!(sent > 1000);
        assert!(!r.try_put(&vec![0; 20 << 10]), "over a record's size");
    }

    #[test]
    fn scribbles_are_seen_before_any_record_is_read() {
        let r = ring();
        assert_eq!(r.checked_records(), Ok(0));
        assert!(r.try_put(b"x"));
        assert_eq!(r.checked_records(), Ok(1));
        r.scribble_as(Scribble::TailAhead(1 << 40));
        assert!(
            r.checked_records()
                .unwrap_err()
                .contains("more than the ring")
        );

        let r = ring();
        assert!(r.try_put(b"x"));
        r.scribble_as(Scribble::BadLength);
        assert!(r.checked_records().unwrap_err().contains("runs past"));
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::ring::{Next, WaitLimit};

    #[test]
    #[ignore = "timing only"]
    fn one_writer_one_reader_round_trip_cost() {
        let r = Ring::create(64 << 10, 0, 16 << 10).unwrap();
        let n = 200_000;
        let start = std::time::Instant::now();
        for i in 0..n {
            let direct = r.put_direct(|region| {
                region[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Some(8)
            });
            assert!(direct.is_some() || r.try_put(&(i as u64).to_le_bytes()));
            assert_eq!(r.checked_records(), Ok(1));
            let Ok(Next::One(_)) = r.next(WaitLimit::No, |b| b.len()) else {
                panic!()
            };
        }
        eprintln!("{:?} per round trip", start.elapsed() / n);
    }
}
