//! State shared between processes: [`SharedMemory`], [`Value`]/[`Array`] of plain-old-data
//! types, and process-wide [`Lock`], [`RLock`], [`Event`], [`Semaphore`], [`Condition`],
//! [`Barrier`].
//!
//! Every one of them lives in a memfd block (nothing in `/dev/shm`, nothing left after a
//! crash), and every handle is a serde value naming its block, so it passes to a `Process` or
//! pool task like any argument and attaches on arrival.

mod barrier;
mod cell;
mod error;
mod futex;
mod mapping;
mod memory;
mod pid;
mod signal;
mod sync;
mod value;

pub use barrier::Barrier;
pub use error::SharedError;
/// The futex waits and wakes the queue's ring shares with the locks.
pub(crate) use futex::{futex_wait, futex_wake};
pub use memory::SharedMemory;
/// Keeps the blocks a process start sends attachable until the child has them.
pub(crate) use memory::TransferScope;
pub use signal::{BoundedSemaphore, Condition, Event, Semaphore};
pub use sync::{Lock, LockGuard, RLock, RLockGuard};
pub use value::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard, ValueLock};
