//! Writing into the ring, holding its write lock: whole items in batch records, big ones in
//! pieces, and one item serialized straight into the ring by `put`. A writer checks the
//! positions it reads (its own `tail` too: another process may have scribbled on it) before
//! it computes room from them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::frame::{read_len, write_padded_len};
use super::parse::{BATCH, FIRST, LAST, MORE, PAD, REC, check_words, rec_size};
use super::{Ring, RingError, SLICE, WaitLimit, my_tid, take};

impl Ring {
    /// The write position, checked against the read position.
    fn checked_tail(&self) -> Result<u64, RingError> {
        let tail = self.hdr().write.tail.load(Ordering::Relaxed);
        let head = self.hdr().read.head.load(Ordering::SeqCst);
        check_words(self.cap, head, tail).map_err(|c| self.break_ring(c))?;
        Ok(tail)
    }

    /// Room for a record of `len` payload bytes at `tail` (with the pad it may need).
    fn fits(&self, tail: u64, len: usize) -> Result<bool, RingError> {
        let head = self.hdr().read.head.load(Ordering::SeqCst);
        check_words(self.cap, head, tail).map_err(|c| self.break_ring(c))?;
        let off = tail & (self.cap - 1);
        let rec = rec_size(len);
        let need = rec
            + if off + rec > self.cap {
                self.cap - off
            } else {
                0
            };
        Ok(self.cap - (tail - head) >= need)
    }

    /// Waits until a record of `len` payload bytes fits at `tail`. A writer that must sleep
    /// asks for a quarter of the ring at least, so that readers wake it once per few records
    /// instead of at every one.
    fn wait_room(&self, tail: u64, len: usize) -> Result<(), RingError> {
        let h = self.hdr();
        while !self.fits(tail, len)? {
            self.check_broken()?;
            let want = (rec_size(len) + self.cap / 4).min(self.cap);
            h.write.want.store(want, Ordering::SeqCst);
            let seen = h.room.prepare();
            match self.fits(tail, len) {
                Ok(false) => {}
                other => {
                    h.room.cancel();
                    return other.map(|_| ());
                }
            }
            h.room.sleep(seen, Instant::now() + SLICE);
        }
        Ok(())
    }

