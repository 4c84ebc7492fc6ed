//! A worker's result ring: a single-producer, single-consumer ring of byte records in a
//! shared-memory block that the worker writes and the parent reads, so a finished task costs
//! the worker a copy into memory, not a system call, and the parent's collector wakes once for
//! many results instead of once per result.
//!
//! Exact blame holds because a record counts only once it is published (the write position is
//! stored after the bytes, with release ordering): the block belongs to the parent too, so
//! every record a worker published before it died is still there when the parent learns of the
//! death, and the parent reads them all before it judges which task was lost. A record half
//! written when the worker died was never published: its task is the one the worker was
//! running, and it fails.
//!
//! Waking: the collector sets `asleep` in every ring before it blocks (and looks at the rings
//! once more after setting it); a worker that publishes a record and finds `asleep` set clears
//! it and rings the doorbell (a message on its channel, which the collector is waiting on).
//! Both sides put a sequentially consistent fence between their store and their load, so one
//! of them always sees the other: no result waits unseen. While the collector is awake, no
//! worker pays for a wake-up.
//!
//! A record that does not fit (larger than half the ring, or the ring is full because the
//! parent is slow) goes over the worker's channel instead, as before; the parent takes the
//! channel's messages in too before it judges a death, and the schedule does not care in which
//! order a worker's results arrive.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shared::{SharedError, SharedMemory};

/// Bytes of record space per worker (a power of two). A worker never has more unread results
/// than tasks it holds (at most `schedule::PREFETCH`, 32), so small results always fit; a
/// record over half of it goes over the channel instead. Small, so a pool starts fast.
pub(super) const CAPACITY: usize = 64 << 10;

/// Where the control words sit in the block (each on its own cache line), and the data.
const HEAD: usize = 0;
const TAIL: usize = 64;
const ASLEEP: usize = 128;
const DATA: usize = 192;

/// A record's header: the payload length (u32) and padding to 8 bytes.
const RECORD_HEADER: usize = 8;

/// One worker's ring, on either side.
pub(super) struct Ring {
    block: SharedMemory,
}

/// What publishing a record did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// The record is in the ring; the collector was awake (or already told).
    Quiet,
    /// The record is in the ring and the collector was asleep: ring its doorbell.
    WakeParent,
    /// No room: send the record another way.
    NoRoom,
}

impl Ring {
    /// A fresh ring, in the parent.
    pub(super) fn create() -> Result<Ring, SharedError> {
        Ok(Ring {
            block: SharedMemory::create(DATA + CAPACITY)?,
        })
    }

    /// The block's name, for the worker to attach (while this handle lives and until
    /// [`unlink`](Self::unlink)).
    pub(super) fn name(&self) -> &str {
        self.block.name()
    }

    /// Makes the block unattachable by name (the worker has mapped it): the mappings stay.
    pub(super) fn unlink(&mut self) {
        self.block.unlink();
    }

    /// The worker's side of the ring the parent made, by its name.
    fn attach(name: &str) -> Result<Ring, String> {
        let block =
            SharedMemory::attach(name).map_err(|e| format!("cannot map the result ring: {e}"))?;
        if block.size() != DATA + CAPACITY {
            return Err(format!(
                "the result ring has {} bytes, not {}",
                block.size(),
                DATA + CAPACITY
            ));
        }
        Ok(Ring { block })
    }

