//! Reading from the ring: a small item that is not the last of its record claimed without
//! the read lock (`claim`), or, holding the read lock, one item where it lies, or a big item
//! put back together from its pieces. A reader never takes an item it does not hand out, and
//! checks everything it reads (`parse`) before using it.
//!
//! The claim. The read position is one word, `at` (see `ReadPos`). A reader without the lock
//! reads `at`, then `head` and the record there, checks the item at `at` (`look_item`), copies
//! it (at most [`SMALL`] bytes) and moves `at` past it with one compare-exchange: the item is
//! its own only if `at` had not moved. It never frees a record (the last item of each goes
//! the locked way, which moves `head`), so while `at` stays put so does `head`, and the bytes
//! it copied were the record's (the writer writes there only after seeing `head` move on; the
//! compare-exchange releases the copy before any such move). A read-lock holder first sets
//! [`BUSY`] in `at` (acquiring, so every claim before it is seen) and clears it when done:
//! while it is set no claim succeeds, so the lock holder moves the position alone, as before.
//! A holder that dies leaves the bit set: claims then take the lock (robust), whose next holder
//! clears it. A reader killed between its compare-exchange and its return loses the one item
//! it claimed, and nothing else.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::parse::{Found, Pos, REC, batch_items, check_piece, look, look_item};
use super::{BUSY, LOOK_FOR, Next, Partial, Ring, RingError, WaitLimit, alive, take};
use crate::sys;

/// Items at most this many bytes long (serialized) may be claimed without the read lock.
const SMALL: usize = 128;
/// Items at most this long are copied in one fixed-size copy.
const QUICK_COPY: usize = 16;
/// How many times a claim is tried (another reader moved `at` in between) before the reader
/// takes the lock.
const CLAIM_TRIES: u32 = 4;

/// Why a big item is lost when its writer stops in the middle of it.
const CUT: &str = "its putting process died in the middle of it";
/// How many records a reader skips (padding, pieces nobody started, damaged records) between
/// two looks at its deadline.
const SKIPS_PER_LOOK: u32 = 1024;
/// The most a reader reserves up front for a big item (the rest grows as the pieces come: an
/// announced total is untrusted).
const RESERVE_MAX: u64 = 16 << 20;

/// What one hold of the read lock came to.
enum Held<R> {
    Done(Next<R>),
    /// Another reader, alive, holds the start of the big item whose pieces are at the head:
    /// wait for it outside the lock.
    Owned,
}

impl Ring {
    /// The read position, from the two words the read side keeps.
    #[inline]
    fn pos(&self) -> Pos {
        let h = self.hdr();
        let head = h.read.head.load(Ordering::Relaxed);
        let at = h.pos.at.load(Ordering::Relaxed);
        pos_of(head, at)
    }

    /// Claims the next item without the read lock if it is small and not the last of its
    /// record (see the module notes), and hands it to `decode`. `None`: nothing was taken,
    /// go the locked way.
    #[inline]
    fn claim<R, D: FnOnce(&[u8]) -> R>(&self, decode: &mut Option<D>) -> Option<R> {
        let h = self.hdr();
        // A big item begun in this process goes on under the lock.
        if self.own.partial_held.load(Ordering::Relaxed) {
            return None;
        }
        for _ in 0..CLAIM_TRIES {
            let at = h.pos.at.load(Ordering::Acquire);
            // A lock holder moves the position now; or someone holds a big item's start.
            if at & BUSY != 0 || h.read.owner.load(Ordering::Relaxed) != 0 {
                return None;
            }
            let head = h.read.head.load(Ordering::Acquire);
            let tail = self.tail_from(head);
            let (bytes, next) = look_item(self.bytes(), pos_of(head, at), tail, self.limit)?;
            if next.head != head || bytes.len() > SMALL {
                return None;
            }
            let mut copy = [0u8; SMALL];
            // A short item in one fixed-size copy (the bytes after it, inside the ring, come
            // along unused), not a call to `memcpy`.
            let start = bytes.as_ptr() as usize - self.at.data;
            match self.bytes().get(start..start + QUICK_COPY) {
                Some(quick) if bytes.len() <= QUICK_COPY => {
                    copy[..QUICK_COPY].copy_from_slice(quick)
                }
                _ => copy[..bytes.len()].copy_from_slice(bytes),
            }
            let copy = &copy[..bytes.len()];
            let to = head + REC as u64 + next.sub;
            // Release: the copy is read before any lock holder (who acquires `at` when it
            // sets BUSY) can free the record.
            if h.pos
                .at
                .compare_exchange(at, to, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.taken(1);
                let decode = decode.take().expect("one item per call");
                return Some(decode(copy));
            }
        }
        None
    }

