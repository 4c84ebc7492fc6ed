//! State shared between processes: [`SharedMemory`], [`Value`]/[`Array`] of plain-old-data
//! types, and process-wide [`Lock`], [`RLock`], [`Event`], [`Semaphore`], [`Condition`],
//! [`Barrier`].
//!
//! Every one of them lives in a memfd block (nothing in `/dev/shm`, nothing left after a
//! crash), and every handle is a serde value naming its block, so it passes to a `Process` or
//! pool task like any argument and attaches on arrival. The exception is a block under a name
//! the program chooses ([`SharedMemory::create_named`], a named [`ShareableList`], the blocks
//! of a [`SharedMemoryManager`]): a file in a directory private to the user (see `named`),
//! which any process of the user attaches by name and which lasts until unlinked (a
//! manager's blocks: until the manager ends, crash included).

mod barrier;
mod cell;
mod error;
mod futex;
mod list;
mod mapping;
mod memory;
mod named;
mod pid;
mod raw;
mod robust;
mod signal;
mod smm;
mod sync;
mod value;

pub use barrier::Barrier;
pub use error::SharedError;
/// The futex waits and wakes the queue's ring shares with the locks.
pub(crate) use futex::{futex_wait, futex_wake};
pub use list::{ShareableItem, ShareableList};
pub use memory::SharedMemory;
/// Keeps the blocks a process start sends attachable until the child has them.
pub(crate) use memory::TransferScope;
pub(crate) use pid::my_pid;
pub use raw::{RawArray, RawValue};
pub use signal::{BoundedSemaphore, Condition, Event, Semaphore};
pub use smm::SharedMemoryManager;
pub use sync::{Lock, LockGuard, RLock, RLockGuard};
pub use value::{Array, ArrayGuard, Value, ValueGuard, ValueLock};
