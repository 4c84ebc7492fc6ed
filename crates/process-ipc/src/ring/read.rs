//! Reading from the ring, holding its read lock: one item where it lies, or a big item put
//! back together from its pieces. A reader never takes an item it does not hand out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::frame::read_len;
use super::{
    BATCH, FIRST, LAST, LOOK_FOR, MORE, Next, PAD, Ring, SLICE, Wait, alive, rec_size, take,
};
use crate::shared::SharedError;
use crate::sys;

impl Ring {
    /// Moves the read position to `sub` inside the record at `head` (past it at its end) and
    /// counts `items` taken.
    fn advance(&self, head: u64, rec_len: usize, sub: usize, items: u64) {
        let h = self.hdr();
        let freed = sub >= rec_len;
        if freed {
            h.read.sub.store(0, Ordering::Relaxed);
            h.read
                .head
                .store(head + rec_size(rec_len), Ordering::SeqCst);
        } else {
            h.read.sub.store(sub as u64, Ordering::Relaxed);
        }
        if items > 0 {
            // Only the read-lock holder writes it.
            let got = h.read.got_items.load(Ordering::Relaxed);
            h.read.got_items.store(got + items, Ordering::Relaxed);
            if self.maxsize > 0 {
                let _ = h
                    .counts
                    .reserved
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                        Some(r.saturating_sub(items))
                    });
                // A bounded putter may wait for this place.
                h.room.wake();
                return;
            }
        }
        if !freed {
            return;
        }
        // A writer waiting for room: only once what it asked for is free.
        let used = h.write.tail.load(Ordering::SeqCst) - h.read.head.load(Ordering::SeqCst);
        if self.cap - used >= h.write.want.load(Ordering::SeqCst) {
            h.room.wake();
        }
    }

    /// Looks for a record past `head` for up to [`LOOK_FOR`] (never past the call's deadline,
    /// see [`sys::look_for`]); whether one came.
    fn look_for_an_item(&self, head: u64, wait: Wait) -> bool {
        let h = self.hdr();
        let time = match wait {
            Wait::Until(at) => LOOK_FOR.min(at.saturating_duration_since(Instant::now())),
            _ => LOOK_FOR,
        };
        sys::look_for(time, || {
            (head < h.write.tail.load(Ordering::Acquire)).then_some(())
        })
        .is_some()
    }

    /// Takes the next item and hands it to `decode` where it lies (a big item in pieces is put
    /// together first). Takes nothing else: every item this call moves past is the one it
    /// hands out (or a damaged one it reports).
    pub(crate) fn next<R>(
        &self,
        wait: Wait,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Next<R>, SharedError> {
        let Some(_g) = take(&self.rlock, wait)? else {
            return Ok(match wait {
                Wait::No => Next::Empty,
                _ => Next::Timeout,
            });
        };
        let h = self.hdr();
        let mut check = false;
        // Whether this call already looked for an item a while before sleeping.
        let mut looked = false;
        loop {
            let head = h.read.head.load(Ordering::Relaxed);
            if head < h.write.tail.load(Ordering::Acquire) {
                let (len, kind) = self.rec_at(head);
                match kind {
                    BATCH => {
                        let payload = self.payload_at(head, len);
                        let sub = (h.read.sub.load(Ordering::Relaxed) as usize).min(len);
                        let Some((n, hd)) =
                            read_len(&payload[sub..]).filter(|&(n, hd)| sub + hd + n <= len)
                        else {
                            // A malformed record: drop the rest of it.
                            self.advance(head, len, len, 0);
                            continue;
                        };
                        let item = &payload[sub + hd..sub + hd + n];
                        // Advances even if `decode` panics: the item is this reader's.
                        let _step = Step {
                            ring: self,
                            head,
                            len,
                            sub: sub + hd + n,
                        };
                        return Ok(Next::One(decode(item)));
                    }
                    FIRST => {
                        let got = self.read_stream(head, len);
                        drop(_g);
                        return Ok(match got {
                            Ok(item) => Next::One(decode(&item)),
                            Err(why) => Next::Lost(why),
                        });
                    }
                    // Padding, or the rest of an item whose reader died: nobody's item.
                    _ => {
                        self.advance(head, len, len, 0);
                        continue;
                    }
                }
            }
            if !matches!(wait, Wait::No) && !looked && self.look_for_an_item(head, wait) {
                continue;
            }
            looked = true;
            let seen = h.data.prepare();
            if head < h.write.tail.load(Ordering::SeqCst) {
                h.data.cancel();
                looked = false;
                continue;
            }
            if !self.putters(check) {
                h.data.cancel();
                return Ok(Next::Disconnected);
            }
            if matches!(wait, Wait::No) {
                h.data.cancel();
                return Ok(Next::Empty);
            }
            if wait.passed() {
                h.data.cancel();
                return Ok(Next::Timeout);
            }
            check = !h.data.sleep(seen, wait.slice_end());
        }
    }

    /// Reads a multi-record item whose `FIRST` record (`len` bytes) is at `head`.
    fn read_stream(&self, head: u64, len: usize) -> Result<Vec<u8>, &'static str> {
        const CUT: &str = "its putting process died in the middle of it";
        let h = self.hdr();
        let p = self.payload_at(head, len);
        let total = p
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let limit = self.limit;
        if len < 8 || total > limit {
            self.advance(head, len, len, 1);
            return Err("its header was damaged");
        }
        let mut item = Vec::with_capacity(total as usize);
        item.extend_from_slice(&p[8..]);
        self.advance(head, len, len, 1);
        let mut check = false;
        loop {
            let head = h.read.head.load(Ordering::Relaxed);
            let seen = h.data.prepare();
            if head < h.write.tail.load(Ordering::SeqCst) {
                h.data.cancel();
                let (len, kind) = self.rec_at(head);
                match kind {
                    PAD => self.advance(head, len, len, 0),
                    MORE | LAST => {
                        item.extend_from_slice(self.payload_at(head, len));
                        self.advance(head, len, len, 0);
                        if kind == LAST {
                            return Ok(item);
                        }
                    }
                    // A new item where the rest of ours should be: ours was cut off.
                    _ => return Err(CUT),
                }
                continue;
            }
            let writer = h.write.stream.load(Ordering::SeqCst);
            if writer == 0 || (check && !alive(writer)) {
                h.data.cancel();
                if head < h.write.tail.load(Ordering::SeqCst) {
                    continue; // the last record came just now
                }
                return Err(CUT);
            }
            check = !h.data.sleep(seen, Instant::now() + SLICE);
        }
    }
}

/// Moves the read position past one item when dropped (also during a panic in `decode`).
struct Step<'a> {
    ring: &'a Ring,
    head: u64,
    len: usize,
    sub: usize,
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.ring.advance(self.head, self.len, self.sub, 1);
    }
}