    /// Gives a bounded queue's places of `items` taken (by a claim or a lock holder) back;
    /// whether it woke a bounded putter. (`qsize` of an unbounded queue counts what was taken
    /// from the record position, see [`queued`](Self::queued): no count is kept per item.)
    #[inline]
    fn taken(&self, items: u64) -> bool {
        if self.maxsize == 0 {
            return false;
        }
        let h = self.hdr();
        let _ = h
            .counts
            .reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                Some(r.saturating_sub(items))
            });
        // A bounded putter may wait for this place.
        h.room.wake();
        true
    }

    /// Moves the read position from the record at `head` to `to`, in one store, with `items`
    /// taken (a big item's start counts one; an item of a batch is counted with its record).
    /// Only a read-lock holder calls it (with [`BUSY`] set: it stays set).
    fn advance(&self, head: u64, to: Pos, items: u64) {
        let h = self.hdr();
        let freed = to.head != head;
        if freed {
            // Every item of a batch record is taken once it is freed: counted here, once per
            // record, read before the record can be written over.
            let gone = batch_items(self.bytes(), head, u64::MAX).unwrap_or(items);
            h.read.head.store(to.head, Ordering::SeqCst);
            // Already meaningless (at or before the new head) unless scribbled: made so.
            h.pos.at.store(to.head | BUSY, Ordering::Relaxed);
            // After the head moved (`queued` reads them the other way round).
            if gone > 0 {
                h.pos.got_items.fetch_add(gone, Ordering::SeqCst);
            }
        } else {
            h.pos
                .at
                .store((head + REC as u64 + to.sub) | BUSY, Ordering::Relaxed);
        }
        if items > 0 && self.taken(items) {
            return;
        }
        if freed && h.room.sleepers.load(Ordering::SeqCst) > 0 {
            // A writer waiting for room: only once what it asked for is free.
            let used = h.write.tail.load(Ordering::SeqCst).saturating_sub(to.head);
            if self.cap.saturating_sub(used) >= h.write.want.load(Ordering::SeqCst) {
                h.room.wake();
            }
        }
    }

    /// Looks for a record past `head` for up to [`LOOK_FOR`] (never past the call's deadline,
    /// see [`sys::look_for`]); whether one came.
    fn look_for_an_item(&self, head: u64, wait: WaitLimit) -> bool {
        let h = self.hdr();
        let time = match wait {
            WaitLimit::Until(at) => LOOK_FOR.min(at.saturating_duration_since(Instant::now())),
            _ => LOOK_FOR,
        };
        sys::look_for(time, || {
            (head != h.write.tail.load(Ordering::Acquire)).then_some(())
        })
        .is_some()
    }

    /// Takes the next item and hands it to `decode` where it lies (a big item in pieces is put
    /// together first). Takes nothing else: every item this call moves past is the one it
    /// hands out, or a damaged one it reports.
    #[inline]
    pub(crate) fn next<R>(
        &self,
        wait: WaitLimit,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Next<R>, RingError> {
        self.next_waiting(|| wait, decode)
    }

    /// [`next`](Self::next) with the wait made only if the claim took no item: a timed get
    /// reads the clock (a read costs about as much as the rest of such a get) only then.
    #[inline]
    pub(crate) fn next_waiting<R>(
        &self,
        wait: impl FnOnce() -> WaitLimit,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Next<R>, RingError> {
        self.check_broken()?;
        let mut decode = Some(decode);
        if let Some(got) = self.claim(&mut decode) {
            return Ok(Next::One(got));
        }
        self.next_locked(wait(), &mut decode)
    }

    /// [`next`](Self::next) the locked way (the claim did not take an item).
    #[inline(never)]
    fn next_locked<R, D: FnOnce(&[u8]) -> R>(
        &self,
        wait: WaitLimit,
        decode: &mut Option<D>,
    ) -> Result<Next<R>, RingError> {
        loop {
            let Some(guard) = take(&self.rlock, wait).map_err(RingError::Lock)? else {
                return Ok(match wait {
                    WaitLimit::No => Next::Empty,
                    _ => Next::Timeout,
                });
            };
            // Dropped before `guard` (declared after it), on every way out.
            let busy = Busy::mark(self);
            match self.next_held(wait, decode)? {
                Held::Done(got) => return Ok(got),
                Held::Owned => {
                    drop(busy);
                    drop(guard);
                    if !self.wait_for_owner(wait) {
                        return Ok(match wait {
                            WaitLimit::No => Next::Empty,
                            _ => Next::Timeout,
                        });
                    }
                }
            }
        }
    }

    /// The live owner of the big item in progress, if it is another process; clears the
    /// owner word of a dead one.
    #[inline]
    fn other_owner(&self, me: &Me) -> Option<u32> {
        let owner = &self.hdr().read.owner;
        let pid = owner.load(Ordering::SeqCst);
        // No owner: the common case, decided without asking for our pid.
        if pid == 0 || pid == me.pid() {
            return None;
        }
        if alive(pid) {
            return Some(pid);
        }
        let _ = owner.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::Relaxed);
        None
    }

    /// Clears the owner word if it is `me`, and wakes the readers waiting for it.
    fn release_owner(&self, me: u32) {
        let h = self.hdr();
        let _ = h
            .read
            .owner
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::Relaxed);
        h.data.wake();
    }

    /// Waits, outside the read lock, until the owner of the big item at the head is gone or
    /// done (or a slice passed); false if the call's time ran out.
    fn wait_for_owner(&self, wait: WaitLimit) -> bool {
        if matches!(wait, WaitLimit::No) {
            return false;
        }
        let h = self.hdr();
        let seen = h.data.prepare();
        if self.other_owner(&Me::default()).is_none() {
            h.data.cancel();
            return true;
        }
        if wait.passed() {
            h.data.cancel();
            return false;
        }
        h.data.sleep(seen, wait.slice_end());
        !wait.passed()
    }

    /// A tail to read up to from `head`: one this process saw (any one: records before a tail
    /// stay published, so racing readers of this process may store theirs in any order) while
    /// the head is behind it, else the block's, read again.
    #[inline]
    fn tail_from(&self, head: u64) -> u64 {
        let seen = self.own.tail_seen.load(Ordering::Relaxed);
        if seen > head {
            return seen;
        }
        let tail = self.hdr().write.tail.load(Ordering::Acquire);
        self.own.tail_seen.store(tail, Ordering::Relaxed);
        tail
    }

    /// One hold of the read lock (the caller holds it).
    #[inline]
    fn next_held<R, D: FnOnce(&[u8]) -> R>(
        &self,
        wait: WaitLimit,
        decode: &mut Option<D>,
    ) -> Result<Held<R>, RingError> {
        // The common case: no big item begun in this process, and a whole item at the head.
        // Anything else (and every failed check) goes the long way, which looks again.
        if !self.own.partial_held.load(Ordering::Relaxed) {
            let pos = self.pos();
            let tail = self.tail_from(pos.head);
            if let Some((bytes, next)) = look_item(self.bytes(), pos, tail, self.limit) {
                // A big item another reader started was cut off (see `next_slow`).
                self.other_owner(&Me::default());
                let decode = decode.take().expect("one item per call");
                // Advances even if `decode` panics: the item is this reader's.
                let _step = Step {
                    ring: self,
                    head: pos.head,
                    to: next,
                };
                return Ok(Held::Done(Next::One(decode(bytes))));
            }
        }
        let mut partial = self.own.partial.lock();
        let held = self.next_slow(wait, decode, &mut partial);
        self.own
            .partial_held
            .store(partial.is_some(), Ordering::Relaxed);
        held
    }

    /// [`next_held`](Self::next_held) the long way, with this process's big item begun (if
    /// any) in hand.
    fn next_slow<R, D: FnOnce(&[u8]) -> R>(
        &self,
        wait: WaitLimit,
        decode: &mut Option<D>,
        partial: &mut Option<Partial>,
    ) -> Result<Held<R>, RingError> {
        let h = self.hdr();
        let me = Me::default();
        let mut check = false;
        // Whether this call already looked for an item a while before sleeping.
        let mut looked = false;
        let mut skips = 0u32;
        let lost = |partial: &mut Option<Partial>, why| {
            *partial = None;
            self.release_owner(me.pid());
            Ok(Held::Done(Next::Lost(why)))
        };
        loop {
            if partial.is_some() && h.read.owner.load(Ordering::SeqCst) != me.pid() {
                // Another reader judged our big item cut off (its writer died) and moved on.
                *partial = None;
                return Ok(Held::Done(Next::Lost(CUT)));
            }
            let pos = self.pos();
            let tail = self.tail_from(pos.head);
            let found =
                look(self.bytes(), pos, tail, self.limit).map_err(|c| self.break_ring(c))?;
            let step = match found {
                Found::Empty => None,
                Found::Item { bytes, next } => {
                    if partial.is_some() {
                        // A new item where the rest of ours should be: ours was cut off.
                        return lost(partial, CUT);
                    }
                    // A big item another reader started was cut off the same way.
                    self.other_owner(&me);
                    let decode = decode.take().expect("one item per call");
                    // Advances even if `decode` panics: the item is this reader's.
                    let _step = Step {
                        ring: self,
                        head: pos.head,
                        to: next,
                    };
                    return Ok(Held::Done(Next::One(decode(bytes))));
                }
                Found::First { total, bytes, next } => {
                    if partial.is_some() {
                        return lost(partial, CUT);
                    }
                    self.other_owner(&me);
                    let mut start = Vec::with_capacity(total.min(RESERVE_MAX) as usize);
                    start.extend_from_slice(bytes);
                    // Set first: the fast path must never miss a begun item.
                    self.own.partial_held.store(true, Ordering::Relaxed);
                    *partial = Some(Partial {
                        total,
                        bytes: start,
                    });
                    h.read.owner.store(me.pid(), Ordering::SeqCst);
                    Some((next, 1))
                }
                Found::Piece { bytes, last, next } => match partial.as_mut() {
                    Some(p) => {
                        if let Err(why) =
                            check_piece(p.total, p.bytes.len() as u64, bytes.len(), last)
                        {
                            self.advance(pos.head, next, 0);
                            *partial = None;
                            self.release_owner(me.pid());
                            return Ok(Held::Done(Next::Damaged(why)));
                        }
                        p.bytes.extend_from_slice(bytes);
                        if last {
                            self.advance(pos.head, next, 0);
                            let item = partial.take().expect("just extended").bytes;
                            self.release_owner(me.pid());
                            let decode = decode.take().expect("one item per call");
                            return Ok(Held::Done(Next::One(decode(&item))));
                        }
                        Some((next, 0))
                    }
                    None if self.other_owner(&me).is_some() => return Ok(Held::Owned),
                    // Pieces nobody holds the start of (its reader died, or dropped it): nobody's.
                    None => {
                        let _ = h.read.owner.compare_exchange(
                            me.pid(),
                            0,
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        );
                        Some((next, 0))
                    }
                },
                Found::Pad { next } => Some((next, 0)),
                Found::Bad { check, next } => {
                    self.advance(pos.head, next, 0);
                    if partial.take().is_some() {
                        self.release_owner(me.pid());
                    }
                    return Ok(Held::Done(Next::Damaged(check)));
                }
            };
            if let Some((next, items)) = step {
                self.advance(pos.head, next, items);
                skips += 1;
                // A big item in pieces keeps the deadline at every piece (one is at most a
                // quarter of the ring): a fast writer of a huge item does not hold this call.
                let look_now = partial.is_some() || skips % SKIPS_PER_LOOK == 0;
                if look_now && wait.passed() {
                    return Ok(Held::Done(self.ran_out(wait)));
                }
                continue;
            }
            // Nothing at the head.
            if partial.is_some() {
                // Our big item goes on only while its writer lives.
                let writer = h.write.stream.load(Ordering::SeqCst);
                if writer == 0 || (check && !alive(writer)) {
                    if pos.head != h.write.tail.load(Ordering::SeqCst) {
                        continue; // the rest came just now
                    }
                    return lost(partial, CUT);
                }
            }
            if !matches!(wait, WaitLimit::No) && !looked && self.look_for_an_item(pos.head, wait) {
                continue;
            }
            looked = true;
            let seen = h.data.prepare();
            if pos.head != h.write.tail.load(Ordering::SeqCst) {
                h.data.cancel();
                looked = false;
                continue;
            }
            // Shut down and empty: `get` fails (a big item begun still comes). Read after
            // `prepare`, so a shutdown's wake-up cannot fall between the two.
            if partial.is_none() {
                if let Err(e) = self.ensure_open() {
                    h.data.cancel();
                    return Err(e);
                }
            }
            if partial.is_none() && !self.putters(check) {
                h.data.cancel();
                return Ok(Held::Done(Next::Disconnected));
            }
            if matches!(wait, WaitLimit::No) || wait.passed() {
                h.data.cancel();
                // A big item begun stays with this process: its next get goes on with it.
                return Ok(Held::Done(self.ran_out(wait)));
            }
            check = !h.data.sleep(seen, wait.slice_end());
            // Woken (or a slice passed): another process may have found the ring broken.
            self.check_broken()?;
        }
    }

    fn ran_out<R>(&self, wait: WaitLimit) -> Next<R> {
        match wait {
            WaitLimit::No => Next::Empty,
            _ => Next::Timeout,
        }
    }
}