    fn word64(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is one of the 64-byte-aligned control offsets inside the block (the
        // block's user area starts page-aligned plus a 64-byte header), and an AtomicU64 may
        // alias memory another process changes: every access to it is atomic.
        unsafe { &*(self.block.ptr_at(at) as *const AtomicU64) }
    }

    fn asleep(&self) -> &AtomicU32 {
        // SAFETY: as in `word64`, for the 4-byte word at ASLEEP.
        unsafe { &*(self.block.ptr_at(ASLEEP) as *const AtomicU32) }
    }

    fn data(&self) -> *mut u8 {
        self.block.ptr_at(DATA)
    }

    /// Copies `bytes` into the data area at ring position `pos`, wrapping at the end.
    ///
    /// # Safety
    /// The caller is the producer and owns the `bytes.len()` bytes from `pos` (not yet
    /// published, already read by the consumer).
    unsafe fn write_at(&self, pos: u64, bytes: &[u8]) {
        let start = (pos as usize) & (CAPACITY - 1);
        let first = bytes.len().min(CAPACITY - start);
        // SAFETY: both ranges lie inside the data area (start + first <= CAPACITY, and the
        // rest from 0); the caller owns them.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data().add(start), first);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(first),
                self.data(),
                bytes.len() - first,
            );
        }
    }

    /// Copies `out.len()` bytes from ring position `pos` into `out`.
    ///
    /// # Safety
    /// The caller is the consumer and the bytes from `pos` are published and not yet released.
    unsafe fn read_at(&self, pos: u64, out: &mut [u8]) {
        let start = (pos as usize) & (CAPACITY - 1);
        let first = out.len().min(CAPACITY - start);
        // SAFETY: as in `write_at`, for the consumer's published range.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.data(),
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    /// Worker side: publishes one record. The only producer of this ring is its worker's
    /// single task loop.
    pub(super) fn push(&self, payload: &[u8]) -> Pushed {
        let need = RECORD_HEADER + payload.len().next_multiple_of(8);
        if need > CAPACITY / 2 {
            return Pushed::NoRoom;
        }
        let head = self.word64(HEAD).load(Ordering::Relaxed);
        let tail = self.word64(TAIL).load(Ordering::Acquire);
        if head.wrapping_sub(tail) as usize + need > CAPACITY {
            return Pushed::NoRoom;
        }
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        // SAFETY: we are the producer; [head, head + need) is free (checked against tail).
        unsafe {
            self.write_at(head, &header);
            self.write_at(head + RECORD_HEADER as u64, payload);
        }
        self.word64(HEAD)
            .store(head.wrapping_add(need as u64), Ordering::Release);
        // Pairs with the collector's fence between setting `asleep` and its last look.
        fence(Ordering::SeqCst);
        if self.asleep().load(Ordering::Relaxed) != 0
            && self.asleep().swap(0, Ordering::AcqRel) != 0
        {
            Pushed::WakeParent
        } else {
            Pushed::Quiet
        }
    }

    /// Parent side: takes every published record, oldest first, into `each`. Returns how many.
    /// The only consumer of a ring is its pool's collector.
    pub(super) fn drain(&self, mut each: impl FnMut(&[u8])) -> usize {
        let head = self.word64(HEAD).load(Ordering::Acquire);
        let mut tail = self.word64(TAIL).load(Ordering::Relaxed);
        let mut count = 0;
        let mut buf = Vec::new();
        while tail != head {
            let mut header = [0u8; RECORD_HEADER];
            // SAFETY: [tail, head) is published and ours until we store the new tail.
            unsafe { self.read_at(tail, &mut header) };
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let need = RECORD_HEADER + len.next_multiple_of(8);
            if len > CAPACITY / 2 || need as u64 > head.wrapping_sub(tail) {
                // Not a record our worker wrote: drop the rest rather than read garbage.
                log::error!("process-ipc pool: a corrupt result ring; its records are dropped");
                break;
            }
            buf.resize(len, 0);
            // SAFETY: as above.
            unsafe { self.read_at(tail + RECORD_HEADER as u64, &mut buf) };
            each(&buf);
            count += 1;
            tail = tail.wrapping_add(need as u64);
        }
        self.word64(TAIL).store(head, Ordering::Release);
        count
    }

    /// Parent side: says whether the collector is about to block (`true`) or awake. After
    /// setting it, the collector must look at the ring once more before it blocks.
    pub(super) fn set_asleep(&self, asleep: bool) {
        self.asleep().store(u32::from(asleep), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Whether a record is waiting.
    #[cfg(test)]
    fn has_records(&self) -> bool {
        self.word64(HEAD).load(Ordering::Acquire) != self.word64(TAIL).load(Ordering::Relaxed)
    }
}

/// A ring in a worker's argument: its name on the way, mapped on arrival (while the worker's
/// arguments are read, so before its start is confirmed and the parent unlinks the name).
pub(super) enum RingArg {
    /// In the parent: the name to send.
    Name(String),
    /// In the worker: the mapped ring.
    Mapped(Ring),
}

impl Serialize for RingArg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RingArg::Name(name) => s.serialize_str(name),
            RingArg::Mapped(ring) => s.serialize_str(ring.name()),
        }
    }
}

