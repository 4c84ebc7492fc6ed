//! The collector's doorbell: one shared word per pool that says the collector is about to
//! block on its channels, so that a worker which publishes a result into its ring then sends
//! one wake-up message on its channel, and only then.
//!
//! No result waits unseen: the collector sets the word, then (after a sequentially consistent
//! fence) looks at every ring once more before it blocks; a worker publishes its record (a
//! sequentially consistent store of the ring's write position), then after a fence reads the
//! word. One of the two always sees the other. The first worker to see the word set clears it
//! (a swap) and rings; the others stay quiet. While the collector is awake, no worker pays for
//! a wake-up.

use std::sync::atomic::{AtomicU32, Ordering, fence};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shared::{SharedError, SharedMemory};

/// One pool's doorbell word, in the parent or in a worker.
pub(super) struct Doorbell {
    block: SharedMemory,
}

impl Doorbell {
    /// A new doorbell, in the parent (which holds it for the pool's life, so workers attach by
    /// its name without the block being pinned).
    pub(super) fn create() -> Result<Doorbell, SharedError> {
        Ok(Doorbell {
            block: SharedMemory::create(64)?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: the block's user area is at least 64 bytes and 64-byte aligned; an AtomicU32
        // may alias memory another process changes, and every access to it is atomic.
        unsafe { &*(self.block.ptr_at(0) as *const AtomicU32) }
    }

    /// Collector: says whether it is about to block (`true`) or awake. After setting it, the
    /// collector must look at every ring once more before it blocks.
    pub(super) fn set_asleep(&self, asleep: bool) {
        self.word().store(u32::from(asleep), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Worker, right after publishing a record: whether it must ring (the collector was about
    /// to block and no other worker has rung since).
    pub(super) fn should_ring(&self) -> bool {
        fence(Ordering::SeqCst);
        self.word().load(Ordering::Relaxed) != 0 && self.word().swap(0, Ordering::AcqRel) != 0
    }
}

/// The doorbell in a worker's argument: its name on the way, mapped on arrival (while the
/// parent holds it).
pub(super) enum BellArg {
    /// In the parent: the name to send.
    Name(String),
    /// In the worker: the mapped word.
    Mapped(Doorbell),
}

impl Doorbell {
    /// What a worker's argument carries to reach this doorbell.
    pub(super) fn arg(&self) -> BellArg {
        BellArg::Name(self.block.name().to_string())
    }
}

impl Serialize for BellArg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BellArg::Name(name) => s.serialize_str(name),
            BellArg::Mapped(bell) => s.serialize_str(bell.block.name()),
        }
    }
}

impl<'de> Deserialize<'de> for BellArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let block = SharedMemory::attach(&name).map_err(serde::de::Error::custom)?;
        if block.size() != 64 {
            return Err(serde::de::Error::custom(format!(
                "the pool's doorbell {name} has {} bytes, not 64",
                block.size()
            )));
        }
        Ok(BellArg::Mapped(Doorbell { block }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_publisher_after_the_collector_sleeps_rings() {
        let parent = Doorbell::create().unwrap();
        let bytes = postcard::to_stdvec(&parent.arg()).unwrap();
        let Ok(BellArg::Mapped(worker)) = postcard::from_bytes::<BellArg>(&bytes) else {
            panic!("not mapped");
        };
        assert!(!worker.should_ring());
        parent.set_asleep(true);
        assert!(worker.should_ring());
        assert!(!worker.should_ring());
        parent.set_asleep(true);
        parent.set_asleep(false);
        assert!(!worker.should_ring());
    }
}