/// This process's pid, asked for once and only when needed (`getpid` is a system call, and
/// most gets never need it).
#[derive(Default)]
struct Me(std::cell::OnceCell<u32>);

impl Me {
    fn pid(&self) -> u32 {
        *self.0.get_or_init(crate::shared::my_pid)
    }
}

impl Ring {
    /// Items accepted by `put` (in any process) and not yet taken by a `get`: those counted
    /// at `put`, less the items of the records freed, less those taken from the record at the
    /// head (counted from the read position; a `get` moves it before it returns, so a count
    /// in its own process right after is exact). Read again if a record was freed meanwhile.
    pub(crate) fn queued(&self) -> usize {
        let h = self.hdr();
        let mut got = 0;
        for _ in 0..QUEUED_TRIES {
            got = h.pos.got_items.load(Ordering::SeqCst);
            let head = h.read.head.load(Ordering::SeqCst);
            let at = h.pos.at.load(Ordering::SeqCst);
            let tail = h.write.tail.load(Ordering::SeqCst);
            let sub = pos_of(head, at).sub;
            let here = if head < tail && sub > 0 {
                batch_items(self.bytes(), head, sub).unwrap_or(0)
            } else {
                0
            };
            if h.read.head.load(Ordering::SeqCst) == head
                && h.pos.got_items.load(Ordering::SeqCst) == got
            {
                got = got.saturating_add(here);
                break;
            }
        }
        // Read last: a put in between can only make the answer larger, never below zero.
        let accepted = h.accepted.count.load(Ordering::SeqCst);
        usize::try_from(accepted.saturating_sub(got)).unwrap_or(usize::MAX)
    }
}