impl<'de> Deserialize<'de> for RingArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ring::attach(&name)
            .map(RingArg::Mapped)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_argument_maps_the_parents_ring_on_arrival() {
        let parent = Ring::create().unwrap();
        let bytes = postcard::to_stdvec(&RingArg::Name(parent.name().to_string())).unwrap();
        let Ok(RingArg::Mapped(worker)) = postcard::from_bytes::<RingArg>(&bytes) else {
            panic!("not mapped");
        };
        assert_eq!(worker.push(b"x"), Pushed::Quiet);
        assert_eq!(parent.drain(|b| assert_eq!(b, b"x")), 1);
        assert!(
            postcard::from_bytes::<RingArg>(&postcard::to_stdvec("mt_psm_1_2_3").unwrap()).is_err()
        );
    }

    #[test]
    fn records_come_out_in_order_across_the_wrap() {
        let ring = Ring::create().unwrap();
        let mut next = 0u32;
        let mut seen = 0u32;
        // Enough rounds to wrap several times, with odd sizes so records straddle the end.
        for round in 0..200 {
            let batch = 1 + round % 37;
            for _ in 0..batch {
                let len = (next as usize * 7) % 1500;
                let mut payload = vec![(next % 251) as u8; len];
                payload.extend_from_slice(&next.to_le_bytes());
                assert_ne!(ring.push(&payload), Pushed::NoRoom);
                next += 1;
            }
            ring.drain(|bytes| {
                let (body, id) = bytes.split_at(bytes.len() - 4);
                let id = u32::from_le_bytes(id.try_into().unwrap());
                assert_eq!(id, seen);
                assert_eq!(body.len(), (id as usize * 7) % 1500);
                assert!(body.iter().all(|&b| b == (id % 251) as u8));
                seen += 1;
            });
        }
        assert_eq!(seen, next);
        assert!(!ring.has_records());
    }

    #[test]
    fn a_full_ring_refuses_and_an_oversize_record_never_fits() {
        let ring = Ring::create().unwrap();
        assert_eq!(ring.push(&vec![0; CAPACITY / 2]), Pushed::NoRoom);
        let payload = vec![1u8; 1000];
        let mut pushed = 0;
        while ring.push(&payload) != Pushed::NoRoom {
            pushed += 1;
        }
        assert_eq!(pushed, CAPACITY / (RECORD_HEADER + 1000));
        assert_eq!(ring.drain(|b| assert_eq!(b.len(), 1000)), pushed);
        assert_ne!(ring.push(&payload), Pushed::NoRoom);
    }

    #[test]
    fn only_an_asleep_collector_is_woken_and_only_once() {
        let ring = Ring::create().unwrap();
        assert_eq!(ring.push(b"a"), Pushed::Quiet);
        ring.set_asleep(true);
        assert_eq!(ring.push(b"b"), Pushed::WakeParent);
        assert_eq!(ring.push(b"c"), Pushed::Quiet);
        ring.set_asleep(false);
        assert_eq!(ring.push(b"d"), Pushed::Quiet);
        let mut got = Vec::new();
        ring.drain(|b| got.push(b.to_vec()));
        assert_eq!(
            got,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
    }
}