    /// Writes one record at `tail` (it fits) and publishes it; returns the new tail.
    fn append(&self, mut tail: u64, kind: u32, parts: &[&[u8]]) -> u64 {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let off = tail & (self.cap - 1);
        if off + rec_size(len) > self.cap {
            self.write_head(off, (self.cap - off) as usize - REC, PAD);
            tail += self.cap - off;
        }
        let off = (tail & (self.cap - 1)) as usize;
        let mut at = off + REC;
        for p in parts {
            // SAFETY: the record fits between `off` and `cap` (checked by `fits`), and bytes
            // past `tail` belong to no reader.
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.data().add(at), p.len()) };
            at += p.len();
        }
        self.write_head(off as u64, len, kind);
        let tail = tail + rec_size(len);
        self.hdr().write.tail.store(tail, Ordering::SeqCst);
        self.hdr().data.wake();
        tail
    }

    fn write_head(&self, off: u64, len: usize, kind: u32) {
        let mut head = [0u8; REC];
        head[..4].copy_from_slice(&(len as u32).to_le_bytes());
        head[4..].copy_from_slice(&kind.to_le_bytes());
        // SAFETY: `off + REC <= cap`, at or past the tail: ours to write.
        unsafe { std::ptr::copy_nonoverlapping(head.as_ptr(), self.data().add(off as usize), REC) };
    }

    /// Appends the items of `framed` (each its LEB128 length and its bytes, `count` of them),
    /// in order, waiting for room as long as it takes. Runs of small items are copied in one
    /// piece per record.
    pub(crate) fn write_framed(&self, framed: &[u8], count: usize) -> Result<(), RingError> {
        self.check_broken()?;
        let _g = take(&self.wlock, WaitLimit::Forever)
            .map_err(RingError::Lock)?
            .expect("no deadline");
        let frag = self.frag();
        let mut tail = self.checked_tail()?;
        let (mut pos, mut left) = (0usize, count);
        while left > 0 && pos < framed.len() {
            // The longest run of whole items that fits one record.
            let (start, mut n) = (pos, 0u64);
            while left > 0 {
                let Some((len, head)) = read_len(&framed[pos..])
                    .filter(|&(len, head)| pos + head + len <= framed.len())
                else {
                    left = 0;
                    break;
                };
                if pos + head + len - start > frag {
                    break;
                }
                pos += head + len;
                left -= 1;
                n += 1;
            }
            if n > 0 {
                let run = &framed[start..pos];
                self.wait_room(tail, run.len())?;
                tail = self.append(tail, BATCH, &[run]);
                continue;
            }
            // One item too big for a record: FIRST, MORE..., LAST.
            let Some((len, head)) =
                read_len(&framed[pos..]).filter(|&(len, head)| pos + head + len <= framed.len())
            else {
                break;
            };
            let item = &framed[pos + head..pos + head + len];
            pos += head + len;
            left -= 1;
            tail = self.write_stream(tail, item)?;
        }
        Ok(())
    }

    /// Whether a writer (or a bounded putter) sleeps for room now.
    pub(crate) fn writer_waits_for_room(&self) -> bool {
        self.hdr().room.sleepers.load(Ordering::SeqCst) > 0
    }

    /// Writes one item straight into the ring, if the write lock is free and the ring has
    /// room at its tail: `encode` serializes it into the region it is given and returns its
    /// length (`None` if it did not fit, or failed: the caller then takes its buffered path).
    /// Returns the item's length once it is published.
    pub(crate) fn put_direct(
        &self,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        const LEN: usize = 5;
        self.check_broken().ok()?;
        let _g = take(&self.wlock, WaitLimit::No).ok()??;
        let h = self.hdr();
        let tail = h.write.tail.load(Ordering::Relaxed);
        let head = h.read.head.load(Ordering::SeqCst);
        // Bad positions: the feeder's path finds them too, and reports them.
        check_words(self.cap, head, tail).ok()?;
        let off = tail & (self.cap - 1);
        let contiguous = (self.cap - off).min(self.cap - (tail - head)) as usize;
        let room = contiguous
            .min(self.frag() + REC)
            .checked_sub(REC + LEN + 8)?;
        if room < 64 {
            return None;
        }
        let at = off as usize + REC + LEN;
        // SAFETY: `at + room` lies inside the ring before `cap` and inside its free part
        // (past `tail`, before `head + cap`), which belongs to the write-lock holder alone.
        let region = unsafe { std::slice::from_raw_parts_mut(self.data().add(at), room) };
        let n = encode(region)?;
        if n > room {
            return None;
        }
        let mut len = [0u8; LEN];
        write_padded_len(&mut len, 0, n);
        // SAFETY: the five bytes before the item, inside the same free region.
        unsafe { std::ptr::copy_nonoverlapping(len.as_ptr(), self.data().add(at - LEN), LEN) };
        self.write_head(off, LEN + n, BATCH);
        h.write
            .tail
            .store(tail + rec_size(LEN + n), Ordering::SeqCst);
        h.data.wake();
        Some(n)
    }

    fn write_stream(&self, mut tail: u64, item: &[u8]) -> Result<u64, RingError> {
        let h = self.hdr();
        let frag = self.frag();
        let total = (item.len() as u64).to_le_bytes();
        let first = (frag - total.len()).min(item.len());
        h.write.stream.store(my_tid(), Ordering::SeqCst);
        // The stream word is cleared however this ends: readers then stop waiting for the rest.
        let _stream = StreamEnd(self);
        self.wait_room(tail, frag)?;
        tail = self.append(tail, FIRST, &[&total, &item[..first]]);
        let mut rest = &item[first..];
        while !rest.is_empty() {
            let n = rest.len().min(frag);
            self.wait_room(tail, n)?;
            let kind = if n == rest.len() { LAST } else { MORE };
            tail = self.append(tail, kind, &[&rest[..n]]);
            rest = &rest[n..];
        }
        if item.len() == first {
            self.wait_room(tail, 0)?;
            tail = self.append(tail, LAST, &[]);
        }
        Ok(tail)
    }
}

/// Clears the ring's stream word when dropped, and wakes the readers.
struct StreamEnd<'a>(&'a Ring);

impl Drop for StreamEnd<'_> {
    fn drop(&mut self) {
        let h = self.0.hdr();
        h.write.stream.store(0, Ordering::SeqCst);
        h.data.wake();
    }
}