/// How many times `queued` reads the position again while records are freed under it.
const QUEUED_TRIES: u32 = 8;

/// The read position of the record at `head` and the word `at` (its [`BUSY`] bit aside): `at`
/// at or before `head` is a position in an earlier record, so the start of this one; inside
/// the record's header it is nonsense, and `parse` then skips the record.
#[inline]
fn pos_of(head: u64, at: u64) -> Pos {
    let sub = match (at & !BUSY).checked_sub(head) {
        None | Some(0) => 0,
        Some(d) => d.checked_sub(REC as u64).unwrap_or(u64::MAX),
    };
    Pos { head, sub }
}

/// [`BUSY`] set in the read position while a read-lock holder works (see the module notes).
struct Busy<'a>(&'a Ring);

impl<'a> Busy<'a> {
    /// Sets the bit. Acquire: every claim that moved `at` before is seen, bytes copied and all.
    #[inline]
    fn mark(ring: &'a Ring) -> Self {
        ring.hdr().pos.at.fetch_or(BUSY, Ordering::AcqRel);
        Busy(ring)
    }
}

impl Drop for Busy<'_> {
    /// Clears the bit. Release: a claim that sees it clear sees every move the holder made.
    #[inline]
    fn drop(&mut self) {
        self.0.hdr().pos.at.fetch_and(!BUSY, Ordering::Release);
    }
}

/// Moves the read position past one item when dropped (also during a panic in `decode`).
struct Step<'a> {
    ring: &'a Ring,
    head: u64,
    to: Pos,
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.ring.advance(self.head, self.to, 1);
    }
}
